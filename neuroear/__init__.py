"""Neuro-Ear: which instruments are sounding, second by second.

The library's face (no torch needed; numpy, soundfile, soxr and ONNX Runtime only)::

    import neuroear

    det = neuroear.Detector()                      # the shipped model (or model="x.onnx", provider="cpu")
    probs = det.predict(windows)                   # [n, det.framing.window] float32 → [n, len(det.labels)]
    for r in neuroear.analyze_file("clip.wav", hop=0.5):
        print(r.start, r.end, r.active)            # one WindowResult per window
    for d in neuroear.listen(input="clip.wav"):    # or device=..., demo=True: one Detection per hop
        print(d.start, d.active)

Folders: the top level is the runtime every path shares (``audio``, ``resample``, ``framing``,
``metadata``, ``infer``, ``analyze``, ``evaluate``); ``live/`` the live application; ``training/``
the torch side that builds models; ``cli/`` the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from neuroear.errors import NeuroEarError

_FACE = {
    "Detector": "neuroear.infer",
    "ModelCard": "neuroear.metadata",
    "analyze_file": "neuroear.analyze",
    "WindowResult": "neuroear.analyze",
    "listen": "neuroear.live.session",
    "Detection": "neuroear.live.session",
}

if TYPE_CHECKING:
    from neuroear.analyze import WindowResult, analyze_file
    from neuroear.infer import Detector
    from neuroear.live.session import Detection, listen
    from neuroear.metadata import ModelCard


def __getattr__(name: str) -> Any:
    """Load the face on first use, so ``import neuroear.audio`` stays as light as it was."""
    if name in _FACE:
        import importlib

        value = getattr(importlib.import_module(_FACE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuroear' has no attribute {name!r}")


__all__ = ["Detector", "Detection", "ModelCard", "NeuroEarError", "WindowResult", "analyze_file", "listen", "__version__"]
