"""Context after the model, at no cost: the decision policy's causal mean of probabilities
(`neuroear listen --smooth N`, the same ``live.policy.Policy``) on the real dev set and
dev-mixtures (benchmarks/mixtures.py).

    python benchmarks/smoothing.py models/neuroear-v5.onnx [--smooth 1 2 3] [--out benchmarks/results/smoothing.json]
        [--real-val runs/real-val.csv] [--unknown ../shared/data/real-train] [--hop 0.5]

Each window's decision uses the mean of its own and up to N − 1 earlier windows' probabilities of
the same clip or mixture (hop one second, as `listen` with `--hop 1 --smooth N`), against the
model's own thresholds; nothing is tuned here. Real-dev clips are about 3 s long, so they hold two
whole one-second windows: N = 2 and N = 3 are the same there. ``--real-val`` (held-out real-train
files, scripts/real_val_manifest.py) and ``--unknown`` (real-train's other/ validation files) are
the real sources a default smoothing may be chosen on (``--hop``: their windows overlap, as
``listen --hop 0.5``); dev is reported only. Not imported by the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mixtures as M  # noqa: E402


def decide(det, probs: list[np.ndarray], smooth: int) -> np.ndarray:
    """Active [windows, labels] (bool) of `listen --smooth N`'s policy over each clip's probabilities
    [windows, labels] in turn (the policy restarts with every clip, as a new stream)."""
    from neuroear.live.session import make_policy

    policy = make_policy(det, smooth=smooth)
    out = []
    for p in probs:
        policy.reset()
        for row in p:
            active = policy.update(row, start=0.0, end=0.0).active
            out.append([lab in active for lab in det.labels])
    return np.array(out, dtype=bool).reshape(-1, len(det.labels))


def manifest_rows(csv_path: Path) -> list[tuple[str, Path]]:
    """(label, file) rows of a ``label,file`` CSV manifest (scripts/real_val_manifest.py)."""
    import csv

    with open(csv_path, newline="") as f:
        return [(r["label"], Path(r["file"])) for r in csv.DictReader(f)]


def file_streams(rows: list[tuple[str, Path]], rate: int, window: int, context: int, hop: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Per file, its windows every ``hop`` samples (default one window) [n, context + window]
    louder than −45 dBFS, in stream order (silent windows dropped, as `evaluate` reports them apart)."""
    from neuroear import audio

    out = []
    for lab, path in rows:
        w = M.frame(audio.load(path, sample_rate=rate), window, context, hop)
        out.append((lab, w[audio.dbfs(w[:, context:]) >= audio.SILENCE_DBFS]))
    return out


def medley_streams(
    rows: list[tuple[str, Path]], rate: int, window: int, context: int, *, per_stream: int = 8, seed: int = 0, hop: int | None = None
) -> list[tuple[np.ndarray, list[list[str] | None]]]:
    """Streams of ``per_stream`` files played one after another (seeded order, each file padded
    with silence to whole windows), framed every ``hop`` samples (default one window) [n, context
    + window], and each window's truth: the labels of the files whose part of the window is
    louder than −45 dBFS (two where an overlapping window straddles a change), or None where no
    part is (run through the policy, not scored). The instrument changes every file, so a moving
    average pays here for what it carries over."""
    from neuroear import audio

    order = np.random.default_rng(seed).permutation(len(rows))
    out = []
    for k in range(0, len(order), per_stream):
        parts, spans, at = [], [], 0
        for i in order[k : k + per_stream]:
            lab, path = rows[i]
            x = audio.load(path, sample_rate=rate)
            x = np.concatenate([x, np.zeros(-x.size % window, x.dtype)])
            parts.append(x)
            spans.append((at, at + x.size, lab))
            at += x.size
        stream = np.concatenate(parts)
        w = M.frame(stream, window, context, hop)
        truth: list[list[str] | None] = []
        for s in np.arange(len(w)) * (hop or window):
            labs = sorted({lab for a, b, lab in spans if a < s + window and s < b
                           and audio.dbfs(stream[max(a, s) : min(b, s + window)]) >= audio.SILENCE_DBFS})
            truth.append(labs or None)
        out.append((w, truth))
    return out


def main() -> None:
    from neuroear.infer import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--dev", type=Path, default=Path("../shared/data/real-dev"))
    ap.add_argument("--smooth", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--real-val", type=Path, help="CSV manifest (label,file) of held-out real files, each scored as one stream")
    ap.add_argument("--unknown", type=Path, help="real-train folder: its other/ validation files, each one stream (every active label is false)")
    ap.add_argument("--hop", type=float, default=1.0, help="seconds between the windows of --real-val, its medleys and --unknown (dev stays at one window)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    det = Detector(args.model, provider="cpu")
    rate, win, ctx = det.sample_rate, det.window_samples, det.framing.context
    clips = M.dev_clips(args.dev, rate)
    mixes = M.make_mixtures(clips, n=300, seed=0, window=win)
    sets = {
        "dev-solo": [(M.frame(x, win, ctx), [[lab]] * (x.size // win)) for lab, x in clips],
        "dev-mixtures": [(M.frame(m, win, ctx), ls) for m, ls in mixes],
    }
    hop = det.framing.hop(args.hop)  # samples, checked as `analyze --hop` is
    if args.real_val:
        rows = manifest_rows(args.real_val)
        sets["real-val"] = [(w, [[lab]] * len(w)) for lab, w in file_streams(rows, rate, win, ctx, hop)]
        sets["real-val-medley"] = medley_streams(rows, rate, win, ctx, hop=hop)
    if args.unknown:
        from neuroear.training.data import NEGATIVE_LABEL, labelled_splits

        rows = [(lab, p) for p, lab, split in labelled_splits(args.unknown) if lab == NEGATIVE_LABEL and split == "val"]
        sets["unknown"] = [(w, [[]] * len(w)) for _, w in file_streams(rows, rate, win, ctx, hop)]
    out: dict = {"model": det.name, "hop_seconds": win / rate, "real_hop_seconds": hop / rate, "results": {}}
    for name, items in sets.items():
        probs = [det.predict(w) for w, _ in items if len(w)]
        truth = [t for w, ts in items if len(w) for t in ts]
        scored = np.array([t is not None for t in truth])
        for n in args.smooth:
            r = M.score_active(det.labels, decide(det, probs, n)[scored], [t for t in truth if t is not None])
            r.pop("table")
            out["results"].setdefault(name, {})[f"smooth={n}"] = r
            print(f"{name:13s} smooth {n}: macro {r['macro_f1']}  exact {r['exact_set']:.3f}  false/win {r['false_per_window']:.3f}  missed/win {r['missed_per_window']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
