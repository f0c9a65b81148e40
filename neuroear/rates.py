"""The model's framing: sample rate and window length, with units.

Kept apart from ``audio`` so that ``resample`` (which ``audio`` imports) can default to the
model rate without a circular import. Import these through ``neuroear.audio`` as before.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000  # Hz: model rate; the CQT's top bin (4.2 kHz) sits well below Nyquist
WINDOW_SECONDS = 1.0  # s: one decision per second, as the seed
WINDOW_SAMPLES = int(SAMPLE_RATE * WINDOW_SECONDS)  # 16 000 samples

__all__ = ["SAMPLE_RATE", "WINDOW_SECONDS", "WINDOW_SAMPLES"]
