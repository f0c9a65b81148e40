"""Neuro-Ear: which instruments are sounding, second by second.

The runtime (``infer``, ``analyze``, ``listen``) depends on numpy, soundfile, soxr and
ONNX Runtime only; torch is needed only to train and export.
"""

__version__ = "0.1.0"

from neuroear.errors import NeuroEarError

__all__ = ["NeuroEarError", "__version__"]
