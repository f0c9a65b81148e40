"""The same hour of audio through `neuroear analyze` and `neuroear analyze --engine ray`.

    python benchmarks/archive.py                       # 12 × 5 min of 44.1 kHz FLAC, about 2 min on 2 cores
    python benchmarks/archive.py --files 4 --minutes 1 # a quick look
    python benchmarks/archive.py --out benchmarks/results/archive-2cpu.json

Both run as the user runs them (a `neuroear` subprocess each; the Ray one starts its own local
runtime), so the wall times include start-up. For Ray, the actors' own time per file (the
``seconds`` column of summary.parquet) separates the work from the engine's overhead:
overhead = wall − busy / workers. × real time = seconds of audio / seconds of wall time.
The audio: the real dev clips (or the example clip) end to end, tiled, written to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (benchmarks/common.py: machine record, load average)

ROOT = common.ROOT
DEV = Path(os.environ.get("NEUROEAR_SHARED", ROOT.parent / "shared")) / "data" / "real-dev"
RATE = 44_100  # Hz: files are written at a common archive rate, so both engines pay for resampling


def base_audio() -> np.ndarray:
    """The real dev clips end to end at RATE (mono), or the example clip if the set is absent."""
    from neuroear import audio

    clips = sorted(DEV.glob("*/*.flac")) or [ROOT / "neuroear" / "examples" / "example.ogg"]
    return np.concatenate([audio.load(c, sample_rate=RATE) for c in clips])


def write_set(folder: Path, files: int, seconds: float) -> float:
    """``files`` FLAC files of ``seconds`` each (the base audio tiled, each file starting elsewhere); returns total s."""
    import soundfile as sf

    base = base_audio()
    n = int(seconds * RATE)
    for i in range(files):
        x = np.roll(np.tile(base, -(-n // base.size) + 1), -i * base.size // max(files, 1))[:n]
        sf.write(str(folder / f"rec{i:03d}.flac"), x, RATE, subtype="PCM_16")
    return files * seconds


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return wall, r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=5.0, help="minutes per file (12 × 5 = one hour)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray actor counts to run")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    py = [sys.executable, "-m", "neuroear"]
    res: dict = {"machine": common.machine_info(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="neuroear-archive-bench-") as tmp:
        data = Path(tmp) / "audio"
        data.mkdir()
        audio_s = write_set(data, args.files, args.minutes * 60)
        res["audio"] = {"files": args.files, "seconds": audio_s, "rate_hz": RATE, "format": "FLAC PCM_16 mono"}
        print(f"{args.files} files, {audio_s / 3600:.2f} h of audio; load average {common.loadavg()}", file=sys.stderr)

        def record(name: str, wall: float, *, analysed: bool = True, **extra) -> None:
            row = {"run": name, "wall_s": round(wall, 2), **({"x_realtime": round(audio_s / wall, 1)} if analysed else {}), "loadavg": common.loadavg(), **extra}
            res["runs"].append(row)
            print(json.dumps(row), file=sys.stderr)

        for threads in (0, 1):
            wall, _ = timed(py + ["analyze", str(data), "--format", "jsonl", "--threads", str(threads)])
            record(f"analyze --threads {threads}", wall, command=f"neuroear analyze DIR --format jsonl --threads {threads} > /dev/null")
        for w in args.workers:
            out = Path(tmp) / f"out-{w}"
            cmd = py + ["analyze", "--engine", "ray", str(data), "--out", str(out), "--workers", str(w)]
            wall, _ = timed(cmd)
            busy = float(np.sum(pq.read_table(out / "summary.parquet").column("seconds").to_numpy()))
            record(
                f"ray --workers {w}",
                wall,
                command=f"neuroear analyze --engine ray DIR --out OUT --workers {w}",
                actor_busy_s=round(busy, 2),
                x_realtime_per_actor=round(audio_s / busy, 1),
                overhead_s=round(wall - busy / w, 2),
            )
            wall, _ = timed(cmd)  # the same command again: every file complete, all skipped
            record(f"ray --workers {w}, resumed (all skipped)", wall, analysed=False)
    res["machine"]["loadavg_end"] = common.loadavg()
    if args.out:
        common.write_json(args.out, res)
    print(json.dumps(res["runs"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
