#!/usr/bin/env bash
# Prism's criterion benches and the same OpenCV calls, same inputs, same thread count, one
# run; prints a table with the ratio OpenCV time / Prism time (above 1: Prism faster).
# Usage: tools/bench.sh [THREADS] [OPS]   e.g. tools/bench.sh 2 gray,invert,equalize
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
ops=${2:-gray,invert,equalize,canny,harris,erode,dilate,sift,denoise}
tools/setup_venv.sh
.venv/bin/python tools/bench_opencv.py --make-inputs >/dev/null
PRISM_BENCH_THREADS=$threads cargo bench -q -p prism-engine -- --noplot >/dev/null
.venv/bin/python tools/bench_opencv.py --threads "$threads" --ops "$ops" >target/bench-opencv.jsonl
.venv/bin/python tools/bench_report.py target/bench-opencv.jsonl
