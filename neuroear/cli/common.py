"""What every command shares: the program name, the stdout/stderr helpers, the model options
and the threshold options. stdout is for data, stderr for people."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neuroear.errors import NeuroEarError

PROG = "neuroear"


def say(text: str) -> None:
    """One line on stderr, flushed; a vanished terminal (after SIGHUP) is not an error."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def error(msg: str) -> None:
    """``neuroear: error: MSG`` on stderr."""
    say(f"{PROG}: error: {msg}")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings API
    """``warnings.showwarning``: ``neuroear: warning: MSG`` on stderr, no source line."""
    say(f"{PROG}: warning: {message}")


def out(text: str) -> None:
    """Data on stdout, flushed (a closed pipe raises BrokenPipeError: ``main`` exits quietly)."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def add_model_options(p: argparse.ArgumentParser, *, threads: int = 0, threads_help: str = "ONNX Runtime intra-op threads (0 = its default)") -> None:
    """--model, --provider, --threads: which model file runs, and where."""
    p.add_argument("--model", metavar="PATH", help="model file (.onnx; default: $NEUROEAR_MODEL, then the shipped model)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="ONNX Runtime execution provider (default auto)")
    p.add_argument("--threads", type=int, default=threads, metavar="N", help=threads_help)


def add_decision_options(p: argparse.ArgumentParser, *, unit: str = "hops") -> None:
    """--hysteresis, --smooth: how the decision policy (``live.policy``) turns probabilities into
    active labels, the same options for ``listen``, ``analyze`` and ``evaluate``."""
    p.add_argument("--hysteresis", type=float, default=0.0, metavar="P", help="turn a label off only below threshold - P (default 0; 0.1 steadies live use)")
    p.add_argument("--smooth", type=int, default=None, metavar="N",
                   help=f"average probabilities over the latest N {unit} before deciding (default: those of the last 2 s, 2 at --hop 1; 1 = none)")


def decision_smooth(args: argparse.Namespace) -> int:
    """``--smooth`` as given (checked), or the default for ``--hop``: the windows of the last 2 s."""
    from neuroear.live.policy import resolve_smooth

    return resolve_smooth(args.smooth, args.hop)


def check_threads(threads: int) -> None:
    """The one check of ``--threads`` (every command that takes ``add_model_options``): 0 or more."""
    if threads < 0:
        raise NeuroEarError(f"--threads must be 0 (all cores) or more, got {threads}")


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")  # what --plot / --confusion can write


def figure_path(raw: str, *, option: str) -> Path:
    """Check a figure's path before any work is done: a known image suffix and an existing,
    writable folder (nothing is created). Returns it as a Path; raises NeuroEarError."""
    p = Path(raw)
    if p.suffix.lower() not in FIGURE_SUFFIXES:
        raise NeuroEarError(f"{option} {raw}: the name must end in {', '.join(FIGURE_SUFFIXES)} (e.g. {p.stem or 'plot'}.png)")
    folder = p.parent
    if not folder.is_dir():
        raise NeuroEarError(f"{option} {raw}: folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise NeuroEarError(f"{option} {raw}: folder {folder} is not writable")
    if p.is_dir():
        raise NeuroEarError(f"{option} {raw}: is a folder; give a file name such as {p / 'plot.png'}")
    return p


def thresholds(det: Any, items: Sequence[str] | None, *, flat: float | None = None, option: str = "--threshold") -> np.ndarray:
    """The detector's thresholds [n_labels] (or ``flat`` for all) with ``LABEL=VALUE`` overrides."""
    from neuroear.infer import parse_thresholds

    return det.thresholds_for(parse_thresholds(items, det.labels, option=option), flat=flat)
