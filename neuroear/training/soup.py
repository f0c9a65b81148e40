"""Weight averaging of fine-tunes that share one start ("model soup", Wortsman et al. 2022).

Fine-tunes of one checkpoint with different seeds land in one basin of the loss, so the mean of
their weights is a model of the same shape and cost whose error is usually at or below the mean
of theirs: a way to spend several seeds on one shipped file without picking the seed that scored
best on a dev set. BatchNorm's running statistics are averaged like the weights (the ingredients
saw the same data through the same start). The soup's thresholds are calibrated afresh, as
training calibrates its own: on the validation split of the first ingredient's recipe (held-out
renders and real-train files, mixed like training; never the dev set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from neuroear.errors import NeuroEarError
from neuroear.training import data as D
from neuroear.training.export import load_checkpoint
from neuroear.training.train import VALIDATION_DATA, TrainConfig, TrainResult, calibrate, load_clips, save_checkpoint, validation_windows


def average_state_dicts(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The entry-wise mean of state dicts with the same keys and shapes; integer entries (BatchNorm's
    step counters) are taken from the first. Raises NeuroEarError on any mismatch."""
    if not states:
        raise NeuroEarError("a soup needs at least one checkpoint")
    keys = list(states[0])
    out: dict[str, torch.Tensor] = {}
    for i, s in enumerate(states[1:], start=2):
        if list(s) != keys:
            raise NeuroEarError(f"checkpoint {i} has other weights than checkpoint 1 ({sorted(set(s) ^ set(keys))[:3]}…)")
    for k in keys:
        ts = [s[k] for s in states]
        if any(t.shape != ts[0].shape for t in ts):
            raise NeuroEarError(f"{k}: shapes differ across checkpoints ({[tuple(t.shape) for t in ts]})")
        out[k] = torch.stack([t.double() for t in ts]).mean(0).to(ts[0].dtype) if ts[0].is_floating_point() else ts[0].clone()
    return out


def soup(
    checkpoints: Sequence[Path],
    out: Path,
    *,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
    clips: tuple[list[D.Clip], list[D.Clip]] | None = None,
) -> TrainResult:
    """Average ``checkpoints`` (same labels, front end and net; see module doc), calibrate the
    mean's thresholds on the first recipe's validation windows and save it as a training
    checkpoint at ``out`` (exportable with ``neuroear export``)."""
    loaded = [load_checkpoint(Path(p)) for p in checkpoints]
    model, first = loaded[0]
    for p, (net, _) in zip(checkpoints[1:], loaded[1:]):
        for what, a, b in (("labels", net.labels, model.labels), ("front end", net.cqt_cfg, model.cqt_cfg)):
            if a != b:
                raise NeuroEarError(f"{p}: its {what} differ from {checkpoints[0]}'s; only fine-tunes of one model can be averaged")
    try:  # the net's shape: the same weights, entry by entry (dropout and other training-only settings may differ)
        mean = average_state_dicts([net.state_dict() for net, _ in loaded])
    except NeuroEarError as exc:
        raise NeuroEarError(f"{exc}; only fine-tunes of one model can be averaged") from None
    model.load_state_dict(mean)
    cfg = TrainConfig.from_dict(first["config"])
    _, val_clips = clips if clips is not None else load_clips(cfg, cache)
    val_x, val_y = validation_windows(cfg, val_clips)
    thresholds, val = calibrate(model, val_x, val_y, cfg.labels, data=f"{VALIDATION_DATA}; the first ingredient's recipe")
    log(f"soup of {len(loaded)}: validation macro F1 {val['calibrated']['macro']['f1']:.3f} (calibrated thresholds)")
    ingredients = [{"checkpoint": str(p), "seed": ck["config"].get("seed"), "seconds": round(float(ck.get("seconds", 0.0)), 1)} for p, (_, ck) in zip(checkpoints, loaded)]
    result = TrainResult(model, thresholds, val, [], sum(i["seconds"] for i in ingredients), out.parent)
    # the card's training record: the first recipe, with the ingredients that were averaged
    save_checkpoint(result, cfg, out, extra={"soup": ingredients})
    return result


__all__ = ["average_state_dicts", "soup"]
