#!/usr/bin/env bash
# Prism's criterion benches and the same OpenCV calls, same inputs, same thread count, one
# run; prints a table with the ratio OpenCV time / Prism time (above 1: Prism faster).
# Usage: tools/bench.sh [THREADS] [OPS]   e.g. tools/bench.sh 2 gray,invert,equalize
# With OPS given, only the criterion benches of those ops run (the rest keep their last
# results); without, every bench runs.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
all=gray,invert,equalize,gray_equalize,canny,harris,erode,dilate,sift,denoise
ops=${2:-$all}
tools/setup_venv.sh
.venv/bin/python tools/bench_opencv.py --make-inputs >/dev/null
if [ -n "${2:-}" ]; then
  # The bench target each op's criterion bench lives in (engine/benches/).
  declare -A target=([gray]=ops_basic [invert]=ops_basic [equalize]=ops_basic
    [gray_equalize]=ops_basic [canny]=canny_harris [harris]=canny_harris [erode]=morph
    [dilate]=morph [sift]=sift [denoise]=denoise [jpeg_decode]=codec [jpeg_encode]=codec
    [png_decode]=codec [png_encode]=codec)
  benches=()
  for op in ${ops//,/ }; do
    t=${target[$op]:?"unknown op $op"}
    [[ " ${benches[*]} " == *" --bench $t "* ]] || benches+=(--bench "$t")
  done
  filter="^[0-9]+mp/(${ops//,/|})(_t[0-9]+)?\$"
  PRISM_BENCH_THREADS=$threads cargo bench -q -p prism-engine "${benches[@]}" -- --noplot "$filter" >/dev/null
else
  PRISM_BENCH_THREADS=$threads cargo bench -q -p prism-engine -- --noplot >/dev/null
fi
.venv/bin/python tools/bench_opencv.py --threads "$threads" --ops "$ops" >target/bench-opencv.jsonl
.venv/bin/python tools/bench_report.py target/bench-opencv.jsonl
