"""The output folder of ``--engine ray``: Parquet parts written exactly once, resumable.

Layout of ``DIR``::

    archive.json           what produced the results (model, its SHA-256, labels, hop, thresholds)
    windows/<id>.parquet   one part per input file: one row per window
    files/<id>.parquet     one row per input file: its summary, and the file's completion marker
    summary.parquet        all files/ rows in one table (rewritten at the end of every run)
    errors.parquet         the files that failed: source and a one-line reason

``<id>`` is derived from the file's absolute path, so a file has one windows part whatever
happens: every part is written under a hidden temporary name and renamed into place
(``os.replace`` is atomic), the windows part first and the marker last. A killed worker or
driver leaves at most a hidden temporary (ignored by pyarrow, pandas and ``*.parquet`` globs,
removed by the next run) or a windows part without its marker, which the next run rewrites
with the same rows. A file is complete when its marker says ``ok`` for the size and
modification time it has now; a second run skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neuroear.errors import NeuroEarError

FORMAT_VERSION = 1  # layout / schema of DIR; bumped on any incompatible change
CONFIG_NAME = "archive.json"


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise NeuroEarError("--engine ray needs pyarrow: pip install 'neuroear[archive]'") from None
    return pa, pq


@dataclass(frozen=True)
class Input:
    """One input file as listed by the driver: absolute path, size (bytes), mtime (ns), its id."""

    source: str
    size: int
    mtime_ns: int

    @property
    def fid(self) -> str:
        return file_id(self.source)


def file_id(source: str) -> str:
    """Stable id of an input file (20 hex digits of the SHA-1 of its absolute path)."""
    return hashlib.sha1(source.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def list_inputs(files: Sequence[os.PathLike[str] | str]) -> list[Input]:
    """Absolute path, size and mtime of each file; a missing one gets size -1 (its worker reports it)."""
    out, seen = [], set()
    for f in files:
        src = os.path.abspath(f)
        if src in seen:
            continue
        seen.add(src)
        try:
            st = os.stat(src)
            out.append(Input(src, int(st.st_size), int(st.st_mtime_ns)))
        except OSError:
            out.append(Input(src, -1, 0))
    return out


def window_schema(labels: Sequence[str]):
    """Arrow schema of windows/: source, start and end (s), one float32 probability per label, active."""
    pa, _ = _pa()
    return pa.schema(
        [("source", pa.string()), ("start", pa.float64()), ("end", pa.float64())]
        + [(lab, pa.float32()) for lab in labels]
        + [("active", pa.list_(pa.string()))]
    )


def file_schema():
    """Arrow schema of files/ and summary.parquet (one row per input file)."""
    pa, _ = _pa()
    inst = pa.struct([("label", pa.string()), ("share", pa.float64()), ("first", pa.float64()), ("last", pa.float64())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("size", pa.int64()),
            ("mtime_ns", pa.int64()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("warnings", pa.list_(pa.string())),
            ("duration", pa.float64()),
            ("windows", pa.int64()),
            ("instruments", pa.list_(inst)),
            ("seconds", pa.float64()),
            ("worker", pa.string()),
        ]
    )


class Store:
    """The output folder ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NeuroEarError(f"--out {self.root}: exists and is not a folder")
        try:
            for sub in ("windows", "files"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NeuroEarError(f"--out {self.root}: cannot create the output folder ({exc.strerror})") from None

    # ------------------------------------------------------------------ configuration

    def check_config(self, config: dict[str, Any]) -> None:
        """Record ``config`` on the first run; refuse to mix results of a different model, hop or thresholds."""
        path = self.root / CONFIG_NAME
        config = {"format": FORMAT_VERSION, **config}
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except ValueError:
                raise NeuroEarError(f"{path}: not valid JSON; remove it only if {self.root} holds no results") from None
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            if diff:
                raise NeuroEarError(
                    f"--out {self.root} holds results made with a different {', '.join(diff)}; "
                    "use another --out folder (or the same options as before)"
                )
            return
        self._atomic_bytes(path, (json.dumps(config, indent=1, sort_keys=True) + "\n").encode())

    # ------------------------------------------------------------------ parts

    def windows_path(self, fid: str) -> Path:
        return self.root / "windows" / f"{fid}.parquet"

    def marker_path(self, fid: str) -> Path:
        return self.root / "files" / f"{fid}.parquet"

    def _atomic_bytes(self, final: Path, data: bytes) -> None:
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def _atomic_table(self, final: Path, table) -> None:
        _, pq = _pa()
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)

    def write_windows(self, fid: str, source: str, labels: Sequence[str], starts: np.ndarray, ends: np.ndarray, probs: np.ndarray, on: np.ndarray) -> None:
        """Write one file's windows (``probs`` [n, n_labels]; ``on`` the policy's bool [n, n_labels]
        decisions) as windows/<fid>.parquet, atomically; ``active`` lists the labels on, in label order."""
        pa, _ = _pa()
        probs = np.asarray(probs, dtype=np.float32).reshape(len(starts), len(labels))
        on = np.asarray(on, dtype=bool).reshape(len(starts), len(labels))
        active = [[labels[j] for j in np.flatnonzero(row)] for row in on]
        cols = [pa.array([source] * len(starts), pa.string()), pa.array(starts, pa.float64()), pa.array(ends, pa.float64())]
        cols += [pa.array(probs[:, j], pa.float32()) for j in range(len(labels))]
        cols.append(pa.array(active, pa.list_(pa.string())))
        self._atomic_table(self.windows_path(fid), pa.Table.from_arrays(cols, schema=window_schema(labels)))

    def write_marker(self, row: dict[str, Any]) -> None:
        """Write one file's summary row as files/<id>.parquet, atomically: the file is now complete."""
        pa, _ = _pa()
        self._atomic_table(self.marker_path(row["id"]), pa.Table.from_pylist([row], schema=file_schema()))

    # ------------------------------------------------------------------ resume

    def clean_temporaries(self) -> int:
        """Remove hidden temporaries left by an interrupted run; returns how many."""
        n = 0
        for sub in ("windows", "files", "."):
            for p in (self.root / sub).glob(".*.tmp"):
                try:
                    p.unlink()
                    n += 1
                except OSError:
                    pass
        return n

    def marker(self, fid: str) -> dict[str, Any] | None:
        """The summary row in files/<fid>.parquet; None if there is none or it cannot be read."""
        _, pq = _pa()
        try:
            return pq.read_table(self.marker_path(fid)).to_pylist()[0]
        except Exception:  # noqa: BLE001 - a damaged marker is as good as none: the file is analysed again
            return None

    def markers(self) -> dict[str, dict[str, Any]]:
        """id → summary row of every file with a completion marker.

        Rows already gathered in summary.parquet are read from it in one go; only markers
        newer than it are opened one by one.
        """
        _, pq = _pa()
        on_disk = {p.stem for p in (self.root / "files").glob("*.parquet")}
        rows: dict[str, dict[str, Any]] = {}
        summary = self.root / "summary.parquet"
        if summary.exists():
            try:
                for r in pq.read_table(summary).to_pylist():
                    if r["id"] in on_disk:
                        rows[r["id"]] = r
            except Exception:
                rows = {}  # unreadable summary: fall back to the markers themselves
        for fid in on_disk - set(rows):
            if (row := self.marker(fid)) is not None:
                rows[fid] = row
        # a marker newer than summary.parquet may replace a row taken from it
        if summary.exists():
            t0 = summary.stat().st_mtime_ns
            for fid in list(rows):
                try:
                    newer = self.marker_path(fid).stat().st_mtime_ns > t0
                except OSError:
                    continue
                if newer and (row := self.marker(fid)) is not None:
                    rows[fid] = row
        return rows

    def pending(self, inputs: Sequence[Input]) -> tuple[list[Input], list[Input]]:
        """Split ``inputs`` into (to analyse, already complete: marker ok for the same size and mtime)."""
        done = self.markers()
        todo, skip = [], []
        for inp in inputs:
            m = done.get(inp.fid)
            if m and m["status"] == "ok" and m["size"] == inp.size and m["mtime_ns"] == inp.mtime_ns and self.windows_path(inp.fid).exists():
                skip.append(inp)
            else:
                todo.append(inp)
        return todo, skip

    def consolidate(self) -> tuple[int, int]:
        """Rewrite summary.parquet (every marker) and errors.parquet (the failed ones); returns (files, errors)."""
        pa, _ = _pa()
        rows = sorted(self.markers().values(), key=lambda r: r["source"])
        self._atomic_table(self.root / "summary.parquet", pa.Table.from_pylist(rows, schema=file_schema()))
        bad = [{"source": r["source"], "error": r["error"]} for r in rows if r["status"] != "ok"]
        errs = pa.schema([("source", pa.string()), ("error", pa.string())])
        self._atomic_table(self.root / "errors.parquet", pa.Table.from_pylist(bad, schema=errs))
        return len(rows), len(bad)
