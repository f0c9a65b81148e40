"""The model card: what a model file promises, stored as one JSON under one ONNX metadata key.

No torch and no onnx import here: the runtime reads the card through ONNX Runtime's
``modelmeta.custom_metadata_map``; export writes it through ``onnx``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from neuroear.errors import NeuroEarError

METADATA_KEY = "neuroear"
SCHEMA_VERSION = 1
INPUT_NAME = "waveform"  # float32 [batch, context_samples + window_samples] in [-1, 1]
OUTPUT_NAME = "probs"  # float32 [batch, n_labels] in [0, 1]


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use and to trust a model file.

    ``thresholds`` maps label → decision threshold on its probability; ``metrics`` maps a
    data-set name → {"data": description, "macro_f1": …, …}; ``cqt`` holds the front end's
    parameters (sample rate, hop, fmin in Hz, bins, bins per octave, log compression).
    ``context_samples`` is audio before the window that the model also reads (0: the window
    alone); its probabilities are about the window, the latest ``window_samples``.
    """

    name: str
    labels: tuple[str, ...]
    sample_rate: int
    window_samples: int
    cqt: dict[str, Any]
    thresholds: dict[str, float]
    version: int = 1
    schema: int = SCHEMA_VERSION
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    git_commit: str = "unknown"
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    context_samples: int = 0

    @property
    def input_samples(self) -> int:
        """Samples per model input: context + window."""
        return self.context_samples + self.window_samples

    def to_json(self) -> str:
        """Serialise to a JSON string (labels as a list)."""
        d = asdict(self)
        d["labels"] = list(self.labels)
        if not d["context_samples"]:
            del d["context_samples"]  # one-window models: the cards written before the field existed, unchanged
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "model") -> "ModelCard":
        """Parse and validate a card; raises NeuroEarError saying what is wrong."""
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise NeuroEarError(f"{source}: metadata '{METADATA_KEY}' is not valid JSON ({exc}); re-export the model") from None
        if not isinstance(d, dict):
            raise NeuroEarError(f"{source}: metadata '{METADATA_KEY}' is not a JSON object; re-export the model")
        schema = d.get("schema")
        if schema != SCHEMA_VERSION:
            raise NeuroEarError(
                f"{source}: model metadata schema {schema!r} is not supported (this neuroear reads schema "
                f"{SCHEMA_VERSION}); re-export the model or upgrade neuroear"
            )
        missing = [k for k in ("name", "labels", "sample_rate", "window_samples", "cqt", "thresholds") if k not in d]
        if missing:
            raise NeuroEarError(f"{source}: model metadata lacks {', '.join(missing)}; re-export the model")
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in known}
        bad = [
            k
            for k, ok in (
                ("labels", isinstance(d["labels"], list)),
                ("sample_rate", isinstance(d["sample_rate"], int) and d["sample_rate"] > 0),
                ("window_samples", isinstance(d["window_samples"], int) and d["window_samples"] > 0),
                ("cqt", isinstance(d["cqt"], dict)),
                ("context_samples", isinstance(d.get("context_samples", 0), int) and d.get("context_samples", 0) >= 0),
                ("thresholds", isinstance(d["thresholds"], dict)
                 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d["thresholds"].values())),
            )
            if not ok
        ]
        if bad:
            raise NeuroEarError(
                f"{source}: model metadata has malformed {', '.join(bad)} (labels: a list, sample_rate and "
                "window_samples: positive integers, context_samples: an integer ≥ 0, cqt: an object, thresholds: label → number); re-export the model"
            )
        d["labels"] = tuple(str(x) for x in d["labels"])
        if not d["labels"] or len(set(d["labels"])) != len(d["labels"]):
            raise NeuroEarError(f"{source}: model labels must be a non-empty list of distinct names; re-export the model")
        thr = {str(k): float(v) for k, v in d["thresholds"].items()}
        unknown = sorted(set(thr) - set(d["labels"]))
        if unknown:
            raise NeuroEarError(f"{source}: thresholds name unknown labels {unknown}; re-export the model")
        d["thresholds"] = {lab: thr.get(lab, 0.5) for lab in d["labels"]}
        return cls(**d)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (a model file's identity in results and archives), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
