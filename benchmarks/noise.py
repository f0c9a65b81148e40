"""Accuracy under noise: macro F1 and top-1 of a model on labelled sets, clean and with pink,
brown and babble noise at 20, 10 and 0 dB SNR (deterministic from a seed).

    python benchmarks/noise.py --model models/neuroear-v5.onnx \
        synthetic-heldout-timgm=runs/render-test-timgm/manifest.jsonl real-dev=../shared/data/real-dev

Writes benchmarks/results/noise-<model>.json and prints a markdown table. The model's own
thresholds are used throughout: nothing is tuned on these sets. Not imported by the package.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroear import evaluate as E
from neuroear.training.export import git_commit
from neuroear.infer import Detector

RESULTS = Path(__file__).resolve().parent / "results"
CONDITIONS = [(None, None)] + [(kind, snr) for kind in ("pink", "brown", "babble") for snr in (20.0, 10.0, 0.0)]


def parse_condition(text: str) -> tuple[str | None, float | None]:
    """``"clean"`` → (None, None); ``"babble:10"`` → ("babble", 10.0)."""
    if text == "clean":
        return None, None
    kind, _, snr = text.partition(":")
    cond = (kind, float(snr)) if snr else (kind, None)
    if cond not in CONDITIONS:
        raise SystemExit(f"unknown condition {text!r}: clean or KIND:SNR with KIND pink|brown|babble and SNR 20|10|0")
    return cond


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", help="NAME=PATH (folder, CSV manifest or render manifest.jsonl)")
    ap.add_argument("--model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="COND", help="conditions to run, e.g. clean babble:10 pink:10 (default: all ten)")
    ap.add_argument("--out", help="JSON to write (default benchmarks/results/noise-<model>.json)")
    args = ap.parse_args()
    conditions = CONDITIONS if not args.only else [parse_condition(c) for c in args.only]
    det = Detector(args.model)
    out = {"model": det.name, "commit": git_commit(), "seed": args.seed, "results": {}}
    lines = ["| set | condition | macro F1 | micro F1 | top-1 |", "|---|---|---|---|---|"]
    for item in args.sets:
        name, _, path = item.partition("=")
        out["results"][name] = {}
        for kind, snr in conditions:
            res = E.evaluate_set(det, path, noise=kind, snr_db=snr or 0.0, seed=args.seed)
            cond = "clean" if kind is None else f"{kind} {snr:g} dB"
            macro, micro = E.row(res.rows, "macro").f1, E.row(res.rows, "micro").f1
            out["results"][name][cond] = {"macro_f1": round(macro, 4), "micro_f1": round(micro, 4), "top1": round(res.top1, 4), "windows": res.windows, "table": E.to_dict(res.rows)}
            lines.append(f"| {name} | {cond} | {macro:.3f} | {micro:.3f} | {res.top1:.3f} |")
            print(lines[-1], flush=True)
    dest = Path(args.out) if args.out else RESULTS / f"noise-{det.name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
