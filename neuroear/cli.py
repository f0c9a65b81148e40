"""The ``neuroear`` command: thin argparse over the library.

Runtime commands (analyze, evaluate, listen, devices) never import torch; train, export and
render import it lazily. Every user-fixable problem is a NeuroEarError: one line on stderr,
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from neuroear import __version__, audio
from neuroear.errors import NeuroEarError

PROG = "neuroear"


def _err(msg: str) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr, flush=True)


def _warn(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings API
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def _thresholds(det, overrides: list[str] | None, flat: float | None):
    import numpy as np

    thr = det.thresholds.copy() if flat is None else np.full(len(det.labels), flat, dtype=np.float32)
    for item in overrides or []:
        lab, sep, val = item.partition("=")
        if not sep or lab not in det.labels:
            raise NeuroEarError(f"--threshold {item!r}: expected LABEL=VALUE with LABEL one of {', '.join(det.labels)}")
        try:
            thr[det.labels.index(lab)] = float(val)
        except ValueError:
            raise NeuroEarError(f"--threshold {item!r}: {val!r} is not a number") from None
    return thr


# ---------------------------------------------------------------------------- analyze


class _Progress:
    """Progress lines on stderr for files longer than a minute, at most every 5 s of wall time."""

    def __init__(self, src: str, path: Path) -> None:
        import time

        self.src, self.clock, self.last = src, time.monotonic, float("-inf")  # the first row prints at once
        try:
            self.total = audio.info(path).duration
        except NeuroEarError:
            self.total = 0.0  # the decoder reports the problem itself

    def update(self, t: float) -> None:
        if self.total > 60 and self.clock() - self.last >= 5.0:
            self.last = self.clock()
            print(f"{PROG}: {self.src}: {t / 60:.1f} of {self.total / 60:.1f} min ({100 * t / self.total:.0f} %)", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.total > 60:
            print(f"{PROG}: {self.src}: done ({self.total / 60:.1f} min)", file=sys.stderr, flush=True)



def cmd_analyze(args: argparse.Namespace) -> int:
    from neuroear.analyze import Writer, analyze_file, plot
    from neuroear.infer import Detector

    det = Detector(args.model, provider=args.provider, threads=args.threads)
    thr = _thresholds(det, args.threshold, None)
    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    writer = Writer(fmt, det.labels)
    print(f"{PROG}: model {det.name} ({det.path.name}), provider {det.provider}", file=sys.stderr, flush=True)
    failed = ok = 0
    plotted: list = []
    files = list(audio.iter_files(args.paths))
    reader_gone = False

    def emit(write, *a) -> None:
        # `| head` closed stdout: without --plot there is nothing left to do (main exits quietly);
        # with --plot the picture the user asked for is still drawn from the whole file
        nonlocal reader_gone
        if reader_gone:
            return
        try:
            write(*a)
        except BrokenPipeError:
            if not args.plot:
                raise
            reader_gone = True
            _silence_stdout()

    for path in files:
        src = str(path)
        emit(writer.begin_source, src)
        rows = []
        try:
            progress = _Progress(src, path)
            for r in analyze_file(det, path, hop_seconds=args.hop, thresholds=thr, source=src):
                emit(writer.write, r)
                progress.update(r.end)
                if args.plot:
                    rows.append(r)
            progress.done()
            ok += 1
        except NeuroEarError as exc:
            _err(str(exc))
            failed += 1
        if args.plot and rows:
            plotted.append(rows)
    if args.plot:
        if len(plotted) == 1:
            print(f"{PROG}: plot written to {plot(plotted[0], det.labels, Path(args.plot))}", file=sys.stderr)
        for rows in plotted if len(plotted) > 1 else []:
            out = Path(args.plot)
            target = out.with_name(f"{out.stem}-{Path(rows[0].source).stem}{out.suffix or '.png'}")
            print(f"{PROG}: plot written to {plot(rows, det.labels, target)}", file=sys.stderr)
    if not files:
        raise NeuroEarError("no audio files given")
    if failed:
        print(f"{PROG}: {failed} of {failed + ok} files failed", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from neuroear import evaluate as E
    from neuroear.infer import Detector

    det = Detector(args.model, provider=args.provider, threads=args.threads)
    thr = _thresholds(det, args.threshold_label, args.threshold)
    if args.snr is not None and not args.noise:
        raise NeuroEarError("--snr needs --noise white|pink|brown|babble")
    res = E.evaluate_set(det, args.data, hop_seconds=args.hop, thresholds=thr, noise=args.noise, snr_db=args.snr if args.snr is not None else 10.0, seed=args.seed)
    for msg in res.failed:
        _err(msg)
    cm = E.confusion(res.truth, res.probs, len(det.labels))
    per_class_top1 = {lab: round(float(cm[i, i] / cm[i].sum()), 4) for i, lab in enumerate(det.labels) if cm[i].sum()}
    condition = f"{args.noise} noise at {args.snr if args.snr is not None else 10.0:g} dB SNR (seed {args.seed})" if args.noise else "clean"
    if args.confusion:
        E.plot_confusion(cm, det.labels, args.confusion, title=f"{args.data} · {condition} · {det.name}")
        print(f"{PROG}: confusion matrix written to {args.confusion}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "data": args.data,
                    "model": det.name,
                    "provider": det.provider,
                    "files": res.files,
                    "windows": res.windows,
                    "quiet_windows": res.quiet_windows,
                    "quiet_dbfs": audio.SILENCE_DBFS,
                    "failed": res.failed,
                    "unknown_labels": res.unknown_labels,
                    "condition": condition,
                    "top1": res.top1,
                    "top1_per_class": per_class_top1,
                    "confusion": {"labels": list(det.labels), "counts": cm.tolist()},
                    "table": E.to_dict(res.rows),
                },
                indent=1,
            )
        )
    else:
        print(E.format_table(res.rows, title=f"{args.data} ({condition}): {res.files} files, {res.windows} windows, model {det.name}"))
        print(f"\ntop-1 accuracy (single-label windows): {res.top1:.3f}")
        print("top-1 per class: " + ", ".join(f"{k} {v:.2f}" for k, v in per_class_top1.items()))
        print(f"windows below {audio.SILENCE_DBFS:g} dBFS, reported apart and not scored: {res.quiet_windows}")
        if res.unknown_labels:
            print(f"labels the model does not know (windows scored as all-negative): {res.unknown_labels}")
    return 1 if res.failed else 0


# ---------------------------------------------------------------------------- train / export / render


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from neuroear import train as T

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
    print(f"{PROG}: trained in {res.seconds:.0f} s; validation macro F1 {macro:.3f} (calibrated thresholds); checkpoint {out / 'checkpoint.pt'}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from neuroear.export import export, load_checkpoint
    from neuroear.metadata import ModelCard

    det, ck = load_checkpoint(Path(args.checkpoint))
    out = Path(args.out)
    name = args.name or out.stem
    metrics = {"validation": ck.get("val", {})}
    if args.metrics:
        metrics.update(json.loads(Path(args.metrics).read_text()))
    card = ModelCard(
        name=name,
        labels=tuple(ck["labels"]),
        sample_rate=det.cqt_cfg.sample_rate,
        window_samples=audio.WINDOW_SAMPLES,
        cqt=det.cqt_cfg.to_dict(),
        thresholds={k: round(float(v), 4) for k, v in ck["thresholds"].items()},
        metrics=metrics,
        training={**ck["config"], "seconds": round(float(ck.get("seconds", 0)), 1)},
    )
    rep = export(det, card, out)
    print(f"{PROG}: wrote {out} ({rep['bytes'] / 1e6:.2f} MB); torch vs ONNX Runtime max |Δp| = {rep['max_abs_diff']:.1e} (≤ {rep['atol']:.0e})", file=sys.stderr)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from neuroear import render

    labels = tuple(args.labels.split(",")) if args.labels else render.LABELS
    manifest = render.render_set(Path(args.out), families=args.family, labels=labels, seconds_per_label=args.seconds_per_label, seed=args.seed)
    print(f"{PROG}: manifest {manifest}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- parser


def _runtime_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model file (default: $NEUROEAR_MODEL, then the shipped model)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="ONNX Runtime execution provider")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = its default)")
    p.add_argument("--hop", type=float, default=audio.HOP_SECONDS, help="seconds between window starts (default 1)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Which instruments are sounding, second by second.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    a = sub.add_parser("analyze", help="probabilities per one-second window of audio files")
    a.add_argument("paths", nargs="+", help="audio files or folders (WAV, FLAC, OGG, MP3, ...)")
    _runtime_opts(a)
    a.add_argument("--format", choices=["table", "jsonl", "csv"], help="default: table on a terminal, else jsonl")
    a.add_argument("--plot", metavar="FILE.png", help="draw probability over time")
    a.add_argument("--threshold", action="append", metavar="LABEL=VALUE", help="override a label's threshold")
    a.set_defaults(func=cmd_analyze)

    e = sub.add_parser("evaluate", help="precision / recall / F1 table on a labelled set")
    e.add_argument("data", help="folder with one subfolder per label, or a CSV manifest (file,label)")
    _runtime_opts(e)
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--threshold", type=float, help="one threshold for all labels (default: the model's calibrated ones)")
    e.add_argument("--threshold-label", action="append", metavar="LABEL=VALUE", help="override one label's threshold")
    e.add_argument("--noise", choices=["white", "pink", "brown", "babble"], help="add noise to every window (babble: other clips of the set)")
    e.add_argument("--snr", type=float, help="signal-to-noise ratio in dB for --noise (default 10)")
    e.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    e.add_argument("--confusion", metavar="FILE.png", help="draw the confusion matrix (single-label windows, most probable label)")
    e.set_defaults(func=cmd_evaluate)

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
    t.add_argument("--init", metavar="CHECKPOINT", help="start from this checkpoint's weights (fine-tuning; same labels and shape)")
    t.add_argument("--out", default="runs/latest", help="run folder for checkpoint.pt, config.json, history.jsonl")
    t.add_argument("--cache", default="runs/cache", help="where decoded real audio is cached")
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="export a checkpoint to one ONNX file (needs the 'train' extra)")
    x.add_argument("checkpoint")
    x.add_argument("--out", default="models/neuroear-v3.onnx")
    x.add_argument("--name", help="model name (default: the file stem)")
    x.add_argument("--metrics", help="JSON file of metrics to embed in the model card")
    x.set_defaults(func=cmd_export)

    r = sub.add_parser("render", help="render labelled training audio with FluidSynth (needs the 'train' extra)")
    r.add_argument("out", help="output folder (clips/ and manifest.jsonl)")
    r.add_argument("--family", action="append", required=True, help="SoundFont family: fluid, timgm, freepats")
    r.add_argument("--labels", help="comma-separated labels (default: all)")
    r.add_argument("--seconds-per-label", type=float, default=600.0)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=cmd_render)

    from neuroear import bench_cli, live_cli, serve_cli

    live_cli.register(sub)
    serve_cli.register(sub)
    bench_cli.register(sub)
    return p


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 1 failed, 2 usage, 130 interrupted)."""
    warnings.showwarning = _warn
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeuroEarError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; output written so far is complete", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): nothing left to say, and no traceback
        _silence_stdout()
        return 0
    except ModuleNotFoundError as exc:
        extra = {"torch": "train", "nnAudio": "train", "onnx": "train", "onnxruntime": "cpu", "matplotlib": "plot", "pyaudio": "live", "fluidsynth": "train", "music21": "train", "fastapi": "web", "starlette": "web", "uvicorn": "web", "python_multipart": "web"}
        root = (exc.name or "").split(".")[0]
        if root in extra:
            _err(f"this command needs {root}: pip install 'neuroear[{extra[root]}]'")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
