"""Per-stage latency of the live loop, through the real ``neuroear.live.loop.run`` (not a re-implementation).

The loop, its ``Streamer`` (resampler + ring buffer), the ``Detector``, the ``Policy`` and the JSON Lines
sink are the package's own; this script only wraps them with timers:

=============  =====================================================================================
stage          what is timed (per block or per window)
=============  =====================================================================================
capture        device: the PortAudio callback (copy + enqueue), per block; file: reading + decoding one block
queue          block available (device callback / paced file due time) → the consumer has it, per block
resample       ``rs.Resampler.resample_chunk`` per block: FIR + soxr QQ (absent when the source is at the model's rate)
ring_write     ``RingBuffer.write`` per chunk
window         ``RingBuffer.read`` of one window (the copy handed to the model), per window
cut            last sample of the window available → window cut (queue + ring; the resampler holds nothing back)
infer          ``Detector.predict`` on one window
policy         ``Policy.update``
emit           record → JSON → write → flush (``JsonlSink.write``)
total          last sample of the window available → its JSON line written (``Stats.lat_total``)
=============  =====================================================================================

Sources: the file source as fast as it goes, the file source paced like a device (``realtime``), and the
PulseAudio virtual microphone of ``stream/virtual-mic.sh`` when one is running (skipped with a note otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import ROOT, loadavg, summarize


def _timed(fn, sink: list, scale: float = 1e3):
    pc = time.perf_counter

    def wrapper(*a, **k):
        t0 = pc()
        r = fn(*a, **k)
        sink.append((pc() - t0) * scale)
        return r

    return wrapper


class _TimedResampler:
    def __init__(self, inner, sink: list) -> None:
        self._inner, self._sink = inner, sink

    def resample_chunk(self, *a, **k):
        t0 = time.perf_counter()
        r = self._inner.resample_chunk(*a, **k)
        self._sink.append((time.perf_counter() - t0) * 1e3)
        return r


def _instrumented_streamer(timings: dict):
    from neuroear.live.streamer import Streamer

    class TimedStreamer(Streamer):
        def reset(self) -> None:
            super().reset()
            if self._resampler is not None:
                self._resampler = _TimedResampler(self._resampler, timings["resample"])
            ring = self.framer.ring
            if "read" not in ring.__dict__:
                ring.read = _timed(ring.read, timings["window"])
                ring.write = _timed(ring.write, timings["ring_write"])

    return TimedStreamer


def run_loop(source, *, model: Path, hop_seconds: float, duration: float | None, threads: int = 1, device: bool = False) -> dict:
    """Run ``loop.run`` on ``source`` with the shipped policy and a JSON Lines sink; per-stage timings."""
    from neuroear.infer import Detector
    from neuroear.live import loop
    from neuroear.live.policy import Policy, PolicyConfig
    from neuroear.live.session import Session
    from neuroear.live.sinks import JsonlSink

    timings: dict[str, list[float]] = defaultdict(list)
    det = Detector(model, provider="cpu", threads=threads)
    det.predict(np.zeros((1, det.input_samples), np.float32))  # warm-up outside the loop
    policy = Policy(PolicyConfig.build(det.labels, det.thresholds))
    policy.update = _timed(policy.update, timings["policy"])
    with tempfile.TemporaryDirectory() as tmp:
        out = open(Path(tmp) / "lines.jsonl", "w")
        sink = JsonlSink(out)
        sink.write = _timed(sink.write, timings["emit"])
        session = Session(detector=det, source=source, policy=policy, sink=sink, events=False, hop=hop_seconds)

        read = source.read

        def timed_read(timeout: float):
            blocks = read(timeout)
            now = time.monotonic()
            for b in blocks or ():
                timings["queue"].append((now - b.t) * 1e3)
            return blocks

        source.read = timed_read
        if device:
            source._callback = _timed(source._callback, timings["capture"])
        else:  # reading + decoding one block (not the pacing sleep of a realtime file source)
            source._next_raw = _timed(source._next_raw, timings["capture"])
        predict = _timed(det.predict, timings["infer"])
        old = loop.Streamer
        loop.Streamer = _instrumented_streamer(timings)
        la0 = loadavg()
        try:
            stats = loop.run(source, predict, framing=det.framing, hop=det.framing.hop(hop_seconds), on_hop=session.on_hop,
                             duration=duration)
        finally:
            loop.Streamer = old
            out.close()
        lines = sink.lines
    res = {
        "source": source.name,
        "source_rate": source.rate,
        "block_frames": getattr(source, "block", None),
        "hop_seconds": hop_seconds,
        "ort_threads": threads,
        "provider": det.provider,
        "device_latency_ms": round(stats.device_latency * 1e3, 2),
        "stream_seconds": round(stats.stream_seconds, 2),
        "wall_seconds": round(stats.wall_seconds, 2),
        "hops": stats.hops,
        "lines": lines,
        "dropped": stats.dropped,
        "overflows": stats.overflows,
        "loadavg": [la0, loadavg()],
        "stages": {},
    }
    order = ("capture", "queue", "resample", "ring_write", "window", "cut", "infer", "policy", "emit", "total")
    timings["cut"] = list(stats.lat_capture)
    timings["total"] = list(stats.lat_total)
    for k in order:
        if timings.get(k):
            res["stages"][k] = summarize(timings[k])
    return res


def file_fast(model: Path, path: Path, *, hop_seconds: float) -> dict:
    from neuroear.live.sources import FileSource

    return run_loop(FileSource(path, realtime=False), model=model, hop_seconds=hop_seconds, duration=None)


def file_realtime(model: Path, path: Path, *, hop_seconds: float, seconds: float) -> dict:
    from neuroear.live.sources import FileSource

    return run_loop(FileSource(path, realtime=True), model=model, hop_seconds=hop_seconds, duration=seconds)


# ----------------------------------------------------------------------------- virtual microphone


def _mic_settings() -> tuple[dict | None, str]:
    if shutil.which("pactl") is None:
        return None, "pactl not installed (apt-get install pulseaudio pulseaudio-utils)"
    try:
        if subprocess.run(["pactl", "info"], capture_output=True, timeout=10).returncode != 0:
            return None, "no PulseAudio server running"
        r = subprocess.run(["bash", str(ROOT / "stream" / "virtual-mic.sh"), "status"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"cannot query PulseAudio ({exc})"
    if r.returncode != 0:
        return None, "virtual microphone not running (start it with `bash stream/virtual-mic.sh start`)"
    s = dict(re.findall(r"export (\w+)=(\S+)", r.stdout))
    if "NEUROEAR_MIC_FIFO" not in s:
        return None, "virtual-mic.sh status printed no settings"
    # someone else recording from the shared mic (a test, a soak)? then our feeder would mix into their audio
    try:
        src = subprocess.run(["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=10).stdout
        idx = next((ln.split()[0] for ln in src.splitlines() if len(ln.split()) > 1 and ln.split()[1] == s.get("NEUROEAR_MIC_SOURCE")), None)
        outs = subprocess.run(["pactl", "list", "short", "source-outputs"], capture_output=True, text=True, timeout=10).stdout
        if idx is not None and any(len(ln.split()) > 1 and ln.split()[1] == idx for ln in outs.splitlines()):
            return None, "the virtual microphone is in use by another recorder (a test or soak run); not sharing its FIFO"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return s, ""


def virtual_mic(model: Path, *, hop_seconds: float, seconds: float, rates: tuple = (None, 16_000)) -> dict:
    """The same loop fed by PortAudio from the PulseAudio virtual microphone (skipped with a note if absent).

    One run per capture rate in ``rates``: ``None`` opens the device at its own rate (our resampler
    runs in the loop); a rate (the caller passes the model's) asks PortAudio/PulseAudio for it (resampling happens before
    the callback, inside the device buffer).
    """
    settings, why = _mic_settings()
    if settings is None:
        return {"skipped": why}
    try:
        import pyaudio  # noqa: F401
    except ImportError:
        return {"skipped": "PyAudio not installed (the 'live' extra)"}
    from common import bench_signal
    from neuroear.live import device

    sys.path.insert(0, str(ROOT / "stream"))
    from feeder import LoopFeeder  # stream/feeder.py

    rate = int(settings.get("NEUROEAR_MIC_RATE", 48000))
    pcm = (np.clip(bench_signal(30.0, rate), -1, 1) * 32767).astype("<i2").tobytes()
    feeder = LoopFeeder(Path(settings["NEUROEAR_MIC_FIFO"]), rate, pcm).start()
    time.sleep(0.3)
    out: dict = {"mic": {"fifo": settings["NEUROEAR_MIC_FIFO"], "rate": rate, "source": settings.get("NEUROEAR_MIC_SOURCE")}}
    try:
        for capture_rate in rates:
            key = "device_rate" if capture_rate is None else "capture_model_rate"
            result: dict = {}
            try:
                src = device.DeviceSource(None, rate=capture_rate)
            except Exception as exc:
                out[key] = {"skipped": f"{type(exc).__name__}: {exc}"}
                continue
            done = threading.Event()

            def work(src=src, result=result, done=done) -> None:
                try:
                    result.update(run_loop(src, model=model, hop_seconds=hop_seconds, duration=seconds, device=True))
                except Exception as exc:  # a broken audio stack is a note in the results, not a crash
                    result["skipped"] = f"{type(exc).__name__}: {exc}"
                done.set()

            threading.Thread(target=work, daemon=True).start()
            if not done.wait(seconds + 30):
                result["skipped"] = "the device loop did not finish in time (clockless pipe source?)"
            out[key] = result
    finally:
        time.sleep(0.3)
        feeder.stop()
    return out
