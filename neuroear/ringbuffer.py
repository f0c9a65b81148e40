"""Samples in, windows out: a preallocated ring buffer and the framer that cuts windows from it.

``RingBuffer`` holds the latest samples of a stream addressed by absolute sample index; memory is
fixed at construction, so a consumer that falls behind loses the oldest audio (and says so),
never the process's memory. ``Streamer`` turns source blocks (any rate, any channel count, any
size) into 16 kHz mono one-second windows every hop, exactly as ``audio.Framer`` frames a file.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from neuroear import audio

LEVEL_SECONDS = 0.1  # s of audio behind the level meter


class RingBuffer:
    """Fixed-size store of the latest ``capacity`` samples of a stream.

    Samples are addressed by absolute index since the last ``reset()``: sample ``i`` is the
    ``i``-th sample ever written. ``total`` counts all samples written; indices in
    ``[oldest, total)`` can be read back.
    """

    def __init__(self, capacity: int, *, dtype: np.dtype | type = np.float32) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=dtype)
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next sample written is sample 0."""
        self._buf[:] = 0
        self.total = 0  # samples written since reset

    @property
    def oldest(self) -> int:
        """Index of the oldest sample still held."""
        return max(0, self.total - self.capacity)

    @property
    def nbytes(self) -> int:
        """Memory held by the samples (bytes); constant for the buffer's lifetime."""
        return int(self._buf.nbytes)

    def write(self, samples: np.ndarray) -> None:
        """Append mono ``samples`` [n]; overwrites the oldest ones once full."""
        x = np.asarray(samples, dtype=self._buf.dtype).reshape(-1)
        n = x.size
        if n == 0:
            return
        if n >= self.capacity:  # only the newest capacity samples can survive
            x = x[-self.capacity :]
            start = (self.total + n - self.capacity) % self.capacity
            first = self.capacity - start
            self._buf[start:] = x[:first]
            self._buf[:start] = x[first:]
        else:
            start = self.total % self.capacity
            first = min(n, self.capacity - start)
            self._buf[start : start + first] = x[:first]
            if first < n:
                self._buf[: n - first] = x[first:]
        self.total += n

    def read(self, start: int, length: int, *, pad: bool = False) -> np.ndarray:
        """Copy of samples ``[start, start + length)`` (absolute indices).

        With ``pad=True`` samples not written yet (at or after ``total``) read as zeros: the
        zero-padded tail windows at the end of a file. Raises ``IndexError`` for samples already
        overwritten, or not yet written when ``pad`` is False.
        """
        if length < 0 or start < 0:
            raise IndexError(f"bad range start={start} length={length}")
        if start < self.oldest:
            raise IndexError(f"samples from {start} were overwritten (oldest held is {self.oldest})")
        end = start + length
        if end > self.total and not pad:
            raise IndexError(f"samples up to {end} requested but only {self.total} written")
        out = np.zeros(length, dtype=self._buf.dtype)
        avail = max(0, min(end, self.total) - start)
        if avail:
            i = start % self.capacity
            first = min(avail, self.capacity - i)
            out[:first] = self._buf[i : i + first]
            if first < avail:
                out[first:avail] = self._buf[: avail - first]
        return out


@dataclass(frozen=True)
class Block:
    """One block from a source.

    ``samples`` [frames, channels] float32 at the source's rate; ``t`` (``time.monotonic()``, s)
    when its last frame became available to us; ``lost_frames`` frames lost just before it
    (queue overflow), replaced by silence so that stream time stays true.
    """

    samples: np.ndarray
    t: float
    lost_frames: int = 0


@dataclass(frozen=True)
class Window:
    """One window ready for the model.

    ``start``/``end`` in stream samples at 16 kHz (``end`` is clipped to the stream's length for
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
    """Blocks at the source's rate in, windows at 16 kHz every ``hop`` samples out.

    Windows start at ``k * hop`` exactly as ``audio.Framer`` cuts them; ``finish()`` emits the
    same zero-padded tail windows. ``max_lag`` (samples, None = never drop): a window whose end is
    more than this behind the newest sample of a pushed batch is dropped and counted. ``stop_at``
    (samples, None = no limit): audio past it is ignored.
    """

    def __init__(
        self,
        *,
        in_rate: int,
        hop: int,
        window: int = audio.WINDOW_SAMPLES,
        max_lag: int | None = None,
        stop_at: int | None = None,
        min_tail: int | None = None,
    ) -> None:
        if hop <= 0 or window <= 0 or in_rate <= 0:
            raise ValueError("in_rate, hop and window must be positive")
        self.in_rate = int(in_rate)
        self.hop = int(hop)
        self.window = int(window)
        self.max_lag = None if max_lag is None else int(max_lag)
        self.stop_at = None if stop_at is None else int(stop_at)
        self.min_tail = audio.Framer(window=window, hop=hop, min_tail=min_tail).min_tail
        self.ring = RingBuffer(self.window + (self.max_lag or 0) + 2 * self.hop)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: sample 0 is the next sample pushed."""
        self.ring.reset()
        self._resampler = None if self.in_rate == audio.SAMPLE_RATE else audio.Resampler(self.in_rate, audio.SAMPLE_RATE)
        self.next_start = 0  # start sample of the next window
        self.count = 0  # windows emitted or dropped so far (the next window's index)
        self.dropped = 0
        self.in_frames = 0  # frames received at the source rate
        self.bad_samples = 0  # NaN/Inf replaced by silence
        self.level_dbfs = -120.0  # dBFS of the last LEVEL_SECONDS of input
        self._recent = np.zeros(0, dtype=np.float32)
        self.peak = 0.0  # max |sample| of the last batch, before downmix
        self.done = False
        self._arrivals: deque[tuple[int, float]] = deque()  # (input frames up to block end, t)

    @property
    def total(self) -> int:
        """Samples at 16 kHz in the ring so far (stream time × 16000)."""
        return self.ring.total

    def _capture_time(self, end: int, default: float) -> float:
        """Arrival time of the block holding input sample ⌈end · in_rate / 16 kHz⌉ − 1."""
        need = math.ceil(end * self.in_rate / audio.SAMPLE_RATE)
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
        windows: list[Window] = []
        for samples, t in pieces:
            if self.stop_at is not None:
                samples = samples[: max(0, self.stop_at - self.total)]
            for i in range(0, samples.size, self.hop):
                self.ring.write(samples[i : i + self.hop])
                windows.extend(self._ready(final_total, t))
        if self.stop_at is not None and self.total >= self.stop_at:
            self.done = True
        return windows

    def _ready(self, final_total: int, t: float) -> Iterator[Window]:
        while self.next_start + self.window <= self.total:
            start, end = self.next_start, self.next_start + self.window
            self.next_start += self.hop
            self.count += 1
            if self.max_lag is not None and final_total - end > self.max_lag:
                self.dropped += 1
                continue
            yield Window(self.count - 1, start, end, self.ring.read(start, self.window), self._capture_time(end, t), time.monotonic())

    def finish(self) -> list[Window]:
        """Zero-padded tail windows covering the last samples (as ``audio.Framer.finish``)."""
        out = []
        if self.done:
            return out
        self.done = True
        total = self.total
        t = self._arrivals[-1][1] if self._arrivals else time.monotonic()
        while self.next_start < total:
            covered_before = self.next_start - self.hop + self.window if self.next_start > 0 else 0
            new = total - max(self.next_start, covered_before)
            if self.next_start > 0 and new < self.min_tail:
                break
            start = self.next_start
            out.append(Window(self.count, start, min(start + self.window, total), self.ring.read(start, self.window, pad=True), t, time.monotonic(), tail=True))
            self.next_start += self.hop
            self.count += 1
        return out
