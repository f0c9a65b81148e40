"""Per-window latency and file size of the shipped net's width vs a wider one, in one interleaved run.

    python benchmarks/width_latency.py [--repeats 1500] [--out benchmarks/results/width-latency.json]

Both graphs are exported untrained (random weights, seed 0): latency and size depend on the
shape only. ONNX Runtime CPU, 1 intra-op thread, batch 1, one second of audio per call through
``neuroear.infer.Detector.predict`` (what the live loop calls); the two models alternate call by
call so machine load hits both alike (compare the ratio).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import summarize, time_interleaved  # noqa: E402

WIDTHS = {"shipped (16, 32, 64, 128)": (16, 32, 64, 128), "wide (24, 48, 96, 128)": (24, 48, 96, 128)}
WARMUP = 50  # calls per model before timing starts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1500)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import torch

    from neuroear.framing import SAMPLE_RATE, WINDOW_SAMPLES
    from neuroear.training.export import export
    from neuroear.infer import Detector as OrtDetector
    from neuroear.metadata import ModelCard
    from neuroear.training.model import InstrumentNet, NetConfig, n_params
    from neuroear.training.train import LABELS

    x = np.random.default_rng(0).standard_normal((1, WINDOW_SAMPLES)).astype(np.float32) * 0.1
    info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dets = {}
        for name, ch in WIDTHS.items():
            torch.manual_seed(0)
            det = InstrumentNet(LABELS, net=NetConfig(channels=ch)).eval()
            path = Path(tmp) / f"{ch[0]}.onnx"
            card = ModelCard(name=name, labels=det.labels, sample_rate=SAMPLE_RATE, window_samples=WINDOW_SAMPLES, cqt=det.cqt_cfg.to_dict(), thresholds={lab: 0.5 for lab in det.labels})
            export(det, card, path)
            dets[name] = OrtDetector(path, provider="cpu", threads=1)
            info[name] = {"parameters": n_params(det), "mb": round(path.stat().st_size / 1e6, 3)}
        times = time_interleaved({n: partial(d.predict, x) for n, d in dets.items()}, repeats=args.repeats, warmup=WARMUP)
    for n, t in times.items():
        s = summarize(t)
        info[n].update(p50_ms=s["p50_ms"], p99_ms=s["p99_ms"])
        print(f"{n}: {info[n]['parameters']} parameters, {info[n]['mb']:.2f} MB, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")
    a, b = (info[n]["p50_ms"] for n in WIDTHS)
    print(f"p50 ratio wide / shipped: {b / a:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"repeats": args.repeats, "threads": 1, "batch": 1, "results": info, "p50_ratio": round(b / a, 3)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
