"""``analyze`` and ``evaluate``: files in, rows or a score table out (parse → call → print)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from neuroear import audio
from neuroear.cli.common import PROG, add_decision_options, add_model_options, check_threads, decision_smooth, error, figure_path, isatty, out, say, thresholds
from neuroear.cli.progress import Bar, WarningFolder
from neuroear.devnull import to_devnull
from neuroear.errors import NeuroEarError
from neuroear.framing import HOP_SECONDS


def _duration(path: Path) -> float:
    """Seconds of audio in ``path`` from its header (0 when it cannot be read: the decoder says why later)."""
    try:
        return audio.info(path).duration
    except NeuroEarError:
        return 0.0


def _spool_stdin() -> Path:
    """Copy stdin (``neuroear analyze -``: ``curl … | neuroear analyze -``) to a temporary file:
    containers such as .m4a need seeking, which a pipe cannot do. Returns its path."""
    import shutil
    import tempfile

    if isatty(sys.stdin):
        raise NeuroEarError("'-' reads audio from stdin, but stdin is a terminal: pipe a file in (curl … | neuroear analyze -)")
    fd, name = tempfile.mkstemp(prefix="neuroear-stdin-")
    with open(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, length=1 << 20)
    return Path(name)


def cmd_analyze(args: argparse.Namespace) -> int:
    from neuroear.analyze import Writer, analyze_file, plot
    from neuroear.infer import Detector
    from neuroear.live.policy import PolicyConfig

    check_threads(args.threads)
    plot_to = figure_path(args.plot, option="--plot") if args.plot else None  # before any work
    det = Detector(args.model, provider=args.provider, threads=args.threads)
    det.framing.hop(args.hop)  # a bad --hop is one usage error, not one failure per file
    args.smooth = decision_smooth(args)
    thr = thresholds(det, args.threshold)
    if args.engine == "ray" or args.out or args.address:
        from neuroear.archive.engine import run_args

        return run_args(args, thr, detector=det, prog=PROG)  # run() checks the decision options
    PolicyConfig.build(det.labels, thr, hysteresis=args.hysteresis, smooth=args.smooth)  # bad values: one usage error
    fmt = args.format or ("table" if sys.stdout.isatty() else "jsonl")
    if not args.quiet:
        smoothing = f", active decided on the mean of the latest {args.smooth} windows (--smooth)" if args.smooth > 1 else ""
        say(f"{PROG}: model {det.name} ({det.path.name}), provider {det.provider}{smoothing}")
    folder = WarningFolder()
    warnings.showwarning = folder  # 1 000 short files: one warning, then one summary line
    failed = ok = 0
    plotted: list = []
    stdin_copy = _spool_stdin() if "-" in args.paths else None
    files = [stdin_copy if str(p) == "-" else p for p in audio.iter_files(args.paths)]
    reader_gone = False
    bar = None
    if files and not args.quiet and isatty(sys.stderr):
        durations = [_duration(p) for p in files]
        bar = Bar(files, durations).__enter__()
    writer = Writer(fmt, det.labels, sys.stdout)  # after the bar: rows go above it when both share the terminal

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
            to_devnull(sys.stdout)

    try:
        for i, path in enumerate(files):
            src = "-" if path == stdin_copy else str(path)
            emit(writer.begin_source, src)
            rows = []
            if bar is not None:
                bar.start(path, durations[i])
            try:
                for r in analyze_file(path, args.hop, detector=det, thresholds=thr, source=src, smooth=args.smooth, hysteresis=args.hysteresis):
                    emit(writer.write, r)
                    if bar is not None:
                        bar.update(r.end)
                    if args.plot:
                        rows.append(r)
                ok += 1
            except NeuroEarError as exc:
                error(str(exc))
                failed += 1
            if bar is not None:
                bar.done()
            if args.plot and rows:
                plotted.append(rows)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        folder.summary()
        if stdin_copy is not None:
            stdin_copy.unlink(missing_ok=True)
    for rows in plotted:
        target = plot_to if len(plotted) == 1 else plot_to.with_name(f"{plot_to.stem}-{Path(rows[0].source).stem}{plot_to.suffix}")
        try:
            say(f"{PROG}: plot written to {plot(rows, det.labels, target)}")
        except NeuroEarError as exc:  # the rows above stay complete
            error(str(exc))
            failed += 1
    if not files:
        raise NeuroEarError("no audio files given")
    if failed:
        say(f"{PROG}: {failed} of {failed + ok} files failed")
        return 1
    return 0


def _split_thresholds(items: list[str] | None) -> tuple[float | None, list[str]]:
    """evaluate's --threshold: VALUE (every label) or LABEL=VALUE (one label), repeatable."""
    flat, per_label = None, []
    for item in items or []:
        if "=" in item:
            per_label.append(item)
            continue
        try:
            flat = float(item)
        except ValueError:
            raise NeuroEarError(f"--threshold {item!r}: expected a number for every label or LABEL=VALUE, e.g. 0.5 or violin=0.6") from None
        if not (0.0 <= flat <= 1.0):
            raise NeuroEarError(f"--threshold {item!r}: value must be between 0 and 1")
    return flat, per_label


def cmd_evaluate(args: argparse.Namespace) -> int:
    from neuroear import evaluate as E
    from neuroear.infer import Detector

    check_threads(args.threads)
    if args.confusion:
        figure_path(args.confusion, option="--confusion")
    det = Detector(args.model, provider=args.provider, threads=args.threads)
    flat, items = _split_thresholds(args.threshold)
    thr = thresholds(det, items + list(args.threshold_label or []), flat=flat)
    if args.snr is not None and not args.noise:
        raise NeuroEarError("--snr needs --noise white|pink|brown|babble")
    snr = args.snr if args.snr is not None else 10.0
    args.smooth = decision_smooth(args)
    res = E.evaluate_set(det, args.data, hop_seconds=args.hop, thresholds=thr, noise=args.noise, snr_db=snr, seed=args.seed, smooth=args.smooth, hysteresis=args.hysteresis)
    for msg in res.failed:
        error(msg)
    if args.confusion:
        E.plot_confusion(res.confusion, det.labels, args.confusion, title=f"{args.data} · {res.condition} · {det.name}")
        say(f"{PROG}: confusion matrix written to {args.confusion}")
    out(json.dumps(res.to_dict(), indent=1) if args.json else res.format())
    return 1 if res.failed else 0


def register(sub: Any) -> None:
    """Add ``analyze`` and ``evaluate`` to an argparse subparsers object."""
    a = sub.add_parser("analyze", help="probabilities per one-second window of audio files")
    a.add_argument("paths", nargs="+", help="audio files or folders (WAV, FLAC, OGG, MP3, M4A, AAC, MP4, ...); - reads stdin")
    add_model_options(a)
    a.add_argument("--hop", type=float, default=HOP_SECONDS, help="seconds between window starts (default 1)")
    a.add_argument("--format", choices=["table", "jsonl", "csv"], help="default: table on a terminal, else jsonl")
    a.add_argument("--plot", metavar="FILE.png", help="draw probability over time")
    a.add_argument("--threshold", action="append", metavar="LABEL=VALUE", help="override a label's threshold")
    add_decision_options(a, unit="windows of a file")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no model line on stderr (errors and warnings still show)")
    g = a.add_argument_group("archives (--engine ray, needs the 'archive' extra)")
    g.add_argument("--engine", choices=["local", "ray"], default="local", help="local: rows on stdout (default); ray: Parquet under --out, resumable")
    g.add_argument("--out", metavar="DIR", help="output folder of --engine ray (windows/, summary.parquet, errors.parquet)")
    g.add_argument("--address", help="join a Ray cluster: auto or HOST:PORT (default: start a local Ray runtime)")
    g.add_argument("--workers", type=int, default=0, help="model actors (default: one per --threads CPUs of the cluster)")
    g.add_argument("--batch", type=int, help="windows per ONNX Runtime call (default: as analyze)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (CUDA provider), e.g. 0.25")
    a.set_defaults(func=cmd_analyze)

    e = sub.add_parser("evaluate", help="precision / recall / F1 table on a labelled set")
    e.add_argument("data", help="folder with one subfolder per label, or a CSV manifest (file,label)")
    add_model_options(e)
    e.add_argument("--hop", type=float, default=HOP_SECONDS, help="seconds between window starts (default 1)")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.add_argument("--threshold", action="append", metavar="VALUE|LABEL=VALUE",
                   help="one threshold for all labels, or LABEL=VALUE for one (repeatable; default: the model's calibrated ones)")
    e.add_argument("--threshold-label", action="append", metavar="LABEL=VALUE", help=argparse.SUPPRESS)  # the old name
    add_decision_options(e, unit="scored windows of a file")
    e.add_argument("--noise", choices=["white", "pink", "brown", "babble"], help="add noise to every window (babble: other clips of the set)")
    e.add_argument("--snr", type=float, help="signal-to-noise ratio in dB for --noise (default 10)")
    e.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    e.add_argument("--confusion", metavar="FILE.png", help="draw the confusion matrix (single-label windows, most probable label)")
    e.set_defaults(func=cmd_evaluate)
