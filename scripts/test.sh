#!/usr/bin/env bash
# Installs what is missing, then runs every check CI runs: format, lints, all tests,
# including the desktop app's unit tests and its end-to-end tests in a real webview
# (Xvfb + tauri-driver), then builds the .deb/.rpm and tests installing them
# (scripts/install_test.sh), and renders and validates the Kubernetes manifests
# (scripts/check_k8s.sh). PRISM_WITH_APP=0 leaves the app out (engine only).
set -euo pipefail
cd "$(dirname "$0")/.."
export PRISM_WITH_APP="${PRISM_WITH_APP:-1}"
scripts/setup.sh
cargo fmt --all --check
# deploy/k8s renders and validates offline against the Kubernetes schemas.
scripts/check_k8s.sh
if [ "$PRISM_WITH_APP" = 1 ]; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
  cargo test --workspace --locked
  # Builds the .deb and .rpm, installs the .deb, uses it, removes it (needs root).
  if [ "$(id -u)" = 0 ]; then
    scripts/install_test.sh
  else
    echo "test: skipping scripts/install_test.sh (needs root to install a package)" >&2
  fi
else
  cargo clippy -p prism-engine --all-targets --locked -- -D warnings
  cargo test -p prism-engine --locked
fi
