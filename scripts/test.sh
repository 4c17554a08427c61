#!/usr/bin/env bash
# Installs what is missing, then runs every check CI runs: format, lints, all tests,
# including the desktop app's unit tests and its end-to-end tests in a real webview
# (Xvfb + tauri-driver). PRISM_WITH_APP=0 leaves the app out (engine only).
set -euo pipefail
cd "$(dirname "$0")/.."
export PRISM_WITH_APP="${PRISM_WITH_APP:-1}"
scripts/setup.sh
cargo fmt --all --check
if [ "$PRISM_WITH_APP" = 1 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
  cargo test --workspace --locked
else
  cargo clippy -p prism-engine --all-targets --locked -- -D warnings
  cargo test -p prism-engine --locked
fi
