"""Context after the model, at no cost: the decision policy's causal mean of probabilities
(`neuroear listen --smooth N`, the same ``live.policy.Policy``) on the real dev set and
dev-mixtures (benchmarks/mixtures.py).

    python benchmarks/smoothing.py models/neuroear-v5.onnx [--smooth 1 2 3] [--out benchmarks/results/smoothing.json]

Each window's decision uses the mean of its own and up to N − 1 earlier windows' probabilities of
the same clip or mixture (hop one second, as `listen` with `--hop 1 --smooth N`), against the
model's own thresholds; nothing is tuned here. Real-dev clips are about 3 s long, so they hold two
whole one-second windows: N = 2 and N = 3 are the same there. Not imported by the package.
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


def main() -> None:
    from neuroear.infer import Detector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--dev", type=Path, default=Path("../shared/data/real-dev"))
    ap.add_argument("--smooth", type=int, nargs="+", default=[1, 2, 3])
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
    out: dict = {"model": det.name, "hop_seconds": win / rate, "results": {}}
    for name, items in sets.items():
        probs = [det.predict(w) for w, _ in items if len(w)]
        truth = [t for w, ts in items if len(w) for t in ts]
        for n in args.smooth:
            r = M.score_active(det.labels, decide(det, probs, n), truth)
            r.pop("table")
            out["results"].setdefault(name, {})[f"smooth={n}"] = r
            print(f"{name:13s} smooth {n}: macro {r['macro_f1']}  exact {r['exact_set']:.3f}  false/win {r['false_per_window']:.3f}  missed/win {r['missed_per_window']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
