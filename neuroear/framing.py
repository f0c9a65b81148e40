"""The model's framing and the one framer that cuts windows for files, live sources and the web page.

``SAMPLE_RATE`` and ``WINDOW_SAMPLES`` are the framing a NEW model is built with (``CQTConfig``'s
defaults); at run time the framing always comes from the model card (``Detector.framing``), so a
model built at another rate or window is served as it was built.

``Framer`` is the only code that cuts windows: window k covers samples [k·hop, k·hop + window) of
the stream, whatever block sizes are pushed in (time is counted in samples, never wall clock);
its samples live in a preallocated ``RingBuffer``, so memory stays fixed for any input length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuroear.errors import NeuroEarError

SAMPLE_RATE = 16_000  # Hz: build default; the CQT's top bin (4.2 kHz) sits well below Nyquist
WINDOW_SECONDS = 1.0  # s: one decision per second, as the seed
WINDOW_SAMPLES = int(SAMPLE_RATE * WINDOW_SECONDS)  # 16 000 samples
HOP_SECONDS = 1.0  # s: default hop between windows (--hop overlaps them)
MAX_HOP_WINDOWS = 4  # the longest hop, in windows
MIN_TAIL_SECONDS = 0.25  # s: a final partial window shorter than this is dropped (unless it is the only one)
SLICE_SAMPLES = 4096  # samples written to the ring between readiness checks (bounds its size)


@dataclass(frozen=True)
class Framing:
    """What a model reads: ``window`` samples at ``sample_rate`` Hz (from its card at run time),
    after ``context`` samples of the audio before the window (0 for a one-window model). The
    window is what a result is about; the context only informs it."""

    sample_rate: int = SAMPLE_RATE
    window: int = WINDOW_SAMPLES
    context: int = 0

    @property
    def input(self) -> int:
        """Samples per model input: context + window."""
        return self.context + self.window

    @property
    def window_seconds(self) -> float:
        return self.window / self.sample_rate

    def hop(self, hop_seconds: float) -> int:
        """Hop in samples for ``hop_seconds`` (s); see ``hop_samples``."""
        return hop_samples(hop_seconds, sample_rate=self.sample_rate, window=self.window)

    def seconds(self, samples: int) -> float:
        """Stream samples → seconds."""
        return samples / self.sample_rate


def hop_samples(hop_seconds: float, *, sample_rate: int = SAMPLE_RATE, window: int | None = None) -> int:
    """Hop in samples for ``hop_seconds`` (s); must be in (0, MAX_HOP_WINDOWS windows]."""
    window_s = (WINDOW_SAMPLES if window is None else window) / sample_rate
    if not (0 < hop_seconds <= window_s * MAX_HOP_WINDOWS):
        raise NeuroEarError(f"--hop must be more than 0 and at most {window_s * MAX_HOP_WINDOWS:g} s, got {hop_seconds:g}")
    return max(1, int(round(hop_seconds * sample_rate)))


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


class Framer:
    """Cuts a stream of mono samples into windows that start every ``hop`` samples.

    Window k covers samples [k·hop, k·hop + window); with ``context`` each window comes with
    the ``context`` samples before it (zeros before the stream began), as [context + window].
    The same framing is produced for any block sizes pushed in. ``finish()`` emits the last, zero-padded windows so that every sample
    is covered; a final window holding less than ``min_tail`` samples of new audio (default
    MIN_TAIL_SECONDS at ``sample_rate``) is dropped unless it is the only one.

    ``push(samples, drop_ending_before=n)`` counts windows ending before sample ``n`` in
    ``dropped`` without reading them (a live consumer that fell behind). Samples are held in a
    ring of ``window + SLICE_SAMPLES``: windows are cut after every slice written, so no window
    is ever overwritten before it is read.
    """

    def __init__(
        self,
        *,
        window: int = WINDOW_SAMPLES,
        hop: int = WINDOW_SAMPLES,
        sample_rate: int = SAMPLE_RATE,
        min_tail: int | None = None,
        context: int = 0,
    ) -> None:
        if hop <= 0 or window <= 0 or context < 0:
            raise ValueError("window and hop must be positive, context not negative")
        self.window = int(window)
        self.hop = int(hop)
        self.context = int(context)
        self.min_tail = int(MIN_TAIL_SECONDS * sample_rate) if min_tail is None else int(min_tail)
        self.ring = RingBuffer(self.context + self.window + SLICE_SAMPLES)
        self.reset()

    def reset(self) -> None:
        """Forget all audio; the next sample pushed is sample 0."""
        self.ring.reset()
        self.next_start = 0  # start sample of the next window to emit
        self.dropped = 0  # windows skipped by drop_ending_before

    @property
    def total(self) -> int:
        """Samples pushed so far."""
        return self.ring.total

    def push(self, samples: np.ndarray, *, drop_ending_before: int | None = None) -> list[tuple[int, np.ndarray]]:
        """Add mono samples; return the (start sample, window [window]) pairs now complete."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        out: list[tuple[int, np.ndarray]] = []
        for i in range(0, max(1, x.size), SLICE_SAMPLES):
            self.ring.write(x[i : i + SLICE_SAMPLES])
            while self.next_start + self.window <= self.ring.total:
                start = self.next_start
                self.next_start += self.hop
                if drop_ending_before is not None and start + self.window < drop_ending_before:
                    self.dropped += 1
                    continue
                out.append((start, self._read(start)))
        return out

    def _read(self, start: int, *, pad: bool = False) -> np.ndarray:
        """[context + window] samples ending at ``start + window``; zeros before sample 0."""
        lo = start - self.context
        if lo >= 0:
            return self.ring.read(lo, self.context + self.window, pad=pad)
        return np.concatenate([np.zeros(-lo, np.float32), self.ring.read(0, self.context + self.window + lo, pad=pad)])

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """Emit the remaining zero-padded windows (see the class docstring)."""
        out = []
        total = self.ring.total
        while self.next_start < total:
            covered_before = self.next_start - self.hop + self.window if self.next_start > 0 else 0
            new = total - max(self.next_start, covered_before)
            if self.next_start > 0 and new < self.min_tail:
                break
            out.append((self.next_start, self._read(self.next_start, pad=True)))
            self.next_start += self.hop
        return out


def windows(
    x: np.ndarray, *, hop: int = WINDOW_SAMPLES, window: int = WINDOW_SAMPLES, sample_rate: int = SAMPLE_RATE, context: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frame a whole mono signal: returns (starts [n] in samples, windows [n, context + window] float32)."""
    fr = Framer(window=window, hop=hop, sample_rate=sample_rate, context=context)
    pairs = fr.push(x) + fr.finish()
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros((0, context + window), dtype=np.float32)
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    return starts, np.stack([w for _, w in pairs])


__all__ = [
    "SAMPLE_RATE",
    "WINDOW_SECONDS",
    "WINDOW_SAMPLES",
    "HOP_SECONDS",
    "MIN_TAIL_SECONDS",
    "Framing",
    "Framer",
    "RingBuffer",
    "hop_samples",
    "windows",
]
