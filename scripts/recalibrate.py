"""Re-calibrate a model's per-class thresholds on real held-out windows only, into a new file.

    python scripts/recalibrate.py models/previous/neuroear-v4.onnx runs/v4-real/v4-real.onnx --real ../shared/data/real-train

Training calibrates on its validation windows, which mix real recordings and renders as training
does (``real_fraction``). The model is judged on real performances, and the probes found that
v4's ranks are better than its decisions there: thresholds fitted on renders do not transfer.
This draws validation windows from the real recordings of training's own held-out split only
(the same mixtures, partners, negatives and unknown instruments as training's mix, real clips
only), fits each class's F1-best threshold on them and writes a copy of the model whose card
carries the new thresholds (the graph is unchanged). Labels without a real validation window
keep their old threshold. Never point ``--real`` at the dev set.

``--mix-from RECIPE --with-renders`` instead redoes training's own calibration (its validation
split, renders included, ``validation_windows``) under another recipe's mix: a model trained on
mostly-mixture windows, calibrated for the share of solo windows that recipe holds.

    python scripts/recalibrate.py runs/lens8/model.onnx runs/lens8-v5mix/model.onnx --real ../shared/data/real-train \
        --mix-from models/recipes/neuroear-v5.json --with-renders
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from neuroear import evaluate as E
from neuroear.infer import Detector
from neuroear.metadata import METADATA_KEY
from neuroear.training import data as D
from neuroear.training.train import TrainConfig, load_clips


def real_val_windows(card_training: dict, real: list[str], *, n: int, seed: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """x [n, input samples], y [n, n_labels]: training's mix over real held-out clips only, framed
    as the model was trained (its card's front end: rate and context)."""
    cfg = TrainConfig.from_dict(card_training)
    # training's own loading and split, over the real recordings alone
    _, val = load_clips(dataclasses.replace(cfg, real=tuple(real), rendered=()), cache)
    mix = dataclasses.replace(cfg.mix, real_fraction=1.0)
    return D.Sampler(val, cfg.labels, cfg=mix, seed=seed, strict=False, rate=cfg.cqt.sample_rate, context=cfg.cqt.context_seconds).batch(n)


def mix_windows(card_training: dict, mix_from: Path | None, *, renders: bool, real: list[str], n: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """x [n, input samples], y [n, n_labels]: training's validation windows (its split and seed,
    ``train.validation_windows``), with ``mix_from``'s mix (a recipe JSON) in place of its own and,
    unless ``renders``, over the real recordings only."""
    from neuroear.training.train import validation_windows

    cfg = TrainConfig.from_dict(card_training)
    cfg = dataclasses.replace(cfg, real=tuple(real), val_windows=n, **({} if renders else {"rendered": ()}))
    if mix_from is not None:
        cfg = dataclasses.replace(cfg, mix=D.MixConfig.from_dict(json.loads(mix_from.read_text())["mix"]))
    _, val = load_clips(cfg, cache)
    return validation_windows(cfg, val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--real", nargs="+", required=True, help="the training recordings (their held-out split is used)")
    ap.add_argument("--windows", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=20_000)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    ap.add_argument("--mix-from", type=Path, help="a recipe whose mix replaces the model's own in the calibration windows")
    ap.add_argument("--with-renders", action="store_true", help="training's validation split with its renders (as training calibrates), not real clips only")
    args = ap.parse_args()
    import onnx

    det = Detector(args.model, threads=2)
    card = det.card
    if args.mix_from or args.with_renders:
        x, y = mix_windows(card.training, args.mix_from, renders=args.with_renders, real=args.real, n=args.windows, cache=args.cache)
    else:
        x, y = real_val_windows(card.training, args.real, n=args.windows, seed=args.seed, cache=args.cache)
    probs = det.predict(x.astype(np.float32))
    fitted = E.calibrate(y, probs, card.labels)
    seen = y.astype(bool).any(axis=0)
    thresholds = {lab: round(float(fitted[lab] if seen[i] else card.thresholds[lab]), 4) for i, lab in enumerate(card.labels)}
    before = E.row(E.report(y, probs >= np.array([card.thresholds[lab] for lab in card.labels]), card.labels), "macro").f1
    after = E.row(E.report(y, probs >= np.array([thresholds[lab] for lab in card.labels]), card.labels), "macro").f1
    note = {"windows": int(len(y)), "seed": args.seed, "sources": [str(r) for r in args.real],
            "mix_from": str(args.mix_from) if args.mix_from else None, "with_renders": bool(args.with_renders), "macro_f1_old": round(before, 4), "macro_f1_new": round(after, 4), "old_thresholds": card.thresholds}
    new = dataclasses.replace(card, name=args.out.stem, thresholds=thresholds, metrics={**card.metrics, "real_calibration": note})
    m = onnx.load(str(args.model))
    for prop in m.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = new.to_json()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(args.out))
    args.out.with_suffix(".json").write_text(new.to_json() + "\n")
    print(json.dumps({lab: [card.thresholds[lab], thresholds[lab]] for lab in card.labels}))
    what = "validation windows" + (f" under {args.mix_from}'s mix" if args.mix_from else "") if args.mix_from or args.with_renders else "real held-out windows"
    print(f"{len(y)} {what}: macro F1 {before:.3f} with the old thresholds → {after:.3f} → {args.out}")


if __name__ == "__main__":
    main()
