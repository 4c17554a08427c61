#!/usr/bin/env bash
# Creates .venv with the pinned OpenCV used for golden references and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import cv2, skimage" 2>/dev/null; then
  .venv/bin/pip install -q -r tools/requirements.txt
fi
