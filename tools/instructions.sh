#!/usr/bin/env bash
# Counts the instructions a `prism` binary executes for a few ops on a generated image,
# under callgrind (valgrind): a speed measure that does not depend on what else the
# machine runs, unlike wall-clock benches. Used to choose the packages' profile.
#
#   tools/instructions.sh target/release/prism target/dist/prism
#
# One thread (--threads 1), so the count is deterministic up to a few thousand.
set -euo pipefail
command -v valgrind >/dev/null || { echo "instructions: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/in.png" <<'PY'
import struct, sys, zlib, math
w, h = 640, 480
rows = []
for y in range(h):
    row = bytearray([0])
    for x in range(w):
        v = int(127 + 60 * math.sin(x / 9.0) * math.cos(y / 13.0) + 60 * ((x // 40 + y // 40) % 2) - 30)
        row += bytes((max(0, min(255, v)), (x * 255) // w, (y * 255) // h))
    rows.append(bytes(row))
def chunk(k, d):
    return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
PY
printf '%-40s %-22s %16s\n' binary op instructions
for bin in "$@"; do
  for op in edge-detection corner-detection sift; do
    rm -rf "$WORK/out"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
      "$bin" process --threads 1 --json --op "$op" --format png --out "$WORK/out" "$WORK/in.png" \
      >/dev/null 2>"$WORK/vg.log"
    ir=$(awk '/^summary:/ { print $2 }' "$WORK/cg.out")
    printf '%-40s %-22s %16s\n' "$bin" "$op" "$ir"
  done
done
