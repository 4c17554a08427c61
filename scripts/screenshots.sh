#!/usr/bin/env bash
# Writes PNG screenshots of the app's main states into docs/screenshots/, by running the
# end-to-end test (real webview under Xvfb) with screenshots turned on.
set -euo pipefail
cd "$(dirname "$0")/.."
PRISM_WITH_APP=1 scripts/setup.sh
mkdir -p docs/screenshots
# --workspace: the same build as scripts/test.sh, so nothing is rebuilt.
PRISM_SCREENSHOTS="$PWD/docs/screenshots" cargo test --locked --workspace --test e2e -- --nocapture
ls -1 docs/screenshots
