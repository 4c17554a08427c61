"""References for `denoise`: cv2.fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21).

Three sets:
- denoise-lab/: sampled colours and OpenCV's 8-bit LBGR2Lab / Lab2LBGR of them (the
  conversions were checked on all 2^24 values while writing them; this keeps a sample);
- every golden input (engine/tests/goldens/inputs/, read as BGR) -> goldens/denoise/<stem>.png;
- a noisy set made here: clean crops of scikit-image photos with seeded Gaussian noise of
  sigma 10, 20 and 30, written to goldens/denoise-noisy/{clean,noisy,opencv}/ together with
  quality.json: OpenCV's PSNR and SSIM against the clean crop (and the noisy input's), which
  Prism's test must match within 0.05 dB / 0.002.

PSNR is skimage's peak_signal_noise_ratio(data_range=255) over all channels; SSIM is
skimage's structural_similarity with its defaults (7x7 uniform window, gaussian_weights=False,
sample covariance, K1=0.01, K2=0.03, data_range=255) per RGB channel and averaged
(channel_axis=2).

Run with the pinned venv: .venv/bin/python tools/goldens/make_denoise.py
"""
import json

import cv2
import numpy as np
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from common import GOLDEN, load_inputs, save

H, H_COLOR, TEMPLATE, SEARCH = 10, 10, 7, 21
SIGMAS = (10, 20, 30)


def denoise(bgr):
    return cv2.fastNlMeansDenoisingColored(bgr, None, H, H_COLOR, TEMPLATE, SEARCH)


def clean_crops():
    """Clean 8-bit BGR crops of package photos (160x160), by name."""
    def bgr(a):
        return np.ascontiguousarray(a[..., ::-1])

    return {
        "astronaut_face": bgr(data.astronaut()[30:190, 150:310]),
        "coffee_cup": bgr(data.coffee()[80:240, 200:360]),
        "chelsea_cat": bgr(data.chelsea()[40:200, 80:240]),
    }


def quality(clean, img):
    rgb_c, rgb_i = clean[..., ::-1], img[..., ::-1]
    return {
        "psnr": float(peak_signal_noise_ratio(rgb_c, rgb_i, data_range=255)),
        "ssim": float(structural_similarity(rgb_c, rgb_i, data_range=255, channel_axis=2)),
    }


def lab_samples():
    """256x256 colours (a grid over the cube plus seeded random ones) and OpenCV's
    COLOR_LBGR2Lab of them, and the same bytes read as Lab through COLOR_Lab2LBGR."""
    g = np.linspace(0, 255, 32).round().astype(np.uint8)
    grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    rng = np.random.default_rng(5)
    rand = rng.integers(0, 256, (256 * 256 - len(grid), 3), dtype=np.uint8)
    img = np.concatenate([grid, rand]).reshape(256, 256, 3)
    save("denoise-lab", "colours.png", img)
    save("denoise-lab", "to_lab.png", cv2.cvtColor(img, cv2.COLOR_LBGR2Lab))
    save("denoise-lab", "from_lab.png", cv2.cvtColor(img, cv2.COLOR_Lab2LBGR))


def main():
    cv2.setNumThreads(1)
    lab_samples()
    for name, bgr in load_inputs().items():
        save("denoise", name, denoise(bgr))

    rng = np.random.default_rng(20261205)
    report = {}
    for name, clean in clean_crops().items():
        save("denoise-noisy/clean", name + ".png", clean)
        for sigma in SIGMAS:
            noisy = clean.astype(np.float64) + rng.normal(0, sigma, clean.shape)
            noisy = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
            stem = f"{name}_s{sigma}"
            out = denoise(noisy)
            save("denoise-noisy/noisy", stem + ".png", noisy)
            save("denoise-noisy/opencv", stem + ".png", out)
            report[stem] = {
                "clean": name,
                "sigma": sigma,
                "noisy": quality(clean, noisy),
                "opencv": quality(clean, out),
            }
    path = GOLDEN / "denoise-noisy" / "quality.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    for stem, q in report.items():
        gain = q["opencv"]["psnr"] - q["noisy"]["psnr"]
        print(f"{stem}: psnr {q['noisy']['psnr']:.2f} -> {q['opencv']['psnr']:.2f} "
              f"(+{gain:.2f} dB), ssim {q['noisy']['ssim']:.4f} -> {q['opencv']['ssim']:.4f}")


if __name__ == "__main__":
    main()
