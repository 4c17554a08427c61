"""References for decoding 16-bit images whose low bytes differ from their high bytes.

Run with the pinned venv: .venv/bin/python tools/goldens/make_decode16.py

The shared 16-bit input (brick16.png) is `x * 257`: its two bytes are equal, so taking the
high byte, dividing by 257 and reading the wrong byte all give the same answer. The inputs
made here use every low byte: grey, BGR and BGRA, each as PNG and as TIFF, written once to
engine/tests/goldens/inputs16/ with cv2.imwrite, and grey with alpha as PNG (written here:
cv2.imwrite has no 2-channel PNG).

Writes engine/tests/goldens/decode16/:
- <stem>_<ext>.png: cv2.imread(IMREAD_COLOR) of the input (what OpenCV decodes: libpng
  keeps the high byte; libtiff's RGBA reader rounds colour to (v + 128) / 257 and keeps the
  high byte of grey);
- <stem>_<ext>.alpha.png for the inputs with alpha: the alpha OpenCV reads with
  IMREAD_UNCHANGED, brought to 8 bits by the rule the same format applies to its colour.
  OpenCV's IMREAD_COLOR drops alpha, so this one is Prism's definition, not an OpenCV output.
"""
import struct
import zlib

import cv2
import numpy as np

from common import GOLDEN

INPUTS = GOLDEN / "inputs16"
OUT = GOLDEN / "decode16"
FORMATS = ["png", "tif"]


def _values(rng, shape):
    """Uniform 16-bit samples, with the values that tell the rules apart placed first."""
    v = rng.integers(0, 65536, shape, dtype=np.uint16)
    edge = np.array([0, 1, 127, 128, 255, 256, 32767, 32768, 32895, 65407, 65408, 65534,
                     65535], np.uint16)
    flat = v.reshape(-1)
    flat[: edge.size] = edge
    return v


def make_inputs():
    rng = np.random.default_rng(20261202)
    return {
        "grey16": _values(rng, (40, 48)),
        "bgr16": _values(rng, (40, 48, 3)),
        "bgra16": _values(rng, (40, 48, 4)),
        "greya16": _values(rng, (40, 48, 2)),
    }


def write_png_grey_alpha16(path, ga):
    """A 16-bit grey + alpha PNG (colour type 4), unfiltered rows."""
    h, w, _ = ga.shape
    rows = b"".join(b"\x00" + ga[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def to8(v, ext, grey):
    """The 16 -> 8 rule of OpenCV's reader for this format and layout."""
    v = v.astype(np.int64)
    if ext == "tif" and not grey:
        return ((v + 128) // 257).astype(np.uint8)
    return (v >> 8).astype(np.uint8)


def main():
    INPUTS.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, img in make_inputs().items():
        for ext in (["png"] if stem == "greya16" else FORMATS):
            p = INPUTS / f"{stem}.{ext}"
            if not p.exists():
                if stem == "greya16":
                    write_png_grey_alpha16(p, img)
                elif not cv2.imwrite(str(p), img):
                    raise SystemExit(f"cannot write {p}")
            raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if stem == "greya16":
                # OpenCV reads grey + alpha as BGRA: grey replicated.
                raw = raw[..., [0, 3]]
            assert raw.dtype == np.uint16 and np.array_equal(raw, img), p
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            assert bgr.dtype == np.uint8
            if stem == "greya16":
                img = img[..., 0]
            grey = img.ndim == 2
            # The reference is what OpenCV decodes; check it is the rule the docs state.
            colour = np.dstack([img] * 3) if grey else img[..., :3]
            assert np.array_equal(bgr, to8(colour, ext, grey)), p
            # The input tells the rules apart: high byte, rounded / 257 and low byte differ.
            c = colour.astype(np.int64)
            assert not np.array_equal(c >> 8, (c + 128) // 257), p
            assert not np.array_equal(bgr, (c & 255).astype(np.uint8)), p
            if not cv2.imwrite(str(OUT / f"{stem}_{ext}.png"), bgr):
                raise SystemExit(f"cannot write {stem}_{ext}.png")
            if stem == "greya16":
                alpha = to8(raw[..., 1], ext, True)
                if not cv2.imwrite(str(OUT / f"{stem}_{ext}.alpha.png"), alpha):
                    raise SystemExit(f"cannot write {stem}_{ext}.alpha.png")
            if not grey and img.shape[2] == 4:
                alpha = to8(raw[..., 3], ext, False)
                if not cv2.imwrite(str(OUT / f"{stem}_{ext}.alpha.png"), alpha):
                    raise SystemExit(f"cannot write {stem}_{ext}.alpha.png")


if __name__ == "__main__":
    main()
