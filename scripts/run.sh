#!/usr/bin/env bash
# Installs what is missing, builds the Prism desktop app (release) and starts it.
# The command-line tool is `cargo run -p prism-engine --release -- ARGS` (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
  echo "scripts/run.sh takes no arguments; for the CLI use: cargo run -p prism-engine --release -- $*" >&2
  exit 2
fi
PRISM_WITH_APP=1 scripts/setup.sh
cargo build --release --locked -p prism-app
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "run: no display to open a window on; start it from a desktop session (or: xvfb-run target/release/prism-app)" >&2
  exit 1
fi
exec target/release/prism-app
