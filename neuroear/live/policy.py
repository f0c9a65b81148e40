"""Decision policy, apart from the model: thresholds, hysteresis, smoothing, onset/offset events.

The model gives probabilities per window; what counts as "the violin is playing" is decided
here, per hop, with explicit state (``reset()``) so that a file and a device stream give the
same decisions. With ``smooth=1`` and ``hysteresis=0`` a label is active exactly when its
probability is at or over its threshold. ``analyze``, ``listen``, ``evaluate``, the web page and
archives decide by default on the mean of the windows of the last 2 s (``default_smooth``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from neuroear.errors import NeuroEarError
from neuroear.framing import WINDOW_SECONDS

MAX_SMOOTH = 32  # hops: a longer moving average is a different product (a summary, not detection)
# The default moving average spans the windows whose audio lies in the last 2 s (2 one-second
# windows at the default hop of 1 s, 3 at hop 0.5). Chosen on held-out real-train files, not on
# dev (benchmarks/smoothing.py, neuroear-v5, with the gate below): at hop 1 s macro F1 0.734 →
# 0.771 on the files one by one and 0.725 → 0.765 on medleys that change instrument every file
# (every 2–3 s), where 3 windows already lose (0.736) for what they carry over; at hop 0.5 the
# medleys peak at 2–3 hops (0.734 / 0.733; 4 hops 0.719) while the files gain up to 6.
DEFAULT_SMOOTH_SECONDS = 2.0
# With a moving average, a label is on only while the latest window alone still reaches this
# share of its level: a plain mean keeps an instrument that just stopped (0.99 then 0.03: mean
# 0.51) on for a whole extra window. Chosen with the default above, on the same held-out files:
# medleys 0.747 → 0.765 macro F1, unknown instruments 0.36 → 0.32 false labels per window, the
# files one by one level (0.770 → 0.771).
LATEST_GATE = 0.5


def check_smooth(smooth: int, *, name: str = "--smooth") -> int:
    """The moving-average length (hops) as an int, if in [1, MAX_SMOOTH]; else NeuroEarError
    naming the option ``name`` (``--smooth`` on the command line, ``smooth`` in a web query)."""
    if not (1 <= int(smooth) <= MAX_SMOOTH):
        raise NeuroEarError(f"{name} must be between 1 and {MAX_SMOOTH} hops, got {smooth}")
    return int(smooth)


def default_smooth(hop_seconds: float) -> int:
    """The default moving-average length (hops) at a hop of ``hop_seconds`` (s): the one-second
    windows whose audio lies within the last ``DEFAULT_SMOOTH_SECONDS``, at least 1 and at most
    ``MAX_SMOOTH``."""
    if not hop_seconds > 0:  # a bad hop is reported by its own check, not as a ZeroDivisionError here
        return 1
    return max(1, min(MAX_SMOOTH, 1 + round((DEFAULT_SMOOTH_SECONDS - WINDOW_SECONDS) / float(hop_seconds))))


def resolve_smooth(smooth: int | None, hop_seconds: float, *, name: str = "--smooth") -> int:
    """``smooth`` checked (``check_smooth``), or ``default_smooth(hop_seconds)`` where it is None."""
    return default_smooth(hop_seconds) if smooth is None else check_smooth(smooth, name=name)


@dataclass(frozen=True)
class PolicyConfig:
    """Per-label on/off levels (probabilities) and the moving-average length (hops).

    A label turns on when its smoothed probability reaches ``on`` and turns off when it
    falls below ``off`` (``off <= on``; equal levels mean no hysteresis). With ``smooth`` > 1
    it is also off while the latest window alone is under ``LATEST_GATE`` times that level.
    """

    labels: tuple[str, ...]
    on: tuple[float, ...]
    off: tuple[float, ...]
    smooth: int = 1

    @classmethod
    def build(
        cls,
        labels: Sequence[str],
        thresholds: Sequence[float] | np.ndarray,
        *,
        hysteresis: float = 0.0,
        smooth: int = 1,
    ) -> "PolicyConfig":
        """From the model's labels and the on levels: ``Detector.thresholds``, or with the user's
        overrides ``Detector.thresholds_for(...)`` (the one place they are applied, for
        ``analyze`` and ``listen`` alike; ``session.make_policy`` does that).

        ``hysteresis`` (probability) sets each off level to ``on - hysteresis`` (at least 0).
        """
        labels = tuple(labels)
        thr = [float(t) for t in thresholds]
        if len(thr) != len(labels):
            raise NeuroEarError(f"{len(thr)} thresholds for {len(labels)} labels")
        if not (0.0 <= hysteresis < 1.0):
            raise NeuroEarError(f"hysteresis must be in [0, 1), got {hysteresis:g}")
        smooth = check_smooth(smooth)
        on = tuple(thr)
        off = tuple(max(0.0, t - hysteresis) for t in thr)
        return cls(labels=labels, on=on, off=off, smooth=smooth)


@dataclass(frozen=True)
class Event:
    """An onset or offset of one label at ``time`` (stream seconds)."""

    kind: str  # "onset" | "offset"
    label: str
    time: float


@dataclass(frozen=True)
class Decision:
    """What the policy concluded for one hop."""

    smoothed: np.ndarray  # [n_labels] probabilities after the moving average
    active: tuple[str, ...]  # labels on after this hop, in label order
    events: tuple[Event, ...]  # onsets/offsets caused by this hop
    mask: np.ndarray  # [n_labels] bool, True where a label is on: ``active`` is the labels where it is True


class Policy:
    """Stateful per-hop decisions over a stream of probability vectors.

    ``update(probs [n_labels], start=s, end=s)`` for each window in stream order (start and end
    in stream seconds). An onset is timed at the start of the first active window; an offset
    at the end of the last active window. ``finish()`` closes labels still on.
    """

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._on = np.asarray(config.on, dtype=np.float64)
        self._off = np.asarray(config.off, dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget history: no label is on, the moving average is empty."""
        n = len(self.config.labels)
        self._history: deque[np.ndarray] = deque(maxlen=self.config.smooth)
        self._state = np.zeros(n, dtype=bool)
        self._since = np.full(n, np.nan)  # onset time (stream s) of each label that is on
        self._last_end: float | None = None

    @property
    def onsets(self) -> dict[str, float]:
        """Onset time (stream s) of each label now on."""
        return {lab: float(t) for lab, t, on in zip(self.config.labels, self._since, self._state) if on}

    def update(self, probs: np.ndarray, *, start: float, end: float) -> Decision:
        """Decide one hop from probabilities [n_labels] of the window [start, end) (s)."""
        p = np.asarray(probs, dtype=np.float64).reshape(-1)
        if p.size != len(self.config.labels):
            raise ValueError(f"expected {len(self.config.labels)} probabilities, got {p.size}")
        self._history.append(p)
        smoothed = p if len(self._history) == 1 else np.mean(np.stack(self._history), axis=0)
        level = np.where(self._state, self._off, self._on)
        new = smoothed >= level
        if len(self._history) > 1:
            new &= p >= LATEST_GATE * level
        events = []
        for i, lab in enumerate(self.config.labels):
            if new[i] and not self._state[i]:
                events.append(Event("onset", lab, float(start)))
                self._since[i] = start
            elif self._state[i] and not new[i]:
                events.append(Event("offset", lab, float(self._last_end if self._last_end is not None else start)))
                self._since[i] = np.nan
        self._state = new
        self._last_end = float(end)
        active = tuple(lab for lab, on in zip(self.config.labels, new) if on)
        return Decision(smoothed=smoothed.astype(np.float32), active=active, events=tuple(events), mask=new.copy())

    def finish(self) -> list[Event]:
        """Offsets for every label still on, at the end of the last window; then reset."""
        end = self._last_end if self._last_end is not None else 0.0
        events = [Event("offset", lab, end) for lab, on in zip(self.config.labels, self._state) if on]
        self.reset()
        return events
