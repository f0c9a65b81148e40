"""The one streaming loop that serves every source (``sources``: file, demo; ``device``).

Data flow, one consumer thread::

    source.read() → blocks [frames, channels] at the source's rate
      → streamer: to_mono → sanitize → Resampler (model rate, streaming, no look-ahead)
      → framing.Framer (preallocated ring) → a window [window] every hop samples → predict → on_hop

The model's framing (rate, window) is passed in (``Detector.framing``, from its card).

The device callback only copies its block and enqueues it (PortAudio's thread must never
wait on Python work); everything else happens in ``run()``. Time is counted in samples of
the stream, never wall clock, so a file pushed in any block sizes gives exactly the windows
(and probabilities) of ``framing.windows(audio.load(file, sample_rate=…), hop=…)``. When the consumer falls
behind a live source, windows that ended more than ``max_lag`` before the newest sample are
dropped and counted: latency stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from neuroear import audio
from neuroear.framing import Framing
from neuroear.live.sources import Block, Source
from neuroear.live.streamer import Streamer, Window

DEFAULT_MAX_LAG_SECONDS = 0.5  # s: a window that ended longer ago than max(this, hop) is dropped
NO_AUDIO_WARN_SECONDS = 2.0  # s without a block from a device before we say so
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipping
CLIP_HOLD_SECONDS = 2.0  # s the clipping warning stays up after the last clipped sample
PEAK_HOLD_SECONDS = 3.0  # s the peak-hold mark keeps the highest sample before it falls back
LATENCY_KEEP = 100_000  # hops of latency samples kept for the final summary (~28 h at 1 s)
RECENT_KEEP = 240  # hops behind the dashboard's live percentiles (1 min at 0.25 s)


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
    rate: int = 0  # Hz at the source
    model_rate: int = 0  # Hz of the stream the model reads
    channels: int = 0
    device_latency: float = 0.0  # s reported by PortAudio
    started: float = field(default_factory=time.monotonic)
    stream_samples: int = 0  # at model_rate
    hops: int = 0
    dropped: int = 0
    overflows: int = 0
    level_dbfs: float = -120.0
    clip_until: float = 0.0
    clipped: int = 0  # samples (any channel) at or above CLIP_LEVEL since the start
    peak_dbfs: float = -120.0  # highest |sample| of the last PEAK_HOLD_SECONDS, dBFS (peak hold)
    peak_max_dbfs: float = -120.0  # highest |sample| since the start, dBFS
    peak_until: float = 0.0  # monotonic s when the held peak falls back
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
        return self.stream_samples / self.model_rate if self.model_rate else 0.0

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
OnBlocks = Callable[[list[Block]], None]


def run(
    source: Source,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    framing: Framing,
    hop: int,
    on_hop: OnHop,
    on_tick: OnTick | None = None,
    stop: threading.Event | None = None,
    duration: float | None = None,
    max_lag: int | None = None,
    tick_seconds: float = 0.125,
    on_blocks: OnBlocks | None = None,
) -> Stats:
    """The streaming loop: read blocks, cut windows, run ``predict`` on each, hand them to ``on_hop``.

    ``predict(windows [n, framing.window]) -> probs [n, n_labels]``; ``on_hop(window, probs [n_labels],
    stats)`` returns False to stop (a closed pipe). ``on_tick(stats)`` at most every ``tick_seconds``
    (the dashboard). ``hop`` and ``max_lag`` in samples at ``framing.sample_rate``; ``max_lag`` only applies to live
    sources (default ``max(hop, 0.5 s)``). ``duration`` stops after that many seconds of stream
    time; ``stop`` is set by a signal handler. ``on_blocks(blocks)`` receives every batch of blocks
    as the source delivered it (``listen --record``), in this consumer thread. The source is started
    and stopped here.
    """
    rate = framing.sample_rate
    if source.live and max_lag is None:
        max_lag = max(hop, int(DEFAULT_MAX_LAG_SECONDS * rate))
    source.start()  # first: a device may fall back to another rate, which the streamer must know
    streamer = Streamer(
        framing=framing,
        in_rate=source.rate,
        hop=hop,
        max_lag=max_lag if source.live else None,
        stop_at=None if duration is None else int(round(duration * rate)),
    )
    stats = Stats(source=source.name, rate=source.rate, model_rate=rate, channels=source.channels)
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
    stale_after = None if not source.live or max_lag is None else max_lag / rate  # s

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
                    stats.clipped += sum(int(np.count_nonzero(np.abs(b.samples) >= CLIP_LEVEL)) for b in blocks)
                    if on_blocks is not None:
                        on_blocks(blocks)
                windows = streamer.push(blocks)
            stats.stream_samples = streamer.total
            stats.dropped = streamer.dropped + late_dropped
            stats.overflows = source.overflows
            stats.level_dbfs = streamer.level_dbfs
            now = time.monotonic()
            if streamer.peak >= CLIP_LEVEL:
                stats.clip_until = now + CLIP_HOLD_SECONDS
            if blocks:
                pk = float(audio.dbfs(np.float64(streamer.peak)))
                stats.peak_max_dbfs = max(stats.peak_max_dbfs, pk)
                if pk >= stats.peak_dbfs or now >= stats.peak_until:
                    stats.peak_dbfs, stats.peak_until = pk, now + PEAK_HOLD_SECONDS
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
