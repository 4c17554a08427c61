"""The golden input set, shared by every reference script.

Inputs are made here from scikit-image's bundled sample images and synthetic patterns
(no downloads), written once to engine/tests/goldens/inputs/, and read back with
cv2.imread(IMREAD_COLOR) so every reference starts from the pixels OpenCV decodes.
"""
import os
import pathlib

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "engine" / "tests" / "goldens"
INPUTS = GOLDEN / "inputs"


def _rgb2bgr(a):
    return np.ascontiguousarray(a[..., ::-1])


def _make_inputs():
    from skimage import data

    rng = np.random.default_rng(20261125)
    out = {}
    out["astronaut.png"] = _rgb2bgr(data.astronaut()[40:232, 140:332])  # 192x192 photo
    out["coffee.png"] = _rgb2bgr(data.coffee()[100:260, 150:390])  # 240x160 photo
    out["chelsea.jpg"] = _rgb2bgr(data.chelsea()[30:230, 60:300])  # JPEG source
    text = data.text()[:, :256]  # grey text on a textured background
    out["text.png"] = np.ascontiguousarray(text)
    out["camera_grey.png"] = np.ascontiguousarray(data.camera()[96:288, 160:352])
    flat = np.zeros((48, 64, 3), np.uint8)
    flat[:] = (40, 120, 200)
    out["flat.png"] = flat
    cb = ((np.indices((96, 96)) // 8).sum(axis=0) % 2 * 255).astype(np.uint8)
    out["checker.png"] = cb
    out["one.png"] = np.array([[[10, 200, 90]]], np.uint8)
    out["odd37x23.png"] = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    rgb = data.astronaut()[200:360, 200:360]
    alpha = np.tile(np.linspace(0, 255, 160).astype(np.uint8), (160, 1))
    out["rgba.png"] = np.dstack([_rgb2bgr(rgb), alpha])
    brick = data.brick()[:160, :160].astype(np.uint16) * 257  # 16-bit grey
    out["brick16.png"] = brick
    noisy = data.astronaut()[260:420, 60:220].astype(np.float64)
    noisy += rng.normal(0, 20, noisy.shape)
    out["noisy.png"] = _rgb2bgr(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return out


def ensure_inputs():
    """Writes the input files if missing; returns their paths by name."""
    INPUTS.mkdir(parents=True, exist_ok=True)
    made = _make_inputs()
    for name, img in made.items():
        p = INPUTS / name
        if not p.exists():
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if name.endswith(".jpg") else []
            if not cv2.imwrite(str(p), img, params):
                raise SystemExit(f"cannot write {p}")
    return {name: INPUTS / name for name in sorted(made)}


def load_inputs():
    """Every golden input as OpenCV decodes it with IMREAD_COLOR (BGR, 8-bit)."""
    return {n: cv2.imread(str(p), cv2.IMREAD_COLOR) for n, p in ensure_inputs().items()}


def save(op_dir, name, img):
    """Writes a reference image losslessly as PNG (stem of the input + .png)."""
    d = GOLDEN / op_dir
    d.mkdir(parents=True, exist_ok=True)
    p = d / (os.path.splitext(name)[0] + ".png")
    if not cv2.imwrite(str(p), img):
        raise SystemExit(f"cannot write {p}")
    return p
