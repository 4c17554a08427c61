"""References for Prism's portable kernel level: OpenCV's results on a CPU without AVX2.

Run with the pinned venv: .venv/bin/python tools/goldens/make_sse.py

Where OpenCV's output depends on the code path it dispatches to (the HSV2BGR of
hue-saturation; SIFT, fused or not), Prism follows OpenCV's AVX2 code at its `avx2` kernel
level and OpenCV's SSE code at its `portable` level (`PRISM_KERNELS=portable`). The other
references are the same on both. This script re-runs itself with
OPENCV_CPU_DISABLE=AVX512-SKX,AVX2,FMA3 (OpenCV then runs its SSE4.1/AVX dispatch) and writes:
- hue-saturation-sse_<hue>_<saturation>/<stem>.png, as make_basic.py's hue-saturation_*;
- sift-sse/<stem>.json for every golden input, as make_sift.py's keypoint references.
"""
import os
import pathlib
import sys

DISABLE = "AVX512-SKX,AVX2,FMA3"

if os.environ.get("OPENCV_CPU_DISABLE") != DISABLE:
    os.environ["OPENCV_CPU_DISABLE"] = DISABLE
    os.execv(sys.executable, [sys.executable, *sys.argv])

import cv2  # noqa: E402

from common import GOLDEN, load_inputs, save  # noqa: E402
from make_basic import HUE_SAT, hue_saturation  # noqa: E402
from make_sift import DEFAULTS, VARIANTS, record, write_json  # noqa: E402


def main():
    features = cv2.getCPUFeaturesLine()
    # OpenCV marks a feature it was told to disable with "?".
    assert "AVX2?" in features and "AVX512-SKX" not in features.replace("AVX512-SKX?", ""), \
        features
    cv2.setNumThreads(1)
    out = GOLDEN / "sift-sse"
    out.mkdir(parents=True, exist_ok=True)
    for name, bgr in load_inputs().items():
        for hue, sat in HUE_SAT:
            save(f"hue-saturation-sse_{hue}_{sat}", name, hue_saturation(bgr, hue, sat))
        stem = pathlib.Path(name).stem
        rec, _ = record(name, bgr, DEFAULTS)
        write_json(out / f"{stem}.json", rec)
        for i, params in enumerate(VARIANTS.get(name, [])):
            rec, _ = record(name, bgr, {**DEFAULTS, **params})
            write_json(out / f"{stem}.v{i}.json", rec)


if __name__ == "__main__":
    main()
