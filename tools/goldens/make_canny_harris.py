"""References for edge-detection (Canny) and corner-detection (Harris).

Run with the pinned venv: .venv/bin/python tools/goldens/make_canny_harris.py

Writes, for every golden input:
  edge-detection/                 Canny(gray, 90, 180)                (the op's defaults)
  edge-detection-l2-50-150/       Canny(gray, 50, 150, L2gradient=True)
  edge-detection-ap5/             Canny(gray, 90, 180, apertureSize=5)
  edge-detection-ap7-l2/          Canny(gray, 400, 1200, apertureSize=7, L2gradient=True)
  corner-mask/                    dilate(cornerHarris(gray, 2, 3, 0.04)) > 0.1 * max, 0/255
  corner-detection/               the original app's drawing: red filled circles, radius 5
  corner-mask-b3-k5/              block 3, ksize 5, k 0.06, threshold 0.05
  corner-detection-b3-k5-r3/      the same, circles of radius 3 (a few inputs: drawings are
                                  whole photos, so only the defaults are kept for all)
and the raw float responses of a few inputs (little-endian f32, row-major) under
corner-response/ as <stem>-b<block>-k<ksize>.f32, to check the response bit for bit.
"""
import cv2
import numpy as np

from common import GOLDEN, load_inputs, save

CANNY = {
    "edge-detection": dict(threshold1=90, threshold2=180),
    "edge-detection-l2-50-150": dict(threshold1=50, threshold2=150, L2gradient=True),
    "edge-detection-ap5": dict(threshold1=90, threshold2=180, apertureSize=5),
    "edge-detection-ap7-l2": dict(threshold1=400, threshold2=1200, apertureSize=7, L2gradient=True),
}

# (mask dir, drawing dir, inputs drawn (None: all), block, ksize, k, threshold, radius)
HARRIS = [
    ("corner-mask", "corner-detection", None, 2, 3, 0.04, 0.1, 5),
    ("corner-mask-b3-k5", "corner-detection-b3-k5-r3", {"checker.png", "odd37x23.png", "text.png"},
     3, 5, 0.06, 0.05, 3),
]

# Inputs whose float response is stored, and the (block, ksize) pairs stored for them.
RESPONSES = {
    "astronaut.png": [(2, 3)],
    "odd37x23.png": [(2, 3), (3, 5), (5, 7), (2, 1)],
    "text.png": [(2, 3)],
}


def harris(bgr, block, ksize, k, threshold, radius):
    """The original app's corner marking, with x = column and y = row."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    r = cv2.dilate(cv2.cornerHarris(gray, block, ksize, k), None)
    mask = r > threshold * r.max()
    out = bgr.copy()
    for y, x in np.argwhere(mask):
        cv2.circle(out, (int(x), int(y)), radius, (0, 0, 255), -1)
    return (mask * 255).astype(np.uint8), out


def main():
    cv2.setNumThreads(1)
    resp_dir = GOLDEN / "corner-response"
    resp_dir.mkdir(parents=True, exist_ok=True)
    for name, bgr in load_inputs().items():
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        for op_dir, kw in CANNY.items():
            save(op_dir, name, cv2.Canny(gray, **kw))
        for mask_dir, draw_dir, drawn_for, block, ksize, k, threshold, radius in HARRIS:
            mask, drawn = harris(bgr, block, ksize, k, threshold, radius)
            save(mask_dir, name, mask)
            if drawn_for is None or name in drawn_for:
                save(draw_dir, name, drawn)
        stem = name.rsplit(".", 1)[0]
        for block, ksize in RESPONSES.get(name, []):
            r = cv2.cornerHarris(gray, block, ksize, 0.04)
            r.astype("<f4").tofile(resp_dir / f"{stem}-b{block}-k{ksize}.f32")


if __name__ == "__main__":
    main()
