"""Per-window latency and file size of the shipped net's width vs a wider one, in one interleaved run.

    python benchmarks/width_latency.py [--repeats 1500] [--out benchmarks/results/width-latency.json]

Both graphs are exported untrained (random weights, seed 0): latency and size depend on the
shape only. ONNX Runtime CPU, 1 intra-op thread, batch 1, one second of audio per call; the two
sessions alternate call by call so machine load hits both alike (compare the ratio).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTHS = {"shipped (16, 32, 64, 128)": (16, 32, 64, 128), "wide (24, 48, 96, 128)": (24, 48, 96, 128)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1500)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from neuroear.export import export
    from neuroear.features import CQTConfig
    from neuroear.metadata import ModelCard
    from neuroear.model import Detector, NetConfig, n_params
    from neuroear.train import LABELS

    tmp = Path(tempfile.mkdtemp(prefix="neuroear-width-"))
    sessions, info = {}, {}
    for name, ch in WIDTHS.items():
        torch.manual_seed(0)
        det = Detector(LABELS, CQTConfig(), NetConfig(channels=ch)).eval()
        path = tmp / f"{ch[0]}.onnx"
        card = ModelCard(name=name, labels=tuple(LABELS), sample_rate=16000, window_samples=16000, cqt=CQTConfig().to_dict(), thresholds={lab: 0.5 for lab in LABELS})
        export(det, card, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        info[name] = {"parameters": n_params(det), "mb": round(path.stat().st_size / 1e6, 3)}
    x = np.random.default_rng(0).standard_normal((1, 16000)).astype(np.float32) * 0.1
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for i in range(50 + args.repeats):
        for n, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"waveform": x})
            if i >= 50:  # warm-up calls are not counted
                times[n].append(time.perf_counter() - t0)
    for n, t in times.items():
        ms = np.array(t) * 1e3
        info[n].update(p50_ms=round(float(np.percentile(ms, 50)), 3), p99_ms=round(float(np.percentile(ms, 99)), 3))
        print(f"{n}: {info[n]['parameters']} parameters, {info[n]['mb']:.2f} MB, p50 {info[n]['p50_ms']:.2f} ms, p99 {info[n]['p99_ms']:.2f} ms")
    a, b = (info[n]["p50_ms"] for n in WIDTHS)
    print(f"p50 ratio wide / shipped: {b / a:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"repeats": args.repeats, "threads": 1, "batch": 1, "results": info, "p50_ratio": round(b / a, 3)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
