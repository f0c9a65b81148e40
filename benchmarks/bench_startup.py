"""Start-up time to first detection, peak RSS, and whether torch is imported, for the real CLI in subprocesses.

- start-up: ``python -m neuroear analyze CLIP --format jsonl`` and ``python -m neuroear listen --input CLIP
  --no-dashboard``, wall time from launch to the first JSON line on stdout (median of N runs);
- imports: the same commands under ``python -X importtime``; torch must not appear; the slowest imports listed;
- memory: peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` read by a fresh intermediate process, so that
  only the command itself is counted) of ``analyze`` and ``listen --input`` on a 1-minute and a 1-hour
  16 kHz FLAC file: memory must not grow with file length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, median, portable

RSS_PROBE = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "print(json.dumps({'rc': r.returncode, 'seconds': time.perf_counter() - t0,\n"
    "                  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
    "                  'stderr_tail': r.stderr.decode(errors='replace')[-300:]}))\n"
)


def _env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neuroear", *args]


def first_line(cmd: list[str], *, timeout: float = 120) -> dict:
    """Seconds from launch to the first stdout line, and to exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    t1 = time.perf_counter()
    try:
        p.stdout.read()
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    t2 = time.perf_counter()
    ok = bool(line.strip()) and p.returncode == 0
    try:
        json.loads(line)
    except ValueError:
        ok = False
    return {"first_line_s": t1 - t0, "exit_s": t2 - t0, "ok": ok, "rc": p.returncode, "stderr_tail": "" if ok else err[-300:]}


def startup(model: Path, clip: Path, *, repeats: int) -> dict:
    out = {"clip": clip.name}
    cmds = {
        "analyze": cli("analyze", str(clip), "--format", "jsonl", "--model", str(model)),
        "listen": cli("listen", "--input", str(clip), "--no-dashboard", "--model", str(model)),
    }
    first_line(cmds["analyze"])  # warm the page cache / .pyc files
    for name, cmd in cmds.items():
        runs = [first_line(cmd) for _ in range(repeats)]
        out[name] = {
            "command": portable(" ".join(["python", "-m", "neuroear", *cmd[3:]])),
            "first_detection_s_median": round(median(r["first_line_s"] for r in runs), 3),
            "first_detection_s_all": [round(r["first_line_s"], 3) for r in runs],
            "exit_s_median": round(median(r["exit_s"] for r in runs), 3),
            "ok": all(r["ok"] for r in runs),
        }
        if not out[name]["ok"]:
            out[name]["error"] = next(r["stderr_tail"] for r in runs if not r["ok"])
        out[name]["imports"] = imports(cmd)
    # the interpreter alone, for scale
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        t.append(time.perf_counter() - t0)
    out["bare_python_s_median"] = round(median(t), 3)
    return out


def imports(cmd: list[str]) -> dict:
    """Run ``cmd`` under ``-X importtime``: was torch imported, and the slowest top-level imports."""
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    mods, top = set(), []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:") :].split("|")]
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        name = parts[2]
        mods.add(name.strip())
        if not name.startswith(" "):  # a top-level import (not nested inside another)
            top.append((int(parts[1]), name.strip()))
    top.sort(reverse=True)
    return {
        "torch_imported": any(m == "torch" or m.startswith("torch.") for m in mods),
        "nnAudio_imported": any(m.startswith("nnAudio") for m in mods),
        "slowest_top_level_ms": {n: round(us / 1e3, 1) for us, n in top[:6]},
    }


def peak_rss(cmd: list[str], *, timeout: float = 900) -> dict:
    """Peak RSS (MB) and wall time of ``cmd``, counted by a fresh intermediate process."""
    r = subprocess.run([sys.executable, "-c", RSS_PROBE, *cmd], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 or not r.stdout.strip():
        return {"error": (r.stderr or r.stdout)[-300:]}
    d = json.loads(r.stdout.strip().splitlines()[-1])
    res = {"peak_rss_mb": round(d["maxrss_kb"] / 1024, 1), "seconds": round(d["seconds"], 2), "rc": d["rc"]}
    if d["rc"] != 0:
        res["stderr_tail"] = d["stderr_tail"]
    return res


def memory(model: Path, files: dict[str, tuple[Path, float]]) -> dict:
    """Peak RSS of analyze and listen on files of growing length (``{"short": (path, seconds), …}``).

    ``growth_mb`` compares the longest file with the shortest; ``growth_after_first_batch_mb`` with the
    middle one, which (unlike a 1-minute file) already fills ``analyze``'s 64-window batches.
    """
    out = {k: f"{p.name} ({s:g} s, 16 kHz FLAC)" for k, (p, s) in files.items()}
    out["seconds"] = {k: float(s) for k, (_, s) in files.items()}  # the durations measured, for the table header
    keys = list(files)
    for name, mk in (
        ("analyze", lambda p: cli("analyze", str(p), "--format", "jsonl", "--model", str(model))),
        ("listen", lambda p: cli("listen", "--input", str(p), "--no-dashboard", "--model", str(model))),
    ):
        res = {k: peak_rss(mk(p)) for k, (p, _) in files.items()}
        out[name] = res
        first, last = res[keys[0]], res[keys[-1]]
        if "peak_rss_mb" in first and "peak_rss_mb" in last:
            res["growth_mb"] = round(last["peak_rss_mb"] - first["peak_rss_mb"], 1)
            res["long_x_realtime"] = round(files[keys[-1]][1] / last["seconds"], 1) if last["seconds"] else None
        if len(keys) > 2 and "peak_rss_mb" in res[keys[-2]] and "peak_rss_mb" in last:
            res["growth_after_first_batch_mb"] = round(last["peak_rss_mb"] - res[keys[-2]]["peak_rss_mb"], 1)
    return out
