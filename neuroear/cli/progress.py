"""What ``analyze`` tells people while it works: a Rich progress bar on a terminal, warnings
folded into one line per kind. Nothing here when stderr is a file or a pipe (logs stay clean)."""

from __future__ import annotations

import re
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

from neuroear.cli.common import PROG, say

WARN_REPEATS_SHOWN = 1  # warnings of one kind printed in full before the rest are only counted


def _clock(seconds: float) -> str:
    """Audio time as m:ss (or h:mm:ss)."""
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Bar:
    """A Rich progress bar on stderr over a list of files: files done, audio time, × real time, ETA.

    ``start(path)`` / ``update(t)`` (s of audio done in the current file) / ``done()``; use as a
    context manager. While it shows, lines written to ``sys.stderr`` (warnings, errors) and,
    when stdout is the same terminal, the rows on ``sys.stdout`` appear above it.
    """

    def __init__(self, files: Sequence[Path], durations: Sequence[float]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.n_files = len(files)
        self.total = float(sum(durations))
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.fields[name]}", justify="left"),
            BarColumn(bar_width=None),
            TextColumn("{task.fields[files]}"),
            TextColumn("{task.fields[audio]}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            redirect_stdout=_same_terminal(),
            redirect_stderr=True,
            refresh_per_second=5,
        )
        self.task = self.progress.add_task("analyze", total=max(self.total, 1e-9), name="", files="", audio="", speed="")
        self.t0 = time.monotonic()
        self.files_done = 0
        self.base = 0.0  # s of audio in the files finished
        self.current = 0.0

    def __enter__(self) -> "Bar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, path: Path, duration: float) -> None:
        self.current, self.current_total = 0.0, duration
        self._show(name=path.name)

    def update(self, t: float) -> None:
        self.current = min(t, self.current_total) if self.current_total else t
        self._show()

    def done(self) -> None:
        self.files_done += 1
        self.base += self.current_total or self.current
        self.current, self.current_total = 0.0, 0.0
        self._show()

    def _show(self, **fields: Any) -> None:
        done = self.base + self.current
        wall = max(1e-6, time.monotonic() - self.t0)
        self.progress.update(
            self.task, completed=done, files=f"{min(self.files_done + 1, self.n_files)}/{self.n_files} files",
            audio=f"{_clock(done)}/{_clock(self.total)}", speed=f"×{done / wall:.0f} real time", **fields,
        )


def _same_terminal() -> bool:
    """True when stdout and stderr are the same terminal (rows then print above the bar)."""
    import os

    try:
        return sys.stdout.isatty() and os.path.samestat(os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


class WarningFolder:
    """``warnings.showwarning`` that prints the first warning of each kind and counts the rest.

    A kind is the message with file names and numbers taken out, so that 1 000 short files give
    one full warning and, from ``summary()``, one line: "… and 999 more like it".
    """

    def __init__(self, show: Callable[[str], None] | None = None) -> None:
        self.show = show or (lambda text: say(f"{PROG}: warning: {text}"))
        self.kinds: OrderedDict[str, list] = OrderedDict()  # kind → [count, first message]

    @staticmethod
    def kind(message: str) -> str:
        text = re.sub(r"^.*?: ", "", message, count=1)  # "<path>: what" → "what"
        return re.sub(r"\d+(\.\d+)?", "#", text)

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings API
        text = str(message)
        entry = self.kinds.setdefault(self.kind(text), [0, text])
        entry[0] += 1
        if entry[0] <= WARN_REPEATS_SHOWN:
            self.show(text)

    def summary(self) -> None:
        """One line per kind seen more often than shown."""
        for count, first in self.kinds.values():
            if count > WARN_REPEATS_SHOWN:
                what = re.sub(r"^.*?: ", "", first, count=1)
                say(f"{PROG}: warning: {count - WARN_REPEATS_SHOWN} more file(s) like that: {what}")
