"""File analysis: decode in blocks, frame into one-second windows, predict, write rows.

Memory stays flat for any file length: audio is decoded, framed and scored block by block,
and each row is written (and flushed) as soon as its batch is scored, so an interrupted
run keeps every line already written.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator, Sequence, TextIO

import numpy as np

from neuroear import audio
from neuroear.errors import NeuroEarError
from neuroear.framing import HOP_SECONDS, Framer
from neuroear.infer import Detector
from neuroear.live.policy import Policy, PolicyConfig, resolve_smooth

BATCH = 16  # windows per ONNX Runtime call: 64 grew peak RSS by ~30 MB for ~0-15 % speed (benchmarks/README.md)


def window_row(
    *, source: str, start: float, end: float, labels: Sequence[str], probs: np.ndarray, active: Sequence[str],
    time_decimals: int = 4, prob_decimals: int = 4,
) -> dict[str, Any]:
    """The one JSON row of a window, shared by ``analyze`` and ``listen``:
    ``{"source", "start", "end", "probs": {label: p}, "active": [labels]}`` (times in s)."""
    return {
        "source": source,
        "start": round(float(start), time_decimals),
        "end": round(float(end), time_decimals),
        "probs": {lab: round(float(p), prob_decimals) for lab, p in zip(labels, np.asarray(probs).reshape(-1))},
        "active": list(active),
    }


@dataclass(frozen=True)
class WindowResult:
    """One window's result: times in seconds, probabilities [n_labels] and active labels;
    ``mask`` is the policy's bool [n_labels] of the same decision, in label order (``analyze_file``
    sets it; None in a result built by hand)."""

    source: str
    start: float
    end: float
    probs: np.ndarray
    active: tuple[str, ...]
    level_dbfs: float
    mask: np.ndarray | None = None

    def to_json(self, labels: tuple[str, ...]) -> dict:
        return window_row(source=self.source, start=self.start, end=self.end, labels=labels, probs=self.probs, active=self.active)


def analyze_file(
    path: str | Path,
    hop: float = HOP_SECONDS,
    *,
    detector: Detector | None = None,
    model: str | Path | None = None,
    thresholds: np.ndarray | None = None,
    source: str | None = None,
    batch: int = BATCH,
    smooth: int | None = None,
    hysteresis: float = 0.0,
) -> Generator[WindowResult, None, float]:
    """Yield one WindowResult per window of ``path``, in order; a window starts every ``hop`` s
    (``batch``: windows per ONNX Runtime call). Returns (``total = yield from analyze_file(…)``)
    the seconds of audio decoded, at the model's rate.

    ``detector`` (or a new ``Detector(model)``) scores the windows, cut at its card's framing;
    ``thresholds`` [n_labels] replace the card's. ``active`` is decided by the live decision
    policy (``live.policy``), as ``neuroear listen`` decides: ``smooth`` (windows) averages each
    label's probability over the latest windows of this file (None: the windows of the last 2 s,
    ``policy.default_smooth``; 1 decides each window alone), ``hysteresis`` (probability) keeps
    a label on until it falls that far below its threshold. ``probs`` stay the model's own. Raises NeuroEarError if the file cannot be
    decoded; rows yielded before a mid-file decoding error stay valid. A file shorter than one
    window is zero-padded (with a warning).
    """
    det = detector if detector is not None else Detector(model)
    src = str(path) if source is None else source
    fr = Framer(window=det.window_samples, hop=det.framing.hop(hop), sample_rate=det.sample_rate, context=det.framing.context)
    thr = det.thresholds if thresholds is None else thresholds
    policy = Policy(PolicyConfig.build(det.labels, thr, hysteresis=hysteresis, smooth=resolve_smooth(smooth, hop)))
    pending: list[tuple[int, np.ndarray]] = []

    def flush(pairs: list[tuple[int, np.ndarray]], total: int) -> Generator[WindowResult, None, None]:
        if not pairs:
            return
        x = np.stack([w for _, w in pairs])
        probs = det.predict(x, batch=batch)
        levels = audio.dbfs(x)
        for (start, _), p, lv in zip(pairs, probs, levels):
            end = min(start + det.window_samples, total) if total else start + det.window_samples
            d = policy.update(p, start=start / det.sample_rate, end=end / det.sample_rate)
            yield WindowResult(src, start / det.sample_rate, end / det.sample_rate, p, d.active, float(lv), d.mask)

    blocks = audio.prefetch(audio.stream(path, sample_rate=det.sample_rate))
    try:
        for block in blocks:
            pending += fr.push(block)
            if len(pending) >= batch:
                yield from flush(pending, 0)
                pending = []
    except NeuroEarError:
        # decoding broke off part-way: score what was decoded (as if the file ended there), then report
        if fr.total:
            yield from flush(pending + fr.finish(), fr.total)
        raise
    finally:
        blocks.close()  # Ctrl-C or a consumer that stops early: the decode thread closes the file and resampler now
    total = fr.total
    if total == 0:
        raise NeuroEarError(f"{src}: no audio samples (0 frames)")
    if total < det.window_samples:
        warnings.warn(f"{src}: {total / det.sample_rate:.2f} s is shorter than a {det.window_samples / det.sample_rate:g} s window; padded with silence", stacklevel=2)
    pending += fr.finish()
    yield from flush(pending, total)
    return total / det.sample_rate


class Writer:
    """Writes rows as JSON Lines (``window_row``), CSV or a plain-text table, flushing each row."""

    def __init__(self, fmt: str, labels: tuple[str, ...], out: TextIO = sys.stdout) -> None:
        if fmt not in ("jsonl", "csv", "table"):
            raise NeuroEarError(f"unknown format {fmt!r}: use jsonl, csv or table")
        self.fmt, self.labels, self.out = fmt, labels, out
        self._header = False

    def write(self, r: WindowResult) -> None:
        if self.fmt == "jsonl":
            self.out.write(json.dumps(r.to_json(self.labels)) + "\n")
        elif self.fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            if not self._header:
                w.writerow(["source", "start", "end", *self.labels, "active"])
                self._header = True
            w.writerow([r.source, f"{r.start:.3f}", f"{r.end:.3f}", *(f"{p:.4f}" for p in r.probs), ";".join(r.active)])
            self.out.write(buf.getvalue())
        else:
            self.out.write(self._table_row(r))
        self.out.flush()

    def _table_row(self, r: WindowResult) -> str:
        """A table row with full label names when the terminal is wide enough; else start, end and
        the active labels with their probabilities (names never cut, no wrapped lines)."""
        head = ""
        if not self._header:  # the layout is chosen once, with the header, so rows always match it
            import shutil

            self._header = True
            self._name_w = name_w = max(4, max((len(lab) for lab in self.labels), default=4))
            width = shutil.get_terminal_size((100, 24)).columns
            self._wide = wide = 16 + 2 + len(self.labels) * (name_w + 1) + 8 <= width
            cols = " ".join(f"{lab:>{name_w}}" for lab in self.labels) if wide else "active (probability)"
            head = f"{'start':>7} {'end':>7}  {cols}" + ("  active" if wide else "") + "\n"
        name_w, wide = self._name_w, self._wide
        if wide:
            cells = " ".join(f"{p:>{name_w}.2f}" for p in r.probs)
            return head + f"{r.start:7.2f} {r.end:7.2f}  {cells}  {', '.join(r.active) or '-'}\n"
        probs = dict(zip(self.labels, r.probs))
        act = ", ".join(f"{lab} {probs[lab]:.2f}" for lab in r.active) or "-"
        return head + f"{r.start:7.2f} {r.end:7.2f}  {act}\n"

    def begin_source(self, source: str) -> None:
        if self.fmt == "table":
            self.out.write(f"\n{source}\n")
            self._header = False


def plot(results: list[WindowResult], labels: tuple[str, ...], out: Path, *, title: str = "") -> Path:
    """Draw probability over time (instruments × seconds) on a fixed 0–1 colour scale as PNG.

    Each window's probability fills the span it covers (overlapping hops show the newest),
    so a 10-minute file and a 5-second one both read well.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise NeuroEarError(f"{out}: nothing to plot (no windows)")
    starts = np.array([r.start for r in results])
    ends = np.array([r.end for r in results])
    probs = np.stack([r.probs for r in results]).T  # [labels, windows]
    duration = float(ends.max())
    width = min(16.0, max(6.0, 4.0 + duration / 30.0))
    fig, ax = plt.subplots(figsize=(width, 0.35 * len(labels) + 1.6), dpi=110)
    edges = np.concatenate([starts, [ends[-1]]])
    edges[1:-1] = np.maximum(edges[1:-1], starts[1:])
    mesh = ax.pcolormesh(edges, np.arange(len(labels) + 1), probs, cmap="magma", vmin=0.0, vmax=1.0, shading="flat")
    ax.set_yticks(np.arange(len(labels)) + 0.5, labels)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)" if duration < 180 else "time (min:s)")
    if duration >= 180:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{int(v // 60)}:{int(v % 60):02d}"))
    ax.set_title(title or results[0].source, fontsize=9)
    fig.colorbar(mesh, ax=ax, label="probability", fraction=0.03, pad=0.01)
    fig.tight_layout()
    return save_figure(fig, out, what="plot")


def save_figure(fig, out: Path, *, what: str) -> Path:  # noqa: ANN001 (matplotlib Figure)
    """Write ``fig`` to ``out`` and close it; a failure is one NeuroEarError line naming ``what``."""
    import matplotlib.pyplot as plt

    try:
        fig.savefig(out)
    except (OSError, ValueError) as exc:  # a missing folder, a full disk, an unknown suffix
        raise NeuroEarError(f"{out}: cannot write the {what} ({str(exc).splitlines()[0]})") from None
    finally:
        plt.close(fig)
    return out
