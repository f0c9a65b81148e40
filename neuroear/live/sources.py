"""Where live audio comes from: a file (as fast as possible, or paced like a device), the demo
clip, and (in ``device``) a PortAudio input. Each hands ``loop.run`` blocks at its own rate.

A file is decoded by ``audio.AudioFile``, the decoder ``analyze`` uses, so ``listen --input``
recovers from the same damage (undecodable stretches become silence) and says the same.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from neuroear.audio import AudioFile
from neuroear.errors import NeuroEarError

DEFAULT_BLOCK_FRAMES = 1024  # frames per PortAudio buffer / file read: 21–23 ms at 44.1–48 kHz
EXAMPLE_NAMES = ("example.ogg", "example.flac", "example.wav")


@dataclass(frozen=True)
class Block:
    """One block from a source.

    ``samples`` [frames, channels] float32 at the source's rate; ``t`` (``time.monotonic()``, s)
    when its last frame became available to us; ``lost_frames`` frames lost just before it
    (queue overflow), replaced by silence so that stream time stays true.
    """

    samples: np.ndarray
    t: float
    lost_frames: int = 0


class Source(Protocol):
    """What ``loop.run()`` needs from a source."""

    name: str
    rate: int  # Hz
    channels: int
    live: bool  # True: pushes audio in real time (drops allowed); False: pulled as fast as we go
    overflows: int  # input overflows reported by the driver, plus blocks lost in our queue

    def start(self) -> None: ...

    def read(self, timeout: float) -> list[Block] | None:
        """Blocks available now (waiting up to ``timeout`` s for one); [] if none yet, None at the end."""
        ...

    def stop(self) -> bool:
        """Stop capturing; False if the driver did not stop in time."""
        ...


class FileSource:
    """A file read block by block at its own rate and channel count.

    ``realtime=False``: as fast as the consumer reads (``live`` False: never drops).
    ``realtime=True``: each block becomes available when a device would deliver it, so a slow
    consumer sees a backlog exactly like a device (``live`` True).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block: int = DEFAULT_BLOCK_FRAMES,
        realtime: bool = False,
        name: str | None = None,
    ) -> None:
        if block <= 0:
            raise NeuroEarError(f"block size must be a positive number of frames, got {block}")
        self._file = AudioFile(path)
        self.path = self._file.path
        self.name = name or str(path)
        self.rate = self._file.rate
        self.channels = self._file.channels
        self.block = int(block)
        self.realtime = realtime
        self.live = realtime
        self.overflows = 0
        self.latency = 0.0  # s of driver buffering (none)
        self._t0: float | None = None
        self._frames = 0  # frames handed out
        self._blocks = self._file.blocks(self.block)
        self._pending: np.ndarray | None = None

    def start(self) -> None:
        self._t0 = time.monotonic()

    def _next_raw(self) -> np.ndarray | None:
        if self._pending is not None:
            raw, self._pending = self._pending, None
            return raw
        raw = next(self._blocks, None)
        return raw if raw is not None and raw.shape[0] else None

    def read(self, timeout: float) -> list[Block] | None:
        if self._t0 is None:
            self.start()
        if not self.realtime:
            raw = self._next_raw()
            if raw is None:
                return None
            self._frames += raw.shape[0]
            return [Block(raw, time.monotonic())]
        out: list[Block] = []
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            raw = self._next_raw()
            if raw is None:
                return out or None
            due = self._t0 + (self._frames + raw.shape[0]) / self.rate
            now = time.monotonic()
            if due > now:
                if out or due > deadline:
                    self._pending = raw
                    if not out:
                        time.sleep(max(0.0, deadline - now))
                    return out
                time.sleep(due - now)
            self._frames += raw.shape[0]
            out.append(Block(raw, due))

    def stop(self) -> bool:
        self._blocks.close()
        self._file.close()
        return True


def example_clip() -> Path:
    """The example clip shipped with the package (``neuroear/examples/example.*``)."""
    base = resources.files("neuroear") / "examples"
    for name in EXAMPLE_NAMES:
        p = base / name
        if p.is_file():
            return Path(str(p))
    raise NeuroEarError(
        "the bundled example clip is missing (looked for neuroear/examples/"
        + "|".join(EXAMPLE_NAMES)
        + "); reinstall neuroear, or run `neuroear listen --input FILE --realtime` on any audio file"
    )


def demo_source(*, block: int = DEFAULT_BLOCK_FRAMES) -> FileSource:
    """The example clip paced like a device (``listen --demo``)."""
    clip = example_clip()
    return FileSource(clip, block=block, realtime=True, name=f"demo:{clip.name}")


__all__ = ["Block", "Source", "FileSource", "example_clip", "demo_source", "DEFAULT_BLOCK_FRAMES"]
