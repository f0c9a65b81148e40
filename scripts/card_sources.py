"""Markdown table of every real training source (from a real-train manifest), for the model card.

    python scripts/card_sources.py ../shared/data/real-train/manifest.csv > /tmp/sources.md

One row per source: the labels it gives (files each), minutes, and the licence(s) the manifest
states. The full attribution text of each source is in the data's SOURCES.md.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict


def main(path: str) -> None:
    rows = list(csv.DictReader(open(path, newline="")))
    files: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    minutes: dict[str, float] = defaultdict(float)
    licences: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        s = r["source"]
        files[s][r["label"]] += 1
        minutes[s] += float(r["duration_s"] or 0) / 60
        licences[s].add(r["license"].strip() or "not stated")
    print("| source | labels (files) | min | licence as stated |")
    print("|---|---|---:|---|")
    for s in sorted(files, key=lambda k: (-minutes[k], k)):
        labs = ", ".join(f"{lab} {n}" for lab, n in sorted(files[s].items()))
        lic = "; ".join(sorted(licences[s])).replace("|", "/")
        print(f"| {s} | {labs} | {minutes[s]:.1f} | {lic} |")
    print(f"\n{len(rows)} files, {sum(minutes.values()):.0f} min, {len(files)} sources.")


if __name__ == "__main__":
    main(sys.argv[1])
