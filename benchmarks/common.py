"""Shared helpers for the benchmark scripts: machine record, percentiles, timing, test audio.

Not part of the package: the scripts in ``benchmarks/`` import this file by path
(``benchmarks/`` is put on ``sys.path`` by ``run.py``), and import ``neuroear`` from the
checkout they sit in.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the repository checkout
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_RATE = 44_100  # Hz: the benchmark clip is written at the seed's rate, so our pipeline pays for resampling
LABELS_SEED = 10  # the seed's classifier width


# ----------------------------------------------------------------------------- statistics


def summarize(ms: Iterable[float]) -> dict:
    """p50/p95/p99/mean/min/max (ms) and n of a series of latencies in milliseconds."""
    v = np.asarray(list(ms), dtype=np.float64)
    if v.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {
        "n": int(v.size),
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(v.mean()), 4),
        "min_ms": round(float(v.min()), 4),
        "max_ms": round(float(v.max()), 4),
    }


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; returns each call's ms."""
    for _ in range(warmup):
        fn()
    out = []
    pc = time.perf_counter
    for _ in range(repeats):
        t0 = pc()
        fn()
        out.append((pc() - t0) * 1e3)
    return out


def time_interleaved(calls: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int = 3) -> dict[str, list[float]]:
    """Each of ``calls`` warmed up ``warmup`` times, then timed in ``repeats`` rounds of one call each
    (in the mapping's order); returns {name: each call's ms}.

    Alternating call by call, rather than timing one callable's whole series after another's, lets
    machine load hit every callable alike, so their ratios hold on a busy machine."""
    for fn in calls.values():
        time_calls(fn, repeats=0, warmup=warmup)
    times: dict[str, list[float]] = {n: [] for n in calls}
    for _ in range(repeats):
        for n, fn in calls.items():
            times[n] += time_calls(fn, repeats=1, warmup=0)
    return times


def median(xs: Iterable[float]) -> float:
    v = [float(x) for x in xs]
    return float(np.median(v)) if v else float("nan")


# ----------------------------------------------------------------------------- machine record


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str | None:
    from importlib import metadata

    for name in (mod, mod.lower(), mod.replace("_", "-")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def portable(text: str) -> str:
    """``text`` with this checkout's and this interpreter's absolute paths made relative,
    so result files say nothing about the machine's directory layout."""
    scripts = os.path.join(sys.prefix, "bin") + os.sep  # console scripts such as `neuroear`
    return text.replace(sys.executable, "python").replace(scripts, "").replace(str(ROOT) + os.sep, "")


def busy_processes(min_cpu: float = 20.0) -> list[str]:
    """Other processes using CPU right now (``ps``): what else the numbers were measured next to.

    This process and its parent are left out: `neuroear bench` runs this script as a child and
    only waits for it (its CPU share is its own start-up)."""
    try:
        r = subprocess.run(["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in r.stdout.splitlines()[:8]:
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) not in (os.getpid(), os.getppid()) and not parts[2].startswith("ps "):
            try:
                if float(parts[1]) >= min_cpu:
                    out.append(f"{parts[1]}% {portable(parts[2])[:100]}")
            except ValueError:
                pass
    return out


def machine_info() -> dict:
    """Where and with what the numbers were taken (recorded in every result file)."""
    try:
        import onnxruntime as ort

        providers = list(ort.get_available_providers())
    except ImportError:
        providers = []
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1) if hasattr(os, "sysconf") else None,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "busy_processes_start": busy_processes(),
        "python": platform.python_version(),
        "versions": {
            m: _version(m)
            for m in ("neuroear", "numpy", "onnxruntime", "onnxruntime-gpu", "soundfile", "soxr", "torch", "nnAudio", "librosa", "numba", "PyAudio")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "ort_available_providers": providers,
        "cuda": "not measured: no CUDA execution provider on this machine" if "CUDAExecutionProvider" not in providers else "available",
    }


def model_info(path: Path) -> dict:
    """Size, hash and card summary of the model file measured."""
    from neuroear.metadata import file_sha256, read_card

    card = read_card(path)  # the card alone: no ONNX Runtime session to build and throw away
    return {
        "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "name": card.name,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "labels": len(card.labels),
        "cqt": card.cqt,
        "training_note": (card.training or {}).get("note"),
    }


# ----------------------------------------------------------------------------- audio


def example_audio() -> tuple[np.ndarray, int]:
    """The bundled example clip (mono float32, its own rate)."""
    import soundfile as sf

    from neuroear.live.sources import example_clip

    x, sr = sf.read(str(example_clip()), dtype="float32", always_2d=True)
    return x.mean(axis=1).astype(np.float32), int(sr)


def tiled(x: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // max(1, x.size))
    return np.tile(x, reps)[:n]


def bench_signal(seconds: float, rate: int = BENCH_RATE) -> np.ndarray:
    """``seconds`` of the example clip at ``rate`` (Hz), tiled: the audio every pipeline is timed on."""
    import soxr

    x, sr = example_audio()
    if sr != rate:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    return tiled(x, int(round(seconds * rate))).astype(np.float32)


def write_audio(path: Path, seconds: float, *, rate: int, block_seconds: float = 60.0) -> Path:
    """Write ``seconds`` of the tiled example at ``rate`` as FLAC/WAV (format from the suffix), block by block."""
    import soundfile as sf

    base = bench_signal(min(seconds, 60.0) if seconds > 60 else seconds, rate)
    total = int(round(seconds * rate))
    step = int(block_seconds * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(step, total - done)
            f.write(tiled(base, n) if base.size < n else base[:n])
            done += n
    return path


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
