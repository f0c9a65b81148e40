"""The Live tab's WebSocket: the browser's microphone through the streaming loop of ``neuroear listen``.

Nothing of the live path is re-implemented here. ``SocketSource`` is one more source for
``live.session.Session`` (beside the device and the file): the socket handler only copies each
PCM message into its queue, as the device callback does. ``Session.run`` then does what it does
for ``listen``: ``live.loop.run`` downmixes, sanitizes and resamples from the browser's rate (any)
to the model card's framing (``detector.framing``) in the ``Streamer``, cuts a window every hop,
runs the model and drops stale windows when behind; ``Session.on_hop`` applies the ``Policy`` and
builds each hop's ``Detection.to_json()`` (``sinks.detection_record``), which our sink sends back
over the socket.

Protocol (JSON text frames unless said)::

    client → {"rate": 48000, "channels": 1, "hop": 0.5, "hysteresis": 0, "smooth": 3}   first message (smooth: default the windows of the last 2 s)
    client → binary: float32 little-endian PCM, interleaved when channels > 1            any sizes
    server → {"type": "ready", "labels": [...], "thresholds": {...}, "hop": 0.5, "smooth": 3, ...}
    server → {"type": "hop", <the line `neuroear listen` prints>, "in_frames": N, "dropped": n, "level_dbfs": x}
    server → {"type": "status", "level_dbfs": x, "dropped": n, "overflows": n, "stream_seconds": s}  4 per second
    server → {"type": "error", "error": "one line"}  then the socket closes
    server → {"type": "end", "hops": n, "dropped": n, "stream_seconds": s}  after the client sends {"type": "stop"}

``in_frames`` counts the client's frames up to and including the window's last sample, so the
page can look up when it captured that sample and measure its latency to the screen.
"""

from __future__ import annotations

import asyncio
import json
import math
import queue
import threading
import time
from typing import Any

import numpy as np

from neuroear.errors import NeuroEarError

# --- the live path of `neuroear listen`: every import of it is here (repoint these after a move) ---
from neuroear.live.loop import Stats  # what the one streaming loop (live.loop.run) reports per hop and tick
from neuroear.live.policy import default_smooth  # the decision's default moving average, as `listen`
from neuroear.live.session import HOP_MAX_SECONDS, HOP_MIN_SECONDS, Session, check_hop, make_policy  # listen's hop bounds and check, policy; loop + record per hop
from neuroear.live.sources import Block  # what a source hands to the loop
from neuroear.live.streamer import Window  # one window cut by the Streamer
# -----------------------------------------------------------------------------------------------------

HOP_RANGE = (HOP_MIN_SECONDS, HOP_MAX_SECONDS)  # s
RATE_RANGE = (8_000, 384_000)  # Hz a browser may capture at
MAX_CHANNELS = 8
QUEUE_SECONDS = 2.0  # s of audio the socket may queue ahead of the loop before blocks are dropped (and counted)
TICK_SECONDS = 0.25  # s between status messages (level meter, drops)
CONFIG_TIMEOUT_SECONDS = 10.0  # s a client has to send its first message
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one PCM message: ~5 s of 48 kHz stereo float32


class SocketSource:
    """A ``live.loop.run`` source fed by a WebSocket: ``feed()`` blocks in (event-loop thread), ``read()`` them out (loop thread).

    ``live`` is True: the loop may drop windows when behind. A backlog beyond
    ``QUEUE_SECONDS`` is dropped at the door and counted in ``overflows``; the next block
    carries the lost frames as ``lost_frames`` so that stream time stays true.
    """

    live = True

    def __init__(self, *, rate: int, channels: int = 1, name: str = "browser") -> None:
        self.name, self.rate, self.channels = name, int(rate), int(channels)
        self.overflows = 0
        self.latency = 0.0  # s of driver buffering: unknown to us (the browser's own)
        self._q: queue.Queue = queue.Queue()
        self._queued = 0  # frames waiting in _q
        self._lost = 0  # frames dropped since the last block queued
        self._lock = threading.Lock()
        self._closed = False
        self._ended = False

    def start(self) -> None:
        """Nothing to start: the browser is already capturing."""

    def feed(self, samples: np.ndarray) -> None:
        """Queue one block [frames, channels] float32 that just arrived (never blocks)."""
        n = int(samples.shape[0])
        with self._lock:
            if self._closed:
                return
            if self._queued + n > QUEUE_SECONDS * self.rate:
                self._lost += n
                self.overflows += 1
                return
            lost, self._lost = self._lost, 0
            self._queued += n
        self._q.put(Block(samples, time.monotonic(), lost_frames=lost))

    def close(self) -> None:
        """End of stream: ``read()`` returns the blocks still queued, then None."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._q.put(None)

    def read(self, timeout: float) -> list[Block] | None:
        """Blocks queued now (waiting up to ``timeout`` s for the first); [] if none; None after ``close()``."""
        if self._ended:
            return None
        try:
            item = self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        out: list[Block] = []
        while True:
            if item is None:
                self._ended = True
                return out or None
            out.append(item)
            with self._lock:
                self._queued -= item.samples.shape[0]
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return out

    def stop(self) -> bool:
        self.close()
        return True


class LiveRegistry:
    """Counts open live sockets against a limit (each costs one loop thread and a model call per hop)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = int(limit), 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open = max(0, self.open - 1)


class _SocketSink:
    """``Session``'s sink: each record (plus the hop's extras, set by ``_SocketSession``) goes to the socket's send queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> None:
        self.loop, self.out = loop, out
        self.extra: dict[str, Any] = {}
        self.closed = False

    def put(self, item: Any) -> bool:
        if self.closed:
            return False
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the event loop is gone: the server is stopping
            self.closed = True
        return not self.closed

    def write(self, record: dict) -> bool:
        return self.put({"type": "hop", **record, **self.extra})


class _SocketSession(Session):
    """``listen``'s ``Session`` over a ``SocketSource``; each hop also tells the page where it is in its own stream.

    ``in_frames``: the client's frames up to and including the window's last sample (at the
    client's rate), so the page can look up when it captured that sample; plus the drop count
    and the input level, as the dashboard shows them.
    """

    source: SocketSource
    sink: _SocketSink

    def on_hop(self, window: Window, probs: np.ndarray, stats: Stats) -> bool:
        self.sink.extra = {
            "in_frames": math.ceil(window.end * self.source.rate / self.framing.sample_rate),
            "dropped": stats.dropped,
            "level_dbfs": round(float(stats.level_dbfs), 1),
        }
        return super().on_hop(window, probs, stats)


def parse_config(text: str) -> dict[str, Any]:
    """Validate the client's first message; NeuroEarError with one line saying what is wrong."""
    try:
        cfg = json.loads(text)
    except ValueError:
        raise NeuroEarError("first message must be JSON like {\"rate\": 48000, \"hop\": 0.5}") from None
    if not isinstance(cfg, dict):
        raise NeuroEarError("first message must be a JSON object")
    rate = cfg.get("rate")
    if not isinstance(rate, (int, float)) or rate != int(rate) or not (RATE_RANGE[0] <= rate <= RATE_RANGE[1]):
        raise NeuroEarError(f"rate must be a whole number of Hz in {RATE_RANGE[0]}-{RATE_RANGE[1]}, got {rate!r}")
    channels = cfg.get("channels", 1)
    if not isinstance(channels, int) or not (1 <= channels <= MAX_CHANNELS):
        raise NeuroEarError(f"channels must be 1-{MAX_CHANNELS}, got {channels!r}")
    hop = cfg.get("hop", 1.0)
    if not isinstance(hop, (int, float)):
        raise NeuroEarError(f"hop must be a number of seconds, got {hop!r}")
    check_hop(hop)  # listen's own bounds and message
    hysteresis, smooth = cfg.get("hysteresis", 0.0), cfg.get("smooth")
    if smooth is None:  # as `listen`: the windows of the last 2 s
        smooth = default_smooth(hop)
    if not isinstance(hysteresis, (int, float)) or not isinstance(smooth, int) or isinstance(smooth, bool):
        raise NeuroEarError("hysteresis must be a number and smooth a whole number of hops")
    return {"rate": int(rate), "channels": channels, "hop": float(hop), "hysteresis": float(hysteresis), "smooth": smooth}


async def serve_socket(ws: Any, detector: Any, registry: LiveRegistry) -> None:
    """Run one live session over the Starlette WebSocket ``ws`` until the client stops or leaves."""
    from starlette.websockets import WebSocketDisconnect

    await ws.accept()
    if not registry.acquire():
        await _fail(ws, f"too many live sessions (at most {registry.limit} at once); close another tab and retry", code=1013)
        return
    stop = threading.Event()
    source: SocketSource | None = None
    try:
        try:
            first = await asyncio.wait_for(ws.receive_text(), CONFIG_TIMEOUT_SECONDS)
            cfg = parse_config(first)
            policy = make_policy(detector, hysteresis=cfg["hysteresis"], smooth=cfg["smooth"])
        except (asyncio.TimeoutError, NeuroEarError, KeyError, TypeError) as exc:
            msg = str(exc) if isinstance(exc, NeuroEarError) else "send the JSON configuration first, e.g. {\"rate\": 48000, \"hop\": 0.5}"
            await _fail(ws, msg, code=1008)
            return
        except WebSocketDisconnect:
            return
        rate, channels, hop = cfg["rate"], cfg["channels"], cfg["hop"]
        loop = asyncio.get_running_loop()
        out: asyncio.Queue = asyncio.Queue()
        sink = _SocketSink(loop, out)
        source = SocketSource(rate=rate, channels=channels)
        session = _SocketSession(detector=detector, source=source, policy=policy, sink=sink, hop=hop)

        def on_tick(stats: Stats) -> None:
            sink.put({"type": "status", "level_dbfs": round(float(stats.level_dbfs), 1), "dropped": stats.dropped,
                      "overflows": stats.overflows, "stream_seconds": round(stats.stream_seconds, 3)})

        def run() -> Stats:
            return session.run(stop=stop, on_tick=on_tick, tick_seconds=TICK_SECONDS)

        loop_task = asyncio.ensure_future(asyncio.to_thread(run))
        await ws.send_json({"type": "ready", "labels": list(detector.labels), "rate": rate, "hop": hop, "model": detector.name,
                            "provider": detector.provider, "smooth": policy.config.smooth,
                            "thresholds": dict(zip(policy.config.labels, policy.config.on))})

        async def send_all() -> None:
            while True:
                item = await out.get()
                if item is None:
                    return
                await ws.send_text(json.dumps(item))

        sender = asyncio.ensure_future(send_all())
        stopped_by_client = False
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is not None:
                    if len(data) % (4 * channels) or len(data) > MAX_MESSAGE_BYTES:
                        raise NeuroEarError(f"a PCM message must hold whole float32 frames of {channels} channel(s), at most {MAX_MESSAGE_BYTES} bytes")
                    source.feed(np.frombuffer(data, dtype="<f4").reshape(-1, channels))
                elif msg.get("text") is not None:
                    try:
                        kind = json.loads(msg["text"]).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == "stop":
                        stopped_by_client = True
                        break
        except NeuroEarError as exc:
            stop.set()
            source.close()
            await loop_task
            sender.cancel()
            await _fail(ws, str(exc), code=1003)
            return
        source.close()  # the loop scores what is queued, pads the tail, and returns
        if not stopped_by_client:
            stop.set()
        stats = await loop_task
        session.finish()
        sink.put({"type": "end", "hops": stats.hops, "dropped": stats.dropped, "stream_seconds": round(stats.stream_seconds, 3)})
        sink.put(None)
        try:
            await sender
            if stopped_by_client:
                await ws.close()
        except Exception:  # the client went away first: nothing to tell it
            pass
    finally:
        stop.set()
        if source is not None:
            source.close()
        registry.release()


async def _fail(ws: Any, message: str, *, code: int) -> None:
    try:
        await ws.send_json({"type": "error", "error": message.splitlines()[0]})
        await ws.close(code=code)
    except Exception:  # already gone
        pass
