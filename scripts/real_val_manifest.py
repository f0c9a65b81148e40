"""Write the real-train validation split as a CSV manifest (label,file) for `neuroear evaluate`.

    python scripts/real_val_manifest.py ../shared/data/real-train runs/real-val.csv

The split is training's own (``training.data.split_of`` on each file's group: the song for
multitrack stems, else the file). These files were never trained on, but the thresholds were
calibrated on windows drawn from them, and notes from the same libraries as training files are
not independent data: an optimistic set, reported for the labels the dev set lacks (drums,
bass, accordion, cello, organ). ``other`` (not a label) is left out.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from neuroear.training.data import NEGATIVE_LABEL, labelled_splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real_train", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    rows = [(lab, str(p.resolve())) for p, lab, split in labelled_splits(args.real_train) if lab != NEGATIVE_LABEL and split == "val"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "file"])
        w.writerows(rows)
    print(f"{len(rows)} files → {args.out}")


if __name__ == "__main__":
    main()
