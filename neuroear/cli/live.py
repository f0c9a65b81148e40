"""``listen`` and ``devices``: parse, build a ``live.session.Session``, draw and print.

The loop is ``live.loop.run``, decisions ``live.policy.Policy``, output ``live.sinks.JsonlSink``,
the view ``live.dashboard.render``; the session wires them. Here: arguments, signals, the
dashboard's terminal, device notices and the final summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

from neuroear.cli.common import PROG, add_decision_options, add_model_options, check_threads, decision_smooth, isatty, out, say
from neuroear.devnull import muted, to_devnull
from neuroear.errors import NeuroEarError
from neuroear.live.session import DEFAULT_THREADS, HOP_MAX_SECONDS, HOP_MIN_SECONDS, QUIET_GATE_DBFS

REFRESH_SECONDS = 0.15  # s between dashboard redraws (~7 Hz: smooth, and cheap)
NOTICE_SECONDS = 10.0  # s a device notice stays on the dashboard


def register(subparsers: Any) -> None:
    """Add ``listen`` and ``devices`` to an argparse subparsers object (``set_defaults(func=…)``)."""
    p = subparsers.add_parser(
        "listen",
        help="detect instruments live from a microphone (or a file, or the demo clip)",
        description=(
            "Capture audio (default input, --device, --input FILE or --demo), run the model on the latest "
            "one-second window every hop and write one JSON line per hop on stdout (when stdout is a pipe, "
            "or with --jsonl) while a dashboard is drawn on stderr (when it is a terminal). "
            "Ctrl-C stops and prints a summary."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--device", metavar="INDEX|NAME", help="input device: index or part of its name, or a PulseAudio/PipeWire source name (see `neuroear devices`)")
    src.add_argument("--input", metavar="FILE", help="read this audio file through the same live loop instead of a device")
    src.add_argument("--demo", action="store_true", help="stream the bundled example clip in real time with the dashboard")
    p.add_argument("--realtime", action="store_true", help="with --input: pace the file like a device (default: as fast as possible)")
    add_model_options(p, threads=DEFAULT_THREADS, threads_help=f"ONNX Runtime threads (default {DEFAULT_THREADS}; 0 = all cores)")
    p.add_argument("--hop", type=float, default=1.0, metavar="SECONDS", help=f"run the model every SECONDS, {HOP_MIN_SECONDS:g}–{HOP_MAX_SECONDS:g} (default 1)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS of audio (stream time)")
    p.add_argument("--threshold", action="append", default=[], metavar="LABEL=VALUE", help="override one label's threshold (repeatable)")
    add_decision_options(p)
    p.add_argument("--gate", type=float, default=QUIET_GATE_DBFS, metavar="DBFS",
                   help=f"windows quieter than DBFS report nothing sounding (default {QUIET_GATE_DBFS:g}; -120 = off)")
    p.add_argument("--record", metavar="FILE", help="keep the session's input as received (.flac, .wav or .ogg) beside its JSON lines")
    p.add_argument("--events", action="store_true", help="print only onset/offset events instead of a line per hop")
    p.add_argument("--jsonl", action="store_true", help="write JSON lines to stdout even when it is a terminal showing the dashboard")
    p.add_argument("--no-dashboard", action="store_true", help="no dashboard (it is also off when stderr is not a terminal)")
    p.add_argument("--rate", type=int, metavar="HZ", help="capture rate (default: the device's own rate)")
    p.add_argument("--channels", type=int, metavar="N", help="capture channels, downmixed to mono (default: up to 2)")
    p.add_argument("--block", type=int, default=None, metavar="FRAMES", help="frames per capture block / file read (default 1024)")
    p.add_argument("--max-lag", type=float, default=None, metavar="SECONDS", help="drop windows that end more than SECONDS behind the newest audio (default max(hop, 0.5))")
    p.add_argument("--reconnect", type=float, default=None, metavar="SECONDS", help="if the device goes away, keep trying to reopen it for SECONDS (default 60; 0 = stop at once)")
    p.set_defaults(func=cmd_listen)

    d = subparsers.add_parser("devices", help="list audio input devices", description="List the audio input devices PortAudio sees, then the PulseAudio/PipeWire sources (when pactl reaches a sound server); * marks the defaults.")
    d.set_defaults(func=cmd_devices)

    v = subparsers.add_parser(
        "virtual-mic", help="a PulseAudio virtual microphone for headless machines and CI",
        description=("Start, check or stop a PulseAudio virtual microphone (the script stream/virtual-mic.sh, shipped "
                     "with the package): whatever is written into its FIFO as raw s16le mono PCM is what `neuroear listen` "
                     "records from the default input. `start` and `status` print the settings as export lines. "
                     "Needs pulseaudio and pactl (apt-get install pulseaudio pulseaudio-utils)."),
    )
    v.add_argument("action", choices=("start", "status", "stop"))
    v.set_defaults(func=cmd_virtual_mic)


# ----------------------------------------------------------------------------- devices


def cmd_devices(args: argparse.Namespace) -> int:
    """Print the input devices as a table on stdout; error if there are none."""
    from neuroear.live.choose import NO_DEVICE_HELP
    from neuroear.live.device import list_devices
    from neuroear.live.pulse import list_sources

    devices = list_devices()
    if not devices:
        raise NeuroEarError(NO_DEVICE_HELP)
    name_w = max(4, min(48, max(len(d.name) for d in devices)))
    api_w = max(8, max(len(d.host_api) for d in devices))
    rows = [f"  {'index':>5}  {'name':<{name_w}}  {'host API':<{api_w}}  {'channels':>8}  {'rate Hz':>7}"]
    for dev in devices:
        mark = "*" if dev.default else " "
        rows.append(f"{mark} {dev.index:>5}  {dev.name[:name_w]:<{name_w}}  {dev.host_api:<{api_w}}  {dev.channels:>8}  {dev.rate:>7}")
    rows.append("* default input; pick another with `neuroear listen --device INDEX|NAME`")
    sources = list_sources()
    if sources:
        src_w = max(4, min(48, max(len(p.name) for p in sources)))
        rows += ["", "PulseAudio/PipeWire sources (recorded through ALSA's pulse device):",
                 f"  {'name':<{src_w}}  {'channels':>8}  {'rate Hz':>7}  description"]
        for p in sources:
            rows.append(f"{'*' if p.default else ' '} {p.name:<{src_w}}  {p.channels:>8}  {p.rate:>7}  {p.description}")
        rows.append("* the server's default source; pick another with `neuroear listen --device NAME` (or pulse:NAME)")
    try:
        out("\n".join(rows))
    except BrokenPipeError:
        to_devnull(sys.stdout)
    return 0


def virtual_mic_script() -> str:
    """Path of the shipped virtual-microphone script (``neuroear/live/virtual-mic.sh``)."""
    from importlib import resources

    p = resources.files("neuroear") / "live" / "virtual-mic.sh"
    if not p.is_file():
        raise NeuroEarError("the virtual-microphone script is missing from this installation (neuroear/live/virtual-mic.sh); reinstall neuroear")
    return str(p)


def cmd_virtual_mic(args: argparse.Namespace) -> int:
    """Run the shipped ``virtual-mic.sh ACTION``; its exit status is ours (its messages are one line each)."""
    import shutil
    import subprocess

    script = virtual_mic_script()
    if shutil.which("bash") is None:
        raise NeuroEarError("`neuroear virtual-mic` needs bash (and pulseaudio, pactl)")
    try:
        return subprocess.call(["bash", script, args.action])
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------------- listen


def _validate(args: argparse.Namespace) -> None:
    from neuroear.live.session import check_hop

    check_hop(args.hop)
    if args.duration is not None and not (args.duration > 0):
        raise NeuroEarError(f"--duration must be a positive number of seconds, got {args.duration:g}")
    if args.realtime and not args.input:
        raise NeuroEarError("--realtime only applies to --input FILE (devices and --demo are real time already)")
    if args.block is not None and args.block <= 0:
        raise NeuroEarError(f"--block must be a positive number of frames, got {args.block}")
    if args.max_lag is not None and not (args.max_lag > 0):
        raise NeuroEarError(f"--max-lag must be a positive number of seconds, got {args.max_lag:g}")
    check_threads(args.threads)
    if (args.input or args.demo) and (args.rate or args.channels or args.reconnect is not None):
        raise NeuroEarError("--rate, --channels and --reconnect apply to devices; a file is read at its own rate and channels")
    if not (-120.0 <= args.gate <= 0.0):
        raise NeuroEarError(f"--gate must be between -120 and 0 dBFS, got {args.gate:g}")
    if args.channels is not None and args.channels <= 0:
        raise NeuroEarError(f"--channels must be a positive number of channels, got {args.channels}")
    if args.rate is not None and args.rate <= 0:
        raise NeuroEarError(f"--rate must be a positive rate in Hz, got {args.rate}")
    if args.reconnect is not None and not (args.reconnect >= 0):
        raise NeuroEarError(f"--reconnect must be 0 or more seconds, got {args.reconnect:g}")
    if args.record is not None:
        from neuroear.live.record import check_record_path

        check_record_path(args.record)
        if args.input and os.path.realpath(args.input) == os.path.realpath(args.record):
            raise NeuroEarError(f"--record {args.record!r} is the --input file; give another name")


def cmd_listen(args: argparse.Namespace) -> int:
    """``neuroear listen``: returns the exit code (0 after Ctrl-C/SIGTERM, end of input or a closed pipe)."""
    from neuroear.infer import Detector
    from neuroear.live import loop
    from neuroear.live.session import Session, device_lost, make_policy, open_source
    from neuroear.live.sinks import JsonlSink

    _validate(args)
    args.smooth = decision_smooth(args)
    detector = Detector(args.model, provider=args.provider, threads=args.threads)
    policy = make_policy(detector, thresholds=args.threshold, hysteresis=args.hysteresis, smooth=args.smooth)
    source = open_source(device=args.device, input=args.input, demo=args.demo, realtime=args.realtime, block=args.block,
                         rate=args.rate, channels=args.channels, reconnect=args.reconnect)
    dashboard_on = not args.no_dashboard and isatty(sys.stderr)
    json_on = args.jsonl or not isatty(sys.stdout) or not dashboard_on
    session = Session(detector=detector, source=source, policy=policy, sink=JsonlSink(sys.stdout) if json_on else None,
                      events=args.events, hop=args.hop, gate_dbfs=None if args.gate <= -120 else args.gate,
                      record=args.record)
    is_device = session.is_device
    stop = threading.Event()
    interrupts = 0

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        stop.set()
        if interrupts > 2 and signum == signal.SIGINT:  # a third Ctrl-C: the user means it
            raise KeyboardInterrupt

    # SIGHUP: the terminal went away (ssh dropped, window closed): stop cleanly like SIGTERM
    handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {s: signal.signal(s, on_signal) for s in handled}
    warned_silence = False
    stats = None

    def notices(dashboard: bool, st: Any) -> None:
        """Messages from the device (rate fallback, lost, back, audio back after starving): a stderr
        line, or the dashboard's notice row."""
        for text in _drain(source) + session.watch(st):
            if dashboard:
                session.message, session.message_until = text, time.monotonic() + NOTICE_SECONDS
            else:
                say(f"{PROG} listen: {text}")

    # without the dashboard stderr is a log or a plain terminal: keep PortAudio's C-level chatter out of
    # it (with the dashboard it scrolls harmlessly under it, and rich keeps sizing the real terminal)
    quiet_c = contextlib.ExitStack()
    if is_device and not dashboard_on:
        quiet_c.enter_context(muted(keep_python=True))
    try:
        if dashboard_on:
            from rich.console import Console

            from neuroear.live.dashboard import PinnedView, render

            console = Console(stderr=True)
            title = "demo" if args.demo else "listening"
            drawing = True  # False once the terminal is gone (EIO after a hang-up): listening goes on

            def draw(st: Any, title: str) -> None:
                nonlocal drawing
                if drawing:
                    try:
                        height = console.height - PinnedView.MIN_SCROLL_ROWS  # the rows pinned above piped output
                        view.update(render(session.state(st, title=title), width=console.width, height=height), refresh=True)
                    except (OSError, ValueError):
                        drawing = False

            with PinnedView(console) as view:

                def on_tick(st: Any) -> None:
                    notices(True, st)
                    draw(st, title)

                stats = session.run(stop=stop, duration=args.duration, max_lag=args.max_lag, on_tick=on_tick,
                                    tick_seconds=REFRESH_SECONDS)
                if stats.stopped_by != "pipe":
                    draw(stats, "stopped")
        else:

            def on_tick(st: Any) -> None:
                nonlocal warned_silence
                notices(False, st)
                if is_device and not warned_silence and st.silent_for > loop.NO_AUDIO_WARN_SECONDS and not source.missing:
                    warned_silence = True
                    say(f"{PROG} listen: no audio from {source.name!r} for {loop.NO_AUDIO_WARN_SECONDS:g} s (muted, unplugged, or a virtual mic nobody writes to?)")
                elif warned_silence and st.silent_for < 1.0:
                    warned_silence = False  # audio is back: warn again next time

            stats = session.run(stop=stop, duration=args.duration, max_lag=args.max_lag, on_tick=on_tick,
                                tick_seconds=REFRESH_SECONDS)
        session.finish()
    except KeyboardInterrupt:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        quiet_c.close()
    for text in _drain(source):
        say(f"{PROG} listen: {text}")
    if stats is not None and stats.stopped_by != "pipe":
        _print_summary(session, stats, args.hop)
    lost = stats is not None and stats.stopped_by == "device lost"
    if stats is not None and not stats.clean_stop:
        # PortAudio is stuck in a clockless source: do not wait on it at interpreter exit
        say(f"{PROG} listen: {source.name!r} did not stop in time; exiting without closing it")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if lost:
            say(f"{PROG}: error: {device_lost(source)}")
        os._exit(1 if lost else 0)
    if lost:
        raise device_lost(source)
    return 0


def _drain(source: Any) -> list[str]:
    out = list(getattr(source, "notices", []) or [])
    if out:
        source.notices.clear()
    return out


def _recorded(rec: Any) -> str:
    if rec is None:
        return ""
    if not rec.frames:
        return f"nothing (no audio arrived), {rec.path} not written"
    return f"{rec.path} ({rec.seconds:.2f} s at {rec.rate} Hz, {rec.channels} ch, as received)"


def _print_summary(session: Any, stats: Any, hop: float) -> None:
    from neuroear.live.dashboard import STAGES, summary
    from neuroear.live.loop import percentiles

    latency = {}
    for k in STAGES:
        d = getattr(stats, f"lat_{k}")
        if d:
            p50, p95 = percentiles(d)
            latency[k] = (p50, p95, float(max(d)))
    text = summary(
        stream_seconds=stats.stream_seconds, wall_seconds=stats.wall_seconds, hops=stats.hops, dropped=stats.dropped,
        overflows=stats.overflows, hop=hop, detections=session.detections, onsets=session.onsets, latency=latency,
        source=stats.source, stopped_by=stats.stopped_by, clipped=stats.clipped, peak_dbfs=stats.peak_max_dbfs,
        recorded=_recorded(session.recorder), smooth=session.policy.config.smooth,
    )
    if getattr(stats, "reconnects", 0):
        text += f"\n  device    lost and reopened {stats.reconnects} time(s); stream time paused while it was gone"
    say(text)
