"""Export CQT + CNN + sigmoid as one self-contained ONNX file that checks itself.

The file carries its model card under the ``neuroear`` metadata key; a ``.json`` copy of the
card is written beside it for reading and diffing.
"""

from __future__ import annotations

import datetime as _dt

import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from neuroear.errors import NeuroEarError
from neuroear.metadata import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelCard
from neuroear.training.model import InstrumentNet, WithSigmoid

PARITY_ATOL = 1e-3  # max |p_torch − p_ort|; float32 CQT rounding gives ~1e-4 on a trained model (random: ~1e-7)
OPSET = 17


def git_commit(repo: Path | None = None) -> str:
    """Current commit of the source tree (``unknown`` outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that built and checked the model."""
    import nnAudio
    import onnx
    import onnxruntime

    from neuroear import __version__

    return {
        "neuroear": __version__,
        "torch": torch.__version__,
        "nnAudio": getattr(nnAudio, "__version__", "unknown"),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def parity_inputs(window: int, sample_rate: int, *, seed: int = 0) -> np.ndarray:
    """Test windows [6, window]: silence, a 440 Hz sine, a chord, noise, a click, full-scale square."""
    rng = np.random.default_rng(seed)
    t = np.arange(window) / sample_rate
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    noise = 0.1 * rng.standard_normal(window)
    click = np.zeros(window)
    click[window // 2] = 1.0
    square = np.sign(np.sin(2 * np.pi * 110 * t))
    return np.stack([np.zeros(window), sine, chord, noise, click, square]).astype(np.float32)


def build_card(
    net: InstrumentNet, checkpoint: dict, *, name: str, metrics: dict | None = None
) -> ModelCard:
    """The model card of a trained network: labels and calibrated thresholds from its checkpoint,
    the framing (rate, window) from its CQT config, validation scores plus ``metrics``."""
    return ModelCard(
        name=name,
        labels=tuple(checkpoint["labels"]),
        sample_rate=net.cqt_cfg.sample_rate,
        window_samples=net.cqt_cfg.window_samples,
        context_samples=net.cqt_cfg.input_samples - net.cqt_cfg.window_samples,
        cqt=net.cqt_cfg.to_dict(),
        thresholds={k: round(float(v), 4) for k, v in checkpoint["thresholds"].items()},
        metrics={"validation": checkpoint.get("val", {}), **(metrics or {})},
        training={**checkpoint["config"], "seconds": round(float(checkpoint.get("seconds", 0)), 1)},
    )


def export(net: InstrumentNet, card: ModelCard, out: Path, *, atol: float = PARITY_ATOL) -> dict:
    """Write ``out`` (.onnx) and ``out.with_suffix('.json')``; return the parity report.

    Raises NeuroEarError if the ONNX checker fails or torch and ONNX Runtime disagree by more
    than ``atol`` on any probability.
    """
    import onnx
    import onnxruntime as ort

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if card.labels != net.labels:
        raise NeuroEarError(f"card labels {card.labels} differ from the model's {net.labels}")
    card = replace(
        card,
        git_commit=card.git_commit if card.git_commit != "unknown" else git_commit(),
        versions=card.versions or tool_versions(),
        created=card.created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    graph = WithSigmoid(net).eval()
    if card.input_samples != net.cqt_cfg.input_samples:
        raise NeuroEarError(f"card frames {card.input_samples} samples per input, the model reads {net.cqt_cfg.input_samples}")
    x = torch.from_numpy(parity_inputs(card.input_samples, card.sample_rate))
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            graph,
            (x,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        expected = graph(x).numpy()
    m = onnx.load(str(tmp))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = card.input_samples
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, card.to_json()
    m.doc_string = f"Neuro-Ear instrument detector {card.name}: waveform [batch, {card.input_samples}] → probs [batch, {len(card.labels)}]"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(out))
    tmp.unlink(missing_ok=True)

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    report = {"max_abs_diff": diff, "atol": atol, "windows": int(x.shape[0]), "bytes": out.stat().st_size}
    if not diff <= atol:
        raise NeuroEarError(f"export parity failed: torch vs ONNX Runtime differ by {diff:.2e} > {atol:.0e}")
    out.with_suffix(".json").write_text(card.to_json() + "\n")
    return report


def load_checkpoint(path: Path) -> tuple[InstrumentNet, dict]:
    """Rebuild an InstrumentNet from a training checkpoint written by ``training.train``."""
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import NetConfig

    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise NeuroEarError(f"{path}: checkpoint not found") from None
    except Exception as exc:
        raise NeuroEarError(f"{path}: not a neuroear checkpoint ({exc})") from None
    net = InstrumentNet(tuple(ck["labels"]), CQTConfig(**ck["cqt"]), NetConfig.from_dict(ck["net"]))
    missing, unexpected = net.load_state_dict(ck["state_dict"], strict=False)
    if missing or unexpected:
        raise NeuroEarError(f"{path}: checkpoint does not fit the model (missing {missing}, unexpected {unexpected})")
    net.eval()
    return net, ck


__all__ = ["build_card", "export", "load_checkpoint", "git_commit", "tool_versions", "parity_inputs", "PARITY_ATOL"]
