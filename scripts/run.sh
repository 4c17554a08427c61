#!/usr/bin/env bash
# Installs what is missing, builds the Prism desktop app (release) and starts it.
# With arguments it runs the `prism` CLI instead, e.g.
# `scripts/run.sh process --op sift --out out/ photos/`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  scripts/setup.sh
  cargo build --release --locked -p prism-engine
  exec target/release/prism "$@"
fi
PRISM_WITH_APP=1 scripts/setup.sh
cargo build --release --locked -p prism-app
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "run: no display to open a window on; start it from a desktop session" \
    "(or on a headless machine: xvfb-run target/release/prism-app)" >&2
  exit 1
fi
exec target/release/prism-app
