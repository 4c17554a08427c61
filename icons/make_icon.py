#!/usr/bin/env python3
"""Draws Prism's icon (icons/icon.png, 512x512 RGBA) with the standard library only:
a white beam entering a glass triangle and leaving as a spectrum, on a dark rounded tile.
Run it again to regenerate: python3 icons/make_icon.py"""

import math
import struct
import zlib
from pathlib import Path

SIZE = 512
SS = 3  # supersamples per axis, for smooth edges


def inside_triangle(x, y, a, b, c):
    def side(p, q):
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])
    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return (s1 >= 0 and s2 >= 0 and s3 >= 0) or (s1 <= 0 and s2 <= 0 and s3 <= 0)


def dist_to_segment(x, y, p, q):
    px, py = q[0] - p[0], q[1] - p[1]
    t = max(0.0, min(1.0, ((x - p[0]) * px + (y - p[1]) * py) / (px * px + py * py)))
    dx, dy = p[0] + t * px - x, p[1] + t * py - y
    return math.hypot(dx, dy)


def in_rounded_tile(x, y, margin=24, r=96):
    lo, hi = margin, SIZE - margin
    if not (lo <= x <= hi and lo <= y <= hi):
        return False
    cx = min(max(x, lo + r), hi - r)
    cy = min(max(y, lo + r), hi - r)
    return math.hypot(x - cx, y - cy) <= r


TRI = ((256, 118), (150, 330), (362, 330))
BEAM = ((40, 268), (214, 220))
SPECTRUM = [(255, 64, 64), (255, 160, 40), (250, 230, 60), (70, 210, 90), (60, 150, 255), (150, 80, 240)]
FAN_FROM = (300, 238)


def shade(x, y):
    """RGBA of one sample point."""
    if not in_rounded_tile(x, y):
        return (0, 0, 0, 0)
    t = y / SIZE
    col = [int(22 + 14 * t), int(26 + 16 * t), int(44 + 24 * t), 255]
    # The spectrum fans out to the right of the prism.
    if x > FAN_FROM[0]:
        ang = math.degrees(math.atan2(y - FAN_FROM[1], x - FAN_FROM[0]))
        band = (ang - 4) / 7.0
        if 0 <= band < len(SPECTRUM) and x < 470:
            col = list(SPECTRUM[int(band)]) + [255]
    if dist_to_segment(x, y, *BEAM) < 5:
        col = [245, 245, 250, 255]
    if inside_triangle(x, y, *TRI):
        g = 0.55 + 0.45 * (1 - (y - 118) / 212)
        col = [int(150 * g + 60), int(190 * g + 50), int(230 * g + 25), 255]
    edge = min(dist_to_segment(x, y, TRI[i], TRI[(i + 1) % 3]) for i in range(3))
    if edge < 4:
        col = [235, 245, 255, 255]
    return tuple(col)


def main():
    rows = []
    for py in range(SIZE):
        row = bytearray([0])  # PNG filter: none
        for px in range(SIZE):
            acc = [0, 0, 0, 0]
            for sy in range(SS):
                for sx in range(SS):
                    r, g, b, a = shade(px + (sx + 0.5) / SS, py + (sy + 0.5) / SS)
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    acc[3] += a
            n = SS * SS
            a = acc[3] / n
            if acc[3]:
                row += bytes([round(acc[0] / acc[3]), round(acc[1] / acc[3]), round(acc[2] / acc[3]), round(a)])
            else:
                row += bytes(4)
        rows.append(bytes(row))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0))  # 8-bit RGBA
    png += chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
    png += chunk(b"IEND", b"")
    out = Path(__file__).with_name("icon.png")
    out.write_bytes(png)
    print(f"wrote {out} ({len(png)} bytes)")


if __name__ == "__main__":
    main()
