"""The CQT front end inside the torch graph, so training and serving compute the same features.

nnAudio's ``CQT2010v2`` (downsampling CQT) exports into ONNX with the CNN and costs ~54 KB
of weights; ``CQT1992v2`` would cost ~11 MB and 3× the time for the same bins.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from neuroear.framing import SAMPLE_RATE, WINDOW_SECONDS


@dataclass(frozen=True)
class CQTConfig:
    """Front-end parameters: rate (Hz), hop (samples), lowest bin (Hz), bins, bins per octave.

    ``log_scale`` is the constant c of ``log1p(c·|C|)``: large enough that quiet partials
    matter, small enough not to amplify noise floor (probes here trained stably with 1000).
    ``norm`` is how each window is normalised after the log: ``"window"`` (zero mean, unit
    variance over the whole window: removes the recording gain), ``"pcen"`` (per-channel energy
    normalisation instead of the log: each bin divided by its own smoothed history, then the
    window standardised; see ``pcen``) or ``"none"``.
    """

    sample_rate: int = SAMPLE_RATE
    hop_length: int = 512  # samples (32 ms): 32 frames per window; 256 doubles the CNN cost, and probes here trained well at 512
    fmin: float = 32.70  # Hz, C1
    n_bins: int = 84  # 7 octaves: C1 .. B7 (3.95 kHz), below Nyquist at 16 kHz
    bins_per_octave: int = 12
    log_scale: float = 1000.0
    norm: str = "window"
    # Seconds of audio before the scored window that the model also reads (0: the window alone).
    # The output still scores the latest WINDOW_SECONDS; the CNN pools those frames apart from the past's.
    context_seconds: float = 0.0
    # Harmonic stacking (HCQT, Bittner et al. 2017): the network reads one channel per factor h,
    # the CQT shifted down by round(bins_per_octave·log2 h) bins, so that bin b of channel h holds
    # the h-th partial of bin b's pitch. A 3×3 convolution then sees a note's partials in one place
    # and can group them by source in a mixture, where otherwise they lie octaves apart on the
    # map. Empty: the CQT alone, one channel (every model up to v5).
    harmonics: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives a list; a tuple keeps the config hashable and comparable with a checkpoint's
        object.__setattr__(self, "harmonics", tuple(float(h) for h in self.harmonics))
        if any(h <= 0 for h in self.harmonics):
            raise ValueError(f"harmonics must be positive factors, got {self.harmonics}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["harmonics"] = list(self.harmonics)
        return d

    @property
    def channels(self) -> int:
        """Input channels of the CNN: one per harmonic, or 1 for the plain CQT."""
        return max(1, len(self.harmonics))

    @property
    def harmonic_shifts(self) -> tuple[int, ...]:
        """Bins each harmonic channel is shifted by (0 for h = 1; negative for subharmonics)."""
        return tuple(int(round(self.bins_per_octave * math.log2(h))) for h in self.harmonics)

    @property
    def window_samples(self) -> int:
        """Samples per scored window at ``sample_rate``: the framing a model built with this config reads."""
        return int(round(self.sample_rate * WINDOW_SECONDS))

    @property
    def input_samples(self) -> int:
        """Samples the network reads per window: the past it hears (``context_seconds``) and the window."""
        return int(round(self.sample_rate * (WINDOW_SECONDS + self.context_seconds)))


GEMM_ROWS = 64  # outputs per row of the anti-alias matrix product: H is [2·64 + K − 2, 64]


def _gemm_cqt_class():
    """nnAudio's CQT2010v2 with its anti-alias + decimate-by-2 step done as one matrix product.

    nnAudio runs that step as a strided 256-tap conv1d six times per window; ONNX Runtime
    executes it memory-bound, and it was 3.1 of 4.9 ms per window (benchmarks/README.md).
    Framing the padded signal into overlapping rows of 2M + K − 2 samples and multiplying by a
    fixed banded matrix H (the filter taps shifted by 2 per column) gives the same samples
    (max |Δp| 2.2e-5 on 319 real and example windows) 2.7–2.9× faster. Same weights, so a
    checkpoint trained with either runs with either.
    """
    import numpy as np
    from nnAudio.features import CQT2010v2
    from nnAudio.utils import broadcast_dim, downsampling_by_n, get_cqt_complex

    class GemmCQT2010v2(CQT2010v2):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            h = self.lowpass_filter.detach().cpu().numpy().reshape(-1)
            k, m = h.size, GEMM_ROWS
            big = np.zeros((2 * m + k - 2, m), dtype=np.float32)
            for j in range(m):
                big[2 * j : 2 * j + k, j] = h
            # one persistent buffer for every octave, so the exported file holds H once (a
            # non-persistent one is folded into a constant per octave: +0.6 MB)
            self.register_buffer("lowpass_gemm", torch.from_numpy(big))

        def _down2(self, x: torch.Tensor) -> torch.Tensor:
            k, m = int(self.lowpass_filter.shape[-1]), GEMM_ROWS
            pad = (k - 1) // 2
            t = int(x.shape[-1])  # plain int: the window length is fixed in the model file
            n_out = (t + 2 * pad - k) // 2 + 1
            rows = -(-n_out // m)
            more = -(-(k - 2) // (2 * m))
            n_blocks = rows + more
            xp = torch.nn.functional.pad(x.reshape(-1, t), (pad, n_blocks * 2 * m - t - pad))
            blocks = xp.reshape(-1, n_blocks, 2 * m)
            parts = [blocks[:, i : i + rows, :] for i in range(more)]
            parts.append(blocks[:, more : more + rows, : (k - 2) - (more - 1) * 2 * m])
            frames = torch.cat(parts, dim=2)  # [batch, rows, 2M + K − 2]
            return torch.matmul(frames, self.lowpass_gemm).reshape(-1, 1, rows * m)[:, :, :n_out]

        def forward(self, x: torch.Tensor, output_format=None, normalization_type: str = "librosa") -> torch.Tensor:  # noqa: ANN001
            x = broadcast_dim(x)
            if self.earlydownsample:
                x = downsampling_by_n(x, self.early_downsample_filter, self.downsample_factor)
            hop = self.hop_length
            cqt = get_cqt_complex(x, self.cqt_kernels_real, self.cqt_kernels_imag, hop, self.padding)
            x_down = x
            for _ in range(self.n_octaves - 1):
                hop = hop // 2
                x_down = self._down2(x_down)
                cqt = torch.cat((get_cqt_complex(x_down, self.cqt_kernels_real, self.cqt_kernels_imag, hop, self.padding), cqt), 1)
            cqt = cqt[:, -self.n_bins :, :] * self.downsample_factor
            cqt = cqt * torch.sqrt(self.lenghts.view(-1, 1, 1))  # librosa normalisation
            return torch.sqrt(cqt.pow(2).sum(-1))  # magnitude

    return GemmCQT2010v2


class CQTFrontEnd(nn.Module):
    """waveform [batch, samples] → log-CQT [batch, channels, n_bins, frames] float32 (channels: 1,
    or one per ``CQTConfig.harmonics``)."""

    def __init__(self, cfg: CQTConfig = CQTConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.cqt = _gemm_cqt_class()(
            sr=cfg.sample_rate,
            hop_length=cfg.hop_length,
            fmin=cfg.fmin,
            n_bins=cfg.n_bins,
            bins_per_octave=cfg.bins_per_octave,
            norm=True,
            pad_mode="constant",  # reflect padding triples the edge error of one-second chunks
            output_format="Magnitude",
            verbose=False,
        )

        self.shifts = cfg.harmonic_shifts  # fixed by the config: worked out once, not per window
        if cfg.norm == "pcen" and cfg.context_seconds:
            raise ValueError("PCEN's smoother is built for one window: no context_seconds with norm='pcen'")
        if cfg.norm == "pcen":
            frames = cfg.sample_rate // cfg.hop_length + 1  # frames in a one-second window
            self.register_buffer("pcen_smooth", pcen_smoother(frames, cfg.sample_rate, cfg.hop_length))
        elif cfg.norm not in ("window", "none"):
            raise ValueError(f"unknown CQT norm {cfg.norm!r}: window, pcen or none")

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mag = self.cqt(waveform)  # [batch, bins, frames]
        if self.cfg.norm == "pcen":
            x = pcen(self.cfg.log_scale * mag, self.pcen_smooth)
        else:
            x = torch.log1p(self.cfg.log_scale * mag)
        if self.cfg.norm in ("window", "pcen"):
            mean = x.mean(dim=(1, 2), keepdim=True)
            std = x.std(dim=(1, 2), keepdim=True)
            x = (x - mean) / (std + 1e-3)
        if self.shifts:
            return harmonic_stack(x, self.shifts)
        return x.unsqueeze(1)


def harmonic_stack(x: torch.Tensor, shifts: tuple[int, ...]) -> torch.Tensor:
    """[batch, bins, frames] → [batch, len(shifts), bins, frames]: channel i is x moved down by
    shifts[i] bins (up for a negative shift). Bins shifted in from beyond the CQT's range take the
    window's minimum — its quietest value, i.e. "nothing there" — rather than 0, which after
    standardisation is the window's mean level and would paint a false partial at the edge."""
    n_bins, n_frames = int(x.shape[1]), int(x.shape[2])  # plain ints: fixed in the model file
    floor = x.amin(dim=(1, 2), keepdim=True)
    chans = []
    for s in shifts:
        s = max(-n_bins, min(n_bins, s))
        if s == 0:
            chans.append(x)
        elif s > 0:
            chans.append(torch.cat([x[:, s:, :], floor.expand(-1, s, n_frames)], dim=1))
        else:
            chans.append(torch.cat([floor.expand(-1, -s, n_frames), x[:, : n_bins + s, :]], dim=1))
    return torch.stack(chans, dim=1)


PCEN_TIME_CONSTANT = 0.4  # s, librosa's default
PCEN_GAIN, PCEN_BIAS, PCEN_POWER, PCEN_EPS = 0.98, 2.0, 0.5, 1e-6  # librosa's defaults


def pcen_smoother(frames: int, sample_rate: int, hop_length: int) -> torch.Tensor:
    """[frames, frames] matrix W with M = E @ W.T the first-order IIR smoother of PCEN.

    librosa's smoother M[t] = (1 − b)·M[t−1] + b·E[t], started at steady state on the first
    frame (M[0] = E[0]; librosa's default starts as if the past were 1.0, which depends on the
    input's scale), unrolled over the fixed window as a lower-triangular matrix so the
    exported graph has no loop.
    """
    t_frames = PCEN_TIME_CONSTANT * sample_rate / hop_length
    b = ((1 + 4 * t_frames**2) ** 0.5 - 1) / (2 * t_frames**2)
    w = torch.zeros(frames, frames, dtype=torch.float64)
    for t in range(frames):
        w[t, 0] = (1 - b) ** t
        for k in range(1, t + 1):
            w[t, k] = b * (1 - b) ** (t - k)
    return w.float()


def pcen(energy: torch.Tensor, smoother: torch.Tensor) -> torch.Tensor:
    """Per-channel energy normalisation of [batch, bins, frames] (Wang et al. 2017).

    Each bin is divided by a power of its own smoothed past (automatic gain control per
    frequency), then root-compressed: a stationary recording-chain colouring cancels, onsets and
    changes stand out.
    """
    smooth = torch.matmul(energy, smoother.t())
    return (energy / (PCEN_EPS + smooth) ** PCEN_GAIN + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER
