#!/usr/bin/env python3
"""Soak test: `neuroear listen` on a virtual microphone for N minutes, fed looped music in real time.

    python stream/soak.py                       # 30 min, hop 1 s, a private PulseAudio (default)
    python stream/soak.py --minutes 1 --out r.json
    python stream/soak.py --shared              # the running virtual mic of stream/virtual-mic.sh instead
    python stream/soak.py --hog 2               # with 2 busy processes beside it (overload run)

It feeds `neuroear/examples/example.ogg` (looped, at the mic's rate, paced in real time by a
non-blocking writer that starts before `listen` opens the device and stops after it exits),
samples the listen process's RSS, open file descriptors, threads and CPU time every few seconds,
and prints one JSON report (also written to --out): hops expected vs emitted and lost, dropped
hops and input overflows from listen's summary, latency percentiles per minute, RSS slope and
growth, fd and thread counts. Exit status 0 when the targets hold (no lost or dropped hop, RSS
growth under --max-rss-growth-mb per 30 min), 1 otherwise.

By default the mic lives on a PulseAudio daemon of our own (own runtime directory and socket,
started and stopped here), so a soak never shares a FIFO with another writer or changes anyone's
default source. `PrivatePulse` is also what the device-fault tests use.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from feeder import LoopFeeder  # stream/feeder.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
MIC_SCRIPT = ROOT / "stream" / "virtual-mic.sh"
DEFAULT_CLIP = ROOT / "neuroear" / "examples" / "example.ogg"
WARMUP_SECONDS = 60.0  # s: RSS before this is start-up (imports, ORT arenas), not growth


class PrivatePulse:
    """A PulseAudio daemon of our own: own runtime directory and socket, nothing shared.

    ``env`` points clients (pactl, PortAudio's ALSA pulse plugin) at it. ``stop()`` ends the
    daemon by the pid it wrote, never by name.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="neuroear-pa-", dir="/tmp"))  # short: socket paths are limited
        self.socket = self.dir / "native"
        self.env = dict(os.environ)
        self.env.update(
            XDG_RUNTIME_DIR=str(self.dir), PULSE_RUNTIME_PATH=str(self.dir / "pulse"), PULSE_SERVER=f"unix:{self.socket}"
        )
        self.pid: int | None = None

    def start(self) -> "PrivatePulse":
        if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
            raise RuntimeError("PulseAudio (pulseaudio, pulseaudio-utils) is not installed")
        r = subprocess.run(
            ["pulseaudio", "--system=no", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--use-pid-file=yes",
             "--log-target=stderr", "-L", f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}"],
            env=self.env, capture_output=True, text=True, timeout=30,
        )
        for _ in range(100):
            if self.ok():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"private pulseaudio did not come up: {r.stderr.strip()[-300:]}")
        self.pid = int((self.dir / "pulse" / "pid").read_text().strip())
        return self

    def ok(self) -> bool:
        try:
            return subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def pactl(self, *args: str) -> str:
        r = subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout.strip()

    def load_mic(self, name: str, fifo: Path, rate: int) -> str:
        """A pipe source reading s16le mono at ``rate`` from ``fifo``, made the default input; returns its module id."""
        fifo.unlink(missing_ok=True)
        module = self.pactl("load-module", "module-pipe-source", f"source_name={name}", f"file={fifo}", "format=s16le",
                            f"rate={rate}", "channels=1")
        self.pactl("set-default-source", name)
        return module

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(self.pid, 0)
                    time.sleep(0.1)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _proc_sample(pid: int) -> dict | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError):
        return None
    kb = lambda key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1))  # noqa: E731
    tick = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": kb("VmRSS") / 1024,
        "fds": fds,
        "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),
        "cpu_s": (int(stat[11]) + int(stat[12])) / tick,  # utime + stime
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]  # noqa: E731
    return {"p50": round(pick(50), 1), "p95": round(pick(95), 1), "p99": round(pick(99), 1), "max": round(v[-1], 1), "n": len(v)}


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t s, y) in y per hour."""
    if len(points) < 3:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (y - my) for t, y in points) / den * 3600


def _median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if v else float("nan")


def soak(
    *, minutes: float, hop: float, clip: Path, shared: bool, sample_every: float, hog: int, listen_args: list[str],
    max_rss_growth_mb: float,
) -> dict:
    duration = minutes * 60.0
    sys.path.insert(0, str(ROOT))
    from neuroear import audio  # decoding only: the soak process itself stays small

    pulse = None
    mic_env = {}
    try:
        if shared:
            r = subprocess.run(["bash", str(MIC_SCRIPT), "status"], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError("no virtual mic running: `bash stream/virtual-mic.sh start` (or drop --shared)")
            settings = dict(re.findall(r"export (\w+)=(\S+)", r.stdout))
            env = dict(os.environ)
        else:
            pulse = PrivatePulse().start()
            mic_env = {"NEUROEAR_MIC_FIFO": str(pulse.dir / "mic.fifo"), "NEUROEAR_MIC_SOURCE": "neuroear_soak_mic"}
            r = subprocess.run(["bash", str(MIC_SCRIPT), "start"], capture_output=True, text=True, timeout=60,
                               env={**pulse.env, **mic_env})
            if r.returncode != 0:
                raise RuntimeError(f"virtual-mic.sh start failed: {r.stderr.strip()[-300:]}")
            settings = dict(re.findall(r"export (\w+)=(\S+)", r.stdout))
            env = dict(pulse.env)
        fifo, rate = Path(settings["NEUROEAR_MIC_FIFO"]), int(settings["NEUROEAR_MIC_RATE"])
        x = audio.load(clip, sample_rate=rate)
        pcm = (x.clip(-1, 1) * 32767).astype("<i2").tobytes()
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")

        feeder = LoopFeeder(fifo, rate, pcm).start()
        time.sleep(0.3)
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hog)]
        cmd = [sys.executable, "-m", "neuroear", "listen", "--no-dashboard", "--hop", f"{hop:g}", "--duration", f"{duration:g}", *listen_args]
        t_start = time.monotonic()
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        rows: list[tuple[float, float, float]] = []  # (arrival s since start, start, latency_ms)
        bad_lines: list[str] = []
        err_chunks: list[str] = []

        def read_out() -> None:
            for line in proc.stdout:
                try:
                    d = json.loads(line)
                    rows.append((time.monotonic() - t_start, float(d["start"]), float(d["latency_ms"])))
                except (ValueError, KeyError):
                    bad_lines.append(line[:200])

        def read_err() -> None:
            for line in proc.stderr:
                err_chunks.append(line)

        threads = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
        for th in threads:
            th.start()
        samples = []
        deadline = t_start + duration * 1.2 + 60
        next_sample = t_start + 2.0
        while proc.poll() is None and time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_sample:
                s = _proc_sample(proc.pid)
                if s is not None:
                    samples.append({"t": round(now - t_start, 1), **s})
                next_sample += sample_every
            time.sleep(0.2)
        killed = proc.poll() is None
        if killed:
            proc.kill()
        rc = proc.wait()
        wall = time.monotonic() - t_start
        for th in threads:
            th.join(10)
        for h in hogs:
            h.kill()
            h.wait()
        feeder.stop()
    finally:
        if pulse is not None:
            subprocess.run(["bash", str(MIC_SCRIPT), "stop"], capture_output=True, timeout=60, env={**pulse.env, **mic_env})
            pulse.stop()

    err = "".join(err_chunks)
    m = re.search(r"(\d+) processed, (\d+) dropped, (\d+) input overflows", err)
    processed, dropped, overflows = (int(g) for g in m.groups()) if m else (None, None, None)
    expected = int((duration - 1.0) / hop + 1e-9) + 1
    starts = [s for _, s, _ in rows]
    gaps = sum(1 for a, b in zip(starts, starts[1:]) if abs(b - a - hop) > 1e-6)
    per_minute = []
    for k in range(int(wall // 60) + 1):
        lat = [lat for t, _, lat in rows if k * 60 <= t < (k + 1) * 60]
        if lat:
            per_minute.append({"minute": k, **{q: v for q, v in _percentiles(lat).items() if q != "p99"}})
    warm = [s for s in samples if s["t"] >= min(WARMUP_SECONDS, duration / 4)]
    rss_pts = [(s["t"], s["rss_mb"]) for s in warm]
    slope = _slope_per_hour(rss_pts)
    tenth = max(1, len(warm) // 10)
    growth = (_median([s["rss_mb"] for s in warm[-tenth:]]) - _median([s["rss_mb"] for s in warm[:tenth]])) if warm else float("nan")
    cpu = (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / max(1e-9, samples[-1]["t"] - samples[0]["t"]) * 100 if len(samples) > 1 else float("nan")
    report = {
        "command": " ".join(["python", "stream/soak.py", *sys.argv[1:]]),
        "listen": " ".join(["neuroear", *cmd[3:]]),
        "started_utc": started_at,
        "mic": {"private_pulseaudio": not shared, "fifo": str(fifo), "rate_hz": rate, "clip": str(clip.relative_to(ROOT) if clip.is_relative_to(ROOT) else clip)},
        "hog_processes": hog,
        "minutes": minutes,
        "hop_s": hop,
        "exit_code": rc,
        "killed_by_timeout": killed,
        "wall_s": round(wall, 1),
        "hops": {
            "expected": expected,
            "emitted": len(rows),
            "lost": expected - len(rows),
            "processed_by_summary": processed,
            "dropped": dropped,
            "input_overflows": overflows,
            "gaps_in_starts": gaps,
            "unparsable_lines": len(bad_lines),
        },
        "latency_ms": {**_percentiles([lat for _, _, lat in rows]), "per_minute": per_minute},
        "rss_mb": {
            "first": round(samples[0]["rss_mb"], 1) if samples else None,
            "after_warmup": round(warm[0]["rss_mb"], 1) if warm else None,
            "last": round(samples[-1]["rss_mb"], 1) if samples else None,
            "max": round(max(s["rss_mb"] for s in samples), 1) if samples else None,
            "growth_after_warmup": round(growth, 2),
            "slope_mb_per_hour": round(slope, 2),
            "slope_mb_per_30_min": round(slope / 2, 2),
        },
        "fds": {"min": min(s["fds"] for s in samples), "max": max(s["fds"] for s in samples), "first": samples[0]["fds"], "last": samples[-1]["fds"]} if samples else {},
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples)} if samples else {},
        "cpu_percent_of_one_core": round(cpu, 1),
        "feeder": {"bytes_written": feeder.written, "bytes_dropped_undrained": feeder.dropped_bytes, "reader_went_away": feeder.broken},
        "samples": [[s["t"], round(s["rss_mb"], 2), s["fds"], s["threads"]] for s in samples],
        "samples_columns": ["t_s", "rss_mb", "fds", "threads"],
        "stderr_tail": err[-1500:],
    }
    # per 30 min: the worse of the measured growth and the fitted slope; shorter runs are too short to extrapolate
    growth_30 = max(growth * 30 / minutes, slope / 2) if minutes >= 30 else growth
    report["targets"] = {
        "no_lost_hops": report["hops"]["lost"] == 0 and gaps == 0,
        "no_dropped_hops": dropped == 0,
        "rss_growth_under_mb_per_30_min": max_rss_growth_mb,
        "rss_growth_ok": growth_30 < max_rss_growth_mb,
        "fds_flat": bool(samples) and max(s["fds"] for s in warm or samples) - min(s["fds"] for s in warm or samples) <= 2,
        "clean_exit": rc == 0 and not killed and "Traceback" not in err,
    }
    report["pass"] = all(v for k, v in report["targets"].items() if k != "rss_growth_under_mb_per_30_min")
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="stream minutes to listen (default 30)")
    p.add_argument("--hop", type=float, default=1.0, help="listen --hop (default 1)")
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="audio looped into the mic (default the example clip)")
    p.add_argument("--shared", action="store_true", help="use the running virtual mic (virtual-mic.sh status) instead of a private PulseAudio")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS/fd samples (default 5)")
    p.add_argument("--hog", type=int, default=0, help="busy processes to run beside listen (default 0: nominal load)")
    p.add_argument("--max-rss-growth-mb", type=float, default=5.0, help="RSS growth target per 30 min (default 5)")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    p.add_argument("listen_args", nargs="*", help="extra arguments for listen (after --)")
    args = p.parse_args(argv)
    report = soak(minutes=args.minutes, hop=args.hop, clip=args.clip.resolve(), shared=args.shared, sample_every=args.sample_every,
                  hog=args.hog, listen_args=args.listen_args, max_rss_growth_mb=args.max_rss_growth_mb)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
