"""The ``neuroear`` command: argparse over the library, one module per command group.

Runtime commands (analyze, evaluate, listen, devices) never import torch; train, export and
render import it lazily. Every user-fixable problem is a NeuroEarError: one line on stderr,
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from neuroear import __version__
from neuroear.cli import analyze, bench, live, serve, training
from neuroear.cli.common import PROG, error, say, show_warning
from neuroear.devnull import to_devnull
from neuroear.errors import NeuroEarError

EXTRA_OF = {"torch": "train", "nnAudio": "train", "onnx": "train", "onnxruntime": "cpu", "matplotlib": "plot",
            "pyaudio": "live", "fluidsynth": "train", "music21": "train",
            "fastapi": "web", "starlette": "web", "uvicorn": "web", "python_multipart": "web"}  # module → the extra that installs it


_ARGV: list[str] = []  # the arguments being parsed, for Parser.error's hint


class Parser(argparse.ArgumentParser):
    """argparse with one hint: a file whose name starts with '-' needs ``--`` before it."""

    def error(self, message: str):  # noqa: ANN201 - argparse API
        dashed = [a for a in _ARGV if a.startswith("-") and a != "-" and not a.startswith("--") and os.path.exists(a)]
        if dashed:
            message += f"; {dashed[0]!r} is a file: put -- before file names that start with '-' ({PROG} analyze -- {dashed[0]})"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Which instruments are sounding, second by second.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (analyze, training, live, serve, bench):
        group.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: returns the exit status (0 ok, 1 failed, 2 usage, 130 interrupted)."""
    warnings.showwarning = show_warning
    _ARGV[:] = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NeuroEarError as exc:
        error(str(exc))
        return 1
    except KeyboardInterrupt:
        say(f"{PROG}: interrupted; output written so far is complete")
        return 130
    except BrokenPipeError:
        # the reader went away (`| head`): nothing left to say, and no traceback
        to_devnull(sys.stdout)  # so that the interpreter's final flush cannot fail on the closed pipe
        return 0
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root in EXTRA_OF:
            error(f"this command needs {root}: pip install 'neuroear[{EXTRA_OF[root]}]'")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
