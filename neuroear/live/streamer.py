"""Source blocks in, model windows out: downmix, sanitise, resample, then ``framing.Framer``.

``Streamer`` turns source blocks (any rate, any channel count, any size) into mono windows at
the model's framing (rate and window from its card), every hop, cut by the same ``Framer`` that
frames a file for ``analyze``; it adds what live use needs: capture times, the level meter, and
dropping windows a slow consumer can no longer serve in time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from neuroear import audio
from neuroear.framing import Framer, Framing
from neuroear.live.sources import Block
from neuroear.resample import Resampler

LEVEL_SECONDS = 0.1  # s of audio behind the level meter


@dataclass(frozen=True)
class Window:
    """One window ready for the model.

    ``start``/``end`` in stream samples at the model rate (``end`` is clipped to the stream's length for
    a zero-padded tail window); ``samples`` [window] float32; ``t_capture`` (monotonic s) when the
    block holding its last sample arrived; ``t_ready`` when it was cut from the ring.
    """

    index: int
    start: int
    end: int
    samples: np.ndarray
    t_capture: float
    t_ready: float
    tail: bool = False


class Streamer:
    """Blocks at the source's rate in, windows at the model's rate every ``hop`` samples out.

    Windows start at ``k * hop`` and ``finish()`` emits the zero-padded tail windows, exactly as
    ``framing.Framer`` cuts a file (it is the same Framer). ``max_lag`` (samples, None = never
    drop): a window whose end is more than this behind the newest sample of a pushed batch is
    dropped and counted. ``stop_at`` (samples, None = no limit): audio past it is ignored.
    """

    def __init__(
        self,
        *,
        framing: Framing,
        in_rate: int,
        hop: int,
        max_lag: int | None = None,
        stop_at: int | None = None,
        min_tail: int | None = None,
    ) -> None:
        if hop <= 0 or in_rate <= 0:
            raise ValueError("in_rate and hop must be positive")
        self.framing = framing
        self.in_rate = int(in_rate)
        self.hop = int(hop)
        self.window = int(framing.window)
        self.max_lag = None if max_lag is None else int(max_lag)
        self.stop_at = None if stop_at is None else int(stop_at)
        self.framer = Framer(window=self.window, hop=self.hop, sample_rate=framing.sample_rate, min_tail=min_tail, context=framing.context)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: sample 0 is the next sample pushed."""
        self.framer.reset()
        rate = self.framing.sample_rate
        self._resampler = None if self.in_rate == rate else Resampler(self.in_rate, rate)
        self.in_frames = 0  # frames received at the source rate
        self.bad_samples = 0  # NaN/Inf replaced by silence
        self.level_dbfs = -120.0  # dBFS of the last LEVEL_SECONDS of input
        self._recent = np.zeros(0, dtype=np.float32)
        self.peak = 0.0  # max |sample| of the last batch, before downmix
        self.done = False
        self._arrivals: deque[tuple[int, float]] = deque()  # (input frames up to block end, t)

    @property
    def total(self) -> int:
        """Samples at the model rate so far (stream time × rate)."""
        return self.framer.total

    @property
    def count(self) -> int:
        """Windows emitted or dropped so far (the next window's index)."""
        return self.framer.next_start // self.hop

    @property
    def dropped(self) -> int:
        return self.framer.dropped

    def _capture_time(self, end: int, default: float) -> float:
        """Arrival time of the block holding input sample ⌈end · in_rate / rate⌉ − 1."""
        need = math.ceil(end * self.in_rate / self.framing.sample_rate)
        while len(self._arrivals) > 1 and self._arrivals[0][0] < need:
            self._arrivals.popleft()
        if self._arrivals and self._arrivals[0][0] >= need:
            return self._arrivals[0][1]
        return default

    def _mono(self, block: Block) -> np.ndarray:
        x = block.samples
        if x.ndim == 1:
            x = x[:, None]
        if x.size:
            self.peak = max(self.peak, float(np.max(np.abs(x))))
        mono, bad = audio.sanitize(audio.to_mono(x))
        self.bad_samples += bad
        if block.lost_frames:
            mono = np.concatenate([np.zeros(block.lost_frames, dtype=np.float32), mono])
        return mono

    def push(self, blocks: list[Block], *, last: bool = False) -> list[Window]:
        """Add a batch of blocks (all that arrived since the last call); return the windows to run.

        ``last=True`` flushes the resampler (end of stream); then call ``finish()`` for the tail.
        """
        if self.done:
            return []
        self.peak = 0.0
        pieces: list[tuple[np.ndarray, float]] = []
        monos = []
        for b in blocks:
            mono = self._mono(b)
            monos.append(mono)
            self.in_frames += mono.size
            self._arrivals.append((self.in_frames, b.t))
            out = self._resampler.resample_chunk(mono) if self._resampler is not None else mono
            pieces.append((np.asarray(out, dtype=np.float32), b.t))
        if last and self._resampler is not None:
            t = blocks[-1].t if blocks else time.monotonic()
            pieces.append((np.asarray(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True), dtype=np.float32), t))
        if monos:
            self._recent = np.concatenate([self._recent, *monos])[-max(1, int(LEVEL_SECONDS * self.in_rate)) :]
            if self._recent.size:
                self.level_dbfs = float(audio.dbfs(self._recent))
        final_total = self.total + sum(p.size for p, _ in pieces)
        if self.stop_at is not None:
            final_total = min(final_total, self.stop_at)
        drop_before = None if self.max_lag is None else final_total - self.max_lag
        windows: list[Window] = []
        for samples, t in pieces:
            if self.stop_at is not None:
                samples = samples[: max(0, self.stop_at - self.total)]
            for start, w in self.framer.push(samples, drop_ending_before=drop_before):
                end = start + self.window
                windows.append(Window(start // self.hop, start, end, w, self._capture_time(end, t), time.monotonic()))
        if self.stop_at is not None and self.total >= self.stop_at:
            self.done = True
        return windows

    def finish(self) -> list[Window]:
        """Zero-padded tail windows covering the last samples (``Framer.finish``)."""
        if self.done:
            return []
        self.done = True
        total = self.total
        t = self._arrivals[-1][1] if self._arrivals else time.monotonic()
        return [
            Window(start // self.hop, start, min(start + self.window, total), w, t, time.monotonic(), tail=True)
            for start, w in self.framer.finish()
        ]
