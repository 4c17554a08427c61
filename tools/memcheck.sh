#!/usr/bin/env bash
# Peak RSS of `prism process` over 10 and 40 images of 12 MP: memory must not grow with
# the batch. Usage: tools/memcheck.sh [OP] [THREADS]   (needs tools/setup_venv.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
op=${1:-color-manipulation}
threads=${2:-2}
dir=target/memcheck
mkdir -p "$dir/in40"
.venv/bin/python tools/bench_opencv.py --make-inputs >/dev/null
.venv/bin/python - "$dir/in40" <<'PY'
import sys, pathlib, cv2
out = pathlib.Path(sys.argv[1])
src = cv2.imread("target/bench-inputs/photo_12mp.png", cv2.IMREAD_COLOR)
for i in range(40):
    p = out / f"img{i:02}.jpg"
    if not p.exists():
        img = cv2.flip(src, i % 3 - 1) if i % 4 else src
        cv2.imwrite(str(p), (img.astype("int16") + (i % 7) - 3).clip(0, 255).astype("uint8"),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
PY
rm -rf "$dir/in10" && mkdir -p "$dir/in10" && cp "$dir"/in40/img0*.jpg "$dir/in10/"
cargo build --release -q -p prism-engine
for n in 10 40; do
  rm -rf "$dir/out"
  /usr/bin/time -f "%M %e" -o "$dir/time.txt" target/release/prism process --op "$op" \
    --threads "$threads" --json --out "$dir/out" "$dir/in$n" >"$dir/events.txt"
  read -r kb secs <"$dir/time.txt"
  echo "op=$op threads=$threads images=$n peak_rss_mb=$((kb / 1024)) wall_s=$secs failed=$(grep -c '"event":"failed"' "$dir/events.txt" || true)"
done
