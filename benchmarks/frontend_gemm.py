#!/usr/bin/env python
"""Experiment: the CQT front end's anti-alias decimation (256-tap FIR, stride 2) as one GEMM instead of a Conv.

Profiling shows most of ONNX Runtime's time in the front end goes to nnAudio's ``downsampling_by_2``
cascade: a ``Conv`` of one channel with a 256-tap kernel and stride 2, which ORT runs as im2col
(T/2 × 256 floats) followed by a matrix–vector product — memory-bound. The same arithmetic as
a block-Toeplitz GEMM::

    rows j = [xp[2Mj : 2Mj + 2M], xp[2M(j+1) : 2M(j+1) + K - 2]]     → [batch, rows, 2M + K - 2]
    y      = rows @ H,  H[2m + k, m] = h[k]                         → [batch, rows, M] → [batch, T/2]

costs (2M + K − 2)/(2M)… more multiply-adds but runs at GEMM speed. It is exact up to float summation
order, so a trained model exports both ways with the same weights (no retraining).

This script exports the model both ways (the trained checkpoint if given, else the default config with
random weights), checks they agree (max |Δp| and ``active`` on real windows), and times both in ORT.
It does not touch the package: the change it measures would go into ``neuroear/features.py``.

    python benchmarks/frontend_gemm.py [--checkpoint runs/v1/checkpoint.pt] [--repeats 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROOT, loadavg, machine_info, summarize, time_calls  # noqa: E402

ROWS_M = 64  # outputs per GEMM row: H is [2M + K - 2, M] = [382, 64] (98 KB) for K = 256


def downsampling_by_2_gemm(x, kernel, _cache={}):  # noqa: B006 - one H per kernel tensor while tracing
    """``nnAudio.utils.downsampling_by_2`` as a GEMM: x [batch, 1, T], kernel [1, 1, K] → [batch, 1, T/2]."""
    import torch
    import torch.nn.functional as F

    k = int(kernel.shape[-1])
    pad = (k - 1) // 2
    m = ROWS_M
    t = int(x.shape[-1])  # static: the window length is fixed in the model file (ceil-division must not be traced)
    n_out = (t + 2 * pad - k) // 2 + 1
    rows = -(-n_out // m)
    width = 2 * m + k - 2
    more = -(-(k - 2) // (2 * m))  # following blocks each row reaches into
    key = id(kernel)
    if key not in _cache:  # H built once in numpy: a constant (initializer) in the exported graph
        h = kernel.detach().cpu().numpy().reshape(-1)
        big = np.zeros((width, m), dtype=np.float32)
        for j in range(m):
            big[2 * j : 2 * j + k, j] = h
        _cache[key] = (kernel, torch.from_numpy(big))
    big = _cache[key][1]
    n_blocks = rows + more
    xp = F.pad(x.reshape(-1, t), (pad, n_blocks * 2 * m - t - pad))  # [batch, n_blocks · 2M]
    blocks = xp.reshape(-1, n_blocks, 2 * m)
    parts = [blocks[:, i : i + rows, :] for i in range(more)]
    rest = (k - 2) - (more - 1) * 2 * m
    parts.append(blocks[:, more : more + rows, :rest])
    frames = torch.cat(parts, dim=2)  # [batch, rows, 2M + K - 2]
    y = torch.matmul(frames, big).reshape(-1, 1, rows * m)
    return y[:, :, :n_out]


def dedupe_constants(path: Path) -> int:
    """Merge identical large Constant nodes (the tracer writes H once per use); returns bytes saved.

    What registering H once as a buffer in ``features.py`` would give: one initializer for all octaves.
    """
    import hashlib

    import onnx

    m = onnx.load(str(path))
    keep: dict[str, str] = {}
    rename: dict[str, str] = {}
    drop = []
    for node in m.graph.node:
        if node.op_type != "Constant":
            continue
        t = next((a.t for a in node.attribute if a.name == "value"), None)
        if t is None or len(t.raw_data) < 4096:
            continue
        h = hashlib.sha256(bytes(t.dims.__repr__(), "ascii") + t.raw_data).hexdigest()
        if h in keep:
            rename[node.output[0]] = keep[h]
            drop.append(node)
        else:
            keep[h] = node.output[0]
    for node in drop:
        m.graph.node.remove(node)
    for node in m.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    before = path.stat().st_size
    onnx.save(m, str(path))
    return before - path.stat().st_size


@contextlib.contextmanager
def gemm_lowpass():
    import nnAudio.features.cqt as cqt

    old = cqt.downsampling_by_2
    cqt.downsampling_by_2 = downsampling_by_2_gemm
    try:
        yield
    finally:
        cqt.downsampling_by_2 = old
        downsampling_by_2_gemm.__defaults__[0].clear()


def real_windows(limit_files: int = 40) -> tuple[np.ndarray, list[str]]:
    """Windows of the bundled example and of real dev clips (read in place, never copied)."""
    from neuroear import audio, framing
    from neuroear.live.sources import example_clip

    files = [example_clip()]
    dev = ROOT.parent / "shared" / "data" / "real-dev"
    if dev.is_dir():
        files += sorted(p for p in dev.rglob("*") if p.suffix.lower() in audio.AUDIO_EXTENSIONS)[:limit_files]
    wins = [framing.windows(audio.load(f, sample_rate=framing.SAMPLE_RATE))[1] for f in files]
    return np.concatenate(wins), [str(f) for f in files]


def main(argv: list[str] | None = None) -> int:
    global ROWS_M
    import torch

    from neuroear.training.export import export
    from neuroear.infer import Detector as OrtDetector
    from neuroear.metadata import ModelCard
    from neuroear.training.model import InstrumentNet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="trained checkpoint (runs/NAME/checkpoint.pt); default: default config, random weights")
    ap.add_argument("--repeats", type=int, default=1000, help="batch-1 calls timed per variant")
    ap.add_argument("--batch64-runs", type=int, default=20, help="batch-64 calls timed per variant")
    ap.add_argument("--profile-runs", type=int, default=200, help="batch-1 runs under ORT's profiler per variant")
    ap.add_argument("--files", type=int, default=40, help="real dev clips used for the agreement check")
    ap.add_argument("--rows", type=int, default=ROWS_M, help=f"outputs per GEMM row M (default {ROWS_M})")
    ap.add_argument("--out", help="write the result JSON here")
    args = ap.parse_args(argv)
    ROWS_M = args.rows

    torch.manual_seed(0)
    if args.checkpoint:
        from neuroear.training.export import load_checkpoint

        det, ck = load_checkpoint(Path(args.checkpoint))
        thresholds = {k: float(v) for k, v in ck["thresholds"].items()}
    else:
        ref = OrtDetector()
        det = InstrumentNet(ref.labels).eval()
        thresholds = {lab: 0.5 for lab in det.labels}
    card = ModelCard(name="gemm-experiment", labels=det.labels, sample_rate=16000, window_samples=16000,
                     cqt=det.cqt_cfg.to_dict(), thresholds=thresholds)
    res: dict = {"weights": args.checkpoint or "random (default config)", "cqt": det.cqt_cfg.to_dict(), "rows_m": ROWS_M,
                 "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "conv.onnx", Path(tmp) / "gemm.onnx"
        export(det, card, a)
        with gemm_lowpass():
            rep = export(det, card, b)
        res["bytes"] = {"conv": a.stat().st_size, "gemm_as_exported": b.stat().st_size}
        dedupe_constants(b)
        res["bytes"]["gemm_shared_H"] = b.stat().st_size
        res["gemm_export_parity_vs_torch"] = rep["max_abs_diff"]
        wins, files = real_windows(args.files)
        res["agreement"] = {"windows": int(len(wins)), "files": len(files)}
        da, db = OrtDetector(a, provider="cpu", threads=1), OrtDetector(b, provider="cpu", threads=1)
        pa, pb = da.predict(wins), db.predict(wins)
        res["agreement"]["max_abs_dp"] = float(np.abs(pa - pb).max())
        res["agreement"]["active_agree"] = float(np.mean((pa >= da.thresholds) == (pb >= db.thresholds)))
        rounds = 5  # conv and gemm interleaved round by round: a load change hits both alike
        x64 = np.resize(wins, (64, wins.shape[1])).astype(np.float32)
        for t in (1, 2):
            dets = {"conv": OrtDetector(a, provider="cpu", threads=t), "gemm": OrtDetector(b, provider="cpu", threads=t)}
            hops: dict = {k: [] for k in dets}
            rates: dict = {k: [] for k in dets}
            for _ in range(rounds):
                for name, d in dets.items():
                    it = iter(range(10**9))
                    hops[name] += time_calls(lambda: d.predict(wins[next(it) % len(wins)][None]), repeats=max(1, args.repeats // rounds), warmup=5)
                    d.predict(x64)
                    t0 = time.perf_counter()
                    runs = max(1, args.batch64_runs // rounds)
                    for _ in range(runs):
                        d.predict(x64)
                    rates[name].append(64 * runs / (time.perf_counter() - t0))
            for name in dets:
                res[f"threads_{t}_{name}"] = {"per_hop": summarize(hops[name]), "batch64_x_realtime": round(float(np.median(rates[name])), 1)}
            c, g = res[f"threads_{t}_conv"], res[f"threads_{t}_gemm"]
            res[f"threads_{t}_speedup"] = {
                "per_hop_p50": round(c["per_hop"]["p50_ms"] / g["per_hop"]["p50_ms"], 2),
                "per_hop_p99": round(c["per_hop"]["p99_ms"] / g["per_hop"]["p99_ms"], 2),
                "batch64": round(g["batch64_x_realtime"] / c["batch64_x_realtime"], 2),
            }
        from bench_infer import ort_profile

        res["profile_batch_1"] = {}
        for name, path in (("conv", a), ("gemm", b)):
            p = ort_profile(path, wins[:64], runs_b1=args.profile_runs, runs_b64=1)["batch_1"]
            res["profile_batch_1"][name] = {k: p[k] for k in ("model_run_us_per_run", "by_region_share", "by_op_share")}
    res["loadavg_end"] = loadavg()
    res["machine"] = machine_info()
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
