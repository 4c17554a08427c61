"""References for the `sift` op: OpenCV's SIFT keypoints, descriptors and rich drawing.

Run with the pinned venv: .venv/bin/python tools/goldens/make_sift.py

Writes engine/tests/goldens/sift/:
- <stem>.json for every golden input (and the extra inputs made here): OpenCV 5's
  SIFT_create(...).detectAndCompute on the grey image, keypoints as
  [x, y, size, angle, response, octave] in OpenCV's order and descriptors as hex rows;
- <stem>.draw.png for a few of them: drawKeypoints(DRAW_RICH_KEYPOINTS) of those keypoints
  over the input with OpenCV's RNG freshly seeded, so Prism's drawing can be checked on the
  same keypoints;
- pair_a.jpg, pair_b.jpg, pair.json: a pair related by a known 30 degree rotation and 0.8
  scale (cv2.warpAffine), with OpenCV's ratio-test (0.75) matching figures on it.
"""
import json
import pathlib

import cv2
import numpy as np

from common import GOLDEN, load_inputs

OUT = GOLDEN / "sift"
# A few inputs also run with non-default parameters (Prism's kebab-case keys).
VARIANTS = {
    "astronaut.png": [{"nfeatures": 60}],
    "coffee.png": [{"octave-layers": 4, "contrast": 0.03, "edge": 12.0, "sigma": 1.4}],
}
DEFAULTS = {"nfeatures": 0, "octave-layers": 3, "contrast": 0.04, "edge": 10.0, "sigma": 1.6}
# Drawing references: a photo, a grey input, many small keypoints, clipping at the border.
DRAWN = {"astronaut.png", "camera_grey.png", "checker.png", "odd37x23.png", "text.png"}
PAIR_ANGLE, PAIR_SCALE = 30.0, 0.8
CORRECT_PX = 3.0  # a match is correct when B's keypoint is this close to A's, mapped
RATIO = 0.75


def extra_inputs():
    """Larger photos than the shared golden inputs, stored as JPEG to stay small."""
    from skimage import data

    return {"rocket.jpg": np.ascontiguousarray(data.rocket()[..., ::-1])}  # 640x427


def sift(gray, p):
    s = cv2.SIFT_create(p["nfeatures"], p["octave-layers"], p["contrast"], p["edge"], p["sigma"])
    kps, desc = s.detectAndCompute(gray, None)
    if desc is None:
        desc = np.zeros((0, 128), np.float32)
    return kps, desc


def record(name, bgr, params):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    kps, desc = sift(gray, params)
    assert np.all(desc == np.round(desc)) and desc.max(initial=0) <= 255
    return {
        "input": name,
        "width": int(gray.shape[1]),
        "height": int(gray.shape[0]),
        "params": params,
        "keypoints": [
            [k.pt[0], k.pt[1], k.size, k.angle, k.response, k.octave] for k in kps
        ],
        "descriptors": [bytes(row.astype(np.uint8)).hex() for row in desc],
    }, kps


def write_json(path, obj):
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def draw(bgr, kps):
    cv2.setRNGSeed(0)  # OpenCV's default state (0xffffffff), as a fresh process has it
    return cv2.drawKeypoints(bgr, kps, None, flags=cv2.DRAW_MATCHES_FLAGS_DRAW_RICH_KEYPOINTS)


def match_figures(kps_a, desc_a, kps_b, desc_b, m):
    """Ratio-test matching A -> B and how many matches the known transform confirms."""
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in matches if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    correct = 0
    for g in good:
        pa = np.array([*kps_a[g.queryIdx].pt, 1.0])
        pb = np.array(kps_b[g.trainIdx].pt)
        if np.linalg.norm(m @ pa - pb) < CORRECT_PX:
            correct += 1
    return {
        "keypoints_a": len(kps_a),
        "keypoints_b": len(kps_b),
        "matches": len(good),
        "correct": correct,
        "precision": correct / max(len(good), 1),
        "correct_per_keypoint": correct / max(len(kps_a), 1),
    }


def make_pair():
    from skimage import data

    a = cv2.cvtColor(np.ascontiguousarray(data.astronaut()[..., ::-1]), cv2.COLOR_BGR2GRAY)
    a = np.ascontiguousarray(a[64:448, 64:448])  # 384x384
    h, w = a.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), PAIR_ANGLE, PAIR_SCALE)
    b = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    for name, img in (("pair_a.jpg", a), ("pair_b.jpg", b)):
        cv2.imwrite(str(OUT / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    # Figures come from the files as decoded, exactly what Prism's test reads.
    a = cv2.imread(str(OUT / "pair_a.jpg"), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(OUT / "pair_b.jpg"), cv2.IMREAD_GRAYSCALE)
    ka, da = sift(a, DEFAULTS)
    kb, db = sift(b, DEFAULTS)
    fig = match_figures(ka, da, kb, db, m)
    write_json(OUT / "pair.json", {
        "a": "pair_a.jpg",
        "b": "pair_b.jpg",
        "transform": m.tolist(),
        "angle": PAIR_ANGLE,
        "scale": PAIR_SCALE,
        "ratio": RATIO,
        "correct_px": CORRECT_PX,
        "opencv": fig,
    })
    print("pair:", fig)


def main():
    cv2.setNumThreads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    inputs = dict(load_inputs())
    for name, img in extra_inputs().items():
        p = OUT / name
        if not p.exists():
            cv2.imwrite(str(p), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        inputs[name] = cv2.imread(str(p), cv2.IMREAD_COLOR)
    for name, bgr in inputs.items():
        stem = pathlib.Path(name).stem
        rec, kps = record(name, bgr, DEFAULTS)
        write_json(OUT / f"{stem}.json", rec)
        if name in DRAWN:
            cv2.imwrite(str(OUT / f"{stem}.draw.png"), draw(bgr, kps))
        for i, params in enumerate(VARIANTS.get(name, [])):
            rec, _ = record(name, bgr, {**DEFAULTS, **params})
            write_json(OUT / f"{stem}.v{i}.json", rec)
        print(f"{name}: {len(kps)} keypoints")
    make_pair()


if __name__ == "__main__":
    main()
