"""Audio sources (a PyAudio device, a file) and the one streaming loop that serves them both.

Data flow, one consumer thread::

    source.read() → blocks [frames, channels] at the source's rate
      → to_mono → sanitize → audio.Resampler (16 kHz, streaming, no look-ahead, state kept across blocks)
      → RingBuffer (preallocated) → a window [16000] every hop samples → predict → on_hop

The device callback only copies its block and enqueues it (PortAudio's thread must never
wait on Python work); everything else happens in ``run()``. Time is counted in samples of
the stream, never wall clock, so a file pushed in any block sizes gives exactly the windows
(and probabilities) of ``audio.windows(audio.load(file), hop=…)``. When the consumer falls
behind a live source, windows that ended more than ``max_lag`` before the newest sample are
dropped and counted: latency stays bounded.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from neuroear import audio
from neuroear.errors import NeuroEarError
from neuroear.ringbuffer import Block, Streamer, Window

DEFAULT_BLOCK_FRAMES = 1024  # frames per PortAudio buffer / file read: 21–23 ms at 44.1–48 kHz
DEFAULT_MAX_LAG_SECONDS = 0.5  # s: a window that ended longer ago than max(this, hop) is dropped
QUEUE_SECONDS = 10.0  # s of device audio held between callback and consumer before blocks are lost
NO_AUDIO_WARN_SECONDS = 2.0  # s without a block from a device before we say so
STOP_TIMEOUT_SECONDS = 2.0  # s to wait for PortAudio to stop a stream (a clockless pipe source can hang)
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipping
CLIP_HOLD_SECONDS = 2.0  # s the clipping warning stays up after the last clipped sample
LATENCY_KEEP = 100_000  # hops of latency samples kept for the final summary (~28 h at 1 s)
RECENT_KEEP = 240  # hops behind the dashboard's live percentiles (1 min at 0.25 s)
EXAMPLE_NAMES = ("example.ogg", "example.flac", "example.wav")
PA_INPUT_OVERFLOW = 0x2  # paInputOverflow in a PortAudio callback's status flags
DEFAULT_RECONNECT_SECONDS = 60.0  # s: how long a lost device is retried before listening ends
RECONNECT_FIRST_SECONDS = 0.5  # s: first wait before reopening a lost device; doubles per failed try
RECONNECT_MAX_BACKOFF_SECONDS = 5.0  # s: longest wait between tries


# ----------------------------------------------------------------------------- sources


class Source(Protocol):
    """What ``run()`` needs from a source."""

    name: str
    rate: int  # Hz
    channels: int
    live: bool  # True: pushes audio in real time (drops allowed); False: pulled as fast as we go
    overflows: int  # input overflows reported by the driver, plus blocks lost in our queue

    def start(self) -> None: ...

    def read(self, timeout: float) -> list[Block] | None:
        """Blocks available now (waiting up to ``timeout`` s for one); [] if none yet, None at the end."""
        ...

    def stop(self) -> bool:
        """Stop capturing; False if the driver did not stop in time."""
        ...


class FileSource:
    """A file read block by block at its own rate and channel count.

    ``realtime=False``: as fast as the consumer reads (``live`` False: never drops).
    ``realtime=True``: each block becomes available when a device would deliver it, so a slow
    consumer sees a backlog exactly like a device (``live`` True).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block: int = DEFAULT_BLOCK_FRAMES,
        realtime: bool = False,
        name: str | None = None,
    ) -> None:
        import soundfile as sf

        if block <= 0:
            raise NeuroEarError(f"block size must be a positive number of frames, got {block}")
        self.path = audio.check_readable(path)
        try:
            self._file = sf.SoundFile(str(self.path))
        except Exception as exc:
            raise audio._open_error(self.path, exc) from None
        self.name = name or str(path)
        self.rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        if self.rate <= 0:
            raise NeuroEarError(f"{self.path}: invalid sample rate {self.rate}")
        self.block = int(block)
        self.realtime = realtime
        self.live = realtime
        self.overflows = 0
        self.latency = 0.0  # s of driver buffering (none)
        self._t0: float | None = None
        self._frames = 0  # frames handed out
        self._pending: np.ndarray | None = None
        self._eof = False

    def start(self) -> None:
        self._t0 = time.monotonic()

    def _next_raw(self) -> np.ndarray | None:
        if self._pending is not None:
            raw, self._pending = self._pending, None
            return raw
        if self._eof:
            return None
        try:
            raw = self._file.read(self.block, dtype="float32", always_2d=True)
        except Exception as exc:
            raise NeuroEarError(
                f"{self.path}: cannot decode past {self._frames / self.rate:.2f} s ({audio._first_line(exc)}): the file is cut "
                "short or corrupt there; the lines above are complete (`neuroear analyze` skips damaged stretches)"
            ) from None
        if raw.shape[0] < self.block:
            self._eof = True
        return raw if raw.shape[0] else None

    def read(self, timeout: float) -> list[Block] | None:
        if self._t0 is None:
            self.start()
        if not self.realtime:
            raw = self._next_raw()
            if raw is None:
                return None
            self._frames += raw.shape[0]
            return [Block(raw, time.monotonic())]
        out: list[Block] = []
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            raw = self._next_raw()
            if raw is None:
                return out or None
            due = self._t0 + (self._frames + raw.shape[0]) / self.rate
            now = time.monotonic()
            if due > now:
                if out or due > deadline:
                    self._pending = raw
                    if not out:
                        time.sleep(max(0.0, deadline - now))
                    return out
                time.sleep(due - now)
            self._frames += raw.shape[0]
            out.append(Block(raw, due))

    def stop(self) -> bool:
        self._file.close()
        return True


@dataclass(frozen=True)
class DeviceInfo:
    """An input device as PortAudio sees it."""

    index: int
    name: str
    host_api: str
    channels: int  # max input channels
    rate: int  # default sample rate, Hz
    default: bool


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (ALSA/JACK probing chatter from PortAudio) for the block."""
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


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise NeuroEarError(
            "live capture needs PyAudio: pip install 'neuroear[live]' (and the PortAudio library, "
            "e.g. apt-get install portaudio19-dev); `listen --input FILE` and `--demo` work without it"
        ) from None
    return pyaudio


NO_DEVICE_HELP = (
    "no audio input device found (PortAudio sees no microphone): connect one, or on a headless machine "
    "start a virtual one with `bash stream/virtual-mic.sh start`; `neuroear devices` lists inputs and "
    "`--device INDEX|NAME` picks one; `neuroear listen --demo` or `--input FILE` needs no device"
)


def _open_pa():
    pyaudio = _pyaudio()
    with _quiet_stderr():
        try:
            return pyaudio.PyAudio()
        except OSError as exc:
            raise NeuroEarError(f"cannot start PortAudio ({exc})") from None


def _device_list(pa) -> list[DeviceInfo]:
    try:
        default = int(pa.get_default_input_device_info()["index"])
    except (OSError, IOError):
        default = -1
    out = []
    for i in range(pa.get_device_count()):
        d = pa.get_device_info_by_index(i)
        if int(d.get("maxInputChannels", 0)) <= 0:
            continue
        try:
            api = pa.get_host_api_info_by_index(int(d["hostApi"]))["name"]
        except (OSError, IOError, KeyError):
            api = "?"
        out.append(DeviceInfo(i, str(d["name"]), str(api), int(d["maxInputChannels"]), int(round(float(d["defaultSampleRate"]))), i == default))
    return out


def list_devices() -> list[DeviceInfo]:
    """Input devices PortAudio can see (empty list if none)."""
    pa = _open_pa()
    try:
        with _quiet_stderr():
            return _device_list(pa)
    finally:
        pa.terminate()


def pick_device(devices: list[DeviceInfo], spec: str | int | None) -> DeviceInfo:
    """Resolve ``--device``: None → the default input; an index; or a case-insensitive name substring."""
    if not devices:
        raise NeuroEarError(NO_DEVICE_HELP)
    if spec is None or str(spec).strip() == "":
        for d in devices:
            if d.default:
                return d
        raise NeuroEarError(
            "no default audio input device; pick one of these with --device INDEX|NAME: "
            + "; ".join(f"{d.index}: {d.name}" for d in devices)
        )
    s = str(spec).strip()
    if s.lstrip("-").isdigit():
        for d in devices:
            if d.index == int(s):
                return d
        raise NeuroEarError(f"--device {s}: no input device with that index; `neuroear devices` lists them")
    exact = [d for d in devices if d.name.lower() == s.lower()]
    if len(exact) == 1:
        return exact[0]
    matches = [d for d in devices if s.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NeuroEarError(f"--device {s!r}: no input device name contains that; `neuroear devices` lists them")
    raise NeuroEarError(f"--device {s!r} matches several devices ({'; '.join(f'{d.index}: {d.name}' for d in matches)}); use the index")


class DeviceSource:
    """Capture from a PortAudio input device with PyAudio in callback mode.

    Opens the device at its own default rate (or ``rate``) with ``channels`` channels (default:
    up to 2 of what it offers); the loop downmixes and resamples. A device that refuses the rate
    asked for (or is held by another program at its own rate) is opened at its default rate, then
    48 and 44.1 kHz: the loop resamples whatever it gets. The callback copies the block and
    enqueues it, nothing else; overflow flags are counted.

    A device that stops (unplugged, removed from the sound server) is noticed within a read
    timeout and reopened with exponential backoff (0.5 s doubling to 5 s) for up to ``reconnect``
    seconds, at the same rate and channels; then ``read()`` returns None and ``lost`` is True.
    Stream time pauses while the device is gone (no audio is invented). ``notices`` collects
    one-line messages for people (the caller drains it).
    """

    def __init__(
        self,
        device: str | int | None = None,
        *,
        rate: int | None = None,
        channels: int | None = None,
        block: int = DEFAULT_BLOCK_FRAMES,
        reconnect: float = DEFAULT_RECONNECT_SECONDS,
    ) -> None:
        if block <= 0:
            raise NeuroEarError(f"block size must be a positive number of frames, got {block}")
        self._spec = device
        self._pa = _open_pa()
        try:
            with _quiet_stderr():
                devices = _device_list(self._pa)
            self.info = pick_device(devices, device)
        except BaseException:
            self._pa.terminate()
            raise
        self.name = self.info.name
        self.rate = int(rate or self.info.rate)
        self.channels = int(channels or min(self.info.channels, 2))
        if self.channels < 1 or self.channels > self.info.channels:
            self._pa.terminate()
            raise NeuroEarError(f"--channels {self.channels}: device {self.name!r} offers 1 to {self.info.channels}")
        self.block = int(block)
        self.live = True
        self.latency = 0.0  # s, PortAudio's input latency once open
        self.reconnect = float(reconnect)
        self.reconnects = 0  # times the device came back after being lost
        self.lost = False  # True once the device is gone for good (read() returns None)
        self.resumed_at = 0.0  # monotonic s of the last reconnection
        self.notices: list[str] = []  # one-line messages for people, drained by the caller
        self._lost_since: float | None = None
        self._backoff = RECONNECT_FIRST_SECONDS
        self._next_try = 0.0
        self._queue: queue.Queue = queue.Queue(maxsize=max(4, int(QUEUE_SECONDS * self.rate / self.block)))
        self._flag_overflows = 0
        self._lost_frames = 0  # written by the callback thread only
        self._lost_blocks = 0
        self._lost_seen = 0
        self._stream = None

    @property
    def overflows(self) -> int:
        """Input overflows flagged by PortAudio plus blocks our queue had to drop."""
        return self._flag_overflows + self._lost_blocks

    @property
    def missing(self) -> bool:
        """True while the device is gone (being reconnected, or given up on)."""
        return self._lost_since is not None or self.lost

    def _callback(self, in_data, frame_count, time_info, status):  # PortAudio's thread: copy, enqueue, return
        t = time.monotonic()
        if status & PA_INPUT_OVERFLOW:
            self._flag_overflows += 1
        try:
            self._queue.put_nowait((in_data, frame_count, t))
        except queue.Full:
            self._lost_frames += frame_count
            self._lost_blocks += 1
        return (None, 0)  # paContinue

    def _open(self, rate: int):
        pyaudio = _pyaudio()
        with _quiet_stderr():
            return self._pa.open(
                format=pyaudio.paFloat32,
                channels=self.channels,
                rate=rate,
                input=True,
                input_device_index=self.info.index,
                frames_per_buffer=self.block,
                stream_callback=self._callback,
            )

    def start(self) -> None:
        asked = self.rate
        rates = list(dict.fromkeys([asked, self.info.rate, 48000, 44100]))
        errors = []
        for r in rates:
            try:
                self._stream = self._open(r)
            except (OSError, ValueError) as exc:
                errors.append(f"{r} Hz: {exc}")
                continue
            self.rate = r
            break
        if self._stream is None:
            self._pa.terminate()
            self._pa = None
            busy = any("unavailable" in e.lower() or "busy" in e.lower() for e in errors)
            raise NeuroEarError(
                f"cannot open input device {self.info.index} ({self.name}) with {self.channels} channel(s) "
                f"({'; '.join(errors)})" + ("; it is busy (another program holds it?) or gone" if busy else "")
                + "; pick another with --device, or try --channels 1"
            )
        if self.rate != asked:
            self._queue = queue.Queue(maxsize=max(4, int(QUEUE_SECONDS * self.rate / self.block)))
            self.notices.append(
                f"device {self.name!r} refused {asked} Hz ({errors[0].split(': ', 1)[1]}); "
                f"recording at {self.rate} Hz and resampling"
            )
        try:
            self.latency = float(self._stream.get_input_latency())
        except Exception:
            self.latency = 0.0

    def read(self, timeout: float) -> list[Block] | None:
        try:
            items = [self._queue.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return None if self._watch() else []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        out = []
        for data, frames, t in items:
            lost = self._lost_frames - self._lost_seen
            self._lost_seen += lost
            x = np.frombuffer(data, dtype=np.float32)[: frames * self.channels].reshape(-1, self.channels)
            out.append(Block(x, t, lost))
        return out

    def _watch(self) -> bool:
        """No audio came: is the stream dead? Reconnect with backoff; True once we give up."""
        now = time.monotonic()
        if self.lost:
            return True
        if self._lost_since is None:
            st = self._stream
            try:
                alive = st is not None and bool(st.is_active())
            except Exception:
                alive = False
            if alive:
                return False  # merely quiet (a muted or clockless source): the caller warns about that
            self._lost_since, self._backoff, self._next_try = now, RECONNECT_FIRST_SECONDS, now + RECONNECT_FIRST_SECONDS
            if self.reconnect > 0:
                self.notices.append(f"input device {self.name!r} stopped (unplugged or removed?); reconnecting for up to {self.reconnect:g} s")
            if not self._release():
                self.notices.append(f"input device {self.name!r} is stuck in the driver; cannot reconnect")
                self.lost = True
                return True
        gone_for = now - self._lost_since
        if gone_for >= self.reconnect:
            self.lost = True
            return True
        if now >= self._next_try:
            if self._reopen():
                self.reconnects += 1
                self.resumed_at = time.monotonic()
                self.notices.append(f"input device {self.name!r} is back after {gone_for:.1f} s (reconnect {self.reconnects}); listening at {self.rate} Hz")
                self._lost_since = None
                return False
            self._backoff = min(self._backoff * 2, RECONNECT_MAX_BACKOFF_SECONDS)
            self._next_try = now + self._backoff
        return False

    def _release(self) -> bool:
        """Close the dead stream and PortAudio (in a thread: a wedged driver must not wedge us)."""
        stream, pa, self._stream = self._stream, self._pa, None

        def close() -> None:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
            with contextlib.suppress(Exception):
                pa.terminate()

        th = threading.Thread(target=close, name="neuroear-device-release", daemon=True)
        th.start()
        th.join(STOP_TIMEOUT_SECONDS)
        self._pa = None
        return not th.is_alive()

    def _reopen(self) -> bool:
        """One reconnection try: a fresh PortAudio (it lists devices only at start), same device, same rate."""
        try:
            self._pa = _open_pa()
            with _quiet_stderr():
                devices = _device_list(self._pa)
            info = None
            for spec in (self.info.name, self._spec):
                with contextlib.suppress(NeuroEarError):
                    info = pick_device(devices, spec)
                    break
            if info is None or info.channels < self.channels:
                raise NeuroEarError("device not back yet")
            self.info = info
            self._stream = self._open(self.rate)
            return True
        except (OSError, ValueError, NeuroEarError):
            if self._pa is not None:
                with contextlib.suppress(Exception):
                    self._pa.terminate()
                self._pa = None
            return False

    def stop(self) -> bool:
        """Stop and close the stream; False if PortAudio did not return within STOP_TIMEOUT_SECONDS.

        A clockless source (a PulseAudio pipe with no writer) spins inside PortAudio and never lets
        go: then the stream is abandoned and the caller should exit without waiting on it.
        """
        stream, pa, self._stream, self._pa = self._stream, self._pa, None, None
        if stream is None:
            if pa is not None:
                with contextlib.suppress(Exception):
                    pa.terminate()
            return True

        def close() -> None:
            with contextlib.suppress(Exception):
                stream.stop_stream()
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(Exception):
                if pa is not None:
                    pa.terminate()

        th = threading.Thread(target=close, name="neuroear-device-stop", daemon=True)
        th.start()
        th.join(STOP_TIMEOUT_SECONDS)
        return not th.is_alive()


def example_clip() -> Path:
    """The example clip shipped with the package (``neuroear/examples/example.*``)."""
    base = resources.files("neuroear") / "examples"
    for name in EXAMPLE_NAMES:
        p = base / name
        if p.is_file():
            return Path(str(p))
    raise NeuroEarError(
        "the bundled example clip is missing (looked for neuroear/examples/"
        + "|".join(EXAMPLE_NAMES)
        + "); reinstall neuroear, or run `neuroear listen --input FILE --realtime` on any audio file"
    )


# ----------------------------------------------------------------------------- the loop


def percentiles(values, qs=(50, 95)) -> tuple[float, ...]:
    """Percentiles of ``values`` (NaN when empty)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        return tuple(float("nan") for _ in qs)
    return tuple(float(x) for x in np.percentile(v, qs))


@dataclass
class Stats:
    """Counters and timings of one ``run()``, readable at any time (dashboard, summary).

    Latencies in ms, per hop: ``capture`` (last sample of the window arrived → window cut),
    ``infer`` (model), ``emit`` (policy + sink), ``total`` (arrived → line handed to the sink).
    """

    source: str = ""
    rate: int = 0
    channels: int = 0
    device_latency: float = 0.0  # s reported by PortAudio
    started: float = field(default_factory=time.monotonic)
    stream_samples: int = 0  # at 16 kHz
    hops: int = 0
    dropped: int = 0
    overflows: int = 0
    level_dbfs: float = -120.0
    clip_until: float = 0.0
    last_audio: float = field(default_factory=time.monotonic)
    stopped_by: str = ""  # "end" | "duration" | "signal" | "pipe" | "device lost"
    reconnects: int = 0  # times a lost device came back
    clean_stop: bool = True  # False: the device did not stop in time (see DeviceSource.stop)
    lat_capture: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_infer: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_emit: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))
    lat_total: deque = field(default_factory=lambda: deque(maxlen=LATENCY_KEEP))

    @property
    def stream_seconds(self) -> float:
        return self.stream_samples / audio.SAMPLE_RATE

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def clipping(self) -> bool:
        return time.monotonic() < self.clip_until

    @property
    def silent_for(self) -> float:
        """s since the source last delivered audio."""
        return time.monotonic() - self.last_audio

    def recent(self, name: str, n: int = RECENT_KEEP) -> tuple[float, float]:
        """(p50, p95) of the last ``n`` hops of one latency series, ms."""
        d: deque = getattr(self, f"lat_{name}")
        k = min(n, len(d))
        return percentiles([d[i] for i in range(len(d) - k, len(d))]) if k else (float("nan"), float("nan"))


OnHop = Callable[[Window, np.ndarray, Stats], bool]
OnTick = Callable[[Stats], None]


def run(
    source: Source,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    hop: int,
    on_hop: OnHop,
    on_tick: OnTick | None = None,
    stop: threading.Event | None = None,
    duration: float | None = None,
    max_lag: int | None = None,
    tick_seconds: float = 0.125,
) -> Stats:
    """The streaming loop: read blocks, cut windows, run ``predict`` on each, hand them to ``on_hop``.

    ``predict(windows [n, 16000]) -> probs [n, n_labels]``; ``on_hop(window, probs [n_labels], stats)``
    returns False to stop (a closed pipe). ``on_tick(stats)`` at most every ``tick_seconds`` (the
    dashboard). ``hop`` and ``max_lag`` in samples at 16 kHz; ``max_lag`` only applies to live
    sources (default ``max(hop, 0.5 s)``). ``duration`` stops after that many seconds of stream
    time; ``stop`` is set by a signal handler. The source is started and stopped here.
    """
    if source.live and max_lag is None:
        max_lag = max(hop, int(DEFAULT_MAX_LAG_SECONDS * audio.SAMPLE_RATE))
    source.start()  # first: a device may fall back to another rate, which the streamer must know
    streamer = Streamer(
        in_rate=source.rate,
        hop=hop,
        max_lag=max_lag if source.live else None,
        stop_at=None if duration is None else int(round(duration * audio.SAMPLE_RATE)),
    )
    stats = Stats(source=source.name, rate=source.rate, channels=source.channels)
    stop = stop or threading.Event()
    last_tick = 0.0
    ended = False

    def tick(force: bool = False) -> None:
        nonlocal last_tick
        now = time.monotonic()
        if on_tick is not None and (force or now - last_tick >= tick_seconds):
            last_tick = now
            on_tick(stats)

    late_dropped = 0
    stale_after = None if not source.live or max_lag is None else max_lag / audio.SAMPLE_RATE  # s

    def handle(windows: list[Window]) -> bool:
        nonlocal late_dropped
        for w in windows:
            if stop.is_set():
                stats.stopped_by = stats.stopped_by or "signal"
                return False
            t0 = time.monotonic()
            # a window that straddles a device gap waited for the device, not for us: not stale
            fresh_from = max(w.t_capture, float(getattr(source, "resumed_at", 0.0)))
            if stale_after is not None and not w.tail and t0 - fresh_from > stale_after:
                late_dropped += 1  # went stale while earlier windows of this batch ran
                stats.dropped = streamer.dropped + late_dropped
                continue
            probs = np.asarray(predict(w.samples[None, :]))[0]
            t1 = time.monotonic()
            stats.hops += 1
            stats.lat_capture.append((w.t_ready - w.t_capture) * 1e3)
            stats.lat_infer.append((t1 - t0) * 1e3)
            keep = on_hop(w, probs, stats)
            t2 = time.monotonic()
            stats.lat_emit.append((t2 - t1) * 1e3)
            stats.lat_total.append((t2 - w.t_capture) * 1e3)
            if not keep:
                stats.stopped_by = stats.stopped_by or "pipe"
                return False
            tick()
        return True

    stats.device_latency = float(getattr(source, "latency", 0.0))
    stats.started = stats.last_audio = time.monotonic()
    clean = True
    try:
        tick(force=True)
        while not stop.is_set():
            blocks = source.read(tick_seconds)
            stats.reconnects = int(getattr(source, "reconnects", 0))
            if blocks is None and getattr(source, "lost", False):  # a device gone for good: no tail to pad
                stats.stopped_by = stats.stopped_by or "device lost"
                break
            if blocks is None:  # end of a file
                ended = True
                windows = streamer.push([], last=True) + streamer.finish()
            else:
                if blocks:
                    stats.last_audio = time.monotonic()
                windows = streamer.push(blocks)
            stats.stream_samples = streamer.total
            stats.dropped = streamer.dropped + late_dropped
            stats.overflows = source.overflows
            stats.level_dbfs = streamer.level_dbfs
            if streamer.peak >= CLIP_LEVEL:
                stats.clip_until = time.monotonic() + CLIP_HOLD_SECONDS
            if not handle(windows):
                break
            tick()
            if ended or streamer.done:
                stats.stopped_by = stats.stopped_by or ("end" if ended else "duration")
                break
        else:
            stats.stopped_by = stats.stopped_by or "signal"
    finally:
        clean = source.stop()
        stats.overflows = source.overflows
    stats.clean_stop = clean
    tick(force=True)
    return stats
