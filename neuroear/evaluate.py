"""Scores: precision, recall and F1 per class plus macro / micro / weighted averages (the seed's
table), top-1 accuracy, per-class threshold calibration, and ``evaluate_set``: a model on a
labelled set as one ``SetResult`` (which the CLI only prints). Numpy only, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from neuroear.audio import SILENCE_DBFS
from neuroear.errors import NeuroEarError


@dataclass(frozen=True)
class Row:
    """One line of the table: precision, recall, F1 in [0, 1] and support (positive windows)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> list[Row]:
    """The seed's table from multi-hot truth and predictions [n, n_labels] (bool or 0/1).

    Returns per-class rows (only classes with support > 0 or any prediction), then
    ``micro``, ``macro`` and ``weighted`` rows. Macro averages over classes with support > 0,
    so instruments absent from the data do not pull it down.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape or t.ndim != 2 or t.shape[1] != len(labels):
        raise ValueError(f"truth {t.shape} and predictions {p.shape} must both be [n, {len(labels)}]")
    tp = (t & p).sum(0).astype(float)
    fp = (~t & p).sum(0).astype(float)
    fn = (t & ~p).sum(0).astype(float)
    support = t.sum(0)
    rows = []
    for i, lab in enumerate(labels):
        if support[i] or (tp[i] + fp[i]):
            rows.append(Row(lab, *_prf(tp[i], fp[i], fn[i]), int(support[i])))
    present = [r for r in rows if r.support > 0]
    total = int(support.sum())
    rows.append(Row("micro", *_prf(tp.sum(), fp.sum(), fn.sum()), total))
    if present:
        rows.append(
            Row(
                "macro",
                float(np.mean([r.precision for r in present])),
                float(np.mean([r.recall for r in present])),
                float(np.mean([r.f1 for r in present])),
                total,
            )
        )
        w = np.array([r.support for r in present], dtype=float)
        rows.append(
            Row(
                "weighted",
                float(np.average([r.precision for r in present], weights=w)),
                float(np.average([r.recall for r in present], weights=w)),
                float(np.average([r.f1 for r in present], weights=w)),
                total,
            )
        )
    else:
        rows.append(Row("macro", 0.0, 0.0, 0.0, 0))
        rows.append(Row("weighted", 0.0, 0.0, 0.0, 0))
    return rows


def row(rows: list[Row], name: str) -> Row:
    """The row called ``name`` (e.g. "macro")."""
    for r in rows:
        if r.name == name:
            return r
    raise KeyError(name)


def top1(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Share of single-label windows whose most probable label is the true one."""
    t = np.asarray(y_true).astype(bool)
    single = t.sum(1) == 1
    if not single.any():
        return 0.0
    return float((np.asarray(probs)[single].argmax(1) == t[single].argmax(1)).mean())


def calibrate(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], *, grid: Sequence[float] | None = None, lo: float = 0.15, hi: float = 0.85
) -> dict[str, float]:
    """Per-class threshold maximising F1 on a validation set (never the dev set).

    Thresholds are kept in [lo, hi] so a class with few validation windows cannot end up
    firing on everything or never; classes without positives keep 0.5.
    """
    grid = np.arange(0.05, 0.96, 0.025) if grid is None else np.asarray(grid)
    t = np.asarray(y_true).astype(bool)
    out = {}
    for i, lab in enumerate(labels):
        if not t[:, i].any():
            out[lab] = 0.5
            continue
        best, best_f = 0.5, -1.0
        for g in grid:
            pred = probs[:, i] >= g
            tp = float((pred & t[:, i]).sum())
            f = _prf(tp, float((pred & ~t[:, i]).sum()), float((~pred & t[:, i]).sum()))[2]
            if f > best_f + 1e-9:
                best, best_f = float(g), f
        out[lab] = float(min(max(best, lo), hi))
    return out


def format_table(rows: list[Row], *, title: str = "") -> str:
    """The seed's table as plain text: one line per class, then micro / macro / weighted."""
    lines = [title] if title else []
    lines.append(f"{'':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for r in rows:
        if r.name == "micro":
            lines.append("")
        lines.append(f"{r.name:<12}{r.precision:>10.3f}{r.recall:>10.3f}{r.f1:>10.3f}{r.support:>10d}")
    return "\n".join(lines)


def to_dict(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Rows as {name: {precision, recall, f1, support}} for JSON."""
    return {r.name: {"precision": r.precision, "recall": r.recall, "f1": r.f1, "support": r.support} for r in rows}


@dataclass
class SetResult:
    """Scores of a model on a labelled set: the table, top-1, the confusion matrix [true, most
    probable] of single-label windows, and what was left out. ``to_dict()`` is ``evaluate --json``,
    ``format()`` its table."""

    rows: list[Row]
    top1: float
    windows: int
    files: int
    quiet_windows: int  # below SILENCE_DBFS: reported apart, not scored
    failed: list[str]
    unknown_labels: dict[str, int]  # data labels the model does not know → windows scored as all-negative
    probs: np.ndarray
    truth: np.ndarray
    labels: tuple[str, ...] = ()
    data: str = ""
    model: str = ""
    provider: str = ""
    condition: str = "clean"
    quiet_dbfs: float = SILENCE_DBFS
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))

    @property
    def top1_per_class(self) -> dict[str, float]:
        cm = self.confusion
        return {lab: round(float(cm[i, i] / cm[i].sum()), 4) for i, lab in enumerate(self.labels) if cm[i].sum()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "model": self.model,
            "provider": self.provider,
            "files": self.files,
            "windows": self.windows,
            "quiet_windows": self.quiet_windows,
            "quiet_dbfs": self.quiet_dbfs,
            "failed": self.failed,
            "unknown_labels": self.unknown_labels,
            "condition": self.condition,
            "top1": self.top1,
            "top1_per_class": self.top1_per_class,
            "confusion": {"labels": list(self.labels), "counts": self.confusion.tolist()},
            "table": to_dict(self.rows),
        }

    def format(self) -> str:
        lines = [
            format_table(self.rows, title=f"{self.data} ({self.condition}): {self.files} files, {self.windows} windows, model {self.model}"),
            f"\ntop-1 accuracy (single-label windows): {self.top1:.3f}",
            "top-1 per class: " + ", ".join(f"{k} {v:.2f}" for k, v in self.top1_per_class.items()),
            f"windows below {self.quiet_dbfs:g} dBFS, reported apart and not scored: {self.quiet_windows}",
        ]
        if self.unknown_labels:
            lines.append(f"labels the model does not know (windows scored as all-negative): {self.unknown_labels}")
        return "\n".join(lines)


NOISES = ("white", "pink", "brown", "babble")


def add_noise(x: np.ndarray, groups: np.ndarray, *, kind: str, snr_db: float, seed: int = 0) -> np.ndarray:
    """Windows x [n, samples] with noise at ``snr_db`` dB below each window's RMS.

    ``kind``: white / pink / brown (coloured Gaussian noise) or babble: the sum of four windows
    drawn from other files of the same set (``groups`` [n] says which file each window is from).
    (The noise generator is the training side's, ``training.data.coloured_noise``: numpy only.)
    Deterministic from ``seed``.
    """
    from neuroear.training.augment import coloured_noise

    if kind not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}")
    rng = np.random.default_rng(seed)
    out = np.empty_like(x)
    for i, w in enumerate(x):
        if kind == "babble":
            others = np.flatnonzero(groups != groups[i])
            pick = rng.choice(others if others.size else np.arange(len(x)), size=4)
            n = x[pick].sum(0)
            n = n / (np.sqrt(np.mean(n**2)) + 1e-9)
        else:
            n = coloured_noise(w.size, rng, kind)
        rms = np.sqrt(np.mean(w.astype(np.float64) ** 2))
        out[i] = np.clip(w + n * rms * 10 ** (-snr_db / 20), -1.0, 1.0)
    return out


def confusion(y_true: np.ndarray, probs: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts [true label, most probable label] over single-label windows."""
    t = np.asarray(y_true).astype(bool)
    single = t.sum(1) == 1
    cm = np.zeros((n_labels, n_labels), dtype=int)
    np.add.at(cm, (t[single].argmax(1), np.asarray(probs)[single].argmax(1)), 1)
    return cm


def plot_confusion(cm: np.ndarray, labels, out, *, title: str = ""):
    """Confusion matrix PNG, rows normalised to the share of each true label's windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    keep = np.flatnonzero(rows[:, 0] > 0)
    share = cm[keep] / rows[keep]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 1.2 + 0.45 * len(keep)), dpi=110)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(keep)), [labels[k] for k in keep])
    for r, k in enumerate(keep):
        for c in range(len(labels)):
            if cm[k, c]:
                ax.text(c, r, str(cm[k, c]), ha="center", va="center", fontsize=7, color="white" if share[r, c] > 0.5 else "black")
    ax.set_xlabel("most probable label")
    ax.set_ylabel("true label")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="share of the true label's windows")
    fig.tight_layout()
    from neuroear.analyze import save_figure

    return save_figure(fig, out, what="confusion matrix")


def decide(probs: np.ndarray, groups: np.ndarray, thresholds: np.ndarray, *, smooth: int = 1, hysteresis: float = 0.0) -> np.ndarray:
    """Active labels [n, n_labels] bool from probabilities [n, n_labels] in stream order, by the
    live decision policy run afresh over each run of equal ``groups`` [n] (one file's windows)."""
    from neuroear.live.policy import Policy, PolicyConfig

    names = tuple(str(i) for i in range(probs.shape[1]))  # the policy needs names; columns stand in
    policy, out = Policy(PolicyConfig.build(names, thresholds, hysteresis=hysteresis, smooth=smooth)), np.zeros(probs.shape, dtype=bool)
    for i, p in enumerate(probs):
        if i and groups[i] != groups[i - 1]:
            policy.reset()
        out[i] = policy.update(p, start=float(i), end=float(i + 1)).mask
    return out


def evaluate_set(
    det,
    source: str,
    *,
    hop_seconds: float = 1.0,
    thresholds: np.ndarray | None = None,
    quiet_dbfs: float | None = None,
    noise: str | None = None,
    snr_db: float = 10.0,
    seed: int = 0,
    smooth: int = 1,
    hysteresis: float = 0.0,
) -> SetResult:
    """Score a Detector on a folder (subfolder = label), a CSV manifest (file,label) or a
    render manifest (``manifest.jsonl`` from ``neuroear render``).

    Every window of a file carries the file's label; in a render manifest only windows where
    the notes sound for at least ``data.MIN_ACTIVE_SECONDS`` do. Windows quieter than ``quiet_dbfs``
    (default ``audio.SILENCE_DBFS``, measured before any noise is added) are counted apart.
    ``noise`` adds noise at ``snr_db`` (see ``add_noise``). Unreadable files are listed in
    ``failed`` and skipped. Windows are cut at the detector's framing (its card). ``smooth`` and
    ``hysteresis`` decide as ``neuroear listen`` and ``analyze`` do (``decide``), over each file's
    scored windows in order; the defaults compare each window's probability with its threshold.
    """
    from neuroear import audio
    from neuroear.framing import windows as frame
    from neuroear.training.data import MIN_ACTIVE_SECONDS, read_labelled

    quiet = SILENCE_DBFS if quiet_dbfs is None else quiet_dbfs
    thr = det.thresholds if thresholds is None else np.asarray(thresholds, dtype=np.float32)
    index = {lab: i for i, lab in enumerate(det.labels)}
    windows, truth, groups, failed, unknown = [], [], [], [], {}
    n_quiet = files = 0
    notes: dict[str, list] = {}
    if str(source).endswith(".jsonl"):
        import json
        from pathlib import Path

        root = Path(source).parent
        entries = [json.loads(x) for x in Path(source).read_text().splitlines() if x.strip()]
        pairs = [(root / e["file"], e["label"]) for e in entries]
        notes = {str(root / e["file"]): e["notes"] for e in entries}
    else:
        pairs = read_labelled(source)
    hop = det.framing.hop(hop_seconds)
    for path, label in pairs:
        try:
            x = audio.load(path, sample_rate=det.sample_rate)
        except NeuroEarError as exc:
            failed.append(str(exc))
            continue
        if x.size == 0:
            failed.append(f"{path}: no audio samples (0 frames)")
            continue
        files += 1
        starts, w = frame(x, hop=hop, window=det.window_samples, sample_rate=det.sample_rate, context=det.framing.context)
        if label not in index:
            unknown[label] = unknown.get(label, 0) + len(w)
        for start, win, level in zip(starts / det.sample_rate, w, audio.dbfs(w)):
            if level < quiet:
                n_quiet += 1
                continue
            t = np.zeros(len(det.labels), dtype=bool)
            sounding = True
            if str(path) in notes:
                end = min(start + det.window_samples / det.sample_rate, x.size / det.sample_rate)
                overlap = sum(max(0.0, min(off, end) - max(on, start)) for on, off in notes[str(path)])
                sounding = overlap >= MIN_ACTIVE_SECONDS
            if label in index and sounding:
                t[index[label]] = True
            windows.append(win)
            truth.append(t)
            groups.append(files)
    if not windows:
        raise NeuroEarError(f"{source}: no scorable windows ({len(failed)} files failed, {n_quiet} windows too quiet)")
    X, T = np.stack(windows), np.stack(truth)
    if noise:
        X = add_noise(X, np.array(groups), kind=noise, snr_db=snr_db, seed=seed)
    P = det.predict(X)
    condition = f"{noise} noise at {snr_db:g} dB SNR (seed {seed})" if noise else "clean"
    if smooth != 1 or hysteresis:
        condition += f", decided over {smooth} windows" + (f" with hysteresis {hysteresis:g}" if hysteresis else "")
    return SetResult(
        report(T, decide(P, np.array(groups), thr, smooth=smooth, hysteresis=hysteresis), det.labels), top1(T, P), len(P), files, n_quiet, failed, unknown, P, T,
        labels=tuple(det.labels), data=str(source), model=det.name, provider=det.provider, condition=condition,
        quiet_dbfs=quiet, confusion=confusion(T, P, len(det.labels)),
    )
