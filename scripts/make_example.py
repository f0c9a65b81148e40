"""Rebuild the bundled example clip ``neuroear/examples/example.ogg`` and its truth table.

Folk-tune and chorale excerpts from the music21 corpus (public-domain scores) played on
FluidR3_GM (MIT licence, Debian fluid-soundfont-gm): violin, piano, flute, guitar, trumpet,
cello, then violin and piano together — 4 s each, 28 s in all, 16 kHz mono Ogg Vorbis.

    python scripts/make_example.py   # needs the 'train' extra and fluid-soundfont-gm
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from neuroear.training import music, render

FONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SR = 16_000
SEG = 4.0  # s per instrument
PLAN = [("violin", 40), ("piano", 0), ("flute", 73), ("guitar", 24), ("trumpet", 56), ("cello", 42), (("violin", 40), ("piano", 0))]
OUT = Path(__file__).resolve().parents[1] / "neuroear" / "examples"


def part(label: str, program: int, rng: np.random.Generator, phrases) -> np.ndarray:
    sc = music.compose(label, program, phrases, seconds=SEG, rng=rng)
    notes = [(on, min(off, SEG - 0.05), p, v) for on, off, p, v in sc.notes if on < SEG - 0.3]
    x = render.render_notes(FONT, notes, program=program, seconds=SEG, sample_rate=SR)
    return x / (np.abs(x).max() + 1e-9)


def main() -> None:
    rng = np.random.default_rng(7)
    phrases = music.load_phrases(n_pieces=60, seed=7)
    audio, rows = [], []
    for i, item in enumerate(PLAN):
        items = item if isinstance(item[0], tuple) else (item,)
        seg = sum(part(lab, prog, rng, phrases) for lab, prog in items)
        seg *= 0.5 / (np.abs(seg).max() + 1e-9)
        audio.append(seg)
        rows += [(i * SEG, (i + 1) * SEG, lab) for lab, _ in items]
    OUT.mkdir(parents=True, exist_ok=True)
    sf.write(OUT / "example.ogg", np.concatenate(audio).astype(np.float32), SR, format="OGG", subtype="VORBIS")
    with (OUT / "example.labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "end", "label"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
