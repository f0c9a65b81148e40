"""Shared fixtures: tiny real audio files written with soundfile, the shipped model, paths."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROEAR_SHARED", ROOT.parent / "shared"))
DEV = SHARED / "data" / "real-dev"
REAL_TRAIN = SHARED / "data" / "real-train"
SR = 16_000
# Python source that makes importing torch or nnAudio fail: prefix of a `python -c` torch-free check
BLOCK_TORCH = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'nnAudio'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def tone(freq: float, seconds: float, *, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """A sine [samples] float32."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_av(path, x: np.ndarray, sr: int = SR, *, codec: str = "aac", channels: int = 1) -> Path:
    """Encode mono ``x`` [samples] into a real compressed container (.m4a, .aac, .mp4) with PyAV."""
    import av

    y = np.ascontiguousarray(np.tile(np.asarray(x, dtype=np.float32)[None, :], (channels, 1)))
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=sr, layout="mono" if channels == 1 else "stereo")
        for i in range(0, y.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[:, i:i + 1024]), format="fltp", layout=s.layout)
            f.sample_rate, f.pts = sr, i
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
    return Path(path)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, input: bytes | None = None):
    """Run ``python -m neuroear ARGS`` in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    if input is not None:  # bytes on stdin (`neuroear analyze -`): binary pipes, decoded after
        r = subprocess.run([sys.executable, "-m", "neuroear", *args], capture_output=True, timeout=timeout, env=e, cwd=str(ROOT), input=input)
        return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"))
    return subprocess.run([sys.executable, "-m", "neuroear", *args], capture_output=True, text=True, timeout=timeout, env=e, cwd=str(ROOT))


@pytest.fixture(scope="session")
def detector():
    from neuroear.infer import Detector

    return Detector()


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


needs_torch = pytest.mark.skipif(not (has_module("torch") and has_module("nnAudio")), reason="needs the 'train' extra (torch, nnAudio)")


class WebServer:
    """A real `neuroear serve` in a subprocess on a free port: ``url``, ``stderr`` lines, ``stop()``."""

    def __init__(self, *args: str) -> None:
        import re
        import subprocess
        import threading
        import time

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neuroear", "serve", "--port", "0", *args],
            cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.stderr: list[str] = []
        self.url = ""
        found = threading.Event()

        def drain() -> None:
            for line in self.proc.stderr:
                self.stderr.append(line.rstrip("\n"))
                m = re.search(r"open (http://\S+?)/", line)
                if m:
                    self.url = m.group(1)
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 60
        while not found.wait(0.1):
            if time.monotonic() > deadline:
                break
        if not self.url:
            self.stop()
            raise RuntimeError("neuroear serve did not start: " + " | ".join(self.stderr[-5:]))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


@pytest.fixture(scope="session")
def web_server():
    """One `neuroear serve` for the web tests (needs the 'web' extra)."""
    if not (has_module("fastapi") and has_module("uvicorn") and has_module("python_multipart")):
        pytest.skip("needs the 'web' extra (fastapi, uvicorn, python-multipart)")
    server = WebServer()
    yield server
    server.stop()
