"""Audio in: decoding (with damage recovery), mono, levels, and the file list.

Everything the model sees is decoded here, in analysis and live alike (``AudioFile`` feeds both
``stream`` and the live file source), and framed by ``neuroear.framing``, so that training and
serving frame the audio identically (a CQT of a one-second chunk differs from a whole-file CQT
at the edges).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from neuroear.errors import NeuroEarError, reason
from neuroear.resample import Resampler

SILENCE_DBFS = -45.0  # dBFS: windows quieter than this are reported apart by `evaluate`
DECODE_BLOCK_SECONDS = 30.0  # s: files are decoded in blocks of this length so memory stays flat
MAX_RATE = 768_000  # Hz: the highest rate converters record at; a header claiming more is damaged

# files a folder is searched for: libsndfile's formats, then what FFmpeg (PyAV, ``avdecode``) adds
AUDIO_EXTENSIONS = (
    ".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus", ".caf", ".w64",
    ".m4a", ".aac", ".mp4", ".m4b", ".mov", ".3gp", ".amr", ".wma", ".webm", ".mka", ".mkv", ".ac3", ".alac",
)


def dbfs(x: np.ndarray) -> np.ndarray:
    """RMS level in dB relative to full scale (1.0) over the last axis; -120 for silence."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    # a sum of products in the input's precision: squaring into a float64 copy first cost
    # 13 % of `analyze` (±0.004 dB difference over a 16 000-sample window)
    n = max(1, x.shape[-1]) if x.ndim else 1
    rms = np.sqrt(np.einsum("...i,...i->...", x, x) / n) if x.ndim else np.abs(x)
    return 20.0 * np.log10(np.maximum(rms.astype(np.float64), 1e-6))


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average channels: [frames, channels] or [frames] → [frames] float32."""
    if x.ndim == 2:
        n = x.shape[1]
        # a loop over channels: x.mean(axis=1) reduces along the short, contiguous axis and was
        # the slowest step of decoding a stereo file (3× the decoder itself)
        acc = np.array(x[:, 0], dtype=np.float32, copy=True)
        for c in range(1, n):
            acc += x[:, c]
        if n > 1:
            acc *= np.float32(1.0 / n)
        return acc
    return np.asarray(x, dtype=np.float32)


def sanitize(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/Inf by 0 and clip to [-1, 1]; returns (clean float32 copy, count replaced)."""
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    y = np.where(bad, 0.0, x).astype(np.float32, copy=False) if n_bad else x.astype(np.float32, copy=True)
    np.clip(y, -1.0, 1.0, out=y)
    return y, n_bad


def _open_fallback(path: Path, exc: Exception):
    """libsndfile could not open ``path`` (``exc``): open it with PyAV (``avdecode.AVFile``), or
    raise one clear error with both decoders' reasons."""
    from neuroear import avdecode

    sf_why = reason(exc, path)
    if not avdecode.available():
        raise NeuroEarError(
            f"{path}: cannot decode audio ({sf_why}); phone and video recordings (.m4a, .aac, .mp4, ...) "
            f"need the FFmpeg decoder: {avdecode.INSTALL_HINT}"
        ) from None
    try:
        return avdecode.AVFile(path)
    except avdecode.Undecodable as av_exc:
        raise NeuroEarError(f"{path}: cannot decode audio (libsndfile: {sf_why}; FFmpeg: {av_exc.reason})") from None


def check_readable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path if it is an existing, readable, non-empty file, else raise."""
    p = Path(path)
    if not p.exists():
        raise NeuroEarError(f"{p}: no such file or directory")
    if p.is_dir():
        raise NeuroEarError(f"{p}: is a directory, not an audio file")
    if not p.is_file():  # a FIFO would block the decoder forever; a device or socket is no file either
        raise NeuroEarError(f"{p}: not a regular file (a pipe, device or socket); save the audio to a file first")
    if not os.access(p, os.R_OK):
        raise NeuroEarError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise NeuroEarError(f"{p}: empty file (0 bytes)")
    return p


@dataclass(frozen=True)
class AudioInfo:
    """What the decoder found in a file: native rate (Hz), channels, frames, duration (s)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header, opened as ``AudioFile`` opens it (libsndfile, else PyAV); raises
    NeuroEarError for a file neither can open."""
    with AudioFile(path) as f:
        return AudioInfo(f.path, f.rate, f.channels, f.frames)


def _declared_shortfall(f) -> float:
    """Seconds of audio a WAV/AIFF header promises beyond what the file holds (0 if none or unknown).

    libsndfile reads a file cut short mid-data without complaint (it trusts the file length); its
    log (``extra_info``) keeps the header's claim: ``data : 64000 (should be 21348)``.
    """
    import re

    try:
        log = f.extra_info
    except Exception:
        return 0.0
    m = re.search(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", log, re.MULTILINE)
    if not m:
        return 0.0
    declared, actual = int(m.group(1)), int(m.group(2))
    if declared in (0, 0xFFFFFFFF, 0x7FFFFFFF) or declared <= actual:  # streamed WAVs leave these placeholders
        return 0.0
    bytes_per_second = max(1, f.samplerate * f.channels * _BYTES_PER_SAMPLE.get(f.subtype, 2))
    return (declared - actual) / bytes_per_second


_BYTES_PER_SAMPLE = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}
RESYNC_STEP_SECONDS = 0.5  # s: after undecodable data, try to resume decoding every this much further on
SALVAGE_FRAMES = 1024  # frames per read while recovering the audio just before undecodable data


def _recover(p: Path, rate: int, frames: int, channels: int, pos: int, block: int):
    """After a read error in the block starting at frame ``pos``: what can still be decoded.

    Returns (frames decoded before the bad spot [n, channels], resume frame or None, an open
    SoundFile positioned at the resume frame or None). libsndfile cannot read on after an error
    (FLAC "lost sync"), but a fresh handle seeks past the damage.
    """
    import soundfile as sf

    good: list[np.ndarray] = []
    q = pos
    try:
        with sf.SoundFile(str(p)) as g:
            g.seek(pos)
            while q < pos + block:
                chunk = g.read(SALVAGE_FRAMES, dtype="float32", always_2d=True)
                if chunk.shape[0]:
                    good.append(chunk)
                q += chunk.shape[0]
                if chunk.shape[0] < SALVAGE_FRAMES:
                    break
    except Exception:
        pass
    before = np.concatenate(good) if good else np.zeros((0, channels), dtype=np.float32)
    step = max(1, int(RESYNC_STEP_SECONDS * rate))
    r = q + step
    while frames and r < frames:
        h = None
        try:
            h = sf.SoundFile(str(p))
            h.seek(r)
            h.read(1, dtype="float32", always_2d=True)  # decodes the frame holding r: proves we are past the damage
            h.seek(r)
            return before, r, h
        except Exception:
            if h is not None:
                h.close()
            r += step
    return before, None, None


class AudioFile:
    """An audio file opened for reading block by block at its own rate and channel count.

    ``blocks(frames)`` yields float32 [n, channels] blocks; ``at_end`` turns True just before
    the last one is yielded (it may be empty). libsndfile decodes what it can; anything else
    (.m4a, .aac, .mp4, ...) goes to FFmpeg through PyAV (``avdecode.AVFile``). Damaged files give what can be decoded, with one
    warning each: a WAV cut short mid-data is read to its end; an undecodable stretch (a corrupt
    FLAC frame) becomes silence of the same length and decoding resumes after it. Raises
    NeuroEarError on a file that cannot be opened, or whose rest cannot be decoded (after
    yielding every block decoded before the damage). Samples are not sanitised here.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import soundfile as sf

        self.path = p = check_readable(path)
        self.at_end = False
        self._av = None  # avdecode.AVFile when libsndfile cannot read the file
        try:
            self._file = sf.SoundFile(str(p))
        except Exception as exc:
            self._av = _open_fallback(p, exc)
            self.rate, self.channels, self.frames = self._av.rate, self._av.channels, self._av.frames
        else:
            self.rate = int(self._file.samplerate)
            self.channels = int(self._file.channels)
            self.frames = int(self._file.frames) if self._file.seekable() else 0
        if not 0 < self.rate <= MAX_RATE:  # a damaged header: resampling from 1.4 GHz would run for hours
            self.close()
            raise NeuroEarError(f"{p}: implausible sample rate {self.rate} Hz (damaged header?); audio files run at {MAX_RATE} Hz or less")

    def blocks(self, block: int) -> Iterator[np.ndarray]:
        """Raw blocks of ``block`` frames (see the class docstring)."""
        if self._av is not None:
            for raw in self._av.blocks(block):
                self.at_end = self._av.at_end
                yield raw
            return
        p, rate = self.path, self.rate
        missing = _declared_shortfall(self._file)  # warned when reading starts: ``info`` opens files too
        if missing > 0:
            warnings.warn(
                f"{p}: file is cut short: its header promises {missing:.2f} s more than it holds "
                f"(truncated copy or download?); analysing the {self.frames / rate:.2f} s present",
                stacklevel=3,
            )
        pos = 0  # frames read so far, at the file's rate
        while True:
            gap = 0
            try:
                raw = self._file.read(block, dtype="float32", always_2d=True)
            except Exception as exc:
                why = reason(exc)
                self._file.close()
                raw, resume, fresh = _recover(p, rate, self.frames, self.channels, pos, block)
                if resume is None:
                    self.at_end = True
                    if raw.shape[0]:
                        yield raw
                    at = (pos + raw.shape[0]) / rate
                    raise NeuroEarError(
                        f"{p}: cannot decode past {at:.2f} s of {self.frames / rate:.2f} s ({why}): the file is cut "
                        f"short or corrupt from there on; the audio before it was analysed"
                    ) from None
                self._file = fresh
                gap = resume - pos - raw.shape[0]
                warnings.warn(
                    f"{p}: {gap / rate:.2f} s of undecodable data at {(pos + raw.shape[0]) / rate:.2f} s ({why}) "
                    f"replaced by silence",
                    stacklevel=3,
                )
                raw = np.concatenate([raw, np.zeros((gap, raw.shape[1]), dtype=np.float32)])
            last = raw.shape[0] < block and not gap
            pos += raw.shape[0]
            self.at_end = last
            yield raw
            if last:
                return

    def close(self) -> None:
        (self._av if self._av is not None else self._file).close()

    def __enter__(self) -> "AudioFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(
    path: str | os.PathLike[str],
    *,
    sample_rate: int,
    block_seconds: float = DECODE_BLOCK_SECONDS,
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block as mono float32 at ``sample_rate`` (Hz).

    Memory stays flat for any file length. Damaged files are read as ``AudioFile`` reads them;
    non-finite samples become 0 (one warning).
    """
    with AudioFile(path) as f:
        resampler = None if f.rate == sample_rate else Resampler(f.rate, sample_rate)
        n_bad = 0
        for raw in f.blocks(max(1, int(block_seconds * f.rate))):
            mono, bad = sanitize(to_mono(raw))
            n_bad += bad
            out = resampler.resample_chunk(mono, last=f.at_end) if resampler is not None else mono
            if out.size:
                yield np.asarray(out, dtype=np.float32)
        if n_bad:
            warnings.warn(f"{f.path}: {n_bad} NaN/Inf samples replaced by silence", stacklevel=2)


def prefetch(blocks: Iterator[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Yield the items of ``blocks``, produced by a background thread up to ``depth`` ahead.

    Decoding and resampling (libsndfile, soxr, NumPy: all release the GIL) then overlap with
    inference in the caller. An exception from ``blocks`` is raised here after the items that
    came before it; closing this generator (or Ctrl-C in the caller) stops the thread and closes
    ``blocks`` there, so its files are closed.
    """
    from neuroear.background import background

    def produce(put, stop) -> None:  # noqa: ANN001 - see background.Put
        try:
            for b in blocks:
                if not put(b):
                    return
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    return background(produce, depth=depth, name="neuroear-decode", join_seconds=2.0)


def load(path: str | os.PathLike[str], *, sample_rate: int) -> np.ndarray:
    """Decode a whole file: mono float32 [samples] at ``sample_rate`` (Hz) in [-1, 1].

    (Resampling full-scale audio can overshoot ±1 slightly, as any band-limited resampler does;
    ``Detector.predict`` clips what the model sees.)
    """
    blocks = list(stream(path, sample_rate=sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def iter_files(paths: list[str]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted, audio extensions only) in the order given.

    A missing path is yielded as is, so the caller reports it as one error among the others.
    Files in a folder whose names are not audio (notes.txt) are named in one warning per folder,
    never skipped silently; hidden files (.DS_Store) are left out.
    """
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found, other = [], []
            for q in sorted(p.rglob("*")):
                if not q.is_file() or any(part.startswith(".") for part in q.relative_to(p).parts):
                    continue
                (found if q.suffix.lower() in AUDIO_EXTENSIONS else other).append(q)
            if other:
                names = ", ".join(str(q.relative_to(p)) for q in other[:3]) + (", ..." if len(other) > 3 else "")
                warnings.warn(
                    f"{p}: skipped {len(other)} file(s) that are not audio by their extension ({names}); "
                    "name a file directly to try decoding it anyway",
                    stacklevel=2,
                )
            if not found:
                warnings.warn(f"{p}: folder holds no audio files ({', '.join(AUDIO_EXTENSIONS)})", stacklevel=2)
            yield from found
        else:
            yield p


__all__ = [
    "SILENCE_DBFS",
    "AudioFile",
    "AudioInfo",
    "check_readable",
    "dbfs",
    "info",
    "iter_files",
    "load",
    "prefetch",
    "sanitize",
    "stream",
    "to_mono",
]
