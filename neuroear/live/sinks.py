"""Detections out: one JSON object per line on stdout, flushed per hop.

stdout is for data, stderr for people. A reader that goes away (``| head -3``) is not an
error: the sink notices the broken pipe, stops writing and lets the loop end quietly.
The shape of one line is ``stream/detection.schema.json``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any, Mapping, Sequence

import numpy as np

from neuroear.analyze import window_row
from neuroear.devnull import to_devnull
from neuroear.live.policy import Event

PROB_DECIMALS = 4  # probabilities are written rounded to 1e-4
TIME_DECIMALS = 6  # stream seconds: µs, finer than one sample at 16 kHz (62.5 µs)


def utc_now() -> str:
    """Wall-clock time as ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def detection_record(
    *,
    source: str,
    start: float,
    end: float,
    labels: Sequence[str],
    probs: np.ndarray,
    active: Sequence[str],
    latency_ms: float,
    provider: str,
    time: str | None = None,
) -> dict[str, Any]:
    """One hop's line: the fields of ``analyze`` plus ``time``, ``latency_ms`` and ``provider``.

    ``start``/``end`` in stream seconds; ``probs`` [n_labels] in label order.
    """
    return {
        **window_row(source=source, start=start, end=end, labels=labels, probs=probs, active=active,
                     time_decimals=TIME_DECIMALS, prob_decimals=PROB_DECIMALS),
        "time": time or utc_now(),
        "latency_ms": round(float(latency_ms), 2),
        "provider": provider,
    }


def event_record(event: Event) -> dict[str, Any]:
    """One onset/offset line: ``{"event": "onset", "label": "violin", "time": 3.0}`` (stream s)."""
    return {"event": event.kind, "label": event.label, "time": round(float(event.time), TIME_DECIMALS)}


class JsonlSink:
    """Writes dicts as JSON Lines to a text stream, one flushed line each.

    ``write()`` returns False (and ``closed`` becomes True) once the reader has gone away;
    later writes are ignored.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.closed = False
        self.lines = 0

    def write(self, record: Mapping[str, Any]) -> bool:
        """Write one record as one line and flush; False if the pipe is closed."""
        if self.closed:
            return False
        try:
            self.stream.write(json.dumps(record) + "\n")  # ASCII-only: safe under any locale
            self.stream.flush()
        except BrokenPipeError:
            self._on_broken_pipe()
            return False
        self.lines += 1
        return True

    def _on_broken_pipe(self) -> None:
        self.closed = True
        # Python flushes stdout again at exit and would print "Exception ignored ... BrokenPipeError":
        # point the descriptor at /dev/null so that last flush succeeds silently.
        to_devnull(self.stream)
