"""A seed-style pipeline for timing comparisons: librosa CQT (dB) at 44.1 kHz → a 13.5 M-parameter CNN.

Reconstructed from the seed project's description, random weights (only its cost matters):

- front end: ``librosa.cqt`` of each one-second window at 44.1 kHz, hop 256 (173 frames), 108 bins
  (9 octaves × 12) from 29.1 Hz, magnitude → dB (``amplitude_to_db(ref=np.max)``);
- CNN, all convolutions 3×3: conv 1→16 (BN, ReLU); four blocks of two conv→BN→ReLU at 32, 64, 128,
  256 channels, each followed by 2×2 max-pool; a fifth pair at 1024 channels; global max pool;
  FC 1024→512 (ReLU) → 10 logits (sigmoid), run by torch in eager mode.
"""

from __future__ import annotations

import numpy as np

SEED_RATE = 44_100  # Hz
SEED_HOP = 256  # samples
SEED_FMIN = 29.1  # Hz
SEED_BINS = 108
SEED_WINDOW = SEED_RATE  # samples: one second


def seed_cqt_db(y: np.ndarray) -> np.ndarray:
    """One window [44100] float32 → dB CQT [108, 173] float32 (librosa, as the seed did per window)."""
    import librosa

    c = np.abs(librosa.cqt(y, sr=SEED_RATE, hop_length=SEED_HOP, fmin=SEED_FMIN, n_bins=SEED_BINS))
    return librosa.amplitude_to_db(c, ref=np.max).astype(np.float32)


def build_seed_cnn(n_labels: int = 10):
    """The seed-style CNN (eval mode, random weights). Input [batch, 1, 108, 173] → probabilities."""
    import torch
    from torch import nn

    def cbr(c_in: int, c_out: int) -> list:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

    layers: list = cbr(1, 16)
    c_in = 16
    for c in (32, 64, 128, 256):
        layers += cbr(c_in, c) + cbr(c, c) + [nn.MaxPool2d(2)]
        c_in = c
    layers += cbr(256, 1024) + cbr(1024, 1024)

    class SeedCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.fc = nn.Sequential(nn.Linear(1024, 512), nn.ReLU(inplace=True), nn.Linear(512, n_labels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.features(x)
            return torch.sigmoid(self.fc(torch.amax(h, dim=(2, 3))))

    torch.manual_seed(0)
    return SeedCNN().eval()


class SeedPipeline:
    """windows at 44.1 kHz [n, 44100] → probabilities [n, 10]: librosa CQT per window, CNN on batches."""

    def __init__(self, *, batch: int = 1) -> None:
        import torch

        self.torch = torch
        self.net = build_seed_cnn()
        self.batch = batch
        self.params = sum(p.numel() for p in self.net.parameters())

    def features(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([seed_cqt_db(w) for w in windows])[:, None]

    def cnn(self, feats: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = [self.net(self.torch.from_numpy(feats[i : i + self.batch])).numpy() for i in range(0, len(feats), self.batch)]
        return np.concatenate(out)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        return self.cnn(self.features(windows))


def load_windows_44k(path: str, *, hop_seconds: float = 1.0) -> np.ndarray:
    """Seed-style file loading: ``librosa.load`` at 44.1 kHz mono, cut into one-second windows [n, 44100]."""
    import librosa

    y, _ = librosa.load(path, sr=SEED_RATE, mono=True)
    hop = int(hop_seconds * SEED_RATE)
    n = max(1, 1 + (len(y) - SEED_WINDOW) // hop) if len(y) >= SEED_WINDOW else 1
    out = np.zeros((n, SEED_WINDOW), dtype=np.float32)
    for i in range(n):
        seg = y[i * hop : i * hop + SEED_WINDOW]
        out[i, : seg.size] = seg
    return out
