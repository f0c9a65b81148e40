"""Per-window latency of model files side by side, in one interleaved run.

    python benchmarks/model_latency.py models/previous/neuroear-v4.onnx models/neuroear-v5.onnx [--repeats 2000] [--out FILE.json]

ONNX Runtime CPU, 1 intra-op thread, batch 1: one window (each model's own framing: rate,
window and context from its card) per ``Detector.predict`` call, what the live loop makes per
hop. The models alternate call by call so machine load hits them alike: compare the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import summarize, time_interleaved  # noqa: E402

WARMUP = 50  # calls per model before timing starts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    from neuroear.infer import Detector

    rng = np.random.default_rng(0)
    calls, info = {}, {}
    for path in args.models:
        det = Detector(path, provider="cpu", threads=1)
        x = (rng.standard_normal((1, det.input_samples)) * 0.1).astype(np.float32)
        calls[det.name] = partial(det.predict, x)
        info[det.name] = {"file": str(path), "mb": round(Path(path).stat().st_size / 1e6, 3), "sample_rate": det.sample_rate, "input_samples": det.input_samples}
    times = time_interleaved(calls, repeats=args.repeats, warmup=WARMUP)
    first = next(iter(times))
    base = float(np.median(times[first]))
    for n, t in times.items():
        info[n].update(summarize(t), ratio_p50_vs_first=round(float(np.median(t)) / base, 3))
        print(f"{n:<16} p50 {info[n]['p50_ms']:.3f} ms  p99 {info[n]['p99_ms']:.3f} ms  ×{info[n]['ratio_p50_vs_first']:.2f} vs {first}  {info[n]['mb']} MB")
    if args.out:
        Path(args.out).write_text(json.dumps({"repeats": args.repeats, "threads": 1, "batch": 1, "models": info}, indent=1) + "\n")


if __name__ == "__main__":
    main()
