"""The training loop: BCE-with-logits (or the asymmetric loss of ``losses``), Adam by default, an EMA
of the weights, thresholds calibrated on a validation split (rendered + real-train held out, never
the dev set).

Everything that decides the result is in ``TrainConfig``, saved with every checkpoint and
in the exported model card, so ``neuroear train --config run/config.json`` reproduces it.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from neuroear import evaluate as E
from neuroear.errors import NeuroEarError
from neuroear.training import data as D
from neuroear.training.features import CQTConfig
from neuroear.training.losses import LossConfig, loss_function
from neuroear.training.model import InstrumentNet, NetConfig, n_params

LABELS = (
    "accordion", "bass", "cello", "clarinet", "drums", "flute", "guitar", "organ",
    "piano", "saxophone", "trumpet", "violin", "voice",
)  # fmt: skip
OPTIMIZERS = ("sgd", "nesterov", "adagrad", "adadelta", "adam")
VALIDATION_DATA = "validation split: held-out rendered clips + held-out real-train files, augmented and mixed like training"
CARD_NOTES = ("seconds", "soup")  # not settings: how long it took, which runs a soup averaged


@dataclass(frozen=True)
class TrainConfig:
    """A training run: data, model shape, optimiser and budget (steps of ``batch`` windows)."""

    labels: tuple[str, ...] = LABELS
    real: tuple[str, ...] = ()  # folders / CSV manifests of real recordings (folder name = label)
    rendered: tuple[str, ...] = ()  # render manifest.jsonl files
    steps: int = 3000
    batch: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None = torch's default for the optimiser (the seed's study)
    schedule: str = "cosine"  # "cosine" decays to 5 % of lr; "constant" keeps torch defaults
    weight_decay: float = 0.0
    ema: float = 0.998  # weight averaging: one checkpoint stands for the last ~500 steps
    seed: int = 0
    val_windows: int = 1200
    val_every: int = 250
    threads: int = 2
    init: str | None = None  # checkpoint to start from (fine-tuning); same front end and net, labels a subset
    # a plain checkpoint starting a harmonic-stacked net: each new channel's first-conv taps start
    # random with this norm relative to the h = 1 taps of the same filter. 0 starts them at zero
    # (the checkpoint's own function), which a fine-tune then left unused: random taps make the
    # net take the new channels into account from the first step
    harmonic_init: float = 0.0
    cqt: CQTConfig = CQTConfig()
    net: NetConfig = NetConfig()
    mix: D.MixConfig = D.MixConfig()
    loss: LossConfig = LossConfig()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["net"] = self.net.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        for note in CARD_NOTES:  # a card's training record carries these beside the recipe
            d.pop(note, None)
        d["labels"] = tuple(d.get("labels", LABELS))
        d["real"] = tuple(d.get("real", ()))
        d["rendered"] = tuple(d.get("rendered", ()))
        if "cqt" in d:
            d["cqt"] = CQTConfig(**d["cqt"])
        if "net" in d:
            d["net"] = NetConfig.from_dict(d["net"])
        if "mix" in d:
            d["mix"] = D.MixConfig.from_dict(d["mix"])
        if "loss" in d:
            d["loss"] = LossConfig(**d["loss"])
        return cls(**d)


def make_optimizer(name: str, params, lr: float | None, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The seed's five optimisers with torch defaults unless ``lr`` is given."""
    kw = {} if lr is None else {"lr": lr}
    if name == "sgd":
        return torch.optim.SGD(params, lr=kw.get("lr", 0.01), weight_decay=weight_decay)
    if name == "nesterov":
        return torch.optim.SGD(params, lr=kw.get("lr", 0.01), momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adagrad":
        return torch.optim.Adagrad(params, weight_decay=weight_decay, **kw)
    if name == "adadelta":
        return torch.optim.Adadelta(params, weight_decay=weight_decay, **kw)
    if name == "adam":
        return torch.optim.Adam(params, weight_decay=weight_decay, **kw)
    raise NeuroEarError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


@dataclass
class TrainResult:
    """What a run produced: the EMA model, calibrated thresholds and validation scores."""

    model: InstrumentNet
    thresholds: dict[str, float]
    val: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    out_dir: Path | None = None


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.state_dict().values(), model.state_dict().values()):
            if pe.dtype.is_floating_point:
                pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
            else:
                pe.copy_(pm)


def _predict(model: torch.nn.Module, x: np.ndarray, batch: int = 128) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.sigmoid(model(torch.from_numpy(x[i : i + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _widens(old: CQTConfig, new: CQTConfig) -> bool:
    """Whether ``new`` hears everything ``old`` does, bin for bin and frame for frame, and more
    above it: a higher (or equal) rate, at least as many bins from the same lowest bin at the
    same bins per octave, the same frame duration (hop / rate) and the same log and norm."""
    if new == old:
        return False
    same_frames = old.hop_length * new.sample_rate == new.hop_length * old.sample_rate
    same_rest = replace(new, sample_rate=old.sample_rate, hop_length=old.hop_length, n_bins=old.n_bins) == old
    return same_frames and same_rest and new.sample_rate >= old.sample_rate and new.n_bins >= old.n_bins


def _load_init(model: InstrumentNet, cfg: TrainConfig) -> None:
    """Start from ``cfg.init``'s weights; its front end and net shape must be this run's.

    Its labels must be this run's or a subset of them: the classifier rows of the labels it
    knows are copied, the rows of new labels keep their fresh initialisation (how drums and
    bass joined an eleven-instrument model). A one-window checkpoint may start a context model
    (same front end but ``context_seconds``): the convolutions carry over unchanged, and the
    classifier's columns for the past's summary start at zero, so the first step decides on
    the latest second alone. A checkpoint may also start a model whose front end *widens* its own
    (a higher rate and more bins on top of the same lowest bin, bins per octave, frame duration,
    log and norm; see ``_widens``): the CQT bins it knew keep their meaning and the CNN's
    convolutions and pooling do not depend on the bin count, so its CNN carries over and only the
    front end is this run's own. This is how a 16 kHz model starts a 24 kHz one. A plain-CQT checkpoint
    may start a harmonic-stacked net (``CQTConfig.harmonics`` holding 1.0): its first convolution's
    taps go to the h = 1 channel, the others' start at zero, so the first step computes the
    checkpoint's own function (or, with ``harmonic_init``, random at that norm relative to h = 1). A checkpoint
    without an attention head may start a net with one (``NetConfig.attention``): the head's
    scores start at zero, so the first step computes the checkpoint's own function."""
    from neuroear.training.export import load_checkpoint

    start, _ = load_checkpoint(Path(cfg.init))  # built from the checkpoint's own labels and configs

    def shape(net: NetConfig) -> tuple:  # what the weights depend on (dropout, spec_mask do not)
        return tuple(net.channels), net.convs, net.residual

    gains_context = start.cqt_cfg.context_seconds == 0 and cfg.cqt.context_seconds > 0
    # a plain-CQT checkpoint may start a harmonic-stacked net: its first convolution reads the
    # h = 1 channel, which is the CQT it knew, and the other channels' taps start at zero
    gains_harmonics = not start.cqt_cfg.harmonics and 1.0 in cfg.cqt.harmonics
    # the same front end, or the same one that now also reads the past or stacks harmonics
    ours = replace(cfg.cqt, context_seconds=0.0) if gains_context else cfg.cqt
    ours = replace(ours, harmonics=()) if gains_harmonics else ours
    widens = _widens(start.cqt_cfg, ours)
    same_front = start.cqt_cfg == ours or widens
    if not set(start.labels) <= set(cfg.labels) or not same_front or shape(start.net_cfg) != shape(cfg.net):
        raise NeuroEarError(
            f"{cfg.init}: checkpoint's front end or net shape differ from this run's config, or it has labels "
            "this run lacks; cannot start from it"
        )
    state = start.state_dict()
    gains_attention = cfg.net.attention and not start.net_cfg.attention
    if cfg.net.attention and start.net_cfg.attention and start.labels != tuple(cfg.labels):
        raise NeuroEarError(f"{cfg.init}: an attention head cannot take new labels; start from a checkpoint without one")
    if not cfg.net.attention and start.net_cfg.attention:
        raise NeuroEarError(f"{cfg.init}: the checkpoint has an attention head and this run's net does not")
    if gains_attention:  # the new head's own zero-score start: the checkpoint's function, unchanged
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("cnn.att.")})
    if widens:  # the run's own CQT kernels; the CNN's weights from the checkpoint
        state = {k: v for k, v in state.items() if not k.startswith("frontend.")}
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("frontend.")})
    if gains_harmonics:
        key = "cnn.features.0.body.0.weight"  # [c_out, 1, 3, 3] → [c_out, harmonics, 3, 3]
        w = torch.zeros_like(model.state_dict()[key])
        one = cfg.cqt.harmonics.index(1.0)
        w[:, one] = state[key][:, 0]
        if cfg.harmonic_init > 0:  # seeded by the run's seed, set before the model is built
            norm = state[key][:, 0].flatten(1).norm(dim=1).clamp_min(1e-8)  # per filter, [c_out]
            for j in range(w.shape[1]):
                if j != one:
                    r = torch.randn_like(w[:, j])
                    w[:, j] = r * (cfg.harmonic_init * norm / r.flatten(1).norm(dim=1))[:, None, None]
        state[key] = w
    if gains_context:
        w = state["cnn.head.weight"]
        state["cnn.head.weight"] = torch.cat([w, torch.zeros(w.shape[0], w.shape[1] // 2)], dim=1)
    if start.labels != tuple(cfg.labels):
        own = model.state_dict()
        rows = [cfg.labels.index(lab) for lab in start.labels]
        for key in ("cnn.head.weight", "cnn.head.bias"):
            merged = own[key].clone()
            merged[rows] = state[key]
            state[key] = merged
    model.load_state_dict(state)


def load_clips(cfg: TrainConfig, cache: Path | None) -> tuple[list[D.Clip], list[D.Clip]]:
    """(train clips, validation clips): real and rendered, split by file-name hash."""
    clips: list[D.Clip] = []
    rate = cfg.cqt.sample_rate
    if cfg.real:
        negatives = cfg.mix.other_p > 0 or cfg.mix.other_partner_p > 0
        clips += D.load_real(cfg.real, cfg.labels, cache=cache, negatives=negatives, rate=rate)
    for m in cfg.rendered:
        clips += D.load_rendered(Path(m), cfg.labels, rate=rate)
    if not clips:
        raise NeuroEarError("no training data: give --real folders/manifests and/or --rendered manifests")
    train = [c for c in clips if D.split_of(c.group or c.name) == "train"]
    val = [c for c in clips if D.split_of(c.group or c.name) == "val"]
    if not val:  # tiny sets: validate on the training clips rather than not at all
        val = train
    return train, val


def train(
    cfg: TrainConfig,
    *,
    out_dir: Path | None = None,
    cache: Path | None = None,
    log: Callable[[str], None] = print,
    clips: tuple[list[D.Clip], list[D.Clip]] | None = None,
) -> TrainResult:
    """Train an InstrumentNet; write ``out_dir/{checkpoint.pt, config.json, history.jsonl}`` if given."""
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_clips, val_clips = clips if clips is not None else load_clips(cfg, cache)
    log(
        f"data: {len(train_clips)} train clips ({sum(c.audio.size / c.rate for c in train_clips) / 60:.1f} min), "
        f"{len(val_clips)} validation clips"
    )
    framing_kw = {"rate": cfg.cqt.sample_rate, "context": cfg.cqt.context_seconds}
    sampler = D.Sampler(train_clips, cfg.labels, cfg=cfg.mix, seed=cfg.seed, **framing_kw)
    val_x, val_y = validation_windows(cfg, val_clips)

    model = InstrumentNet(cfg.labels, cfg.cqt, cfg.net)
    if cfg.init:
        _load_init(model, cfg)
    ema = copy.deepcopy(model)
    log(f"model: {n_params(model)} parameters; optimizer {cfg.optimizer}; {cfg.steps} steps × {cfg.batch}")
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    loss_fn = loss_function(cfg.loss)
    bce = torch.nn.BCEWithLogitsLoss()  # validation loss: one yardstick whatever the training loss
    history: list[dict] = []
    t0 = time.time()
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    running = 0.0
    for step in range(1, cfg.steps + 1):
        if cfg.schedule == "cosine":
            warm = min(1.0, step / 100)
            f = warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
            for g, b in zip(opt.param_groups, base_lrs):
                g["lr"] = b * f
        model.train()
        x, y = sampler.batch(cfg.batch)
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _ema_update(ema, model, cfg.ema if step > 200 else 0.0)
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % cfg.val_every == 0 or step == cfg.steps:
            probs = _predict(ema, val_x)
            with torch.no_grad():
                val_loss = float(bce(torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6)), torch.from_numpy(val_y)))
            macro = E.row(E.report(val_y, probs >= 0.5, cfg.labels), "macro").f1
            rec = {"step": step, "seconds": round(time.time() - t0, 1), "train_loss": running, "val_loss": val_loss, "val_macro_f1": macro}
            history.append(rec)
            log(json.dumps(rec))
            if out_dir:
                with (out_dir / "history.jsonl").open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
    thresholds, val = calibrate(ema, val_x, val_y, cfg.labels)
    result = TrainResult(ema.eval(), thresholds, val, history, time.time() - t0, out_dir)
    if out_dir:
        save_checkpoint(result, cfg, out_dir / "checkpoint.pt")
    return result


def validation_windows(cfg: TrainConfig, val_clips: list[D.Clip]) -> tuple[np.ndarray, np.ndarray]:
    """A recipe's validation windows x [val_windows, input samples], y [val_windows, n_labels]:
    its mix over the held-out clips, with a seed of its own (the same windows every time)."""
    framing_kw = {"rate": cfg.cqt.sample_rate, "context": cfg.cqt.context_seconds}
    return D.Sampler(val_clips, cfg.labels, cfg=cfg.mix, seed=10_000 + cfg.seed, strict=False, **framing_kw).batch(cfg.val_windows)


def calibrate(
    model: InstrumentNet, val_x: np.ndarray, val_y: np.ndarray, labels: tuple[str, ...], *, data: str = VALIDATION_DATA
) -> tuple[dict[str, float], dict]:
    """Per-label F1-best thresholds of ``model`` on validation windows, and the validation record
    a checkpoint keeps (scores at 0.5 and at those thresholds)."""
    probs = _predict(model, val_x)
    thresholds = E.calibrate(val_y, probs, labels)
    thr = np.array([thresholds[lab] for lab in labels])
    val = {
        "data": data,
        "windows": int(len(val_x)),
        "at_0.5": E.to_dict(E.report(val_y, probs >= 0.5, labels)),
        "calibrated": E.to_dict(E.report(val_y, probs >= thr, labels)),
    }
    return thresholds, val


def save_checkpoint(result: TrainResult, cfg: TrainConfig, path: Path, *, extra: dict | None = None) -> None:
    """Weights + everything needed to rebuild and export them (see ``export.load_checkpoint``);
    ``extra`` (keys of ``CARD_NOTES``) goes into the config record the card will carry."""
    torch.save(
        {
            "state_dict": result.model.state_dict(),
            "labels": list(cfg.labels),
            "cqt": cfg.cqt.to_dict(),
            "net": cfg.net.to_dict(),
            "config": {**cfg.to_dict(), **(extra or {})},
            "thresholds": result.thresholds,
            "val": result.val,
            "seconds": result.seconds,
        },
        str(path),
    )


__all__ = ["LABELS", "OPTIMIZERS", "TrainConfig", "TrainResult", "make_optimizer", "train", "load_clips", "save_checkpoint"]
