"""One listening session: model, source, decision policy, sink and the dashboard's state.

``Session`` is what ``neuroear listen`` runs (the CLI only parses, draws and prints);
``listen()`` is the same session as a Python generator of ``Detection`` objects::

    for d in neuroear.listen(input="clip.wav", hop=0.5):
        print(d.start, d.active)
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from neuroear.audio import dbfs
from neuroear.background import background
from neuroear.errors import NeuroEarError
from neuroear.infer import Detector, parse_thresholds
from neuroear.live import loop
from neuroear.live.policy import Policy, PolicyConfig, resolve_smooth
from neuroear.live.sinks import JsonlSink, detection_record, event_record
from neuroear.live.sources import DEFAULT_BLOCK_FRAMES, FileSource, Source, demo_source
from neuroear.live.streamer import Window

HOP_MIN_SECONDS, HOP_MAX_SECONDS = 0.25, 1.0
QUIET_GATE_DBFS = -60.0  # dBFS: a window quieter than this is noise floor, reported as nothing sounding
DEFAULT_THREADS = 1  # ORT threads for live use: one window per hop needs no thread pool
DETECTIONS_AHEAD = 256  # detections ``listen()`` holds for a caller that is slower than the hops
EVENTS_KEPT = 32  # onsets/offsets the dashboard's events pane can show
AUDIO_BACK_SECONDS = 1.0  # s: a starved device that delivered within this long is back


@dataclass(frozen=True)
class Detection:
    """One hop's result: the window [start, end) in stream seconds, probabilities [n_labels] in
    ``labels`` order, the labels the policy holds active, and the latency from the window's last
    sample arriving to this result (ms)."""

    source: str
    start: float
    end: float
    labels: tuple[str, ...]
    probs: np.ndarray
    active: tuple[str, ...]
    latency_ms: float
    provider: str

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines record of ``stream/detection.schema.json``."""
        return detection_record(
            source=self.source, start=self.start, end=self.end, labels=self.labels, probs=self.probs,
            active=self.active, latency_ms=self.latency_ms, provider=self.provider,
        )


def check_hop(hop: float) -> None:
    """A live hop (s) must be in [HOP_MIN_SECONDS, HOP_MAX_SECONDS]."""
    if not (HOP_MIN_SECONDS <= hop <= HOP_MAX_SECONDS):
        raise NeuroEarError(f"--hop must be between {HOP_MIN_SECONDS:g} and {HOP_MAX_SECONDS:g} s, got {hop:g}")


def device_lost(source: Source) -> NeuroEarError:
    """The error that ends listening when ``source``, an input device, went away and did not come
    back within its ``reconnect`` s: ``neuroear listen``'s last line and ``listen()``'s exception."""
    return NeuroEarError(
        f"input device {source.name!r} went away and did not come back within {getattr(source, 'reconnect', 0.0):g} s "
        "(--reconnect SECONDS waits longer); the lines above are complete"
    )


def make_policy(
    detector: Detector,
    *,
    thresholds: Mapping[str, float] | Sequence[str] | None = None,
    hysteresis: float = 0.0,
    smooth: int = 1,
) -> Policy:
    """The decision policy over ``detector``'s calibrated thresholds with the user's overrides
    (applied by ``Detector.thresholds_for``, as for ``analyze``)."""
    return Policy(PolicyConfig.build(
        detector.labels, detector.thresholds_for(parse_thresholds(thresholds, detector.labels)),
        hysteresis=hysteresis, smooth=smooth,
    ))


def open_source(
    *,
    device: str | int | None = None,
    input: str | os.PathLike[str] | None = None,
    demo: bool = False,
    realtime: bool = False,
    block: int | None = None,
    rate: int | None = None,
    channels: int | None = None,
    reconnect: float | None = None,
) -> Source:
    """The source ``listen`` reads: the demo clip, a file (``input``), or an input device."""
    block = block or DEFAULT_BLOCK_FRAMES
    if demo:
        return demo_source(block=block)
    if input is not None:
        return FileSource(input, block=block, realtime=realtime)
    from neuroear.live import device as dev

    wait = dev.DEFAULT_RECONNECT_SECONDS if reconnect is None else reconnect
    return dev.DeviceSource(device, rate=rate, channels=channels, block=block, reconnect=wait)


class Session:
    """Wires one listening run: the loop over ``source``, the policy, the sink, counts and history.

    ``sink`` (a ``JsonlSink`` or None) receives one record per hop (or per event with
    ``events=True``); ``on_detection`` (optional) receives each ``Detection``. ``record`` (a
    .flac/.wav/.ogg path) keeps the input as received (``live.record.Recorder``).
    """

    def __init__(
        self,
        *,
        detector: Detector,
        source: Source,
        policy: Policy,
        sink: JsonlSink | None = None,
        events: bool = False,
        hop: float = 1.0,
        on_detection: Callable[[Detection], None] | None = None,
        gate_dbfs: float | None = QUIET_GATE_DBFS,
        record: str | os.PathLike[str] | None = None,
    ) -> None:
        from neuroear.live.dashboard import HISTORY_SECONDS

        check_hop(hop)
        self.detector = detector
        self.framing = detector.framing
        self.labels = tuple(detector.labels)
        self.source = source
        self.policy = policy
        self.sink = sink
        self.events = events
        self.hop = hop
        self.on_detection = on_detection
        self.model = detector.name
        self.provider = detector.provider
        self.is_device = not isinstance(source, FileSource)
        n = max(1, int(round(HISTORY_SECONDS / hop)))
        self.history = {lab: deque(maxlen=n) for lab in self.labels}
        self.probs = np.full(len(self.labels), np.nan, dtype=np.float32)
        self.smoothed = self.probs.copy()  # what the policy decided on (the dashboard's bars)
        self.gate_dbfs = gate_dbfs
        self.gated = False  # the last window was below the quiet gate
        self.active: tuple[str, ...] = ()
        self.detections = {lab: 0 for lab in self.labels}
        self.onsets = {lab: 0 for lab in self.labels}
        self.message = ""
        self.message_until = 0.0  # monotonic s: a notice stays on the dashboard until then
        self.event_log: deque = deque(maxlen=EVENTS_KEPT)  # (wall-clock epoch s, label, "onset"|"offset")
        self._wall0 = time.time() - time.monotonic()  # epoch s = monotonic s + this
        self._run_wall = time.time()
        self._starved_from: float | None = None  # monotonic s of the last audio before a starved stretch
        self.recorder = None
        if record is not None:
            from neuroear.live.record import Recorder

            self.recorder = Recorder(record)

    def device_missing(self) -> bool:
        """True while a device source is gone and being reopened."""
        return bool(getattr(self.source, "missing", False))

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        duration: float | None = None,
        max_lag: float | None = None,
        on_tick: loop.OnTick | None = None,
        tick_seconds: float = 0.125,
    ) -> loop.Stats:
        """Listen until the source ends, ``duration`` s of stream time, ``stop`` is set or the sink closes.

        ``max_lag`` (s): drop windows ending longer ago than this behind the newest audio (live sources).
        """
        rate = self.framing.sample_rate
        rec = self.recorder
        self._run_wall = time.time()  # epoch s at stream time 0 of a file
        on_blocks = None if rec is None else (lambda blocks: rec.write(blocks, rate=self.source.rate, channels=self.source.channels))
        try:
            return loop.run(
                self.source, self.detector.predict, framing=self.framing, hop=self.framing.hop(self.hop),
                on_hop=self.on_hop, on_tick=on_tick, stop=stop, duration=duration,
                max_lag=None if max_lag is None else int(round(max_lag * rate)), tick_seconds=tick_seconds,
                on_blocks=on_blocks,
            )
        finally:
            if rec is not None:
                rec.close()

    def watch(self, stats: loop.Stats) -> list[str]:
        """One-line notices for people from this tick: a starved device (no audio for
        ``loop.NO_AUDIO_WARN_SECONDS``) that delivers again. Call it from ``on_tick``."""
        if not self.is_device or self.device_missing():
            self._starved_from = None  # a lost device has its own "is back" notice
            return []
        if stats.silent_for > loop.NO_AUDIO_WARN_SECONDS:
            if self._starved_from is None:
                self._starved_from = time.monotonic() - stats.silent_for
            return []
        if self._starved_from is not None and stats.silent_for < AUDIO_BACK_SECONDS:
            gap = max(0.0, stats.last_audio - self._starved_from)
            self._starved_from = None
            note = f"audio from {self.source.name!r} is back after {gap:.1f} s without any"
            self.message, self.message_until = note, time.monotonic() + 10.0
            return [note]
        return []

    def _log_events(self, events: Sequence[Any], *, end: float, t_capture: float | None) -> None:
        """Keep onsets/offsets for the events pane with their wall-clock time: a live source's from
        when the window's last sample arrived, a file's from the session start plus stream time."""
        for e in events:
            if not self.source.live:
                wall = self._run_wall + e.time
            elif t_capture is not None:
                wall = t_capture + self._wall0 - (end - e.time)
            else:  # closed at the end of listening
                wall = time.time()
            self.event_log.append((wall, e.label, e.kind))

    def on_hop(self, window: Window, probs: np.ndarray, stats: loop.Stats) -> bool:
        start, end = self.framing.seconds(window.start), self.framing.seconds(window.end)
        self.probs = np.asarray(probs, dtype=np.float32)
        # below the gate the input is noise floor: decide on zeros (the row keeps the model's probabilities)
        self.gated = self.gate_dbfs is not None and float(dbfs(window.samples)) < self.gate_dbfs
        decision = self.policy.update(np.zeros_like(self.probs) if self.gated else self.probs, start=start, end=end)
        self.smoothed = np.asarray(decision.smoothed, dtype=np.float32)
        self.active = decision.active
        for lab, p in zip(self.labels, self.smoothed):
            self.history[lab].append(float(p))
        for lab in decision.active:
            self.detections[lab] += 1
        for e in decision.events:
            if e.kind == "onset":
                self.onsets[e.label] += 1
        if decision.events:
            self._log_events(decision.events, end=end, t_capture=window.t_capture)
        if self.sink is None and self.on_detection is None:
            return True
        latency_ms = (time.monotonic() - window.t_capture) * 1e3
        det = Detection(self.source.name, start, end, self.labels, self.probs, decision.active, latency_ms, self.provider)
        if self.on_detection is not None:
            self.on_detection(det)
        if self.sink is None:
            return True
        if self.events:
            return all(self.sink.write(event_record(e)) for e in decision.events)
        return self.sink.write(det.to_json())

    def finish(self) -> None:
        """Close labels still on (their offset events go to the sink in events mode)."""
        closing = self.policy.finish()
        self._log_events(closing, end=0.0, t_capture=None)
        for e in closing:
            if self.events and self.sink is not None:
                self.sink.write(event_record(e))

    def state(self, stats: loop.Stats, *, title: str = "listening") -> Any:
        """The dashboard's snapshot (``dashboard.State``) of this session now."""
        from neuroear.live.dashboard import STAGES, EventView, LabelView, State

        onsets = self.policy.onsets
        now = stats.stream_seconds
        labels = tuple(
            LabelView(
                name=lab,
                prob=float(p),
                active=lab in self.active,
                on_for=(now - onsets[lab]) if lab in onsets else None,
                history=tuple(self.history[lab]),
                threshold=float(t),
            )
            for lab, p, t in zip(self.labels, self.smoothed, self.policy.config.on)
        )
        message = self.message if time.monotonic() < self.message_until else ""
        if self.is_device and not message and self.device_missing():
            message = f"input device gone for {stats.silent_for:.0f} s: reconnecting (--reconnect)"
        elif self.is_device and stats.silent_for > loop.NO_AUDIO_WARN_SECONDS and not message:
            message = f"no audio from the device for {stats.silent_for:.0f} s (muted, unplugged, or a virtual mic nobody writes to?)"
        return State(
            labels=labels, source=stats.source, rate=stats.rate, channels=stats.channels, model=self.model,
            provider=self.provider, smooth=self.policy.config.smooth, level_dbfs=stats.level_dbfs, clipping=stats.clipping,
            latency={k: stats.recent(k) for k in STAGES}, hops=stats.hops, dropped=stats.dropped,
            overflows=stats.overflows, elapsed=now, hop=self.hop, message=message, title=title,
            gated=self.gated, gate_dbfs=self.gate_dbfs,
            events=tuple(EventView(time.strftime("%H:%M:%S", time.localtime(w)), lab, kind) for w, lab, kind in self.event_log),
            clipped=int(getattr(stats, "clipped", 0)), peak_dbfs=float(getattr(stats, "peak_dbfs", -120.0)),
        )


def listen(
    *,
    device: str | int | None = None,
    input: str | os.PathLike[str] | None = None,
    demo: bool = False,
    realtime: bool = False,
    model: str | os.PathLike[str] | None = None,
    provider: str = "auto",
    threads: int = DEFAULT_THREADS,
    hop: float = 1.0,
    duration: float | None = None,
    thresholds: Mapping[str, float] | Sequence[str] | None = None,
    hysteresis: float = 0.0,
    smooth: int | None = None,
    block: int | None = None,
    rate: int | None = None,
    channels: int | None = None,
    max_lag: float | None = None,
    reconnect: float | None = None,
) -> Iterator[Detection]:
    """Yield one ``Detection`` per hop from a device (default input, or ``device``), a file
    (``input``; ``realtime=True`` paces it like a device) or the demo clip.

    ``hop`` in seconds (0.25–1); ``thresholds`` overrides {label: probability}; ``hysteresis``
    and ``smooth`` as ``PolicyConfig.build`` (``smooth`` None: the windows of the last 2 s,
    ``policy.default_smooth``); ``reconnect``: s a lost device is retried (default
    ``device.DEFAULT_RECONNECT_SECONDS``). Ends with the source, after ``duration`` s of stream
    time, or when the caller stops iterating (the capture is stopped then). A device that went
    away for good raises NeuroEarError (``device_lost``) after the detections it gave.
    """
    detector = Detector(model, provider=provider, threads=threads)
    policy = make_policy(detector, thresholds=thresholds, hysteresis=hysteresis, smooth=resolve_smooth(smooth, hop))
    source = open_source(device=device, input=input, demo=demo, realtime=realtime, block=block, rate=rate, channels=channels,
                         reconnect=reconnect)

    def produce(put, stop: threading.Event) -> None:  # noqa: ANN001 - see background.Put
        session = Session(detector=detector, source=source, policy=policy, hop=hop, on_detection=put)
        stats = session.run(stop=stop, duration=duration, max_lag=max_lag)
        if stats.stopped_by == "device lost":  # else the caller could not tell it from a file's end
            raise device_lost(source)

    yield from background(produce, depth=DETECTIONS_AHEAD, name="neuroear-listen")


__all__ = ["Detection", "Session", "listen", "open_source", "make_policy", "check_hop", "device_lost", "HOP_MIN_SECONDS", "HOP_MAX_SECONDS", "DEFAULT_THREADS"]
