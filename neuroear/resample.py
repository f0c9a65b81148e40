"""Resampling to the model rate without look-ahead: a causal anti-alias FIR then soxr.

Used by file decoding (``audio.stream``) and live capture (``live.streamer``) alike, so both see
the same windows. ``out_rate`` defaults to the build framing's rate; the runtime passes the model's.
"""

from __future__ import annotations

import numpy as np

from neuroear.framing import SAMPLE_RATE

RESAMPLE_PASS_HZ = 4_400.0  # Hz kept flat: the CQT's top bin (3.95 kHz) and its bandwidth
RESAMPLE_PASS_FRACTION = 0.45  # of out_rate: the pass band of a model rate too low for RESAMPLE_PASS_HZ
RESAMPLE_ATTEN_DB = 70.0  # dB of anti-alias attenuation where content would fold below RESAMPLE_PASS_HZ
_FIR_ROWS = 256  # outputs per row of the FIR's matrix product


def antialias_fir(in_rate: int, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Kaiser-windowed-sinc low-pass taps [odd n] for decimating ``in_rate`` → ``out_rate`` (Hz).

    Flat to RESAMPLE_PASS_HZ, ≥ RESAMPLE_ATTEN_DB down from the frequency that folds onto it
    (out_rate − RESAMPLE_PASS_HZ) or Nyquist: 29 taps at 44.1 kHz, 31 at 48 kHz. What lies
    between (4.4 kHz to the fold) may alias, but only above 4.4 kHz, where the model does not look.
    A model rate below 9.8 kHz keeps RESAMPLE_PASS_FRACTION × out_rate flat instead.
    """
    nyq = in_rate / 2.0
    pass_hz = min(RESAMPLE_PASS_HZ, RESAMPLE_PASS_FRACTION * out_rate)
    stop = min(out_rate - pass_hz, nyq)
    width = (stop - pass_hz) / nyq  # fraction of Nyquist
    a = RESAMPLE_ATTEN_DB
    n = int(np.ceil((a - 7.95) / (2.285 * np.pi * width) + 1)) | 1  # Kaiser's estimate (scipy.signal.kaiserord)
    beta = 0.1102 * (a - 8.7)
    cutoff = (pass_hz + stop) / 2.0 / nyq
    t = np.arange(n) - (n - 1) / 2.0
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(n, beta)
    return (h / h.sum()).astype(np.float32)


class Resampler:
    """Streaming mono resampler ``in_rate`` → ``out_rate`` (Hz) that never waits for the future.

    Downsampling (every capture rate above 16 kHz): a causal anti-alias FIR (``antialias_fir``,
    computed as one matrix product per call) then soxr's "QQ" cubic interpolation, which needs
    no look-ahead. Each output sample is available as soon as the input sample at its time has
    arrived; the content is delayed by the FIR's group delay instead (0.32 ms at 44.1 and 48 kHz).
    soxr's HQ filter holds back ~21 ms, which a live window had to wait for (benchmarks/README.md).
    Upsampling (8–15 kHz sources, files only in practice) uses soxr HQ.

    The output is the same, within float rounding (≤ 1e-7), for any split of the input into
    chunks, so live capture and file analysis see the same windows.
    """

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE) -> None:
        import soxr

        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.taps = np.zeros(1, np.float32)
        self._matrix: np.ndarray | None = None
        if self.in_rate > self.out_rate:
            self.taps = antialias_fir(self.in_rate, self.out_rate)
            k, m = self.taps.size, _FIR_ROWS
            self._matrix = np.zeros((m + k - 1, m), np.float32)
            for j in range(m):
                self._matrix[j : j + k, j] = self.taps[::-1]
            self._hist = np.zeros(k - 1, np.float32)
            self._soxr = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="QQ")
        else:
            self._soxr = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    @property
    def delay_seconds(self) -> float:
        """Group delay added to the content (s)."""
        return (self.taps.size - 1) / 2.0 / self.in_rate

    def _fir(self, x: np.ndarray) -> np.ndarray:
        k, m = self.taps.size, _FIR_ROWS
        z = np.concatenate([self._hist, np.asarray(x, dtype=np.float32)])
        self._hist = z[z.size - (k - 1) :].copy()
        n_out = z.size - (k - 1)
        if n_out <= 0:
            return np.zeros(0, np.float32)
        rows = -(-n_out // m)
        zp = np.zeros(rows * m + k - 1, np.float32)
        zp[: z.size] = z
        frames = np.lib.stride_tricks.sliding_window_view(zp, m + k - 1)[::m]  # [rows, m + k − 1], no copy
        return (frames @ self._matrix).reshape(-1)[:n_out]

    def resample_chunk(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """float32 [n] at in_rate → float32 [m] at out_rate; ``last=True`` flushes the end."""
        if self._matrix is not None:
            x = self._fir(x)
        return np.asarray(self._soxr.resample_chunk(np.asarray(x, dtype=np.float32), last=last), dtype=np.float32)


def resample(x: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 [samples] from ``from_rate`` to ``to_rate`` (Hz), as ``Resampler``."""
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    return Resampler(from_rate, to_rate).resample_chunk(np.asarray(x, dtype=np.float32), last=True)


__all__ = ["RESAMPLE_PASS_HZ", "RESAMPLE_ATTEN_DB", "Resampler", "antialias_fir", "resample"]
