"""One file's windows → the instruments present: share of windows, first and last time (s)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def instruments(starts: np.ndarray, ends: np.ndarray, active: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """Summarise a file's windows per label, most present first.

    ``starts``, ``ends``: [n] window times in seconds; ``active``: bool [n, n_labels] (label at or
    over its threshold). Returns one dict per label active in at least one window:
    ``{"label", "share" (fraction of the file's windows, 0–1), "first" (s, start of the first
    active window), "last" (s, end of the last active window)}``.
    """
    active = np.asarray(active, dtype=bool)
    n = active.shape[0]
    out = []
    for j, lab in enumerate(labels):
        on = np.flatnonzero(active[:, j]) if n else np.zeros(0, dtype=np.int64)
        if on.size:
            out.append({"label": str(lab), "share": round(float(on.size / n), 4), "first": float(starts[on[0]]), "last": float(ends[on[-1]])})
    out.sort(key=lambda d: (-d["share"], d["label"]))
    return out
