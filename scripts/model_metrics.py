"""Measure a model file on labelled sets and write the metrics JSON embedded in its card.

    python scripts/model_metrics.py models/neuroear-v5.onnx \
        synthetic-heldout-timgm=runs/render-test-timgm/manifest.jsonl \
        real-dev=../shared/data/real-dev --out runs/v1/metrics.json

Prints the seed's table and top-1 for each set; thresholds are the model's own (calibrated on
the validation split), never tuned here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuroear import evaluate as E
from neuroear.infer import Detector

DESCRIPTIONS = {
    "real-dev": "Medley-solos-DB clips in ../shared/data/real-dev (97 × 3 s, 8 classes; CC BY 4.0, Lostanlen & Cella 2016); never trained or tuned on",
    "synthetic-heldout-timgm": "renders of held-out seeds on the TimGM6mb + csound SoundFont family, which training never heard",
    "real-val": "real-train files of training's validation split (scripts/real_val_manifest.py): never trained on, but thresholds were calibrated on windows of them, and notes from the same libraries are not independent data",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("sets", nargs="+", help="NAME=PATH")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    det = Detector(args.model)
    metrics = {}
    for item in args.sets:
        name, _, path = item.partition("=")
        res = E.evaluate_set(det, path)
        print(E.format_table(res.rows, title=f"{name}: {res.files} files, {res.windows} windows ({res.quiet_windows} below -45 dBFS not scored)"))
        print(f"top-1 {res.top1:.3f}\n")
        metrics[name] = {
            "data": DESCRIPTIONS.get(name, path),
            "files": res.files,
            "windows": res.windows,
            "quiet_windows": res.quiet_windows,
            "top1": round(res.top1, 4),
            "macro_f1": round(E.row(res.rows, "macro").f1, 4),
            "table": {k: {m: round(v, 4) if isinstance(v, float) else v for m, v in d.items()} for k, d in E.to_dict(res.rows).items()},
        }
    Path(args.out).write_text(json.dumps(metrics, indent=1) + "\n")


if __name__ == "__main__":
    main()
