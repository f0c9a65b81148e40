"""Training losses for multi-label windows: plain BCE, and the asymmetric loss (ASL, Ridnik et al.,
ICCV 2021) that lets the many easy negatives of a window stop dominating its few positives.

Why ASL here: in mixtures the model names one instrument and misses the other, and the missed one's
probability is low (the ranking, not the threshold, limits the exact-set rate). With 13 labels and
one to three positives per window, BCE's gradient is mostly "push the absent instruments down".
ASL focuses the negative term on confident mistakes (``p ** gamma_neg``) and ignores negatives
already below ``clip``, so the positives' share of the gradient grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from neuroear.errors import NeuroEarError

LOSSES = ("bce", "asl")


@dataclass(frozen=True)
class LossConfig:
    """Which loss a run trains with; the gammas and clip apply to ``asl`` only."""

    kind: str = "bce"
    gamma_neg: float = 4.0  # focusing of the negative term: p ** gamma_neg (ASL's default)
    gamma_pos: float = 0.0  # focusing of the positive term: (1 - p) ** gamma_pos
    clip: float = 0.05  # negatives with p below this cost nothing (probability margin)

    def __post_init__(self) -> None:
        if self.kind not in LOSSES:
            raise NeuroEarError(f"unknown loss {self.kind!r}: choose one of {', '.join(LOSSES)}")
        if self.gamma_neg < 0 or self.gamma_pos < 0 or not 0 <= self.clip < 1:
            raise NeuroEarError(f"loss: gammas must be ≥ 0 and clip in [0, 1), got {self}")


def asymmetric_loss(logits: torch.Tensor, y: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """Mean ASL over logits [batch, n_labels] and 0/1 targets y [batch, n_labels] (a scalar).

    With gamma_neg = gamma_pos = clip = 0 it equals BCE-with-logits."""
    p = torch.sigmoid(logits)
    pos = torch.nn.functional.logsigmoid(logits)
    if cfg.gamma_pos:
        pos = pos * (1 - p) ** cfg.gamma_pos
    if cfg.clip:
        p_neg = (p - cfg.clip).clamp(min=0)
        neg = torch.log((1 - p_neg).clamp(min=1e-8))
    else:
        p_neg, neg = p, torch.nn.functional.logsigmoid(-logits)
    if cfg.gamma_neg:
        neg = neg * p_neg**cfg.gamma_neg
    return -(y * pos + (1 - y) * neg).mean()


def loss_function(cfg: LossConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A callable (logits [batch, n_labels], targets [batch, n_labels]) -> scalar tensor."""
    if cfg.kind == "bce":
        return torch.nn.BCEWithLogitsLoss()
    return lambda logits, y: asymmetric_loss(logits, y, cfg)


__all__ = ["LOSSES", "LossConfig", "asymmetric_loss", "loss_function"]
