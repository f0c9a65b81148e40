"""The CNN and the network that is exported, ``InstrumentNet`` (CQT front end + CNN; sigmoid on export).

(The ONNX Runtime side that runs the exported file is ``neuroear.infer.Detector``.)

The CNN follows the seed's family — blocks of conv→BN→ReLU with max pooling — made small
enough to run in ~1 ms per window and to fit a model file under 2 MB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from neuroear.training.features import CQTConfig, CQTFrontEnd


@dataclass(frozen=True)
class NetConfig:
    """CNN shape: output channels per stage (each stage: ``convs`` × conv3×3→BN→ReLU, then 2×2
    max-pool except after the last), dropout before the classifier, and whether blocks add a
    residual (1×1-projected) shortcut — the seed's plain-vs-residual question.

    ``spec_mask`` > 0 turns on SpecAugment-style masking in training only: two bands of up to
    ``spec_mask`` CQT bins and two spans of up to ``spec_mask // 2`` frames per window are set
    to the window mean (0 after standardisation). It is not part of the exported graph."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    convs: int = 2
    dropout: float = 0.3
    residual: bool = False
    spec_mask: int = 0
    # Per-instrument attention pooling beside the mean/max head: each instrument scores every
    # position of the last feature map (register × time) and weighs them by its own softmax, so a
    # quiet instrument in one register is not averaged away by a loud one in another. Its scores
    # start at zero, so a checkpoint without it starts the same function (``train._load_init``).
    attention: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        """Inverse of ``to_dict`` (a config.json or checkpoint entry): JSON's list back to a tuple."""
        return cls(**{**d, "channels": tuple(d["channels"])})


class Block(nn.Module):
    """``convs`` × (conv3×3 → BN → ReLU), optionally with a residual shortcut."""

    def __init__(self, c_in: int, c_out: int, *, convs: int = 1, residual: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            if i < convs - 1 or not residual:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut is not None:
            y = torch.relu(y + self.shortcut(x))
        return y


class CNN(nn.Module):
    """log-CQT [batch, in_channels, bins, frames] → logits [batch, n_labels] (``in_channels`` > 1
    for a harmonic-stacked front end, ``CQTConfig.harmonics``).

    With ``latest`` < 1 the input holds context before the scored window: the last ``latest``
    fraction of the feature map's time positions are pooled (mean and max) for the window, the
    earlier ones averaged into one context vector beside them, so the past informs but does not
    dilute the decision about the latest second."""

    def __init__(self, n_labels: int, cfg: NetConfig = NetConfig(), *, latest: float = 1.0, in_channels: int = 1) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        c_in = in_channels
        for i, c in enumerate(cfg.channels):
            stages.append(Block(c_in, c, convs=cfg.convs, residual=cfg.residual))
            if i < len(cfg.channels) - 1:
                stages.append(nn.MaxPool2d(2))
            c_in = c
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(cfg.dropout)
        self.latest = float(latest)
        # mean and max pooling together: mean for sustained tones, max for short attacks
        self.head = nn.Linear((2 if self.latest >= 1.0 else 3) * c_in, n_labels)
        self.spec_mask = cfg.spec_mask
        self.att: nn.Conv2d | None = None
        if cfg.attention:
            # channels [0, n): each instrument's evidence per position; [n, 2n): its attention logits
            self.att = nn.Conv2d(c_in, 2 * n_labels, 1)
            with torch.no_grad():
                self.att.weight[:n_labels].zero_()
                self.att.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.spec_mask > 0:
            x = spec_mask(x, self.spec_mask, max(1, self.spec_mask // 2))
        h = self.features(x)
        if self.latest >= 1.0:
            pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        else:
            t = int(h.shape[-1])  # plain int: the input length is fixed in the model file
            k = max(1, min(t - 1, int(round(t * self.latest))))
            now, past = h[..., t - k :], h[..., : t - k]
            pooled = torch.cat([now.mean(dim=(2, 3)), now.amax(dim=(2, 3)), past.mean(dim=(2, 3))], dim=1)
            h = now
        out = self.head(self.dropout(pooled))
        if self.att is not None:
            a = self.att(h).flatten(2)  # [batch, 2 n_labels, positions]; no dropout: it would skew the softmax
            score, logit = a.chunk(2, dim=1)
            out = out + (score * torch.softmax(logit, dim=-1)).sum(dim=-1)
        return out


def spec_mask(x: torch.Tensor, max_bins: int, max_frames: int, masks: int = 2) -> torch.Tensor:
    """Zero ``masks`` random bands of ≤ ``max_bins`` bins and spans of ≤ ``max_frames`` frames
    per example of x [batch, 1, bins, frames] (a new tensor; x is left alone)."""
    b, _, n_bins, n_frames = x.shape
    keep = torch.ones(b, 1, n_bins, n_frames, dtype=torch.bool, device=x.device)
    for size, axis, n in ((max_bins, 2, n_bins), (max_frames, 3, n_frames)):
        idx = torch.arange(n, device=x.device).view(1, -1)
        for _ in range(masks):
            width = torch.randint(0, size + 1, (b, 1), device=x.device)
            start = (torch.rand(b, 1, device=x.device) * (n - width + 1)).long()
            hit = (idx >= start) & (idx < start + width)  # [batch, n]
            keep &= ~(hit.view(b, 1, n, 1) if axis == 2 else hit.view(b, 1, 1, n))
    return x * keep


class InstrumentNet(nn.Module):
    """waveform [batch, samples] in [-1, 1] → logits, or probabilities with ``probs=True``.

    ``forward`` returns logits (for BCE-with-logits in training); ``export`` wraps it in
    ``WithSigmoid`` so the ONNX graph outputs probabilities.
    """

    def __init__(self, labels: tuple[str, ...], cqt: CQTConfig = CQTConfig(), net: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.labels = tuple(labels)
        self.cqt_cfg = cqt
        self.net_cfg = net
        self.frontend = CQTFrontEnd(cqt)
        self.cnn = CNN(len(labels), net, latest=cqt.window_samples / cqt.input_samples, in_channels=cqt.channels)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.frontend(waveform))


class WithSigmoid(nn.Module):
    """The graph that is exported: waveform → probabilities."""

    def __init__(self, net: InstrumentNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(waveform))


def n_params(module: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


