"""Which input ``--device`` means: PortAudio's devices by index or name, then the sound server's
PulseAudio/PipeWire sources (``live.pulse``). Pure functions over a device list, no PortAudio here.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuroear.errors import NeuroEarError
from neuroear.live import pulse


@dataclass(frozen=True)
class DeviceInfo:
    """An input device as PortAudio sees it."""

    index: int
    name: str
    host_api: str
    channels: int  # max input channels
    rate: int  # default sample rate, Hz
    default: bool


NO_DEVICE_HELP = (
    "no audio input device found (PortAudio sees no microphone): connect one, or on a headless machine "
    "start a virtual one with `neuroear virtual-mic start`; `neuroear devices` lists inputs and "
    "`--device INDEX|NAME` picks one; `neuroear listen --demo` or `--input FILE` needs no device"
)


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


def _carrier(devices: list[DeviceInfo]) -> DeviceInfo | None:
    """PortAudio's way into the sound server: ALSA's ``pulse`` device, else ``default``."""
    for name in ("pulse", "default"):
        for d in devices:
            if d.name == name:
                return d
    return None


def resolve_device(devices: list[DeviceInfo], spec: str | int | None) -> tuple[DeviceInfo, str | None]:
    """Resolve ``--device`` to (PortAudio device, PulseAudio/PipeWire source name or None).

    PortAudio's own devices come first (index, exact name, name part). A spec no PortAudio device
    matches, or one written ``pulse:NAME``, is looked up among the sound server's sources (exact
    name, else part of name or description); it is recorded through ALSA's ``pulse`` device with
    ``PULSE_SOURCE`` set (see ``live.pulse``). The returned info then carries the source's name,
    channels and rate.
    """
    s = "" if spec is None else str(spec).strip()
    explicit = s.lower().startswith(pulse.PREFIX)
    if not explicit:
        try:
            return pick_device(devices, spec), None
        except NeuroEarError as exc:
            if s == "" or s.lstrip("-").isdigit() or "no input device name contains" not in str(exc):
                raise
    sources = pulse.list_sources()
    found = pulse.find_source(sources, s)
    if isinstance(found, list):
        raise NeuroEarError(f"--device {s!r} matches several PulseAudio/PipeWire sources ({'; '.join(p.name for p in found)}); give the full name")
    if found is None:
        where = ("the sound server lists: " + "; ".join(p.name for p in sources)) if sources else "no PulseAudio/PipeWire sources reachable (pactl)"
        raise NeuroEarError(f"--device {s!r}: no input device or PulseAudio/PipeWire source name contains that ({where}); `neuroear devices` lists them")
    carrier = _carrier(devices)
    if carrier is None:
        raise NeuroEarError(
            f"--device {s!r} is a PulseAudio/PipeWire source, but PortAudio has no 'pulse' or 'default' ALSA device to "
            "record it through (install the ALSA pulse plugin, e.g. apt-get install libasound2-plugins)"
        )
    info = DeviceInfo(carrier.index, found.name, f"{carrier.host_api} → pulse", found.channels or carrier.channels,
                      found.rate or carrier.rate, found.default)
    return info, found.name


__all__ = ["DeviceInfo", "NO_DEVICE_HELP", "pick_device", "resolve_device"]
