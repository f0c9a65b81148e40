"""Run a Neuro-Ear model file with ONNX Runtime: find it, check it, predict.

Never imports torch. The CUDA execution provider is used when ONNX Runtime offers it
(``onnxruntime-gpu``), the CPU provider otherwise; ``Detector.provider`` says which one
the session actually runs on.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from neuroear.errors import NeuroEarError
from neuroear.framing import Framing
from neuroear.metadata import FIX_HINT, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelCard

DEFAULT_MODEL_NAME = "neuroear-v5.onnx"
MODEL_ENV = "NEUROEAR_MODEL"
DEFAULT_BATCH = 64  # windows per ORT call in file analysis


def default_model_path() -> Path:
    """The model shipped inside the package (``neuroear/models/``, a link to top-level ``models/``)."""
    return Path(str(resources.files("neuroear") / "models" / DEFAULT_MODEL_NAME))


def find_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the model file: ``path``, then ``$NEUROEAR_MODEL``, then the shipped default."""
    if path:
        chosen, how = Path(path), "--model"
    elif os.environ.get(MODEL_ENV):
        chosen, how = Path(os.environ[MODEL_ENV]), f"${MODEL_ENV}"
    else:
        chosen, how = default_model_path(), "the shipped default"
    if not chosen.is_file():
        raise NeuroEarError(f"model file {chosen} (from {how}) not found; pass --model PATH or set ${MODEL_ENV}")
    return chosen


def parse_thresholds(
    items: Sequence[str] | Mapping[str, float] | None, labels: Sequence[str], *, option: str = "--threshold"
) -> dict[str, float]:
    """Parse ``LABEL=VALUE`` overrides (``--threshold``, or a {label: value} mapping) into
    {label: value in [0, 1]}; the one threshold parser of every command."""
    if isinstance(items, Mapping):
        items = [f"{k}={v}" for k, v in items.items()]
    out: dict[str, float] = {}
    for item in items or ():
        label, sep, value = str(item).partition("=")
        label = label.strip()
        if not sep or not label:
            raise NeuroEarError(f"{option} {item!r}: expected LABEL=VALUE, e.g. violin=0.6")
        if label not in labels:
            raise NeuroEarError(f"{option} {item!r}: unknown label {label!r}; the model's labels are {', '.join(labels)}")
        try:
            v = float(value)
        except ValueError:
            raise NeuroEarError(f"{option} {item!r}: {value!r} is not a number") from None
        if not (0.0 <= v <= 1.0):
            raise NeuroEarError(f"{option} {item!r}: value must be between 0 and 1")
        out[label] = v
    return out


class Detector:
    """An ONNX Runtime session over one model file, checked against its own metadata.

    ``predict(windows [n, window_samples] float32) -> probs [n, n_labels] float32``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        provider: str = "auto",
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.path = find_model(model)
        src = str(self.path)
        if self.path.stat().st_size == 0:
            raise NeuroEarError(f"{src}: model file is empty (0 bytes); {FIX_HINT}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # ORT's warnings about unused initialisers etc. are not for users
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if threads != 1:
            # Spinning worker threads burn a core between hops and, on a shared machine, made
            # 2-thread inference slower (p50 7.3 → 3.0 ms, benchmarks/README.md).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        if provider == "auto":
            wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        elif provider in ("cpu", "CPUExecutionProvider"):
            wanted = ["CPUExecutionProvider"]
        elif provider in ("cuda", "CUDAExecutionProvider"):
            if "CUDAExecutionProvider" not in available:
                raise NeuroEarError(
                    "CUDA execution provider not available (install the 'gpu' extra: onnxruntime-gpu instead of onnxruntime)"
                )
            wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            raise NeuroEarError(f"unknown provider {provider!r}: use auto, cpu or cuda")
        try:
            self.session = ort.InferenceSession(src, sess_options=opts, providers=wanted)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NeuroEarError(f"{src}: not a loadable ONNX model ({first[:200]}); truncated or not ONNX? {FIX_HINT}") from None
        self.provider = self.session.get_providers()[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise NeuroEarError(f"{src}: ONNX model has no '{METADATA_KEY}' metadata, so it is not a Neuro-Ear model; {FIX_HINT}")
        self.card = ModelCard.from_json(meta[METADATA_KEY], source=src)
        self._check_graph(src)
        self._probe(src)
        self.labels: tuple[str, ...] = self.card.labels
        self.sample_rate: int = self.card.sample_rate
        self.window_samples: int = self.card.window_samples
        self.input_samples: int = self.card.input_samples  # context before the window + the window
        self.thresholds = np.array([self.card.thresholds[lab] for lab in self.labels], dtype=np.float32)
        self.framing: Framing = self.card.framing

    def _check_graph(self, src: str) -> None:
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if len(ins) != 1 or ins[0].name != INPUT_NAME or len(ins[0].shape) != 2 or ins[0].type != "tensor(float)":
            got = [(i.name, i.type, i.shape) for i in ins]
            raise NeuroEarError(f"{src}: expected one float input '{INPUT_NAME}' [batch, samples], found {got}; {FIX_HINT}")
        if len(outs) != 1 or outs[0].name != OUTPUT_NAME or len(outs[0].shape) != 2:
            got = [(o.name, o.shape) for o in outs]
            raise NeuroEarError(f"{src}: expected one output '{OUTPUT_NAME}' [batch, labels], found {got}; {FIX_HINT}")
        n_in, n_out = ins[0].shape[1], outs[0].shape[1]
        if isinstance(n_in, int) and n_in != self.card.input_samples:
            raise NeuroEarError(
                f"{src}: graph takes windows of {n_in} samples but its metadata says {self.card.input_samples}; "
                "the metadata does not belong to this graph: re-export the model with `neuroear export`"
            )
        if isinstance(n_out, int) and n_out != len(self.card.labels):
            raise NeuroEarError(
                f"{src}: graph gives {n_out} outputs but its metadata lists {len(self.card.labels)} labels; "
                "the metadata does not belong to this graph: re-export the model with `neuroear export`"
            )

    def _probe(self, src: str) -> None:
        """Run one silent window: catches graphs whose symbolic shapes hide a mismatch."""
        x = np.zeros((1, self.card.input_samples), dtype=np.float32)
        try:
            y = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NeuroEarError(
                f"{src}: model fails on a {self.card.input_samples}-sample window ({first[:200]}); {FIX_HINT}"
            ) from None
        if getattr(y, "shape", None) != (1, len(self.card.labels)):
            raise NeuroEarError(
                f"{src}: model gives probabilities of shape {list(getattr(y, 'shape', []))} for one window, but its "
                f"metadata lists {len(self.card.labels)} labels: re-export the model with `neuroear export`"
            )

    @property
    def name(self) -> str:
        """Model name from the card, e.g. ``neuroear-v2``."""
        return self.card.name

    def predict(self, windows: np.ndarray, *, batch: int = DEFAULT_BATCH) -> np.ndarray:
        """Probabilities [n, n_labels] float32 for windows [n, input_samples] (float32, [-1, 1]):
        each the context before a window and the window (``framing.Framer`` with ``framing.context``
        cuts them; input_samples = window_samples for a one-window model).

        A single window [input_samples] is accepted too and gives [1, n_labels]. Non-finite
        samples are treated as silence so that no NaN can reach the output.
        """
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.input_samples:
            raise NeuroEarError(f"windows must be [n, {self.input_samples}], got {list(x.shape)}")
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        x = np.clip(x, -1.0, 1.0)
        if x.shape[0] == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = [self.session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, x.shape[0], batch)]
        probs = np.concatenate(out).astype(np.float32, copy=False)
        return np.nan_to_num(probs, nan=0.0)

    def thresholds_for(self, overrides: Mapping[str, float] | None = None, *, flat: float | None = None) -> np.ndarray:
        """Thresholds [n_labels]: the card's (or ``flat`` for every label), then ``overrides``."""
        thr = self.thresholds.copy() if flat is None else np.full(len(self.labels), flat, dtype=np.float32)
        for lab, v in (overrides or {}).items():
            thr[self.labels.index(lab)] = v
        return thr

    def active(self, probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None) -> list[list[str]]:
        """Labels at or over their threshold, for each row of probs [n, n_labels]."""
        thr = self.thresholds if thresholds is None else np.asarray(thresholds, dtype=np.float32)
        on = np.asarray(probs) >= thr[None, :]
        return [[lab for lab, o in zip(self.labels, row) if o] for row in on]
