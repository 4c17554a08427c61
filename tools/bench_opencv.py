"""Times the OpenCV calls Prism's ops replace, on the same inputs and thread count as
the criterion benches (engine/benches/), and prints one JSON line per measurement.

    .venv/bin/python tools/bench_opencv.py --make-inputs      # writes the bench inputs
    .venv/bin/python tools/bench_opencv.py --threads 2 [--ops canny,erode] [--sizes 1,12]

The inputs are target/bench-inputs/photo_{1,12}mp.png: scikit-image's astronaut and
coffee photos tiled and resized to 1 and 12 megapixels with a little noise, so edges,
texture and flat areas all occur. Criterion benches read the same files.
"""
import argparse
import json
import pathlib
import statistics
import time

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "target" / "bench-inputs"
SIZES = {1: (1152, 864), 12: (4000, 3000)}  # width, height


def input_path(mp):
    return BENCH_DIR / f"photo_{mp}mp.png"


def make_inputs():
    from skimage import data

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    a = data.astronaut()[..., ::-1]
    c = cv2.resize(data.coffee()[..., ::-1], (512, 512), interpolation=cv2.INTER_AREA)
    mosaic = np.vstack([np.hstack([a, c]), np.hstack([c, a])])
    for mp, (w, h) in SIZES.items():
        p = input_path(mp)
        if p.exists():
            continue
        img = cv2.resize(mosaic, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        img += rng.integers(-4, 5, img.shape, dtype=np.int16)
        cv2.imwrite(str(p), np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        print(f"wrote {p}")


def harris_mask(gray):
    r = cv2.cornerHarris(gray, 2, 3, 0.04)
    r = cv2.dilate(r, None)
    return r > 0.1 * r.max()


OPS = {
    "gray": lambda bgr, gray: cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
    "canny": lambda bgr, gray: cv2.Canny(gray, 90, 180),
    "invert": lambda bgr, gray: cv2.bitwise_not(bgr),
    "harris": lambda bgr, gray: harris_mask(gray),
    "erode": lambda bgr, gray: cv2.erode(bgr, np.ones((5, 5), np.uint8)),
    "dilate": lambda bgr, gray: cv2.dilate(bgr, np.ones((5, 5), np.uint8)),
    "equalize": lambda bgr, gray: cv2.equalizeHist(gray),
    "gray_equalize": lambda bgr, gray: cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)),
    "sift": lambda bgr, gray: cv2.SIFT_create().detectAndCompute(gray, None),
    "denoise": lambda bgr, gray: cv2.fastNlMeansDenoisingColored(bgr, None, 10, 10, 7, 21),
    # Codecs: the encoded bytes are made once per size (see main) and kept in ENCODED.
    "jpeg_decode": lambda bgr, gray: cv2.imdecode(ENCODED["jpeg"], cv2.IMREAD_COLOR),
    "jpeg_encode": lambda bgr, gray: cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]),
    "png_decode": lambda bgr, gray: cv2.imdecode(ENCODED["png"], cv2.IMREAD_COLOR),
    "png_encode": lambda bgr, gray: cv2.imencode(".png", bgr),
}
ENCODED = {}


def bench(fn, bgr, gray, budget_s):
    fn(bgr, gray)  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 100):
        t = time.perf_counter()
        fn(bgr, gray)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--make-inputs", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--sizes", default="1,12")
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per measurement")
    args = ap.parse_args()
    make_inputs()
    if args.make_inputs:
        return
    cv2.setNumThreads(args.threads)
    for mp in [int(s) for s in args.sizes.split(",")]:
        bgr = cv2.imread(str(input_path(mp)), cv2.IMREAD_COLOR)
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        ENCODED["jpeg"] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
        ENCODED["png"] = cv2.imencode(".png", bgr)[1]
        for name in args.ops.split(","):
            med, n = bench(OPS[name], bgr, gray, args.budget)
            print(json.dumps({"op": name, "mp": mp, "threads": args.threads,
                              "opencv": cv2.__version__, "median_ms": round(med, 3), "runs": n}),
                  flush=True)


if __name__ == "__main__":
    main()
