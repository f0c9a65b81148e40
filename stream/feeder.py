"""Real-time writers for a PulseAudio pipe-source FIFO (the virtual microphone of virtual-mic.sh).

The pipe source has no clock of its own: with no writer, a recorder's blocking read spins for
ever. So a feeder opens the FIFO non-blocking before the recorder starts, writes exactly
``rate`` samples per second of wall time until after it stops, and drops what PulseAudio does not
drain beyond half a second, as a live microphone would. Used by ``soak.py`` and the device tests.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np


class FifoFeeder:
    """Writes s16le mono PCM into ``fifo`` at real-time pace from a thread, never blocking.

    Subclasses say what to play in ``_next``. Counters: ``produced`` samples generated, ``written``
    bytes accepted by the FIFO, ``dropped_bytes`` discarded undrained, ``broken`` once the reader
    went away (EPIPE). With ``log_writes`` every write is logged in ``writes`` as (first sample
    index, samples, monotonic time), to time when a given sample went in.
    """

    TICK = 0.005  # s between writes

    def __init__(self, fifo: Path, rate: int, *, log_writes: bool = False) -> None:
        self.fifo, self.rate = fifo, rate
        self.produced = 0
        self.written = 0
        self.dropped_bytes = 0
        self.broken = False
        self.log_writes = log_writes
        self.writes: list[tuple[int, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fifo-feeder", daemon=True)

    def start(self) -> "FifoFeeder":
        self._fd = os.open(str(self.fifo), os.O_WRONLY | os.O_NONBLOCK)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self._fd)

    def _next(self, n: int) -> np.ndarray:
        """The next ``n`` samples to play: int16 [n]. Silence here."""
        return np.zeros(n, dtype=np.int16)

    def write_time(self, sample: int, *, timeout: float = 5.0) -> float:
        """Monotonic time at which FIFO sample index ``sample`` was written (needs ``log_writes``).

        Waits up to ``timeout`` s for it: ``play()`` returns once a clip is queued into the pending
        bytes, which a loaded machine may write a few ticks later. KeyError if it never is (dropped).
        """
        deadline = time.monotonic() + timeout
        while True:
            for first, n, t in reversed(self.writes):
                if first <= sample < first + n:
                    return t
            if time.monotonic() >= deadline or self.broken:
                raise KeyError(sample)
            time.sleep(0.002)

    def _run(self) -> None:
        t0 = time.monotonic()
        pending, pending_start = b"", 0
        keep = self.rate  # bytes: half a second of s16 mono
        while not self._stop.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            if due > self.produced:
                if not pending:
                    pending_start = self.produced
                pending += self._next(due - self.produced).astype("<i2").tobytes()
                self.produced = due
            if pending:
                try:
                    n = os.write(self._fd, pending) & ~1
                except BlockingIOError:
                    n = 0
                except OSError:  # EPIPE: the source went away
                    self.broken = True
                    return
                if n:
                    self.written += n
                    if self.log_writes:
                        self.writes.append((pending_start, n // 2, time.monotonic()))
                    pending, pending_start = pending[n:], pending_start + n // 2
            if len(pending) > keep:  # undrained: drop the oldest, like a live mic
                cut = len(pending) - keep
                self.dropped_bytes += cut
                pending, pending_start = pending[cut:], pending_start + cut // 2
            time.sleep(self.TICK)


class LoopFeeder(FifoFeeder):
    """Plays ``pcm`` (s16le mono bytes) over and over."""

    def __init__(self, fifo: Path, rate: int, pcm: bytes, *, log_writes: bool = False) -> None:
        super().__init__(fifo, rate, log_writes=log_writes)
        self.pcm = np.frombuffer(pcm, dtype="<i2")
        self._pos = 0

    def _next(self, n: int) -> np.ndarray:
        idx = (self._pos + np.arange(n)) % self.pcm.size
        self._pos = int((self._pos + n) % self.pcm.size)
        return self.pcm[idx]


class ClipFeeder(FifoFeeder):
    """Silence, except for clips queued with ``play``; logs every write so tests can time samples."""

    def __init__(self, fifo: Path, rate: int) -> None:
        super().__init__(fifo, rate, log_writes=True)
        self._queue: list[list] = []  # [samples left, started?]
        self._lock = threading.Lock()
        self.clip_starts: list[int] = []

    def play(self, samples: np.ndarray) -> int:
        """Queue a clip (float32 at the mic's rate); returns the FIFO sample where it begins, once it does."""
        with self._lock:
            n = len(self.clip_starts) + len(self._queue)
            self._queue.append([np.asarray(samples, dtype=np.float32), False])
        while len(self.clip_starts) <= n:
            time.sleep(0.002)
        return self.clip_starts[n]

    def quiet(self, seconds: float) -> None:
        """Drop whatever is queued and let ``seconds`` of silence through."""
        with self._lock:
            self._queue.clear()
        time.sleep(seconds)

    def _next(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        filled = 0
        with self._lock:
            while self._queue and filled < n:
                item = self._queue[0]
                if not item[1]:
                    item[1] = True
                    self.clip_starts.append(self.produced + filled)
                take = min(n - filled, item[0].size)
                out[filled : filled + take] = item[0][:take]
                filled += take
                item[0] = item[0][take:]
                if not item[0].size:
                    self._queue.pop(0)
        return (np.clip(out, -1, 1) * 32767).astype(np.int16)
