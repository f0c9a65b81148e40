"""The fallback decoder behind soundfile: PyAV (FFmpeg, shipped in its wheels).

libsndfile reads WAV, FLAC, OGG/Vorbis/Opus, MP3 and AIFF; phone and video recordings
(.m4a, .aac, .mp4, .mov, .webm, .wma, .amr, ...) need FFmpeg. ``audio.AudioFile`` tries
soundfile first and opens a file here only when libsndfile cannot, so the two decoders give
the same blocks to analysis, ``listen --input`` and anything else that reads files.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from neuroear.errors import NeuroEarError, reason

INSTALL_HINT = "pip install av (FFmpeg decoder for .m4a, .aac, .mp4 and other containers)"


def available() -> bool:
    """True if PyAV can be imported."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


class Undecodable(NeuroEarError):
    """FFmpeg cannot open a file as audio; ``reason`` says why (one line, without the path)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: cannot decode audio ({why})")
        self.reason = why


class AVFile:
    """The first audio stream of a container, decoded by FFmpeg into float32 [n, channels] blocks.

    Same surface as ``audio.AudioFile``: ``rate`` (Hz), ``channels``, ``frames`` (an estimate
    from the container's duration; 0 if unknown), ``at_end`` (True just before the last block
    is yielded) and ``blocks(frames)``. A packet FFmpeg cannot decode becomes silence of its
    length (one warning at the end); raises ``Undecodable`` if the file cannot be opened or holds
    no audio stream.
    """

    def __init__(self, path: Path) -> None:
        import av  # heavy optional dependency: imported where used

        self.path = path
        try:
            self._c: Any = av.open(str(path))
        except Exception as exc:  # av.error.* (InvalidDataError, ...): all mean "not decodable"
            raise Undecodable(path, reason(exc, path)) from None
        streams = self._c.streams.audio
        if not streams:
            kinds = " and ".join(sorted({s.type for s in self._c.streams})) or "no streams"
            self._c.close()
            raise Undecodable(path, f"no audio stream: the file holds {kinds}")
        self._s = streams[0]
        cc = self._s.codec_context
        if cc is None:  # FFmpeg saw an audio stream but knows no decoder for its codec (a damaged format tag)
            self._c.close()
            raise Undecodable(path, "no decoder for its audio codec (a damaged or unknown format tag?)")
        self.rate = int(cc.sample_rate or 0)
        self.channels = int(getattr(cc, "channels", 0) or cc.layout.nb_channels or 1)
        seconds = 0.0
        if self._s.duration is not None and self._s.time_base is not None:
            seconds = float(self._s.duration * self._s.time_base)
        elif self._c.duration is not None:
            seconds = self._c.duration / 1_000_000  # microseconds (av.time_base)
        self.frames = max(0, int(round(seconds * self.rate)))
        self.at_end = False

    def _decoded(self) -> Iterator[np.ndarray]:
        """Every decoded frame as float32 [n, channels], packet by packet."""
        import av

        resampler = av.AudioResampler(format="flt", layout=self._s.codec_context.layout, rate=self.rate)
        bad_packets, bad_seconds = 0, 0.0
        for packet in self._c.demux(self._s):
            try:
                frames = packet.decode()
            except Exception:  # av.error.InvalidDataError and kin: keep time true with silence
                bad_packets += 1
                n = int(round(float(packet.duration * packet.time_base) * self.rate)) if packet.duration and packet.time_base else 0
                bad_seconds += n / self.rate
                if n:
                    yield np.zeros((n, self.channels), dtype=np.float32)
                continue
            for frame in frames:
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1, self.channels).astype(np.float32, copy=False)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1, self.channels).astype(np.float32, copy=False)
        if bad_packets:
            warnings.warn(f"{self.path}: {bad_packets} undecodable packet(s) ({bad_seconds:.2f} s) replaced by silence", stacklevel=4)

    def blocks(self, block: int) -> Iterator[np.ndarray]:
        """Blocks of ``block`` frames; the last one (flagged by ``at_end``) may be shorter or empty."""
        buf: list[np.ndarray] = []
        n = 0
        try:
            for chunk in self._decoded():
                buf.append(chunk)
                n += chunk.shape[0]
                while n > block:  # strictly more: the block yielded is known not to be the last
                    data = np.concatenate(buf)
                    yield data[:block]
                    buf, n = [data[block:]], n - block
        except NeuroEarError:
            raise
        except Exception as exc:  # the demuxer gave up part-way (a cut-short file)
            self.at_end = True
            if n:
                yield np.concatenate(buf)
            raise NeuroEarError(f"{self.path}: cannot decode past this point ({reason(exc, self.path)}); the audio before it was analysed") from None
        self.at_end = True
        yield np.concatenate(buf) if buf else np.zeros((0, self.channels), dtype=np.float32)

    def close(self) -> None:
        self._c.close()


__all__ = ["AVFile", "INSTALL_HINT", "Undecodable", "available"]
