#!/usr/bin/env bash
# Builds Prism's Linux packages into dist/: a .deb and an .rpm, each holding the desktop
# app (prism-app), the `prism` CLI in /usr/bin, man pages, bash/zsh/fish completions, the
# desktop entry and the icons.
#
#   scripts/package.sh            # the release packages ([profile.dist] in Cargo.toml)
#   PRISM_PACKAGE_PROFILE=release scripts/package.sh   # a cheaper profile, same layout
#
# The Tauri CLI is the pinned npm build of tauri-cli (a prebuilt binary, seconds to
# install, where `cargo install tauri-cli` compiles for ~12 minutes); it goes to
# .tools/tauri-cli-<version>/, installed once.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROFILE="${PRISM_PACKAGE_PROFILE:-dist}"
TAURI_CLI_VERSION=2.12.5
TAURI_DIR="$ROOT/.tools/tauri-cli-$TAURI_CLI_VERSION"
TAURI="$TAURI_DIR/node_modules/.bin/tauri"
STAGE="$ROOT/target/package-staging"

PRISM_WITH_APP=1 scripts/setup.sh

if ! "$TAURI" --version 2>/dev/null | grep -qx "tauri-cli $TAURI_CLI_VERSION"; then
  echo "package: installing @tauri-apps/cli $TAURI_CLI_VERSION into $TAURI_DIR"
  rm -rf "$TAURI_DIR"
  mkdir -p "$TAURI_DIR"
  npm install --prefix "$TAURI_DIR" --no-audit --no-fund --no-save --silent \
    "@tauri-apps/cli@$TAURI_CLI_VERSION"
  "$TAURI" --version
fi

# What the bundle config (src-tauri/tauri.package.conf.json) maps into the packages:
# the CLI built with the same profile as the app, man pages and completions.
rm -rf "$STAGE"
mkdir -p "$STAGE"
cargo build --locked --profile "$PROFILE" -p prism-engine --bin prism
cp "target/$PROFILE/prism" "$STAGE/prism"
cargo run --locked --quiet -p prism-engine --example gen_docs -- "$STAGE"
gzip -9n "$STAGE"/man/*.1

# The app, then the bundles. `--profile` after `--` goes to cargo; the CLI then looks for
# the binary in target/<profile>/.
(cd src-tauri && "$TAURI" build --ci --bundles deb,rpm \
  --config tauri.package.conf.json -- --locked --profile "$PROFILE")

mkdir -p dist
rm -f dist/*.deb dist/*.rpm
cp "target/$PROFILE/bundle/deb/"*.deb "target/$PROFILE/bundle/rpm/"*.rpm dist/
ls -l dist/
