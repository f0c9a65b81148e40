"""``neuroear serve``: the FastAPI app behind the local page, and the uvicorn server that runs it.

Routes::

    GET  /                the page (static/index.html); /static/* its JS and CSS
    GET  /api/model       the model card (JSON), plus the provider the server runs on
    GET  /api/config      what the page needs to know: upload limit (bytes), labels, hop bounds
    POST /api/analyze     multipart file → JSON Lines of windows (?format=csv, ?hop=SECONDS, ?smooth=N)
    WS   /api/live        browser PCM in, one detection per hop out (``livesocket``)

Files go through ``analyze.analyze_file`` and ``analyze.Writer``, the very code of
``neuroear analyze``: the lines are those the CLI prints, except ``source`` (the client's file
name, never a path). Rows are streamed as they are scored (bounded memory for any length);
the temporary file is deleted as soon as the response ends, however it ends.
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures' annotations at run time
import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from neuroear import audio
from neuroear.errors import NeuroEarError
from neuroear.framing import HOP_SECONDS, Framing
from neuroear.web.uploads import RequestError, Upload, receive_upload

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 200.0  # MB (10^6 bytes): an hour of 16-bit 44.1 kHz stereo WAV is ~635 MB, of FLAC ~200-300 MB
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ROWS_PER_CHUNK = 16  # windows per response chunk: one ONNX Runtime batch of `analyze` (analyze.BATCH)
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@dataclass(frozen=True)
class ServerConfig:
    """Limits of one server: ``max_upload_bytes`` per file; ``max_live`` concurrent live sockets; ``max_analyses`` at once.

    Analyses beyond ``max_analyses`` wait (already uploaded) rather than share the cores, so that
    a burst of uploads neither multiplies memory nor starves the live sockets' hops.
    """

    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1e6)
    max_live: int = 4
    max_analyses: int = max(1, os.cpu_count() or 1)  # files analysed at once; more wait their turn (after uploading)


# ----------------------------------------------------------------------------- warnings per upload

_routes: dict[str, tuple[list[str], str]] = {}  # "tmp path:" → (collected messages, display name)
_routes_lock = threading.Lock()


def _route_warnings() -> None:
    """Send warnings that name an upload's temporary file to that upload (they come from decoder threads too)."""
    with _routes_lock:
        if getattr(warnings.showwarning, "_neuroear_web", False):
            return
        previous = warnings.showwarning

        def hook(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001 (warnings' signature)
            text = str(message)
            with _routes_lock:
                for prefix, (sink, name) in _routes.items():
                    if text.startswith(prefix):
                        sink.append(name + text[len(prefix) - 1 :])
                        return
            previous(message, category, filename, lineno, file, line)

        hook._neuroear_web = True  # type: ignore[attr-defined]
        warnings.showwarning = hook


def _public(text: str, up: Upload) -> str:
    """A message about ``up`` with our temporary path replaced by the client's file name."""
    return text.replace(str(up.path), up.name).splitlines()[0] if text else "unknown error"


# ----------------------------------------------------------------------------- file analysis


class _Analysis:
    """One upload being analysed: rows → text chunks in the CLI's format, warnings as they occur."""

    def __init__(self, det: Any, up: Upload, *, hop: float, fmt: str, smooth: int = 1) -> None:
        from neuroear.analyze import Writer, analyze_file

        self.up, self.fmt = up, fmt
        self.buf = io.StringIO()
        self.writer = Writer(fmt, det.labels, out=self.buf)
        self.messages: list[str] = []
        with _routes_lock:
            _routes[str(up.path) + ":"] = (self.messages, up.name)
        _route_warnings()
        self.rows = analyze_file(up.path, hop, detector=det, smooth=smooth)
        self.finished = False
        self.count = 0  # windows written so far

    def next_chunk(self, n: int = ROWS_PER_CHUNK) -> tuple[str, str | None]:
        """Up to ``n`` more rows as text, and the error that ended the file (if one did); ('', None) at the end."""
        error = None
        count = 0
        try:
            for r in self.rows:
                self._flush_messages()
                self.writer.write(replace(r, source=self.up.name))
                count += 1
                self.count += 1
                if count >= n:
                    break
            else:
                self.finished = True
        except NeuroEarError as exc:
            self.finished = True
            error = _public(str(exc), self.up)
        self._flush_messages()
        text = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return text, error

    def _flush_messages(self) -> None:
        while self.messages and self.fmt == "jsonl":
            self.buf.write(json.dumps({"warning": self.messages.pop(0)}) + "\n")

    def close(self) -> None:
        self.rows.close()
        with _routes_lock:
            _routes.pop(str(self.up.path) + ":", None)
        self.up.delete()


def _parse_smooth(raw: str | None, hop: float) -> int:
    """The ``smooth`` query parameter: windows the decision averages over, as ``analyze --smooth``;
    default, as there, the windows of the last 2 s at ``hop`` (s)."""
    from neuroear.live.policy import check_smooth, default_smooth

    if raw is None or raw == "":
        return default_smooth(hop)
    try:
        smooth = int(raw)
    except ValueError:
        raise RequestError(f"smooth={raw!r} is not a whole number of windows") from None
    try:
        return check_smooth(smooth, name="smooth")  # the policy's own range and message
    except NeuroEarError as exc:
        raise RequestError(str(exc)) from None


def _error_line(fmt: str, message: str) -> str:
    return json.dumps({"error": message}) + "\n" if fmt == "jsonl" else f"# error: {message}\n"


def _parse_hop(raw: str | None, framing: Framing) -> float:
    """The ``hop`` query parameter (s) for a model read at ``framing``; default HOP_SECONDS."""
    if raw is None or raw == "":
        return HOP_SECONDS
    try:
        hop = float(raw)
    except ValueError:
        raise RequestError(f"hop={raw!r} is not a number of seconds") from None
    framing.hop(hop)  # raises NeuroEarError with the allowed range
    return hop


# ----------------------------------------------------------------------------- the app


def static_dir() -> Path:
    """The page's files shipped in the package (``neuroear/web/static``)."""
    return Path(str(resources.files("neuroear.web") / "static"))


def create_app(detector: Any, *, config: ServerConfig = ServerConfig(), upload_dir: Path | None = None) -> Any:
    """The FastAPI app serving ``detector`` (an ``infer.Detector``).

    Uploads are written to ``upload_dir`` (default: a private temporary folder removed at
    shutdown). Every bad input is answered with a 4xx and ``{"error": "one line"}``.
    """
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    from neuroear.web import livesocket

    own_dir = upload_dir is None
    updir = Path(tempfile.mkdtemp(prefix="neuroear-uploads-")) if own_dir else Path(upload_dir)
    updir.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield
        if own_dir:
            shutil.rmtree(updir, ignore_errors=True)

    app = FastAPI(title="Neuro-Ear", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.detector, app.state.config, app.state.upload_dir = detector, config, updir
    app.state.live = livesocket.LiveRegistry(config.max_live)
    static = static_dir()

    class _Stream(StreamingResponse):
        """A streamed response that runs ``cleanup`` when it ends, even if its body never started."""

        def __init__(self, *args: Any, cleanup: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._cleanup = cleanup

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                self._cleanup()

    turns = asyncio.Semaphore(config.max_analyses)

    @app.exception_handler(NeuroEarError)
    async def _user_error(request: Request, exc: NeuroEarError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0]}, status_code=getattr(exc, "status", 422))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)  # for the operator; the client gets one line
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server's log"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/api/model")
    async def model_card() -> dict:
        card = json.loads(detector.card.to_json())
        card["provider"] = detector.provider
        card["file"] = detector.path.name
        return card

    @app.get("/api/config")
    async def page_config() -> dict:
        return {
            "max_upload_bytes": config.max_upload_bytes,
            "labels": list(detector.labels),
            "model": detector.name,
            "provider": detector.provider,
            "hop_seconds": HOP_SECONDS,
            "live_hop_seconds": list(livesocket.HOP_RANGE),
            "extensions": list(audio.AUDIO_EXTENSIONS),
        }

    @app.post("/api/analyze")
    async def analyze(request: Request) -> Any:
        fmt = request.query_params.get("format", "jsonl")
        if fmt not in MEDIA_TYPES:
            raise RequestError(f"format={fmt!r}: use jsonl or csv")
        hop = _parse_hop(request.query_params.get("hop"), detector.framing)
        smooth = _parse_smooth(request.query_params.get("smooth"), hop)
        up = await receive_upload(
            request.stream(), content_type=request.headers.get("content-type"), content_length=request.headers.get("content-length"),
            directory=updir, limit_bytes=config.max_upload_bytes,
        )
        try:
            await turns.acquire()
        except BaseException:
            up.delete()
            raise
        job: _Analysis | None = None
        released = False

        def done() -> None:
            """Give back the turn and the upload (with the analysis reading it, once it exists), once,
            however the request ends: refused, failed, finished, client gone, response never started."""
            nonlocal released
            if released:
                return
            released = True
            turns.release()
            if job is not None:
                job.close()
            else:
                up.delete()

        try:
            duration = (await run_in_threadpool(audio.info, up.path)).duration
            job = _Analysis(detector, up, hop=hop, fmt=fmt, smooth=smooth)
            first, error = await run_in_threadpool(job.next_chunk)
        except NeuroEarError as exc:
            done()
            raise RequestError(_public(str(exc), up), status=422) from None
        except BaseException:
            done()
            raise
        if error is not None and job.count == 0:  # not one window decodable: a plain 4xx
            done()
            raise RequestError(error, status=422)

        async def body() -> Any:
            try:
                yield first
                err = error
                while err is None and not job.finished:
                    text, err = await run_in_threadpool(job.next_chunk)
                    if text:
                        yield text
                if err is not None:
                    yield _error_line(fmt, err)
            finally:
                done()

        headers = {"X-Neuroear-Duration": f"{duration:.3f}", "X-Neuroear-Smooth": str(smooth), "Cache-Control": "no-store"}
        return _Stream(body(), media_type=MEDIA_TYPES[fmt], headers=headers, cleanup=done)

    @app.websocket("/api/live")
    async def live(ws: WebSocket) -> None:
        await livesocket.serve_socket(ws, detector, app.state.live)

    return app


# ----------------------------------------------------------------------------- running it


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); NeuroEarError if it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NeuroEarError(f"--host {host!r}: cannot resolve ({exc.strerror})") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        hint = "; pick another with --port" if exc.errno in (98, 48) else ""
        raise NeuroEarError(f"cannot listen on {host}:{port} ({exc.strerror}){hint}") from None
    sock.listen(128)
    return sock


def serve(
    *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, model: str | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    provider: str = "auto", threads: int = 0,
) -> None:
    """Load the model, bind ``host:port`` and serve until Ctrl-C; prints the address on stderr."""
    import uvicorn

    from neuroear.infer import Detector

    if not (max_upload_mb > 0):
        raise NeuroEarError(f"--max-upload-mb must be positive, got {max_upload_mb:g}")
    if not (0 <= port <= 65535):
        raise NeuroEarError(f"--port must be 0-65535, got {port}")
    det = Detector(model, provider=provider, threads=threads)
    app = create_app(det, config=ServerConfig(max_upload_bytes=int(max_upload_mb * 1e6)))
    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if host not in LOCAL_HOSTS:
        print(
            f"neuroear serve: warning: listening on {host}, not only on this computer: anyone who can reach it on the "
            "network can use the page and upload files (there is no login)",
            file=sys.stderr,
        )
    print(f"neuroear serve: model {det.name} ({det.provider}); open http://{shown}:{real_port}/  (Ctrl-C stops)", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
