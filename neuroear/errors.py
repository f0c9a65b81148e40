"""The one exception type the package raises for problems a user can fix, and the one reading
of a library's exception text (libsndfile's, FFmpeg's) into the reason such a message gives."""

from __future__ import annotations

import os


class NeuroEarError(Exception):
    """A clear, one-line problem with an input, a model file or a device.

    The CLI prints ``str(error)`` on stderr and exits non-zero: messages must name the
    file or device and say what is wrong (and, where possible, how to fix it).
    """


def reason(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """``exc``'s message as the reason in one of our lines: its first line without the ``path``
    it repeats (libsndfile: "Error opening '/x.wav': Format not recognised."; PyAV: "[Errno
    1094995529] Invalid data found when processing input: '/x.m4a'"), libsndfile's "Error : "
    and PyAV's "[Errno N] " prefixes, and the final full stop; the exception's type if nothing is left.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if path is not None:
        line = line.replace(f"Error opening {str(path)!r}: ", "").replace(str(path), "")
    line = line.split(": '", 1)[0]  # PyAV ends with ": '<path>'" (and its log)
    line = line.removeprefix("Error : ")
    if line.startswith("[Errno") and "] " in line:
        line = line.split("] ", 1)[1]
    return line.strip(" :").rstrip(".") or type(exc).__name__
