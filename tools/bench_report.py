"""Joins OpenCV timings (JSON lines from bench_opencv.py) with criterion's medians
(target/criterion/<N>mp/<op>/new/estimates.json) and prints the ratio table."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def prism_ms(mp, op, threads):
    # Benches whose time depends on the thread count are named `<op>_t<threads>`.
    for name in (op, f"{op}_t{threads}"):
        p = ROOT / "target" / "criterion" / f"{mp}mp" / name / "new" / "estimates.json"
        if p.exists():
            return json.loads(p.read_text())["median"]["point_estimate"] / 1e6
    return None


def main():
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    print(f"{'op':<10} {'MP':>3} {'thr':>3} {'OpenCV ms':>10} {'Prism ms':>10} {'ratio':>7}")
    for r in rows:
        p = prism_ms(r["mp"], r["op"], r["threads"])
        ps = f"{p:10.2f}" if p else f"{'-':>10}"
        ratio = f"{r['median_ms'] / p:7.2f}" if p else f"{'-':>7}"
        print(f"{r['op']:<10} {r['mp']:>3} {r['threads']:>3} {r['median_ms']:10.2f} {ps} {ratio}")


if __name__ == "__main__":
    main()
