"""One uploaded file, streamed to a private temporary file under a size limit.

The multipart body is parsed as it arrives (python-multipart's push parser), so memory stays
at one network chunk whatever the file's size, and an upload over the limit is refused as soon
as it crosses it (or at once, when its Content-Length says so). The client's file name is kept
for display only: the file on disk gets a random name from ``tempfile`` and, at most, an
extension from ``audio.AUDIO_EXTENSIONS``.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from neuroear import audio
from neuroear.errors import NeuroEarError

MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries and part headers around the file: not counted against the limit
NAME_MAX_CHARS = 120  # a display name longer than this is shortened
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class RequestError(NeuroEarError):
    """A bad request, with the HTTP status (4xx) to answer it with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A received file: ``path`` (ours, temporary), ``name`` (the client's, for display), ``size`` in bytes."""

    path: Path
    name: str
    size: int

    def delete(self) -> None:
        """Remove the temporary file (no error if it is gone already)."""
        _remove(self.path)


def _remove(path: Path) -> None:
    """Delete ``path``; one already gone is no error (a response can end in more than one way)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def display_name(raw: str | bytes | None) -> str:
    """A client file name made safe to show: last path component, printable, at most NAME_MAX_CHARS."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNPRINTABLE.sub("", name).strip() or "upload"
    return name if len(name) <= NAME_MAX_CHARS else name[: NAME_MAX_CHARS - 1] + "…"


def _suffix(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return ext if ext in audio.AUDIO_EXTENSIONS else ""


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 10e6 else f"{n / 1e6:.2g} MB"


async def receive_upload(
    chunks: AsyncIterator[bytes], *, content_type: str | None, content_length: str | None, directory: Path, limit_bytes: int
) -> Upload:
    """Stream the first file part of a ``multipart/form-data`` body into ``directory``.

    ``chunks`` is the request body (``request.stream()``). Raises ``RequestError`` (400: not
    multipart, no file, empty file, malformed; 413: over ``limit_bytes``); the partial file is
    removed then. The caller deletes ``Upload.path`` when done with it.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    too_big = RequestError(f"upload is larger than the server's limit of {_mb(limit_bytes)} (neuroear serve --max-upload-mb)", status=413)
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise RequestError("bad Content-Length header") from None
        if declared > limit_bytes + MULTIPART_SLACK_BYTES:
            raise too_big
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise RequestError("send the audio as multipart/form-data with a file field (curl -F file=@clip.wav)", status=415 if ctype else 400)

    state = {"headers": {}, "field": b"", "value": b"", "in_file": False, "done": False, "name": None, "size": 0}
    out: dict = {"fd": None, "path": None}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        disp, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
        is_file = disp == b"form-data" and b"filename" in opts and not state["done"]
        state["in_file"] = is_file
        if is_file:
            name = display_name(opts[b"filename"])
            state["name"] = name
            fd, path = tempfile.mkstemp(prefix="upload-", suffix=_suffix(name), dir=directory)
            out["fd"], out["path"] = fd, Path(path)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state["in_file"]:
            return
        state["size"] += end - start
        if state["size"] > limit_bytes:
            raise too_big
        os.write(out["fd"], data[start:end])

    def on_part_end() -> None:
        if state["in_file"]:
            state["in_file"], state["done"] = False, True
            os.close(out["fd"])
            out["fd"] = None
        state["headers"] = {}

    callbacks = {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
        if not state["done"]:
            raise RequestError("no file in the upload (send it as a multipart file field)")
        if state["size"] == 0:
            raise RequestError(f"{state['name']}: empty file (0 bytes)")
    except MultipartParseError as exc:
        _discard(out)
        raise RequestError(f"malformed multipart body ({str(exc).splitlines()[0] if str(exc) else 'parse error'})") from None
    except BaseException:  # over the limit, client gone, cancelled: never leave a partial file behind
        _discard(out)
        raise
    return Upload(path=out["path"], name=state["name"], size=state["size"])


def _discard(out: dict) -> None:
    if out["fd"] is not None:
        os.close(out["fd"])
        out["fd"] = None
    if out["path"] is not None:
        _remove(out["path"])
