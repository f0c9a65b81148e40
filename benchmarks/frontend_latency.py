"""Per-window latency and file size of the front-end study's arms (benchmarks/study.py frontend), in one
interleaved run: today's band (16 kHz, 84 bins), the wider band (24 kHz, 97 bins, hop 768) and two
seconds of context before the window (3 s of input per decision).

    python benchmarks/frontend_latency.py [--repeats 1500] [--out benchmarks/results/frontend-latency.json]

Each arm is the shipped CNN shape with random weights (seed 0; latency and size depend on the shape
only), exported to ONNX as the shipped file is (waveform in, probabilities out) with
``torch.onnx.export`` directly, because the product's exporter refuses context models (its runtime
frames one window per call). ONNX Runtime CPU, 1 intra-op thread, batch 1; the arms alternate call by
call so machine load hits all alike (compare the ratios).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import summarize, time_interleaved  # noqa: E402

WARMUP = 50  # calls per model before timing starts


def arms():  # noqa: ANN201 (CQTConfig per arm; torch side imported lazily)
    from neuroear.training.features import CQTConfig

    base = CQTConfig()
    return {
        "base (16 kHz, 84 bins)": base,
        "wide24k (24 kHz, 97 bins, hop 768)": replace(base, sample_rate=24_000, hop_length=768, n_bins=97),
        "context2s (16 kHz, 3 s input)": replace(base, context_seconds=2.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1500)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from neuroear.training.model import InstrumentNet, WithSigmoid, n_params
    from neuroear.training.train import LABELS

    info: dict[str, dict] = {}
    sessions, inputs = {}, {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, cqt) in enumerate(arms().items()):
            torch.manual_seed(0)
            net = InstrumentNet(LABELS, cqt).eval()
            x = rng.standard_normal((1, cqt.input_samples)).astype(np.float32) * 0.1
            path = Path(tmp) / f"arm{i}.onnx"
            with torch.no_grad():
                torch.onnx.export(WithSigmoid(net), (torch.from_numpy(x),), str(path), input_names=["waveform"], output_names=["probs"], opset_version=17, dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            inputs[name] = {"waveform": x}
            info[name] = {"parameters": n_params(net), "mb": round(path.stat().st_size / 1e6, 3), "input_samples": cqt.input_samples, "sample_rate": cqt.sample_rate}
        times = time_interleaved({n: partial(s.run, None, inputs[n]) for n, s in sessions.items()}, repeats=args.repeats, warmup=WARMUP)
    names = list(sessions)
    for n, t in times.items():
        s = summarize(t)
        info[n].update(p50_ms=s["p50_ms"], p99_ms=s["p99_ms"], p50_ratio_to_base=round(s["p50_ms"] / summarize(times[names[0]])["p50_ms"], 3))
        print(f"{n}: {info[n]['parameters']} parameters, {info[n]['mb']:.2f} MB, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, ×{info[n]['p50_ratio_to_base']:.2f} of base")
    if args.out:
        Path(args.out).write_text(json.dumps({"repeats": args.repeats, "threads": 1, "batch": 1, "results": info}, indent=1) + "\n")


if __name__ == "__main__":
    main()
