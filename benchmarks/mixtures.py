"""Ensembles and unknown instruments: multi-label scores of models on real mixtures.

    python benchmarks/mixtures.py models/previous/neuroear-v3.onnx models/previous/neuroear-v4.onnx models/neuroear-v5.onnx \
        --dev ../shared/data/real-dev --unknown ../shared/data/real-train --out benchmarks/results/mixtures.json

**dev-mixtures** (validation only: never trained or tuned on) is built from the real-dev solo
clips, deterministically from ``--seed``: each mixture sums 2 or 3 clips of different
instruments (a third of them trios), each stem scaled to a common RMS and then by a gain drawn
uniformly within ±6 dB, then the sum peak-limited to −1 dBFS. Windows are the model's own
(one second, hop one second, from the start). A stem labels a window where it is not quiet
there: its own RMS in that window ≥ −50 dBFS and within 20 dB of the loudest stem's. Its
``recall_by_level`` splits the stems' recall by how far under the window's loudest stem each lies.

For each model and set: multi-label macro / micro F1 (macro over the instruments the set
holds), the exact-set rate (windows whose active set is exactly the truth), false labels per
window (active but not sounding) and missed labels per window. **dev-solo** is the same
clips alone, **unknown** the real-train ``other/`` files of the validation split (real
instruments outside the label set; calibration saw them, training did not): there every
active label is false. **unknown-rendered**: instruments outside the label set (oboe, bassoon,
harp, vibraphone, marimba, sitar, steel drums, two synth leads, two synth pads) rendered on the
TimGM6mb font, a SoundFont family training never heard; every active label is false there too.
The models' own thresholds throughout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from neuroear import audio
from neuroear import evaluate as E
from neuroear.infer import Detector

RESULTS = Path(__file__).resolve().parent / "results"
LEVEL_DB = 6.0  # ± dB of each stem around the common level
LABEL_FLOOR_DBFS = -50.0
LABEL_WITHIN_DB = 20.0
PEAK = 10 ** (-1 / 20)


def dev_clips(dev: Path, rate: int) -> list[tuple[str, np.ndarray]]:
    """(label, mono float32 at ``rate``) for every real-dev clip, in manifest order."""
    from neuroear.training.data import read_labelled

    return [(lab, audio.load(p, sample_rate=rate)) for p, lab in read_labelled(dev)]


def make_mixtures(
    clips: list[tuple[str, np.ndarray]], *, n: int, seed: int, window: int, levels: list[list[dict[str, float]]] | None = None
) -> list[tuple[np.ndarray, list[list[str]]]]:
    """``n`` mixtures [(audio [samples], labels per window)], deterministic from ``seed``. Where
    ``levels`` is a list, one entry per mixture is appended to it: per window, {label: dB of
    that stem under the window's loudest stem (≤ 0)} for the labels of the window."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[np.ndarray]] = {}
    for lab, x in clips:
        by_label.setdefault(lab, []).append(x)
    names = sorted(by_label)
    out = []
    for _ in range(n):
        k = 3 if rng.random() < 1 / 3 else 2
        labs = [names[i] for i in rng.choice(len(names), size=k, replace=False)]
        stems = [by_label[lab][int(rng.integers(len(by_label[lab])))] for lab in labs]
        length = min(s.size for s in stems)
        n_win = length // window
        if n_win == 0:
            continue
        stems = [s[:length] / (np.sqrt(np.mean(s[:length] ** 2)) + 1e-9) * 0.05 * 10 ** (rng.uniform(-LEVEL_DB, LEVEL_DB) / 20) for s in stems]
        mix = np.sum(stems, axis=0)
        mix *= min(1.0, PEAK / (np.abs(mix).max() + 1e-9))
        per_window, under = [], []
        for w in range(n_win):
            seg = slice(w * window, (w + 1) * window)
            lv = np.array([audio.dbfs(s[seg]) for s in stems])
            keep = {lab: float(v - lv.max()) for lab, v in zip(labs, lv) if v >= LABEL_FLOOR_DBFS and v >= lv.max() - LABEL_WITHIN_DB}
            per_window.append(sorted(keep))
            under.append(keep)
        out.append((mix.astype(np.float32), per_window))
        if levels is not None:
            levels.append(under)
    return out


def score(det: Detector, windows: np.ndarray, truth: list[list[str]]) -> dict:
    """Multi-label scores of ``det`` on windows [n, samples] with true label sets, and how often
    its k most probable labels are the true set when told k (``top_k_exact``: ranking alone)."""
    return score_probs(det, det.predict(windows), truth)


def score_probs(det: Detector, probs: np.ndarray, truth: list[list[str]]) -> dict:
    """``score`` of probabilities [n, n_labels] that ``det`` already gave."""
    return {**score_active(det.labels, probs >= det.thresholds[None, :], truth), "top_k_exact": top_k_exact(det.labels, probs, truth)}


def top_k_exact(labels: tuple[str, ...], probs: np.ndarray, truth: list[list[str]]) -> float | None:
    """Share of windows with k ≥ 1 true labels whose k most probable labels (probs [n, n_labels])
    are exactly them: the best exact-set rate any thresholds could reach with the true count known."""
    index = {lab: i for i, lab in enumerate(labels)}
    sets = [{index[lab] for lab in t if lab in index} for t in truth]
    hits = [set(np.argsort(-p)[: len(t)].tolist()) == t for p, t in zip(probs, sets) if t]
    return round(float(np.mean(hits)), 4) if hits else None


def score_active(labels: tuple[str, ...], p: np.ndarray, truth: list[list[str]]) -> dict:
    """Multi-label scores of decisions p [n, n_labels] (bool, in ``labels`` order) against true label sets."""
    index = {lab: i for i, lab in enumerate(labels)}
    t = np.zeros((len(truth), len(labels)), dtype=bool)
    for i, labs in enumerate(truth):
        for lab in labs:
            if lab in index:
                t[i, index[lab]] = True
    rows = E.report(t, p, labels)
    return {
        "windows": int(len(t)),
        "macro_f1": round(E.row(rows, "macro").f1, 4) if t.any() else None,
        "micro_f1": round(E.row(rows, "micro").f1, 4) if t.any() else None,
        "exact_set": round(float(np.mean(np.all(p == t, axis=1))), 4),
        "false_per_window": round(float(np.mean(np.sum(p & ~t, axis=1))), 4),
        "missed_per_window": round(float(np.mean(np.sum(~p & t, axis=1))), 4),
        "any_label": round(float(np.mean(p.any(axis=1))), 4),
        "table": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in d.items()} for k, d in E.to_dict(rows).items()} if t.any() else {},
    }


LEVEL_BINS_DB = (0.0, -3.0, -6.0, -9.0, -12.0)  # edges of recall_by_level's bins, dB under the loudest stem


def recall_by_level(labels: tuple[str, ...], active: np.ndarray, levels: list[dict[str, float]]) -> dict[str, dict]:
    """Recall of mixture stems by how far each lies under its window's loudest stem: ``active``
    [windows, labels] (bool) against ``levels`` (per window {label: dB ≤ 0}). Bins: the loudest
    stem itself (0 dB), then (0, −3], (−3, −6], ... and under the last edge; each {recall, n}."""
    index = {lab: i for i, lab in enumerate(labels)}
    names = ["loudest"] + [f"{hi:g} to {lo:g} dB" for hi, lo in zip(LEVEL_BINS_DB, LEVEL_BINS_DB[1:])] + [f"under {LEVEL_BINS_DB[-1]:g} dB"]
    hits: dict[str, list[bool]] = {k: [] for k in names}
    for row, lv in zip(active, levels, strict=True):
        for lab, db in lv.items():
            if lab not in index:
                continue
            if db >= 0.0:
                k = names[0]
            else:
                k = next((names[1 + j] for j, lo in enumerate(LEVEL_BINS_DB[1:]) if db >= lo), names[-1])
            hits[k].append(bool(row[index[lab]]))
    return {k: {"recall": round(float(np.mean(v)), 4) if v else None, "n": len(v)} for k, v in hits.items()}


def dev_sets(
    dev: Path, rate: int, window: int, *, n: int, seed: int, context: int = 0, levels: list | None = None
) -> dict[str, tuple[np.ndarray, list[list[str]]]]:
    """``dev-solo`` and ``dev-mixtures``: windows [n, context + window] at ``rate`` and their true
    label sets. ``context`` samples before each window (zeros before a clip's start) are for models
    that read the past; the scored windows and their truth are the same for every ``context``.
    ``levels``: as ``make_mixtures``'s, for dev-mixtures."""
    clips = dev_clips(dev, rate)
    mixes = make_mixtures(clips, n=n, seed=seed, window=window, levels=levels)
    return {
        "dev-solo": (np.concatenate([frame(x, window, context) for _, x in clips]), [[lab] for lab, x in clips for _ in range(x.size // window)]),
        "dev-mixtures": (np.concatenate([frame(m, window, context) for m, _ in mixes]), [labs for _, ls in mixes for labs in ls]),
    }


def frame(x: np.ndarray, window: int, context: int = 0, hop: int | None = None) -> np.ndarray:
    """The full windows of x starting every ``hop`` samples (default ``window``: consecutive) as
    [n, context + window]: each with the ``context`` samples before it, zeros before the start
    (as a stream that just began). Window k starts at sample k · hop."""
    hop = window if hop is None else hop
    n = (x.size - window) // hop + 1 if x.size >= window else 0
    if not context and hop == window:
        return x[: n * window].reshape(n, window)
    padded = np.concatenate([np.zeros(context, x.dtype), x])
    return np.stack([padded[k * hop : k * hop + context + window] for k in range(n)]) if n else np.zeros((0, context + window), x.dtype)


def unknown_windows(real_train: Path, rate: int, window: int, *, context: int = 0) -> np.ndarray:
    """Windows [n, context + window] of the validation split of real-train's ``other/`` files
    whose window (not its context) is louder than −45 dBFS."""
    from neuroear.training.data import NEGATIVE_LABEL, labelled_splits

    ws = []
    for p, lab, split in labelled_splits(real_train):
        if lab != NEGATIVE_LABEL or split != "val":
            continue
        w = frame(audio.load(p, sample_rate=rate), window, context)
        ws.append(w[audio.dbfs(w[:, context:]) >= audio.SILENCE_DBFS])
    return np.concatenate(ws) if ws else np.zeros((0, context + window), np.float32)


# GM program → the label whose range and playing styles its score borrows
UNKNOWN_PROGRAMS = {68: "clarinet", 70: "cello", 46: "piano", 11: "piano", 12: "piano", 104: "guitar",
                    114: "flute", 80: "flute", 81: "trumpet", 88: "organ", 89: "organ"}  # fmt: skip
UNKNOWN_FONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")


def unknown_renders(rate: int, window: int, *, seconds: float = 12.0, seed: int = 0, context: int = 0) -> np.ndarray:
    """Windows [n, context + window] of instruments outside the label set, rendered (see module doc)."""
    from neuroear.resample import resample
    from neuroear.training import music, render

    phrases = music.load_phrases(n_pieces=40, seed=seed)
    synth = render._Fluid(UNKNOWN_FONT, rate=render.RENDER_RATE)
    fx = {"room": 0.4, "damp": 0.5, "width": 0.8, "reverb": 0.2, "chorus": 0.3, "speed": 0.5, "depth": 4.0}
    ws = []
    try:
        for program, like in UNKNOWN_PROGRAMS.items():
            sc = music.compose(like, program, phrases, seconds=seconds, rng=np.random.default_rng(seed + program))
            x = resample(synth.render(sc, program=program, seconds=seconds, fx=fx), render.RENDER_RATE, rate)
            w = frame(x / (np.abs(x).max() + 1e-9) * 0.5, window, context)
            ws.append(w[audio.dbfs(w[:, context:]) >= audio.SILENCE_DBFS])
    finally:
        synth.close()
    return np.concatenate(ws).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--dev", type=Path, default=Path("../shared/data/real-dev"))
    ap.add_argument("--unknown", type=Path, help="real-train folder: score its other/ validation files")
    ap.add_argument("--n", type=int, default=300, help="mixtures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out: dict = {"seed": args.seed, "mixtures": args.n, "results": {}}
    built: dict[tuple[int, int, int], dict] = {}  # models with the same framing score the same windows
    levels: dict[tuple[int, int, int], list[dict[str, float]]] = {}  # dev-mixtures' stems under the loudest, per window
    for model in args.models:
        det = Detector(model)
        win, rate, ctx = det.window_samples, det.sample_rate, det.framing.context
        if (rate, win, ctx) not in built:
            per_mix: list = []
            sets = dev_sets(args.dev, rate, win, n=args.n, seed=args.seed, context=ctx, levels=per_mix)
            levels[(rate, win, ctx)] = [lv for mix in per_mix for lv in mix]
            if args.unknown:
                u = unknown_windows(args.unknown, rate, win, context=ctx)
                sets["unknown"] = (u, [[] for _ in range(len(u))])
            if UNKNOWN_FONT.is_file():
                u = unknown_renders(rate, win, seed=args.seed, context=ctx)
                sets["unknown-rendered"] = (u, [[] for _ in range(len(u))])
            built[(rate, win, ctx)] = sets
        probs = {name: det.predict(x) for name, (x, _) in built[(rate, win, ctx)].items()}
        res = {name: score_probs(det, probs[name], t) for name, (_, t) in built[(rate, win, ctx)].items()}
        by_level = recall_by_level(det.labels, probs["dev-mixtures"] >= det.thresholds[None, :], levels[(rate, win, ctx)])
        res["dev-mixtures"]["recall_by_level"] = by_level
        out["results"][det.name] = res
        for name, r in res.items():
            print(
                f"{det.name:14s} {name:13s} windows {r['windows']:5d}  macro {r['macro_f1']}  micro {r['micro_f1']}  "
                f"exact {r['exact_set']:.3f}  top-k exact {r['top_k_exact'] if r['top_k_exact'] is not None else '-'}  false/win {r['false_per_window']:.3f}  missed/win {r['missed_per_window']:.3f}  any {r['any_label']:.3f}",
                flush=True,
            )
        print(f"{det.name:14s} dev-mixtures recall by level under the loudest stem: "
              + "  ".join(f"{k} {v['recall']} ({v['n']})" for k, v in by_level.items()), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
