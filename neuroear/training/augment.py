"""Augmentation that imitates rooms and microphones: gain, coloured noise at random SNR,
reverb, EQ tilt, band limits and soft clipping (the real dev set's guitar is distorted).

Two back ends with the same contract, ``f(x [n] float32, rng, *, strength, distort_p, rate) -> [n]``:
``augment`` (NumPy, what neuroear-v1 trained with) and ``LibraryAugment`` (audiomentations +
pyroomacoustics rooms, plus small pitch shifts and time stretches), chosen by
``training.data.MixConfig.augment_library``.
"""

from __future__ import annotations

import numpy as np

from neuroear import framing

SR = framing.SAMPLE_RATE  # Hz: the default training rate (a run augments at its own)


def rms(x: np.ndarray) -> np.floating:
    """Root mean square of [n] samples, as a numpy scalar of x's dtype (callers add their own floor)."""
    return np.sqrt(np.mean(x**2))


def coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    """Unit-RMS noise [n]: white (flat), pink (1/f power) or brown (1/f² power)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    spec *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[colour]
    x = np.fft.irfft(spec, n)
    return (x / (rms(x) + 1e-12)).astype(np.float32)


def _filter(x: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Random EQ tilt (±4 dB/octave) and band limits, applied as a smooth spectral gain."""
    n = x.size
    spec = np.fft.rfft(x)
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / rate), 20.0)
    gain = (f / 1000.0) ** (rng.uniform(-0.65, 0.65))
    if rng.random() < 0.3:  # low-pass: phone, cheap mic, distance
        fc = rng.uniform(2000, 7000)
        gain /= np.sqrt(1 + (f / fc) ** 8)
    if rng.random() < 0.3:  # high-pass: small speakers, rumble filters
        fc = rng.uniform(60, 400)
        gain /= np.sqrt(1 + (fc / f) ** 4)
    return np.fft.irfft(spec * gain, n).astype(np.float32)


def _reverb(x: np.ndarray, rng: np.random.Generator, rate: int) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (RT60 0.2–1.6 s), random wet mix."""
    rt60 = rng.uniform(0.2, 1.6)
    n_ir = int(min(rt60, 1.0) * rate)
    t = np.arange(n_ir) / rate
    ir = rng.standard_normal(n_ir).astype(np.float32) * np.exp(-6.9 * t / rt60).astype(np.float32)
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir**2)) + 1e-9
    nfft = 1 << int(np.ceil(np.log2(x.size + n_ir)))
    wet = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: x.size]
    mix = rng.uniform(0.1, 0.6)
    return ((1 - mix) * x + mix * wet * (rms(x) / (rms(wet) + 1e-9))).astype(np.float32)


def augment(
    x: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0, distort_p: float = 0.1, rate: int = SR
) -> np.ndarray:
    """Room/microphone augmentation of a segment [n] (float32) at ``rate`` Hz; returns float32 [n] in [-1, 1]."""
    if rng.random() < 0.5 * strength:
        x = _filter(x, rng, rate)
    if rng.random() < 0.4 * strength:
        x = _reverb(x, rng, rate)
    if rng.random() < distort_p:
        peak = np.abs(x).max() + 1e-9
        drive = rng.uniform(2.0, 25.0)
        x = np.tanh(drive * x / peak).astype(np.float32)
    level = rms(x) + 1e-9
    if rng.random() < 0.5 * strength:
        snr = rng.uniform(0.0, 40.0)
        colour = rng.choice(["white", "pink", "brown"])
        x = x + coloured_noise(x.size, rng, colour) * level * 10 ** (-snr / 20)
    return _random_peak_gain(x, rng)


def _random_peak_gain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale x to a random peak of −35 to −1 dBFS (recording levels vary that much); float32 in [-1, 1]."""
    peak = np.abs(x).max() + 1e-9
    x = x * (10 ** (rng.uniform(-35.0, -1.0) / 20) / peak)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


class LibraryAugment:
    """The same chain as ``augment`` built from audiomentations and pyroomacoustics.

    EQ (seven-band parametric), band limits, rooms simulated by pyroomacoustics (shoebox rooms
    of 3–14 m, RT60 0.15–1.2 s, source and microphone anywhere in the room: distance and
    direct-to-reverberant ratio vary, unlike the noise-tail reverb), tanh distortion, small pitch
    shifts and time stretches, coloured noise (white → brown, 0–40 dB SNR) and a random peak gain.
    Room impulse responses are drawn once into a bank (3 ms each) and reused, because a fresh
    simulation per window (audiomentations' RoomSimulator) costs ~260 ms.

    audiomentations draws from Python's ``random`` and NumPy's global generator: both are
    seeded here, so a run is reproducible when sampling is single-threaded (it is).
    """

    def __init__(self, seed: int, *, n_rooms: int = 96, rate: int = SR) -> None:
        import random

        import audiomentations as A
        import pyroomacoustics as pra

        self.rate = rate
        random.seed(seed)
        np.random.seed(seed % 2**32)
        rng = np.random.default_rng(seed)
        self.rirs: list[np.ndarray] = []
        for _ in range(n_rooms):
            dims = rng.uniform([3.0, 3.0, 2.4], [14.0, 11.0, 5.0])
            rt60 = rng.uniform(0.15, 1.2)
            try:
                e_abs, max_order = pra.inverse_sabine(rt60, dims)
            except ValueError:  # RT60 too long for so small a room
                continue
            room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(e_abs), max_order=min(max_order, 17))
            room.add_source(rng.uniform(0.4, dims - 0.4))
            room.add_microphone(rng.uniform(0.4, dims - 0.4))
            room.compute_rir()
            ir = np.asarray(room.rir[0][0], dtype=np.float32)
            ir = ir[int(np.argmax(np.abs(ir))) :][:rate]  # align the direct path: no extra delay
            self.rirs.append(ir / (np.sqrt(np.sum(ir**2)) + 1e-9))

        self._chains: dict[tuple[float, float], A.Compose] = {}  # one per (strength, distortion p)
        self.noise = A.AddColorNoise(min_snr_db=0.0, max_snr_db=40.0, min_f_decay=-6.0, max_f_decay=0.0, p=1.0)

    @staticmethod
    def _chain(k: float, dist: float):  # noqa: ANN205 (audiomentations.Compose)
        import audiomentations as A

        return A.Compose(
            [
                A.SevenBandParametricEQ(min_gain_db=-8.0, max_gain_db=8.0, p=0.5 * k),
                A.LowPassFilter(min_cutoff_freq=2000.0, max_cutoff_freq=7000.0, p=0.3 * k),
                A.HighPassFilter(min_cutoff_freq=60.0, max_cutoff_freq=400.0, p=0.3 * k),
                A.TanhDistortion(min_distortion=0.3, max_distortion=0.9, p=dist),
                A.PitchShift(min_semitones=-1.0, max_semitones=1.0, p=0.15 * k),
                A.TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=True, p=0.15 * k),
            ]
        )

    def __call__(
        self, x: np.ndarray, rng: np.random.Generator, *, strength: float = 1.0, distort_p: float = 0.1, rate: int = SR
    ) -> np.ndarray:
        """Same contract as ``augment``: float32 [n] → float32 [n] in [-1, 1] (``rate`` must be the bank's)."""
        if rate != self.rate:
            raise ValueError(f"room bank simulated at {self.rate} Hz, audio at {rate} Hz")
        key = (round(strength, 3), round(distort_p, 3))
        if key not in self._chains:
            self._chains[key] = self._chain(strength, distort_p)
        x = self._chains[key](samples=np.ascontiguousarray(x, dtype=np.float32), sample_rate=rate)
        if self.rirs and rng.random() < 0.4 * strength:
            from scipy.signal import fftconvolve

            ir = self.rirs[int(rng.integers(len(self.rirs)))]
            wet = fftconvolve(x, ir)[: x.size]
            x = (wet * (rms(x) / (rms(wet) + 1e-9))).astype(np.float32)
        if rng.random() < 0.5 * strength:
            x = self.noise(samples=x.astype(np.float32), sample_rate=rate)
        return _random_peak_gain(x, rng)
