"""The model card: what a model file promises, stored as one JSON under one ONNX metadata key.

No torch and no onnx import here: the runtime reads the card through ONNX Runtime's
``modelmeta.custom_metadata_map``; export writes it through ``onnx``. ``read_card`` reads it
without either, for callers that want the card but not a session.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Iterator

from neuroear.errors import NeuroEarError
from neuroear.framing import Framing

METADATA_KEY = "neuroear"
SCHEMA_VERSION = 1
INPUT_NAME = "waveform"  # float32 [batch, context_samples + window_samples] in [-1, 1]
OUTPUT_NAME = "probs"  # float32 [batch, n_labels] in [0, 1]
FIX_HINT = "use a model file made by `neuroear export` (--model PATH or $NEUROEAR_MODEL), or drop both to use the shipped one"


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

    @property
    def framing(self) -> Framing:
        """How the model's input is cut from audio: its rate, window and context."""
        return Framing(sample_rate=self.sample_rate, window=self.window_samples, context=self.context_samples)

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


# ONNX's ModelProto.metadata_props (repeated StringStringEntryProto {key = 1, value = 2}), in the
# protobuf wire format; onnx writes it after the graph, so the scan seeks past the weights unread.
_METADATA_PROPS = 14


def _varint(f: IO[bytes]) -> int | None:
    """One base-128 varint from ``f``; None at a clean end of input."""
    value = shift = 0
    while True:
        b = f.read(1)
        if not b:
            if shift:
                raise ValueError("input ends inside a varint")
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _strings(f: IO[bytes], end: int, keep: set[int]) -> Iterator[tuple[int, bytes]]:
    """(field number, bytes) of each length-delimited field of one message numbered in ``keep``;
    every other field is skipped. ``end``: the message's length in bytes."""
    while (tag := _varint(f)) is not None:
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            if _varint(f) is None:
                raise ValueError("input ends inside a field")
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        elif wire == 2:
            n = _varint(f)
            if n is None or f.tell() + n > end:
                raise ValueError("a field runs past the end of the data")
            if number in keep:
                yield number, f.read(n)
            else:
                f.seek(n, os.SEEK_CUR)
        else:
            raise ValueError(f"wire type {wire}")
        if f.tell() > end:
            raise ValueError("a field runs past the end of the data")


def read_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of an ONNX model file, read without ONNX Runtime (no session, no graph check):
    raises NeuroEarError, as ``infer.Detector`` does, when the file is not ONNX or has no valid card."""
    src = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise NeuroEarError(f"{src}: model file is empty (0 bytes); {FIX_HINT}")
            props = {}
            for _, entry in _strings(f, size, {_METADATA_PROPS}):
                kv = dict(_strings(io.BytesIO(entry), len(entry), {1, 2}))
                props[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
    except OSError as exc:
        raise NeuroEarError(f"{src}: cannot read the model file ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # UnicodeDecodeError is a ValueError too
        raise NeuroEarError(f"{src}: not a loadable ONNX model ({exc}); truncated or not ONNX? {FIX_HINT}") from None
    if METADATA_KEY not in props:
        raise NeuroEarError(f"{src}: ONNX model has no '{METADATA_KEY}' metadata, so it is not a Neuro-Ear model; {FIX_HINT}")
    return ModelCard.from_json(props[METADATA_KEY], source=src)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (a model file's identity in results and archives), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
