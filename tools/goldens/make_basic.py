"""References for decoding, grey conversion, equalizeHist and the colour modes.

Run with the pinned venv: .venv/bin/python tools/goldens/make_basic.py
"""
import cv2
import numpy as np

from common import load_inputs, save

SEPIA_Q10 = np.array([[402, 787, 194], [357, 702, 172], [279, 547, 134]], np.uint32)


def main():
    cv2.setNumThreads(1)
    for name, bgr in load_inputs().items():
        save("decode", name, bgr)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        save("gray", name, gray)
        save("histogram-equalization", name, cv2.equalizeHist(gray))
        save("invert", name, cv2.bitwise_not(bgr))
        save("grayscale", name, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
        # Sepia has no OpenCV call: the classic matrix in Q10 fixed point, as Prism defines it.
        rgb = bgr[..., ::-1].astype(np.uint32)
        sep = (rgb @ SEPIA_Q10.T + 512) >> 10
        save("sepia", name, np.minimum(sep, 255).astype(np.uint8)[..., ::-1])


if __name__ == "__main__":
    main()
