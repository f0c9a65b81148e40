"""The ``bench`` subcommand; ``cli.main`` calls ``register(subparsers)``.

Thin: the benchmarks are scripts in the repository's ``benchmarks/`` folder, never imported by the
package. ``neuroear bench`` finds ``benchmarks/run.py`` next to the package in a source checkout and
runs it with this interpreter in a child process (so that torch, librosa and the seed-style model are
loaded there, never in the CLI). An installed package without the repository says so in one line.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from neuroear.errors import NeuroEarError

RUNNER = Path("benchmarks") / "run.py"


def find_runner() -> Path:
    """``benchmarks/run.py`` of the checkout this package was imported from, or raise NeuroEarError."""
    here = Path(__file__).resolve().parents[1]  # .../neuroear
    candidates = [here.parent / RUNNER]
    env = os.environ.get("NEUROEAR_REPO")
    if env:
        candidates.insert(0, Path(env) / RUNNER)
    for c in candidates:
        if c.is_file():
            return c
    raise NeuroEarError(
        f"`neuroear bench` needs the source checkout: {RUNNER} was not found next to the installed package "
        f"({here}); clone the repository and run it there (pip install -e '.[cpu,train,bench]'), "
        f"or point $NEUROEAR_REPO at a checkout"
    )


def register(subparsers: Any) -> None:
    """Add ``bench`` to an argparse subparsers object (``set_defaults(func=cmd_bench)``)."""
    p = subparsers.add_parser(
        "bench",
        help="latency and throughput benchmarks, side by side with a seed-style pipeline (source checkout only)",
        description=(
            "Run benchmarks/run.py: per-hop inference latency, file-analysis throughput (batch 1/8/64, ORT threads 1/2), "
            "the same audio through a seed-style pipeline (librosa CQT + 13.5 M CNN) and our model in torch eager, "
            "per-stage latency of the live loop (file source; virtual microphone if running), start-up time and peak RSS. "
            "Writes one JSON under benchmarks/results/ and prints markdown tables. Needs the 'bench' and 'train' extras "
            "for the comparison section. Full run: about 7 minutes on 2 cores; --quick: under a minute."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smoke run: tiny repeat counts and short files (not written unless --out)")
    p.add_argument("--out", metavar="FILE.json", help="result file (default benchmarks/results/<cpus>cpu-<date>.json)")
    p.add_argument("--sections", metavar="LIST", help="comma-separated subset: per_hop,throughput,analyze,compare,profile,optim,live,mic,startup,memory")
    p.add_argument("--model", metavar="PATH", help="model file (default: $NEUROEAR_MODEL, then the shipped model)")
    p.add_argument("--long-seconds", type=float, metavar="S", help="length of the long file in the memory check (default 3600; --quick: 20)")
    p.add_argument("--no-mic", action="store_true", help="skip the PulseAudio virtual-microphone run")
    p.add_argument("--markdown", metavar="FILE.md", help="also write the markdown tables to this file")
    p.set_defaults(func=cmd_bench)


def runner_argv(args: argparse.Namespace) -> list[str]:
    """The ``benchmarks/run.py`` options equivalent to the parsed ``bench`` arguments."""
    argv: list[str] = []
    if args.quick:
        argv.append("--quick")
    for opt, val in (("--out", args.out), ("--sections", args.sections), ("--model", args.model),
                     ("--long-seconds", args.long_seconds), ("--markdown", args.markdown)):
        if val is not None:
            argv += [opt, str(val)]
    if args.no_mic:
        argv.append("--no-mic")
    return argv


def cmd_bench(args: argparse.Namespace) -> int:
    """``neuroear bench``: run the benchmark script; its exit status is ours."""
    runner = find_runner()
    cmd = [sys.executable, str(runner), *runner_argv(args)]
    env = dict(os.environ)
    root = str(runner.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        return subprocess.call(cmd, cwd=root, env=env)
    except KeyboardInterrupt:
        return 130
