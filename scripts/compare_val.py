"""Score ONNX models on the same validation windows: v1's draw (NumPy augmentation, seed 10 000).

    python scripts/compare_val.py models/neuroear-v5.onnx runs/v2/neuroear-v2.onnx

Each run's own validation split is drawn with its own augmentation and mixing, so those scores
do not compare across recipes; these 1 200 windows (held-out renders + held-out real-train files,
from models/recipes/neuroear-v1.json) do. Each model uses its own thresholds. Needs the 'train'
extra and the decoded-audio cache in runs/cache (made by the first `neuroear train`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from neuroear.training import data as D
from neuroear import evaluate as E
from neuroear.training import train as T
from neuroear.infer import Detector


def main() -> None:
    cfg = T.TrainConfig.from_dict(json.loads(Path("models/recipes/neuroear-v1.json").read_text()))
    _, val = T.load_clips(cfg, Path("runs/cache"))
    x, y = D.Sampler(val, cfg.labels, cfg=cfg.mix, seed=10_000, strict=False).batch(1200)
    for m in sys.argv[1:]:
        det = Detector(m)
        p = det.predict(x, batch=64)
        own = E.row(E.report(y, p >= det.thresholds, cfg.labels), "macro").f1
        half = E.row(E.report(y, p >= 0.5, cfg.labels), "macro").f1
        print(f"{m}: validation (v1's windows) macro F1 {own:.3f} with its thresholds, {half:.3f} at 0.5")


if __name__ == "__main__":
    main()
