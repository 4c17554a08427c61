#!/usr/bin/env bash
# Sets up what is missing, builds Prism in release mode and starts it. Until the desktop
# app lands this is the `prism` CLI: with no arguments it lists the ops, otherwise it
# passes its arguments on (e.g. `scripts/run.sh process --op sift --out out photos/`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p prism-engine
if [ $# -eq 0 ]; then
  exec target/release/prism ops
fi
exec target/release/prism "$@"
