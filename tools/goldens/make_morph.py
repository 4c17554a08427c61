"""References for `erosion` and `dilation`: cv2.erode / cv2.dilate per channel on the
BGR image with OpenCV's default border (constant, morphologyDefaultBorderValue).

Run with the pinned venv: .venv/bin/python tools/goldens/make_morph.py

Every input gets the settings in FULL; the small inputs also get SMALL_ONLY (big and
even-sized kernels, iterated ellipses), which are cheap to store there. Two settings are
checked here instead of being stored, so the references stay small: size 1 is OpenCV's
copy (the Rust test compares it with the decode references), and rect 3 with 2
iterations is OpenCV's rect 5 (compared with the default references).
"""
import cv2
import numpy as np

from common import load_inputs, save

SHAPES = {"rect": cv2.MORPH_RECT, "ellipse": cv2.MORPH_ELLIPSE, "cross": cv2.MORPH_CROSS}

# (directory suffix, shape, size, iterations); "" is the op's default (rect 5x5, once).
FULL = [("", "rect", 5, 1), ("-ellipse7", "ellipse", 7, 1), ("-cross5", "cross", 5, 1)]
SMALL_ONLY = [("-rect31", "rect", 31, 1), ("-ellipse31", "ellipse", 31, 1),
              ("-rect4", "rect", 4, 1), ("-ellipse6", "ellipse", 6, 1),
              ("-cross4", "cross", 4, 3), ("-ellipse5x3", "ellipse", 5, 3),
              ("-rect99x50", "rect", 99, 50)]
SMALL = {"one.png", "odd37x23.png", "checker.png", "flat.png"}


def main():
    cv2.setNumThreads(1)
    for name, bgr in load_inputs().items():
        for fn in (cv2.erode, cv2.dilate):
            assert np.array_equal(fn(bgr, np.ones((1, 1), np.uint8)), bgr)
            three = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
            five = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
            assert np.array_equal(fn(bgr, three, iterations=2), fn(bgr, five))
        settings = FULL + (SMALL_ONLY if name in SMALL else [])
        for suffix, shape, size, iters in settings:
            k = cv2.getStructuringElement(SHAPES[shape], (size, size))
            save("erosion" + suffix, name, cv2.erode(bgr, k, iterations=iters))
            save("dilation" + suffix, name, cv2.dilate(bgr, k, iterations=iters))


if __name__ == "__main__":
    main()
