"""Pointing a file descriptor at /dev/null: the one helper for it.

Two needs. C and C++ libraries write straight to file descriptor 2 (PortAudio's ALSA/JACK
probing, Ray's core), where Python's ``sys.stderr`` redirection cannot reach them: ``muted``.
And a stdout whose reader went away (``| head``): Python flushes it once more at exit and would
print "Exception ignored ... BrokenPipeError"; pointed at /dev/null, that flush succeeds quietly:
``to_devnull(sys.stdout)``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import IO, Iterator


def to_devnull(target: int | IO, *, keep: bool = False) -> int | None:
    """Point a file descriptor (or a stream's) at /dev/null; a no-op where it cannot be redirected
    (a stream with no file behind it, a closed descriptor).

    ``keep``: first save a duplicate of the descriptor and return it, for ``restore``; None where
    nothing was redirected (or ``keep`` is False).
    """
    try:
        fd = target if isinstance(target, int) else target.fileno()
        saved = os.dup(fd) if keep else None
    except (AttributeError, OSError, ValueError):
        return None
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    except OSError:
        if saved is not None:
            os.close(saved)
        return None
    return saved


def restore(fd: int, saved: int | None) -> None:
    """Point ``fd`` back at what ``to_devnull(fd, keep=True)`` saved (``saved``), and close the copy."""
    if saved is None:
        return
    try:
        os.dup2(saved, fd)
    except OSError:
        pass
    finally:
        os.close(saved)


def _flush(stream: IO | None) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


@contextlib.contextmanager
def muted(*, keep_python: bool = False) -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (a no-op where it cannot be duplicated).

    ``keep_python``: ``sys.stderr`` meanwhile writes to the real stderr (a copy of the old fd 2),
    so Python's own messages still show while the C libraries' are dropped (``listen`` on a
    device without the dashboard: PortAudio's ALSA backend prints "Expression ... failed in
    src/hostapi/alsa/pa_linux_alsa.c" when a device fails; our messages say it in one line).
    """
    _flush(sys.stderr)
    saved = to_devnull(2, keep=True)
    old = sys.stderr
    try:
        if saved is not None and keep_python:
            sys.stderr = open(saved, "w", encoding=getattr(old, "encoding", None) or "utf-8", errors="backslashreplace",
                              buffering=1, closefd=False)
        yield
    finally:
        if sys.stderr is not old:
            _flush(sys.stderr)
            sys.stderr = old
        restore(2, saved)
