"""References for decoding, grey conversion, equalizeHist and the colour modes.

Run with the pinned venv: .venv/bin/python tools/goldens/make_basic.py
"""
import cv2
import numpy as np

from common import load_inputs, save

SEPIA_Q10 = np.array([[402, 787, 194], [357, 702, 172], [279, 547, 134]], np.uint32)

# (hue degrees, saturation factor) for the hue-saturation mode; both have halves to round
# (22.5 is not one here, -67.5 and S * 2.5 are), so ties to even are exercised.
HUE_SAT = [(30, 1.5), (-135, 2.5)]


def hue_saturation(bgr, hue, sat):
    """Prism's hue-saturation mode, defined on OpenCV's 8-bit HSV (H in 0..180)."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    h = (hsv[..., 0].astype(np.int32) + int(np.rint(hue / 2))) % 180
    s = np.clip(np.rint(hsv[..., 1].astype(np.float32) * np.float32(sat)), 0, 255)
    hsv = np.dstack([h, s, hsv[..., 2]]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


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
        for hue, sat in HUE_SAT:
            save(f"hue-saturation_{hue}_{sat}", name, hue_saturation(bgr, hue, sat))


if __name__ == "__main__":
    main()
