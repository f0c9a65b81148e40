"""``listen --record take.flac``: the session's input, as received, kept beside its JSON lines.

The ``Recorder`` runs in the consumer (``loop.run``'s ``on_blocks``), never in the device
callback: it writes each block at the source's own rate and channels, before downmix and
resampling. Frames our queue lost are written as silence, as the loop counts them, so the
file's time matches the lines' stream seconds; while a device is gone nothing is written (stream
time pauses too). The file is opened on the first block, when the rate is known (a device may
fall back to another one), and closed by ``close()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from neuroear.errors import NeuroEarError
from neuroear.live.sources import Block

# extension → (libsndfile format, subtype): lossless, enough bits for what devices deliver
FORMATS = {".flac": ("FLAC", "PCM_24"), ".wav": ("WAV", "FLOAT"), ".ogg": ("OGG", "VORBIS")}
FLAC_MAX_RATE = 655_350  # Hz: the highest rate a FLAC stream can carry


def check_record_path(path: str | os.PathLike[str]) -> Path:
    """Validate a ``--record`` path before listening starts: known extension, existing folder, not a folder."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise NeuroEarError(f"--record {str(path)!r}: use a .flac, .wav or .ogg file name (FLAC keeps the audio losslessly)")
    if p.is_dir():
        raise NeuroEarError(f"--record {str(path)!r} is a folder; give a file name")
    if not p.parent.is_dir():
        raise NeuroEarError(f"--record {str(path)!r}: folder {str(p.parent)!r} does not exist")
    return p


class Recorder:
    """Writes the blocks of one session to ``path`` (format from the extension, see ``FORMATS``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_record_path(path)
        self.frames = 0  # frames written (at ``rate``)
        self.rate = 0  # Hz, set when the file opens
        self.channels = 0
        self._file = None

    def _open(self, rate: int, channels: int) -> None:
        import soundfile as sf

        fmt, subtype = FORMATS[self.path.suffix.lower()]
        if fmt == "FLAC" and (rate > FLAC_MAX_RATE or channels > 8):
            raise NeuroEarError(f"--record {str(self.path)!r}: FLAC holds at most 8 channels at {FLAC_MAX_RATE} Hz; use .wav")
        try:
            self._file = sf.SoundFile(self.path, "w", samplerate=int(rate), channels=int(channels), format=fmt, subtype=subtype)
        except (OSError, RuntimeError, ValueError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
            raise NeuroEarError(f"cannot write --record {str(self.path)!r} ({exc})") from None
        self.rate, self.channels = int(rate), int(channels)

    def write(self, blocks: Sequence[Block], *, rate: int, channels: int) -> None:
        """Append ``blocks`` ([frames, channels] float32 at ``rate`` Hz), silence first for lost frames."""
        if not blocks:
            return
        if self._file is None:
            self._open(rate, channels)
        for b in blocks:
            x = np.asarray(b.samples, dtype=np.float32)
            if x.ndim == 1:
                x = x[:, None]
            try:
                if b.lost_frames:
                    self._file.write(np.zeros((b.lost_frames, self.channels), dtype=np.float32))
                    self.frames += b.lost_frames
                if x.shape[0]:
                    # integer subtypes: keep overs at full scale (libsndfile would wrap them) and NaN as 0
                    self._file.write(np.clip(np.nan_to_num(x, nan=0.0), -1.0, 1.0) if self._file.subtype != "FLOAT" else x)
                    self.frames += x.shape[0]
            except (OSError, RuntimeError) as exc:
                raise NeuroEarError(f"cannot write --record {str(self.path)!r} ({exc}); the lines so far are complete") from None

    @property
    def seconds(self) -> float:
        """Seconds of audio written."""
        return self.frames / self.rate if self.rate else 0.0

    def close(self) -> None:
        """Finish the file (safe to call twice)."""
        f, self._file = self._file, None
        if f is not None:
            f.close()


__all__ = ["Recorder", "check_record_path", "FORMATS"]
