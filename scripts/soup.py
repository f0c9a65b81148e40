"""Average the weights of fine-tunes of one model into one checkpoint (neuroear.training.soup).

    python scripts/soup.py runs/rp-s9/checkpoint.pt runs/rp-s10/checkpoint.pt --out runs/soup/checkpoint.pt
    neuroear export runs/soup/checkpoint.pt --out runs/soup/soup.onnx

The soup's thresholds are calibrated on the first checkpoint's validation split, as training does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neuroear.errors import NeuroEarError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    args = ap.parse_args()
    from neuroear.training.soup import soup

    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        soup(args.checkpoints, args.out, cache=args.cache)
    except NeuroEarError as exc:
        sys.exit(f"soup: {exc}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
