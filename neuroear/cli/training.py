"""``train``, ``export`` and ``render``: the commands that build models (torch, imported lazily)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neuroear.cli.common import PROG, say


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from neuroear.training import train as T

    cfg = T.TrainConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else T.TrainConfig()
    changes = {}
    for key in ("steps", "batch", "optimizer", "lr", "seed", "init"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.real:
        changes["real"] = tuple(args.real)
    if args.rendered:
        changes["rendered"] = tuple(args.rendered)
    if args.labels:
        changes["labels"] = tuple(args.labels.split(","))
    cfg = replace(cfg, **changes)
    out = Path(args.out)
    res = T.train(cfg, out_dir=out, cache=Path(args.cache))
    macro = res.val["calibrated"]["macro"]["f1"]
    say(f"{PROG}: trained in {res.seconds:.0f} s; validation macro F1 {macro:.3f} (calibrated thresholds); checkpoint {out / 'checkpoint.pt'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neuroear.training.export import build_card, export, load_checkpoint

    net, ck = load_checkpoint(Path(args.checkpoint))
    out = Path(args.out)
    metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else None
    card = build_card(net, ck, name=args.name or out.stem, metrics=metrics)
    rep = export(net, card, out)
    say(f"{PROG}: wrote {out} ({rep['bytes'] / 1e6:.2f} MB); torch vs ONNX Runtime max |Δp| = {rep['max_abs_diff']:.1e} (≤ {rep['atol']:.0e})")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from neuroear.training import music, render

    labels = tuple(args.labels.split(",")) if args.labels else music.LABELS
    manifest = render.render_set(Path(args.out), families=args.family, labels=labels, seconds_per_label=args.seconds_per_label, seed=args.seed, sample_rate=args.sample_rate)
    say(f"{PROG}: manifest {manifest}")
    return 0


def register(sub: Any) -> None:
    """Add ``train``, ``export`` and ``render`` to an argparse subparsers object."""
    t = sub.add_parser("train", help="train a model (needs the 'train' extra)")
    t.add_argument("--real", action="append", help="folder (subfolder = label) or CSV manifest of real recordings")
    t.add_argument("--rendered", action="append", help="render manifest.jsonl (from `neuroear render`)")
    t.add_argument("--config", help="a saved config.json to start from")
    t.add_argument("--labels", help="comma-separated labels")
    t.add_argument("--steps", type=int)
    t.add_argument("--batch", type=int)
    t.add_argument("--optimizer", choices=["sgd", "nesterov", "adagrad", "adadelta", "adam"])
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint's weights (fine-tuning; same front end and shape, its labels a subset of this run's)")
    t.add_argument("--out", default="runs/latest", help="run folder for checkpoint.pt, config.json, history.jsonl")
    t.add_argument("--cache", default="runs/cache", help="where decoded real audio is cached")
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="export a checkpoint to one ONNX file (needs the 'train' extra)")
    x.add_argument("checkpoint")
    x.add_argument("--out", default="models/neuroear-v5.onnx")
    x.add_argument("--name", help="model name (default: the file stem)")
    x.add_argument("--metrics", help="JSON file of metrics to embed in the model card")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("render", help="render labelled training audio with FluidSynth (needs the 'train' extra)")
    r.add_argument("out", help="output folder (clips/ and manifest.jsonl)")
    r.add_argument("--family", action="append", required=True, help="SoundFont family: fluid, timgm, freepats")
    r.add_argument("--labels", help="comma-separated labels (default: all)")
    r.add_argument("--seconds-per-label", type=float, default=600.0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--sample-rate", type=int, default=16_000, help="Hz of the clips written (default 16000; training resamples to the model's rate)")
    r.set_defaults(func=cmd_render)
