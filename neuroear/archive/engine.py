"""Run ``analyze`` over many files on Ray: a pool of actors, each holding one ONNX session.

The unit of work is one file. Ray Data feeds the file list, one file per block, to
``map_batches`` over an actor pool; each actor loads the model once and runs the very
``analyze_file`` that ``neuroear analyze`` runs (same decoding, windowing and batching, so the
same numbers), then writes the file's windows and its completion marker through ``Store``.
Windows never travel through Ray's object store: only a small result row per file comes back
to the driver, for progress. Ray re-creates a killed actor and retries its file; a file that
kills its worker ``TASK_RETRIES + 1`` times is reported as failed and the run goes on.

Inputs and ``--out`` must be visible under the same paths on every node (one machine, or a
shared file system).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

import numpy as np

from neuroear import audio
from neuroear.analyze import BATCH, WindowResult, analyze_file
from neuroear.archive.store import Input, Store, list_inputs
from neuroear.archive.summary import instruments
from neuroear.errors import NeuroEarError
from neuroear.framing import HOP_SECONDS
from neuroear.infer import Detector
from neuroear.live.policy import LATEST_GATE, PolicyConfig, resolve_smooth
from neuroear.metadata import file_sha256
from neuroear.devnull import muted as muted_stderr

TASK_RETRIES = 2  # a file is retried this often after its worker died (Ray's default is forever)
PROGRESS_SECONDS = 2.0  # s of wall time between progress lines on stderr
CRASH_ENV = "NEUROEAR_ARCHIVE_CRASH_FILE"  # tests only: an actor exits hard once when it meets this file name


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


class FileAnalyzer:
    """Ray Data actor: loads the model once, analyses one file per call and writes its parts.

    ``__call__(batch)`` takes ``{"source": [n] str, "size": [n] int64, "mtime_ns": [n] int64}`` and
    returns ``{"id", "source", "status", "error", "duration" (s), "windows", "seconds" (s of wall time)}``,
    one entry per file.
    """

    CONFIG: dict[str, Any] = {}  # set on the subclass the engine makes: out, model, provider, threads, hop_seconds, thresholds, batch

    def __init__(self) -> None:
        self._setup(**self.CONFIG)

    def _setup(self, *, out: str, model: str, provider: str, threads: int, hop_seconds: float, thresholds: list[float], batch: int, smooth: int = 1, hysteresis: float = 0.0) -> None:
        from neuroear.infer import Detector

        self.det = Detector(model, provider=provider, threads=threads)
        self.store = Store(out)
        self.hop, self.batch = hop_seconds, batch
        self.smooth, self.hysteresis = smooth, hysteresis
        self.thr = np.asarray(thresholds, dtype=np.float32)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def analyze(self, inp: Input) -> dict[str, Any]:
        """Analyse one file and write windows/<id> then files/<id>; returns its summary row."""
        t0 = time.perf_counter()
        starts: list[float] = []
        ends: list[float] = []
        probs: list[np.ndarray] = []
        masks: list[np.ndarray] = []  # bool [n_labels] per window: the policy's own (WindowResult.mask)
        status, error = "ok", None
        decoded: float | None = None  # s of audio analyze_file decoded; None if it broke off

        def results() -> Iterator[WindowResult]:
            nonlocal decoded
            decoded = yield from analyze_file(inp.source, self.hop, detector=self.det, thresholds=self.thr, source=inp.source, batch=self.batch, smooth=self.smooth, hysteresis=self.hysteresis)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for r in results():
                    starts.append(r.start)
                    ends.append(r.end)
                    probs.append(r.probs)
                    masks.append(r.mask)
            except NeuroEarError as exc:  # the windows decoded before a mid-file error stay, as in `analyze`
                status, error = "error", _one_line(exc)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop an archive
                status, error = "error", f"{inp.source}: unexpected {type(exc).__name__} ({_one_line(exc)})"
        crash = os.environ.get(CRASH_ENV)
        if crash and Path(inp.source).name == Path(crash).name and Path(crash).exists():
            Path(crash).unlink()  # once: the retry succeeds
            os._exit(1)  # a killed worker, mid-file, before anything is written
        st, en = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
        p = np.stack(probs) if probs else np.zeros((0, len(self.det.labels)), dtype=np.float32)
        on = np.stack(masks) if masks else np.zeros((0, len(self.det.labels)), dtype=bool)
        if starts or status == "ok":
            self.store.write_windows(inp.fid, inp.source, self.det.labels, st, en, p, on)
        if decoded is not None:
            duration = decoded
        else:  # decoding broke off (or never began): the header, if readable, says how long the file is
            try:
                duration = audio.info(inp.source).duration
            except NeuroEarError:
                duration = float(en.max()) if en.size else 0.0
        row = {
            "id": inp.fid,
            "source": inp.source,
            "size": inp.size,
            "mtime_ns": inp.mtime_ns,
            "status": status,
            "error": error,
            "warnings": [str(w.message) for w in caught],
            "duration": float(duration),
            "windows": len(starts),
            "instruments": instruments(st, en, on, self.det.labels),
            "seconds": round(time.perf_counter() - t0, 4),
            "worker": self.worker,
        }
        self.store.write_marker(row)
        return row

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self.analyze(Input(str(s), int(z), int(m))) for s, z, m in zip(batch["source"], batch["size"], batch["mtime_ns"])]
        keys = ("id", "source", "status", "error", "duration", "windows", "seconds")
        out = {k: np.array([r[k] for r in rows], dtype=object) for k in keys}
        out["error"] = np.array([r["error"] or "" for r in rows], dtype=object)
        return out


@dataclass
class Report:
    """What a run did: counts, seconds of audio analysed and wall seconds (startup included)."""

    files: int = 0  # input files listed
    skipped: int = 0  # complete from an earlier run
    done: int = 0  # analysed now, ok
    failed: int = 0  # analysed now, error (see errors.parquet)
    audio_seconds: float = 0.0  # audio analysed now
    wall_seconds: float = 0.0  # whole run, Ray startup included
    startup_seconds: float = 0.0  # until the first file came back
    workers: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def realtime(self) -> float:
        """× real time: seconds of audio analysed per second of wall time."""
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ModuleNotFoundError:
        raise NeuroEarError("--engine ray needs ray: pip install 'neuroear[archive]'") from None
    return ray


def _quiet_ray_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own progress line says it in files and hours
    ctx.print_on_execution_start = False
    ctx.max_errored_blocks = -1  # a file that keeps killing its worker is reported, not fatal
    for name in ("ray", "ray.data", "ray._private", "ray.util"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    detector: Detector | None = None,
    provider: str = "auto",
    threads: int = 1,
    hop_seconds: float = HOP_SECONDS,
    thresholds: np.ndarray | None = None,
    smooth: int | None = None,
    hysteresis: float = 0.0,
    address: str | None = None,
    workers: int = 0,
    batch: int = BATCH,
    gpus_per_worker: float = 0.0,
    log: TextIO | None = sys.stderr,
    prog: str = "neuroear",
) -> Report:
    """Analyse every audio file under ``paths`` on Ray into Parquet under ``out``.

    ``address``: None starts a local Ray runtime, ``auto`` or ``HOST:PORT`` joins a cluster.
    ``workers``: actors (0 = one per ``threads`` CPUs of the cluster); each reserves ``threads``
    CPUs and ``gpus_per_worker`` GPUs and runs ONNX Runtime with ``threads`` intra-op threads
    and ``batch`` windows per call. ``thresholds`` [n_labels] default to the model's;
    ``smooth`` (None: the windows of the last 2 s) and ``hysteresis`` decide ``active`` as
    ``analyze_file`` does (per file).
    Files already complete in ``out`` (same path, size, mtime) are skipped. Progress, and one
    line per failed file, go to ``log``. Raises NeuroEarError on bad options or a failed run.
    """
    t_start = time.perf_counter()
    if threads < 1 or batch < 1 or workers < 0 or gpus_per_worker < 0:
        raise NeuroEarError("--threads and --batch must be at least 1, --workers and --gpus-per-worker at least 0")
    say: Callable[[str], None] = (lambda m: print(f"{prog}: {m}", file=log, flush=True)) if log else (lambda m: None)
    # the model is checked here (or by the caller who loaded ``detector``), before any cluster starts
    det = detector if detector is not None else Detector(model, provider="cpu", threads=1)
    thr = det.thresholds if thresholds is None else np.asarray(thresholds, dtype=np.float32)
    if thr.shape != (len(det.labels),):
        raise NeuroEarError(f"thresholds must be [{len(det.labels)}], got {list(thr.shape)}")
    smooth = resolve_smooth(smooth, hop_seconds)
    PolicyConfig.build(det.labels, thr, hysteresis=hysteresis, smooth=smooth)  # bad values: one error before any cluster
    # recorded only when a window is not decided alone, so archives written before these options
    # resume with --smooth 1; the latest-window gate came later than smoothing, so it is recorded
    # too (an archive smoothed without it refuses to mix in rows decided with it)
    decision: dict[str, Any] = {}
    if smooth != 1:
        decision["smooth"] = int(smooth)
    if hysteresis:
        decision["hysteresis"] = float(hysteresis)
    store = Store(out)
    store.check_config(
        {
            "model": det.name,
            "model_sha256": file_sha256(det.path),
            "labels": list(det.labels),
            "hop_seconds": float(hop_seconds),
            "thresholds": {lab: round(float(t), 6) for lab, t in zip(det.labels, thr)},
            **decision,
            **({"latest_gate": LATEST_GATE} if smooth != 1 else {}),
        }
    )
    store.clean_temporaries()
    files = list(audio.iter_files([str(p) for p in paths]))
    if not files:
        raise NeuroEarError("no audio files given")
    inputs = list_inputs(files)
    todo, skip = store.pending(inputs)
    rep = Report(files=len(inputs), skipped=len(skip))
    say(f"{len(inputs)} files, {len(skip)} complete from an earlier run, {len(todo)} to analyse into {store.root}")
    if todo:
        _execute(todo, rep, store, det, thr, say, model=str(det.path), provider=provider, threads=threads, hop_seconds=hop_seconds, decision=decision, address=address, workers=workers, batch=batch, gpus_per_worker=gpus_per_worker, t_start=t_start)
    n_files, n_errors = store.consolidate()
    rep.wall_seconds = time.perf_counter() - t_start
    say(
        f"done: {rep.done} analysed, {rep.skipped} skipped, {rep.failed} failed; {rep.audio_seconds / 3600:.2f} h of audio "
        f"in {rep.wall_seconds:.1f} s ({rep.realtime:.0f}× real time, {rep.workers} workers); "
        f"{store.root / 'windows'}, summary.parquet ({n_files} files), errors.parquet ({n_errors})"
    )
    return rep


def _execute(todo: list[Input], rep: Report, store: Store, det, thr: np.ndarray, say: Callable[[str], None], *, model: str, provider: str, threads: int, hop_seconds: float, decision: dict[str, Any], address: str | None, workers: int, batch: int, gpus_per_worker: float, t_start: float) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        # Ray's C++ core logs (e.g. ray-project/ray#53727's warning about Ray Data's own actor
        # arguments) are not for users; failures reach us as exceptions. Set it to see them.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        try:
            with muted_stderr():  # the core announces that level on stderr as it starts
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        except ConnectionError as exc:
            raise NeuroEarError(f"--address {address}: cannot reach a Ray cluster ({_one_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001 - ray raises several types for a bad address
            raise NeuroEarError(f"cannot start or join Ray ({_one_line(exc)})") from None
    try:
        _quiet_ray_data(ray)
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0))
        if gpus_per_worker and gpus < gpus_per_worker:
            raise NeuroEarError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPUs")
        if not workers:
            workers = max(1, int(gpus // gpus_per_worker) if gpus_per_worker else cpus // threads)
        workers = min(workers, len(todo))
        rep.workers = workers
        if provider == "auto" and gpus_per_worker:
            provider = "cuda"
        say(f"Ray cluster: {cpus} CPUs, {gpus:g} GPUs; {workers} workers × {threads} CPU" + (f", {gpus_per_worker:g} GPU" if gpus_per_worker else ""))
        items = [{"source": i.source, "size": i.size, "mtime_ns": i.mtime_ns} for i in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # the options travel in the class itself: constructor arguments would sit in the object
        # store, from where a restarted actor might not get them back (ray-project/ray#53727)
        cfg = {"out": str(store.root), "model": model, "provider": provider, "threads": threads, "hop_seconds": hop_seconds, "thresholds": [float(t) for t in thr], "batch": batch, **decision}
        udf = type("FileAnalyzer", (FileAnalyzer,), {"CONFIG": cfg})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")  # max_task_retries has no named parameter yet
            ds = ds.map_batches(
                udf,
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=threads,
                num_gpus=gpus_per_worker or None,
                max_task_retries=TASK_RETRIES,
            )
        seen: set[str] = set()
        last = 0.0
        try:
            for row in ds.iter_rows():
                if not seen:
                    rep.startup_seconds = time.perf_counter() - t_start
                seen.add(row["id"])
                _count(rep, row, say)
                now = time.perf_counter()
                if now - last >= PROGRESS_SECONDS:
                    last = now
                    rep.wall_seconds = now - t_start
                    say(f"{len(seen)}/{len(todo)} files, {rep.audio_seconds / 3600:.2f} h of audio, {rep.realtime:.0f}× real time, {rep.failed} failed")
        except NeuroEarError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. every actor failed to load the model
            raise NeuroEarError(f"Ray run failed: {_one_line(exc)}") from None
        # a file whose worker died TASK_RETRIES + 1 times has no result row: its marker, if any, says what happened
        for inp in todo:
            if inp.fid in seen:
                continue
            row = store.marker(inp.fid)
            if row is None or row["mtime_ns"] != inp.mtime_ns:
                row = {"id": inp.fid, "source": inp.source, "size": inp.size, "mtime_ns": inp.mtime_ns, "status": "error",
                       "error": f"{inp.source}: its worker died {TASK_RETRIES + 1} times analysing it (crash in the decoder?)",
                       "warnings": [], "duration": 0.0, "windows": 0, "instruments": [], "seconds": 0.0, "worker": ""}
                store.write_marker(row)
            _count(rep, row, say)
    finally:
        if started_here:
            ray.shutdown()


def _count(rep: Report, row: dict[str, Any], say: Callable[[str], None]) -> None:
    rep.audio_seconds += float(row["duration"] or 0.0)
    if row["status"] == "ok":
        rep.done += 1
    else:
        rep.failed += 1
        rep.errors.append(str(row["error"]))
        say(f"error: {row['error']}")


def run_args(args, thresholds: np.ndarray, *, detector: Detector | None = None, prog: str = "neuroear") -> int:
    """``neuroear analyze --engine ray``: check the options, run, return the exit status (1 if any file failed)."""
    if args.engine != "ray":
        raise NeuroEarError("--out is for --engine ray (--engine local writes rows to stdout)")
    if not args.out:
        raise NeuroEarError("--engine ray needs --out DIR (where the Parquet tables go)")
    if args.plot or args.format:
        raise NeuroEarError("--plot and --format are for --engine local; --engine ray writes Parquet under --out")
    rep = run(
        args.paths,
        args.out,
        model=args.model,
        detector=detector,
        provider=args.provider,
        threads=args.threads or 1,
        hop_seconds=args.hop,
        thresholds=thresholds,
        smooth=args.smooth,
        hysteresis=args.hysteresis,
        address=args.address,
        workers=args.workers,
        batch=args.batch or BATCH,
        gpus_per_worker=args.gpus_per_worker,
        prog=prog,
    )
    if rep.failed:
        print(f"{prog}: {rep.failed} of {rep.files} files failed (listed in {Path(args.out) / 'errors.parquet'})", file=sys.stderr)
        return 1
    return 0
