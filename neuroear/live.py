"""Audio sources and the one streaming loop that serves them all (the device source is in ``device``).

Data flow, one consumer thread::

    source.read() → blocks [frames, channels] at the source's rate
      → to_mono → sanitize → audio.Resampler (16 kHz, streaming, no look-ahead, state kept across blocks)
      → RingBuffer (preallocated) → a window [16000] every hop samples → predict → on_hop

The device callback only copies its block and enqueues it (PortAudio's thread must never
wait on Python work); everything else happens in ``run()``. Time is counted in samples of
the stream, never wall clock, so a file pushed in any block sizes gives exactly the windows
(and probabilities) of ``audio.windows(audio.load(file), hop=…)``. When the consumer falls
behind a live source, windows that ended more than ``max_lag`` before the newest sample are
dropped and counted: latency stays bounded.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from neuroear import audio
from neuroear.device import DEFAULT_BLOCK_FRAMES
from neuroear.errors import NeuroEarError
from neuroear.ringbuffer import Block, Streamer, Window

DEFAULT_MAX_LAG_SECONDS = 0.5  # s: a window that ended longer ago than max(this, hop) is dropped
NO_AUDIO_WARN_SECONDS = 2.0  # s without a block from a device before we say so
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipping
CLIP_HOLD_SECONDS = 2.0  # s the clipping warning stays up after the last clipped sample
LATENCY_KEEP = 100_000  # hops of latency samples kept for the final summary (~28 h at 1 s)
RECENT_KEEP = 240  # hops behind the dashboard's live percentiles (1 min at 0.25 s)
EXAMPLE_NAMES = ("example.ogg", "example.flac", "example.wav")


# ----------------------------------------------------------------------------- sources


class Source(Protocol):
    """What ``run()`` needs from a source."""

    name: str
    rate: int  # Hz
    channels: int
    live: bool  # True: pushes audio in real time (drops allowed); False: pulled as fast as we go
    overflows: int  # input overflows reported by the driver, plus blocks lost in our queue

    def start(self) -> None: ...

    def read(self, timeout: float) -> list[Block] | None:
        """Blocks available now (waiting up to ``timeout`` s for one); [] if none yet, None at the end."""
        ...

    def stop(self) -> bool:
        """Stop capturing; False if the driver did not stop in time."""
        ...


class FileSource:
    """A file read block by block at its own rate and channel count.

    ``realtime=False``: as fast as the consumer reads (``live`` False: never drops).
    ``realtime=True``: each block becomes available when a device would deliver it, so a slow
    consumer sees a backlog exactly like a device (``live`` True).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block: int = DEFAULT_BLOCK_FRAMES,
        realtime: bool = False,
        name: str | None = None,
    ) -> None:
        import soundfile as sf

        if block <= 0:
            raise NeuroEarError(f"block size must be a positive number of frames, got {block}")
        self.path = audio.check_readable(path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as exc:
            raise audio._open_error(self.path, exc) from None
        self.name = name or str(path)
        self.rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        if self.rate <= 0:
            raise NeuroEarError(f"{self.path}: invalid sample rate {self.rate}")
        self.block = int(block)
        self.realtime = realtime
        self.live = realtime
        self.overflows = 0
        self.latency = 0.0  # s of driver buffering (none)
        self._t0: float | None = None
        self._frames = 0  # frames handed out
        self._pending: np.ndarray | None = None
        self._eof = False

    def start(self) -> None:
        self._t0 = time.monotonic()

    def _next_raw(self) -> np.ndarray | None:
        if self._pending is not None:
            raw, self._pending = self._pending, None
            return raw
        if self._eof:
            return None
        try:
            raw = self._file.read(self.block, dtype="float32", always_2d=True)
        except Exception as exc:
            raise NeuroEarError(
                f"{self.path}: cannot decode past {self._frames / self.rate:.2f} s ({audio._first_line(exc)}): the file is cut "
                "short or corrupt there; the lines above are complete (`neuroear analyze` skips damaged stretches)"
            ) from None
        if raw.shape[0] < self.block:
            self._eof = True
        return raw if raw.shape[0] else None

    def read(self, timeout: float) -> list[Block] | None:
        if self._t0 is None:
            self.start()
        if not self.realtime:
            raw = self._next_raw()
            if raw is None:
                return None
            self._frames += raw.shape[0]
            return [Block(raw, time.monotonic())]
        out: list[Block] = []
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            raw = self._next_raw()
            if raw is None:
                return out or None
            due = self._t0 + (self._frames + raw.shape[0]) / self.rate
            now = time.monotonic()
            if due > now:
                if out or due > deadline:
                    self._pending = raw
                    if not out:
                        time.sleep(max(0.0, deadline - now))
                    return out
                time.sleep(due - now)
            self._frames += raw.shape[0]
            out.append(Block(raw, due))

    def stop(self) -> bool:
        self._file.close()
        return True


def example_clip() -> Path:
    """The example clip shipped with the package (``neuroear/examples/example.*``)."""
    base = resources.files("neuroear") / "examples"
    for name in EXAMPLE_NAMES:
        p = base / name
        if p.is_file():
            return Path(str(p))
    raise NeuroEarError(
        "the bundled example clip is missing (looked for neuroear/examples/"
        + "|".join(EXAMPLE_NAMES)
        + "); reinstall neuroear, or run `neuroear listen --input FILE --realtime` on any audio file"
    )


# ----------------------------------------------------------------------------- the loop


def percentiles(values, qs=(50, 95)) -> tuple[float, ...]:
    """Percentiles of ``values`` (NaN when empty)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return tuple(float("nan") for _ in qs)
    return tuple(float(x) for x in np.percentile(v, qs))


@dataclass
class Stats:
    """Counters and timings of one ``run()``, readable at any time (dashboard, summary).

    Latencies in ms, per hop: ``capture`` (last sample of the window arrived → window cut),
    ``infer`` (model), ``emit`` (policy + sink), ``total`` (arrived → line handed to the sink).
    """

    source: str = ""
    rate: int = 0
    channels: int = 0
    device_latency: float = 0.0  # s reported by PortAudio
    started: float = field(default_factory=time.monotonic)
    stream_samples: int = 0  # at 16 kHz
    hops: int = 0
    dropped: int = 0
    overflows: int = 0
    level_dbfs: float = -120.0
    clip_until: float = 0.0
    last_audio: float = field(default_factory=time.monotonic)
    stopped_by: str = ""  # "end" | "duration" | "signal" | "pipe" | "device lost"
    reconnects: int = 0  # times a lost device came back
    clean_stop: bool = True  # False: the device did not stop in time (see DeviceSource.stop)
    lat_capture: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_infer: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_emit: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_total: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))

    @property
    def stream_seconds(self) -> float:
        return self.stream_samples / audio.SAMPLE_RATE

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def clipping(self) -> bool:
        return time.monotonic() < self.clip_until

    @property
    def silent_for(self) -> float:
        """s since the source last delivered audio."""
        return time.monotonic() - self.last_audio

    def recent(self, name: str, n: int = RECENT_KEEP) -> tuple[float, float]:
        """(p50, p95) of the last ``n`` hops of one latency series, ms."""
        d: deque = getattr(self, f"lat_{name}")
        k = min(n, len(d))
        return percentiles([d[i] for i in range(len(d) - k, len(d))]) if k else (float("nan"), float("nan"))


OnHop = Callable[[Window, np.ndarray, Stats], bool]
OnTick = Callable[[Stats], None]


def run(
    source: Source,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    hop: int,
    on_hop: OnHop,
    on_tick: OnTick | None = None,
    stop: threading.Event | None = None,
    duration: float | None = None,
    max_lag: int | None = None,
    tick_seconds: float = 0.125,
) -> Stats:
    """The streaming loop: read blocks, cut windows, run ``predict`` on each, hand them to ``on_hop``.

    ``predict(windows [n, 16000]) -> probs [n, n_labels]``; ``on_hop(window, probs [n_labels], stats)``
    returns False to stop (a closed pipe). ``on_tick(stats)`` at most every ``tick_seconds`` (the
    dashboard). ``hop`` and ``max_lag`` in samples at 16 kHz; ``max_lag`` only applies to live
    sources (default ``max(hop, 0.5 s)``). ``duration`` stops after that many seconds of stream
    time; ``stop`` is set by a signal handler. The source is started and stopped here.
    """
    if source.live and max_lag is None:
        max_lag = max(hop, int(DEFAULT_MAX_LAG_SECONDS * audio.SAMPLE_RATE))
    source.start()  # first: a device may fall back to another rate, which the streamer must know
    streamer = Streamer(
        in_rate=source.rate,
        hop=hop,
        max_lag=max_lag if source.live else None,
        stop_at=None if duration is None else int(round(duration * audio.SAMPLE_RATE)),
    )
    stats = Stats(source=source.name, rate=source.rate, channels=source.channels)
    stop = stop or threading.Event()
    last_tick = 0.0
    ended = False

    def tick(force: bool = False) -> None:
        nonlocal last_tick
        now = time.monotonic()
        if on_tick is not None and (force or now - last_tick >= tick_seconds):
            last_tick = now
            on_tick(stats)

    late_dropped = 0
    stale_after = None if not source.live or max_lag is None else max_lag / audio.SAMPLE_RATE  # s

    def handle(windows: list[Window]) -> bool:
        nonlocal late_dropped
        for w in windows:
            if stop.is_set():
                stats.stopped_by = stats.stopped_by or "signal"
                return False
            t0 = time.monotonic()
            # a window that straddles a device gap waited for the device, not for us: not stale
            fresh_from = max(w.t_capture, float(getattr(source, "resumed_at", 0.0)))
            if stale_after is not None and not w.tail and t0 - fresh_from > stale_after:
                late_dropped += 1  # went stale while earlier windows of this batch ran
                stats.dropped = streamer.dropped + late_dropped
                continue
            probs = np.asarray(predict(w.samples[None, :]))[0]
            t1 = time.monotonic()
            stats.hops += 1
            stats.lat_capture.append((w.t_ready - w.t_capture) * 1e3)
            stats.lat_infer.append((t1 - t0) * 1e3)
            keep = on_hop(w, probs, stats)
            t2 = time.monotonic()
            stats.lat_emit.append((t2 - t1) * 1e3)
            stats.lat_total.append((t2 - w.t_capture) * 1e3)
            if not keep:
                stats.stopped_by = stats.stopped_by or "pipe"
                return False
            tick()
        return True

    stats.device_latency = float(getattr(source, "latency", 0.0))
    stats.started = stats.last_audio = time.monotonic()
    clean = True
    try:
        tick(force=True)
        while not stop.is_set():
            blocks = source.read(tick_seconds)
            stats.reconnects = int(getattr(source, "reconnects", 0))
            if blocks is None and getattr(source, "lost", False):  # a device gone for good: no tail to pad
                stats.stopped_by = stats.stopped_by or "device lost"
                break
            if blocks is None:  # end of a file
                ended = True
                windows = streamer.push([], last=True) + streamer.finish()
            else:
                if blocks:
                    stats.last_audio = time.monotonic()
                windows = streamer.push(blocks)
            stats.stream_samples = streamer.total
            stats.dropped = streamer.dropped + late_dropped
            stats.overflows = source.overflows
            stats.level_dbfs = streamer.level_dbfs
            if streamer.peak >= CLIP_LEVEL:
                stats.clip_until = time.monotonic() + CLIP_HOLD_SECONDS
            if not handle(windows):
                break
            tick()
            if ended or streamer.done:
                stats.stopped_by = stats.stopped_by or ("end" if ended else "duration")
                break
        else:
            stats.stopped_by = stats.stopped_by or "signal"
    finally:
        clean = source.stop()
        stats.overflows = source.overflows
    stats.clean_stop = clean
    tick(force=True)
    return stats
