"""File-descriptor-level stderr silencing, for C and C++ libraries that write there directly
(PortAudio's ALSA/JACK probing, Ray's core): Python's ``sys.stderr`` redirection cannot reach them."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def muted() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the block (a no-op where fd 2 cannot be duplicated)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
