"""Live capture from a PortAudio input device (PyAudio, callback mode), and device listing.

The callback only copies its block and enqueues it (PortAudio's thread must never wait on
Python work); ``loop.run()`` does everything else. PyAudio is imported on first use, so the
rest of the package works without the 'live' extra.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time

import numpy as np

from neuroear.errors import NeuroEarError
from neuroear.live import pulse
from neuroear.live.choose import DeviceInfo, pick_device, resolve_device
from neuroear.live.sources import DEFAULT_BLOCK_FRAMES, Block
from neuroear.devnull import muted as _quiet_stderr  # PortAudio probes ALSA/JACK on fd 2

QUEUE_SECONDS = 10.0  # s of device audio held between callback and consumer before blocks are lost
STOP_TIMEOUT_SECONDS = 2.0  # s to wait for PortAudio to stop a stream (a clockless pipe source can hang)
PA_INPUT_OVERFLOW = 0x2  # paInputOverflow in a PortAudio callback's status flags
DEFAULT_RECONNECT_SECONDS = 60.0  # s: how long a lost device is retried before listening ends
RECONNECT_FIRST_SECONDS = 0.5  # s: first wait before reopening a lost device; doubles per failed try
RECONNECT_MAX_BACKOFF_SECONDS = 5.0  # s: longest wait between tries


def _pyaudio():
    try:
        import pyaudio
    except ImportError:
        raise NeuroEarError(
            "live capture needs PyAudio: pip install 'neuroear[live]' (and the PortAudio library, "
            "e.g. apt-get install portaudio19-dev); `listen --input FILE` and `--demo` work without it"
        ) from None
    return pyaudio


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
            self.info, self.pulse_source = resolve_device(devices, device)
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
        with _quiet_stderr(), pulse.selected(self.pulse_source):
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
            if self.pulse_source is None:
                # a PortAudio device is looked up among PortAudio's devices only: asking the sound
                # server (pactl, up to seconds) on every try would stall the consumer while a mic is out
                for spec in (self.info.name, self._spec):
                    with contextlib.suppress(NeuroEarError):
                        info = pick_device(devices, spec)
                        break
            else:
                with contextlib.suppress(NeuroEarError):
                    info, _ = resolve_device(devices, pulse.PREFIX + self.pulse_source)
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
