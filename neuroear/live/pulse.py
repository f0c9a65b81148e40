"""PulseAudio / PipeWire sources (microphones, monitors) as ``--device`` names.

PortAudio (as Debian and most distributions build it) reaches the sound server only through
ALSA's ``pulse``/``default`` devices, which record from the server's default source. The server's
own source names (``alsa_input.usb-…``, ``neuroear_mic``) come from ``pactl`` (``pulseaudio-utils``
on PulseAudio, ``pipewire-pulse`` on PipeWire); a chosen one is recorded through the ALSA ``pulse``
device with ``PULSE_SOURCE`` set while the stream opens: libpulse connects a record stream that
names no device to ``PULSE_SOURCE`` (the variable ``pacat``/``parecord``, SoX and PyAudio users
rely on for the same job). Everything here fails soft: no ``pactl``, no server → no sources.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterator

PACTL_TIMEOUT_SECONDS = 5.0  # s: a wedged sound server must not hang `devices` or `listen`
PREFIX = "pulse:"  # `--device pulse:NAME` asks for a PulseAudio/PipeWire source explicitly


@dataclass(frozen=True)
class PulseSource:
    """One PulseAudio/PipeWire source as ``pactl`` lists it."""

    name: str
    description: str
    channels: int
    rate: int  # Hz, the source's own sample rate
    default: bool  # the server's default source
    monitor: bool  # records what a sink plays (``….monitor``), not a microphone


def _pactl(*args: str) -> str | None:
    if shutil.which("pactl") is None:
        return None
    try:
        r = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=PACTL_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def _spec(text: str) -> tuple[int, int]:
    """'s16le 2ch 48000Hz' → (2 channels, 48000 Hz); zeros where absent."""
    ch = re.search(r"(\d+)ch\b", text)
    hz = re.search(r"(\d+)\s*Hz\b", text)
    return (int(ch.group(1)) if ch else 0, int(hz.group(1)) if hz else 0)


def list_sources() -> list[PulseSource]:
    """The sound server's sources (``pactl -f json list sources``, else the short text list); [] if unreachable."""
    default = (_pactl("get-default-source") or "").strip()
    found: list[tuple[str, str, str, bool]] = []  # name, description, sample spec, monitor
    raw = _pactl("-f", "json", "list", "sources")
    parsed = None
    if raw:
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
    if isinstance(parsed, list):
        for s in parsed:
            if isinstance(s, dict) and s.get("name"):
                props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
                mon = props.get("device.class") == "monitor" or str(s["name"]).endswith(".monitor")
                found.append((str(s["name"]), str(s.get("description", "")), str(s.get("sample_specification", "")), mon))
    else:  # older pactl (< 16): no JSON; "index name driver spec state" lines
        for line in (_pactl("list", "short", "sources") or "").splitlines():
            parts = line.split("\t")
            if len(parts) >= 4:
                found.append((parts[1], "", parts[3], parts[1].endswith(".monitor")))
    out = []
    for name, desc, spec, mon in found:
        ch, hz = _spec(spec)
        out.append(PulseSource(name, desc, ch, hz, name == default, mon))
    return out


def find_source(sources: list[PulseSource], spec: str) -> PulseSource | None | list[PulseSource]:
    """A source by exact name, else by a case-insensitive part of its name or description.

    Returns the source, None if nothing matches, or the list of matches if several do.
    """
    s = spec.strip()
    if s.lower().startswith(PREFIX):
        s = s[len(PREFIX):]
    exact = [p for p in sources if p.name == s] or [p for p in sources if p.name.lower() == s.lower()]
    if len(exact) == 1:
        return exact[0]
    low = s.lower()
    matches = [p for p in sources if low in p.name.lower() or (p.description and low in p.description.lower())]
    if len(matches) > 1:  # "neuroear_mic" is part of "neuroear_mic_sink.monitor": prefer what is not a monitor
        mics = [p for p in matches if not p.monitor]
        if len(mics) == 1 and not low.endswith("monitor"):
            return mics[0]
    if len(matches) == 1:
        return matches[0]
    return matches or None


@contextlib.contextmanager
def selected(source: str | None) -> Iterator[None]:
    """Set ``PULSE_SOURCE`` for the block (a stream opened inside records from ``source``); restores it after."""
    if source is None:
        yield
        return
    saved = os.environ.get("PULSE_SOURCE")
    os.environ["PULSE_SOURCE"] = source
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PULSE_SOURCE", None)
        else:
            os.environ["PULSE_SOURCE"] = saved


__all__ = ["PulseSource", "list_sources", "find_source", "selected", "PREFIX"]
