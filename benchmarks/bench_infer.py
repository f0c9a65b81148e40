"""Inference and file-analysis speed: ONNX Runtime (ours) vs the seed-style pipeline vs our model in torch eager.

Sections (each a function returning a JSON-able dict; ``run.py`` calls them in one process):

- ``per_hop``      one window per call (the live case): ``Detector.predict`` at ORT intra-op threads 1 and 2;
- ``throughput``   windows already in memory → probabilities, batch 1/8/64 × threads 1/2 (× real time);
- ``analyze``      a FLAC file → rows written as JSON Lines (``analyze_file`` + ``Writer``), batch 1/8/64 × threads 1/2;
- ``compare``      the same audio through ours (ORT), the seed-style pipeline (librosa CQT + 13.5 M CNN,
                   torch eager) and our model in torch eager (nnAudio CQT + CNN), interleaved in rounds so
                   that a noisy neighbour hits all three alike; ratios are taken per round, then the median;
- ``profile``      where the time goes: ORT per-operator profile, and the stages of ``analyze`` on a file;
- ``optim``        session variants (spinning, optimisation level, IO binding, raw ``run``) on the same windows.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import loadavg, median, summarize, time_calls

THREADS = (1, 2)
BATCHES = (1, 8, 64)
SETTLE_S = 0.1  # s of idle between pipelines in interleaved runs: spinning thread pools (ORT, OpenMP) park


def _detector(model: Path, threads: int):
    from neuroear.infer import Detector

    return Detector(model, provider="cpu", threads=threads)


# ----------------------------------------------------------------------------- per hop


def per_hop(model: Path, windows: np.ndarray, *, repeats: int) -> dict:
    """Latency of one window through ``Detector.predict`` (what the live loop calls), per thread count."""
    out = {}
    n = len(windows)
    for t in THREADS:
        det = _detector(model, t)
        i = [0]

        def call() -> None:
            det.predict(windows[i[0] % n][None, :])
            i[0] += 1

        out[f"threads_{t}"] = summarize(time_calls(call, repeats=repeats, warmup=20))
        out["provider"] = det.provider
    return out


# ----------------------------------------------------------------------------- throughput


def throughput(model: Path, windows: np.ndarray, *, min_seconds: float, hop_seconds: float = 1.0) -> dict:
    """× real time of ``Detector.predict(windows, batch=b)`` on windows in memory (model only)."""
    out = {}
    for t in THREADS:
        det = _detector(model, t)
        for b in BATCHES:
            det.predict(windows[: max(b, 1)], batch=b)  # warm-up
            done, t0 = 0, time.perf_counter()
            while True:
                det.predict(windows, batch=b)
                done += len(windows)
                el = time.perf_counter() - t0
                if el >= min_seconds:
                    break
            out[f"threads_{t}_batch_{b}"] = {
                "windows": done,
                "seconds": round(el, 4),
                "ms_per_window": round(el / done * 1e3, 4),
                "x_realtime": round(done * hop_seconds / el, 1),
            }
    return out


def _analyze_once(det, path: Path, *, batch: int) -> int:
    """``neuroear analyze FILE --format jsonl > /dev/null`` in-process: returns the rows written."""
    from neuroear import analyze

    with open(os.devnull, "w") as sink:
        w = analyze.Writer("jsonl", det.labels, sink)
        n = 0
        for r in analyze.analyze_file(path, detector=det, batch=batch):
            w.write(r)
            n += 1
    return n


def analyze_throughput(model: Path, path: Path, *, seconds: float, repeats: int) -> dict:
    """End-to-end file analysis (decode, resample, frame, predict, JSON Lines) × real time, batch × threads."""
    out = {"file": path.name, "audio_seconds": seconds}
    for t in THREADS:
        det = _detector(model, t)
        _analyze_once(det, path, batch=64)  # warm-up (page cache, ORT arenas)
        for b in BATCHES:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                _analyze_once(det, path, batch=b)
                times.append(time.perf_counter() - t0)
            el = median(times)
            out[f"threads_{t}_batch_{b}"] = {"seconds_median": round(el, 4), "x_realtime": round(seconds / el, 1), "runs": repeats}
    return out


# ----------------------------------------------------------------------------- ours vs seed vs torch eager


def compare(model: Path, path44: Path, *, seconds: float, rounds: int, ours_repeats: int, hop_repeats: int, seed_hop_repeats: int,
            threads: int = 1) -> dict:
    """The same file through three pipelines, interleaved; per-hop latency of each at batch 1 too.

    All three get the same number of threads (``threads``: ORT intra-op threads and ``torch.set_num_threads``):
    with a neighbour on the other core, two OpenMP/ORT threads each oversubscribe the machine and
    the numbers swing by 3×, while one thread each stays comparable. Ours at 2 threads is in ``analyze``.

    ours         : ``analyze_file`` with the shipped ONNX model (batch 64) → JSON Lines
    seed_style   : ``librosa.load`` 44.1 kHz → per-window ``librosa.cqt`` (dB) → seed CNN (torch eager, batch 1)
    torch_eager  : ``audio.stream`` (decode + resample) → windows → ``neuroear.training.model.InstrumentNet`` (default
                   configs, nnAudio CQT) + sigmoid in torch eager, batch 64
    """
    import torch

    import seed as seedmod
    from neuroear import audio, framing
    from neuroear.training.model import InstrumentNet as TorchDetector
    from neuroear.training.model import WithSigmoid, n_params

    torch.set_num_threads(threads)
    det = _detector(model, threads)
    seed_pipe = seedmod.SeedPipeline(batch=1)
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import NetConfig

    # the torch twin has the model's own front end and shape (from its card), so both read the same windows
    net_cfg = NetConfig.from_dict(det.card.training["net"]) if "net" in det.card.training else NetConfig()
    tdet = WithSigmoid(TorchDetector(det.labels, CQTConfig(**det.card.cqt), net_cfg)).eval()
    fr = det.framing

    def ours() -> int:
        return _analyze_once(det, path44, batch=64)

    def seed_style() -> int:
        w = seedmod.load_windows_44k(str(path44))
        return len(seed_pipe.predict(w))

    def torch_eager() -> int:
        x = audio.load(path44, sample_rate=fr.sample_rate)
        wins = framing.windows(x, window=fr.window, sample_rate=fr.sample_rate, context=fr.context)[1]
        with torch.inference_mode():
            for i in range(0, len(wins), 64):
                tdet(torch.from_numpy(wins[i : i + 64]))
        return len(wins)

    # warm-ups: numba JIT inside librosa (tens of seconds the first time on a cold cache), ORT arenas, torch
    t0 = time.perf_counter()
    seed_pipe.predict(seedmod.load_windows_44k(str(path44))[:1])
    seed_warmup = time.perf_counter() - t0
    ours()
    torch_eager()

    per_round: dict[str, list[float]] = defaultdict(list)
    load = [loadavg()]
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(ours_repeats):
            ours()
        per_round["ours"].append((time.perf_counter() - t0) / ours_repeats)
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        seed_style()
        per_round["seed_style"].append(time.perf_counter() - t0)
        time.sleep(SETTLE_S)
        t0 = time.perf_counter()
        torch_eager()
        per_round["torch_eager"].append(time.perf_counter() - t0)
        time.sleep(SETTLE_S)
        load.append(loadavg())

    res: dict = {
        "audio": f"{path44.name}: {seconds:g} s of the bundled example, tiled, 44.1 kHz mono FLAC",
        "rounds": rounds,
        "loadavg": load,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "ort_provider": det.provider,
        "params": {"seed_style": seed_pipe.params, "torch_eager": n_params(tdet)},
        "seed_first_call_seconds": round(seed_warmup, 2),
        "file": {},
    }
    for k, v in per_round.items():
        res["file"][k] = {
            "seconds_per_run": [round(x, 4) for x in v],
            "seconds_median": round(median(v), 4),
            "x_realtime": round(seconds / median(v), 1),
        }
    res["file_ratio_seed_over_ours"] = round(median(s / o for s, o in zip(per_round["seed_style"], per_round["ours"])), 1)
    res["file_ratio_torch_over_ours"] = round(median(s / o for s, o in zip(per_round["torch_eager"], per_round["ours"])), 1)

    # per hop, batch 1, interleaved in slices so all three see the same machine
    w44 = seedmod.load_windows_44k(str(path44))
    w16 = framing.windows(audio.load(path44, sample_rate=fr.sample_rate), window=fr.window, sample_rate=fr.sample_rate, context=fr.context)[1]
    det1 = det if threads == 1 else _detector(model, 1)
    hop: dict[str, list[float]] = defaultdict(list)
    c16, c44 = itertools.cycle(w16), itertools.cycle(w44)
    for _ in range(rounds):
        hop["ours_ort_threads1"] += time_calls(lambda: det1.predict(next(c16)[None]), repeats=hop_repeats, warmup=5)
        time.sleep(SETTLE_S)
        with torch.inference_mode():
            hop["torch_eager"] += time_calls(lambda: tdet(torch.from_numpy(next(c16)[None])), repeats=max(3, hop_repeats // 10), warmup=2)
        time.sleep(SETTLE_S)
        hop["seed_style"] += time_calls(lambda: seed_pipe.predict(next(c44)[None]), repeats=seed_hop_repeats, warmup=1)
        time.sleep(SETTLE_S)
    res["per_hop"] = {k: summarize(v) for k, v in hop.items()}
    res["per_hop_ratio_seed_over_ours_p50"] = round(res["per_hop"]["seed_style"]["p50_ms"] / res["per_hop"]["ours_ort_threads1"]["p50_ms"], 1)
    res["per_hop_ratio_torch_over_ours_p50"] = round(res["per_hop"]["torch_eager"]["p50_ms"] / res["per_hop"]["ours_ort_threads1"]["p50_ms"], 1)
    return res


# ----------------------------------------------------------------------------- profile


def _region(name: str) -> str:
    n = name.lower()
    if "frontend" in n or "cqt" in n:
        return "cqt_frontend"
    if "cnn" in n or "features" in n or "head" in n:
        return "cnn"
    return "other"


def ort_profile(model: Path, windows: np.ndarray, *, runs_b1: int, runs_b64: int) -> dict:
    """Per-operator time from ORT's profiler (intra-op threads 1), by op type and by region."""
    import onnxruntime as ort

    out = {}
    for label, batch, runs in (("batch_1", 1, runs_b1), ("batch_64", 64, runs_b64)):
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tmp) / "ort")
            opts.log_severity_level = 3
            s = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
            x = np.ascontiguousarray(np.resize(windows, (batch, windows.shape[1])), dtype=np.float32)
            for _ in range(runs):
                s.run(None, {"waveform": x})
            trace = json.loads(Path(s.end_profiling()).read_text())
        by_op: dict[str, float] = defaultdict(float)
        by_region: dict[str, float] = defaultdict(float)
        by_node: dict[str, float] = defaultdict(float)
        run_total = 0.0
        for ev in trace:
            if ev.get("cat") == "Session" and ev.get("name") == "model_run":
                run_total += ev["dur"]
            if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
                continue
            op = ev.get("args", {}).get("op_name", "?")
            node = ev["name"][: -len("_kernel_time")]
            by_op[op] += ev["dur"]
            by_region[_region(node)] += ev["dur"]
            by_node[f"{op} {node}"] += ev["dur"]
        kernels = sum(by_op.values())
        out[label] = {
            "runs": runs,
            "model_run_us_per_run": round(run_total / runs, 1),
            "kernel_us_per_run": round(kernels / runs, 1),
            "by_op_share": {k: round(v / kernels, 3) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:10]},
            "by_region_share": {k: round(v / kernels, 3) for k, v in sorted(by_region.items(), key=lambda kv: -kv[1])},
            "top_nodes_us_per_run": {k: round(v / runs, 1) for k, v in sorted(by_node.items(), key=lambda kv: -kv[1])[:8]},
        }
    return out


def analyze_stages(model: Path, path: Path, *, seconds: float) -> dict:
    """Seconds spent in each stage of ``analyze_file`` on one file (default settings, ORT threads default)."""
    import soundfile as sf

    from neuroear import audio, framing
    from neuroear.analyze import WindowResult
    from neuroear.resample import Resampler

    det = _detector(model, 0)
    t = {}
    info = sf.info(str(path))
    t0 = time.perf_counter()
    blocks = []
    with sf.SoundFile(str(path)) as f:
        block = int(audio.DECODE_BLOCK_SECONDS * f.samplerate)
        while True:
            raw = f.read(block, dtype="float32", always_2d=True)
            blocks.append(raw)
            if raw.shape[0] < block:
                break
    t["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    monos = [audio.sanitize(audio.to_mono(b))[0] for b in blocks]
    t["mono_sanitize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frm = det.framing  # the model's own rate, window and context
    if info.samplerate != frm.sample_rate:
        resampler = Resampler(info.samplerate, frm.sample_rate)
        res = [resampler.resample_chunk(m, last=i == len(monos) - 1) for i, m in enumerate(monos)]
    else:
        res = monos
    t["resample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fr = framing.Framer(window=frm.window, hop=frm.window, sample_rate=frm.sample_rate, context=frm.context)
    pairs = []
    for r in res:
        pairs += fr.push(r)
    pairs += fr.finish()
    x = np.stack([w for _, w in pairs])
    t["frame"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs = det.predict(x)
    t["predict"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    levels = audio.dbfs(x)
    rows = [
        WindowResult(str(path), s / frm.sample_rate, (s + frm.window) / frm.sample_rate, p, tuple(lab for lab, pi, ti in zip(det.labels, p, det.thresholds) if pi >= ti), float(lv))
        for (s, _), p, lv in zip(pairs, probs, levels)
    ]
    t["levels_rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    buf = io.StringIO()
    for r in rows:
        buf.write(json.dumps(r.to_json(det.labels)) + "\n")
    t["json"] = time.perf_counter() - t0
    total = sum(t.values())
    return {
        "file": path.name,
        "rate": info.samplerate,
        "audio_seconds": seconds,
        "windows": len(pairs),
        "seconds": {k: round(v, 4) for k, v in t.items()},
        "share": {k: round(v / total, 3) for k, v in t.items()},
        "x_realtime_if_serial": round(seconds / total, 1),
    }


# ----------------------------------------------------------------------------- optimisation variants


def _session(model: Path, *, threads: int, level: str = "all", spin: bool | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if spin is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


def optim(model: Path, windows: np.ndarray, *, repeats: int, min_seconds: float, rounds: int = 5) -> dict:
    """Per-hop (batch 1) latency and batch-64 throughput of session variants, threads 1 and 2.

    Variants are interleaved in ``rounds`` (each round runs every variant in turn) so that a load
    change on the machine hits all of them alike.
    """
    import onnxruntime as ort

    out: dict = {}
    n = len(windows)
    x64 = np.ascontiguousarray(np.resize(windows, (64, windows.shape[1])), dtype=np.float32)
    for t in THREADS:
        variants = {}
        det = _detector(model, t)
        variants["Detector.predict (shipped)"] = (lambda i: det.predict(windows[i % n][None]), lambda: det.predict(x64))
        for name, kw in (
            ("raw run, level all", {"level": "all"}),
            ("raw run, level extended", {"level": "extended"}),
            ("raw run, level basic", {"level": "basic"}),
            ("raw run, spinning off", {"level": "all", "spin": False}),
        ):
            s = _session(model, threads=t, **kw)
            variants[name] = ((lambda s: lambda i: s.run(["probs"], {"waveform": windows[i % n][None]}))(s), (lambda s: lambda: s.run(["probs"], {"waveform": x64}))(s))
        # IO binding into preallocated buffers: no per-call allocation of input/output arrays
        s = _session(model, threads=t)
        buf_in = np.zeros((1, windows.shape[1]), dtype=np.float32)
        buf_out = np.zeros((1, s.get_outputs()[0].shape[1] or 11), dtype=np.float32)
        binding = s.io_binding()
        binding.bind_cpu_input("waveform", buf_in)
        binding.bind_output("probs", "cpu", 0, np.float32, list(buf_out.shape), buf_out.ctypes.data)

        def iob(i: int, s=s, binding=binding) -> None:
            buf_in[0] = windows[i % n]
            s.run_with_iobinding(binding)

        variants["io binding, preallocated"] = (iob, None)
        hops: dict[str, list[float]] = defaultdict(list)
        b64: dict[str, list[float]] = defaultdict(list)
        per_round = max(1, repeats // rounds)
        for _ in range(rounds):
            for name, (hop_fn, b64_fn) in variants.items():
                k = [0]

                def call(hop_fn=hop_fn, k=k) -> None:
                    hop_fn(k[0])
                    k[0] += 1

                hops[name] += time_calls(call, repeats=per_round, warmup=5)
                if b64_fn is not None:
                    b64_fn()
                    done, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < min_seconds / rounds or not done:
                        b64_fn()
                        done += 64
                    b64[name].append(done / (time.perf_counter() - t0))
        out[f"threads_{t}"] = {
            name: {"per_hop": summarize(hops[name]), **({"batch64_x_realtime": round(median(b64[name]), 1)} if b64.get(name) else {})}
            for name in variants
        }
    # session creation time (start-up cost): online optimisation vs a pre-optimised file
    with tempfile.TemporaryDirectory() as tmp:
        opt_path = Path(tmp) / "opt.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(opt_path)
        so.log_severity_level = 3
        ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])
        create = {}
        for name, p, lvl in (("shipped file, level all", model, "all"), ("pre-optimised file, level disabled", opt_path, "disabled")):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                _session(p, threads=1, level=lvl)
                times.append((time.perf_counter() - t0) * 1e3)
            create[name] = round(median(times), 1)
        out["session_create_ms"] = create
    return out
