"""The library's face (``neuroear.Detector``, ``analyze_file``, ``listen``): usable without torch,
the same results as the commands, and the framing read from the model card (rate and window),
so a model built at another rate runs through files and the live path alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import neuroear
from neuroear import audio, framing

from conftest import BLOCK_TORCH, ROOT, run_cli, tone


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("api") / "a440.wav"
    sf.write(p, np.concatenate([tone(440, 2.0, sr=44100), tone(660, 1.3, sr=44100)]), 44100, subtype="FLOAT")
    return p


def test_face_runs_without_torch(clip):
    code = (
        BLOCK_TORCH +
        "import numpy as np, neuroear\n"
        "det = neuroear.Detector(provider='cpu')\n"
        "assert det.predict(np.zeros((2, det.framing.window), np.float32)).shape == (2, len(det.labels))\n"
        f"rows = list(neuroear.analyze_file({str(clip)!r}, hop=1.0))\n"
        f"hops = list(neuroear.listen(input={str(clip)!r}, hop=1.0))\n"
        "assert [r.start for r in rows] == [d.start for d in hops] == [0.0, 1.0, 2.0, 3.0]\n"
        "assert 'torch' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, r.stderr


def test_analyze_file_gives_the_rows_of_the_command(clip, detector):
    rows = [r.to_json(detector.labels) for r in neuroear.analyze_file(clip, hop=0.5, detector=detector)]
    r = run_cli("analyze", str(clip), "--hop", "0.5", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert rows == [json.loads(line) for line in r.stdout.splitlines()]


def test_analyze_file_returns_the_seconds_it_decoded(clip, tmp_path, detector):
    # what the Ray archive records as a file's duration, without opening the file again
    def drain(path: Path) -> tuple[list, float]:
        got: dict[str, float] = {}

        def rows():
            got["seconds"] = yield from neuroear.analyze_file(path, hop=1.0, detector=detector)

        return list(rows()), got["seconds"]

    short = tmp_path / "2.1s.wav"
    sf.write(short, tone(440, 2.1, sr=16000), 16000)
    rows, seconds = drain(short)
    assert max(r.end for r in rows) == 2.0 and seconds == 2.1  # the 0.1 s tail is too short for a window of its own
    rows, seconds = drain(clip)  # 44.1 kHz, resampled: to within one sample at the model's rate
    assert abs(seconds - audio.info(clip).duration) <= 1 / detector.sample_rate


def test_listen_yields_the_detections_of_predict(clip, detector):
    got = list(neuroear.listen(input=clip, hop=0.5, threads=1, smooth=1))
    fr = detector.framing
    starts, windows = framing.windows(audio.load(clip, sample_rate=fr.sample_rate), hop=fr.hop(0.5), window=fr.window, sample_rate=fr.sample_rate, context=fr.context)
    assert [d.start for d in got] == list(starts / detector.sample_rate)
    # listen runs one window per call, predict a batch: ONNX Runtime's kernels may sum in another
    # order per batch size (seen: 1.4e-5 on one machine), far below any decision's resolution
    np.testing.assert_allclose(np.stack([d.probs for d in got]), detector.predict(windows), rtol=0, atol=1e-4)
    assert all(isinstance(d, neuroear.Detection) and d.labels == detector.labels for d in got)
    assert [d.active for d in got] == [tuple(a) for a in detector.active(np.stack([d.probs for d in got]))]
    # by default listen decides on the mean of the windows of the last 2 s: 3 at hop 0.5
    from neuroear.evaluate import decide

    mask = decide(np.stack([d.probs for d in got]), np.zeros(len(got), int), detector.thresholds, smooth=3)
    default = list(neuroear.listen(input=clip, hop=0.5, threads=1))
    assert [d.active for d in default] == [tuple(lab for lab, on in zip(detector.labels, row) if on) for row in mask]


def test_stopping_early_stops_the_source(clip):
    it = neuroear.listen(input=clip, hop=0.25, realtime=True)
    first = next(it)
    it.close()  # the caller stops iterating: the capture thread ends, the file is closed
    assert first.start == 0.0


def _tiny_model(path: Path, *, rate: int, window: int, labels=("low", "high")) -> Path:
    """An ONNX graph taking [batch, window] at ``rate``: sigmoid(mean) tiled to the labels."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["waveform"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Sigmoid", ["m"], ["s"]),
         helper.make_node("Tile", ["s", "reps"], ["probs"])],
        "tiny",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", window])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(labels)])],
        initializer=[helper.make_tensor("reps", TensorProto.INT64, [2], [1, len(labels)])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    card = {"schema": 1, "name": "tiny-8k", "labels": list(labels), "sample_rate": rate, "window_samples": window,
            "cqt": {}, "thresholds": {lab: 0.5 for lab in labels}}
    helper.set_model_props(model, {"neuroear": json.dumps(card)})
    onnx.save(model, str(path))
    return path


def test_a_model_at_another_rate_is_served_at_its_own_framing(clip, tmp_path):
    """8 kHz, half-second windows: analyze and listen both cut and time them from the card."""
    model = _tiny_model(tmp_path / "tiny8k.onnx", rate=8000, window=4000)
    det = neuroear.Detector(model)
    assert det.framing == framing.Framing(sample_rate=8000, window=4000)
    rows = list(neuroear.analyze_file(clip, hop=0.25, detector=det))
    x = audio.load(clip, sample_rate=8000)
    starts, windows = framing.windows(x, hop=2000, window=4000, sample_rate=8000)
    assert [r.start for r in rows] == list(starts / 8000)
    assert rows[0].end == 0.5
    np.testing.assert_allclose(np.stack([r.probs for r in rows]), det.predict(windows), rtol=0, atol=1e-6)
    r = run_cli("listen", "--input", str(clip), "--model", str(model), "--hop", "0.25", "--no-dashboard")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [line["start"] for line in lines] == [r.start for r in rows]
    assert [line["end"] for line in lines] == [r.end for r in rows]
    np.testing.assert_allclose([[line["probs"][lab] for lab in det.labels] for line in lines],
                               np.stack([r.probs for r in rows]), rtol=0, atol=6e-5)


def _context_model(path: Path, *, rate: int, window: int, context: int) -> Path:
    """An ONNX graph over [batch, context + window]: "past" = sigmoid(100·mean |context part|),
    "now" = sigmoid(100·mean |window part|) — so a result shows which audio each part held."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def part(name: str, lo: int, hi: int) -> list:
        return [
            helper.make_node("Slice", ["waveform", f"{name}_lo", f"{name}_hi", "axis1"], [f"{name}_x"]),
            helper.make_node("Abs", [f"{name}_x"], [f"{name}_a"]),
            helper.make_node("ReduceMean", [f"{name}_a"], [f"{name}_m"], axes=[1], keepdims=1),
            helper.make_node("Mul", [f"{name}_m", "gain"], [f"{name}_g"]),
        ]

    n = context + window
    graph = helper.make_graph(
        part("past", 0, context) + part("now", context, n)
        + [helper.make_node("Concat", ["past_g", "now_g"], ["c"], axis=1), helper.make_node("Sigmoid", ["c"], ["probs"])],
        "context",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", n])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            helper.make_tensor("past_lo", TensorProto.INT64, [1], [0]), helper.make_tensor("past_hi", TensorProto.INT64, [1], [context]),
            helper.make_tensor("now_lo", TensorProto.INT64, [1], [context]), helper.make_tensor("now_hi", TensorProto.INT64, [1], [n]),
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]), helper.make_tensor("gain", TensorProto.FLOAT, [1], [100.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    card = {"schema": 1, "name": "tiny-context", "labels": ["past", "now"], "sample_rate": rate, "window_samples": window,
            "context_samples": context, "cqt": {}, "thresholds": {"past": 0.75, "now": 0.75}}
    helper.set_model_props(model, {"neuroear": json.dumps(card)})
    onnx.save(model, str(path))
    return path


def test_a_context_model_hears_the_past_in_analyze_and_listen(clip, tmp_path):
    """2 s of context before each 1 s window: results are timed by the window; the past is the
    stream's real audio (silence before it began), in analyze, listen and the API alike."""
    model = _context_model(tmp_path / "ctx.onnx", rate=16000, window=16000, context=32000)
    det = neuroear.Detector(model)
    assert det.framing == framing.Framing(sample_rate=16000, window=16000, context=32000) and det.input_samples == 48000
    rows = list(neuroear.analyze_file(clip, hop=0.5, detector=det))
    x = audio.load(clip, sample_rate=16000)
    starts, windows = framing.windows(x, hop=8000, window=16000, context=32000)
    assert [r.start for r in rows] == list(starts / 16000) and rows[0].end == 1.0  # timed by the window
    probs = np.stack([r.probs for r in rows])
    np.testing.assert_allclose(probs, det.predict(windows), rtol=0, atol=1e-6)
    assert probs[0, 0] == pytest.approx(0.5) and probs[0, 1] > 0.99  # nothing before the stream began
    assert (probs[4:, 0] > 0.99).all()  # from 2 s on, the whole past is the clip's tone
    assert det.active(probs[:1]) == [["now"]] and det.active(probs[4:5]) == [["past", "now"]]
    r = run_cli("listen", "--input", str(clip), "--model", str(model), "--hop", "0.5", "--no-dashboard")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [line["start"] for line in lines] == [r.start for r in rows]
    np.testing.assert_allclose([[line["probs"][lab] for lab in det.labels] for line in lines], probs, rtol=0, atol=6e-5)


def test_analyze_decides_with_the_live_policy(detector):
    # `analyze --smooth/--hysteresis` decide as `listen` does on the same audio: one policy, two paths
    example = ROOT / "neuroear" / "examples" / "example.ogg"
    plain = list(neuroear.analyze_file(example, hop=1.0, detector=detector, smooth=1))
    rows = list(neuroear.analyze_file(example, hop=1.0, detector=detector, smooth=2, hysteresis=0.05))
    hops = list(neuroear.listen(input=example, hop=1.0, smooth=2, hysteresis=0.05))
    assert [r.start for r in rows] == [d.start for d in hops]
    assert [r.active for r in rows] == [tuple(d.active) for d in hops]
    np.testing.assert_allclose(np.stack([r.probs for r in rows]), np.stack([r.probs for r in plain]))  # probs stay the model's
    # without hysteresis: active is the causal mean of the latest two windows against the thresholds,
    # while the latest window alone keeps at least half of its threshold (policy.LATEST_GATE)
    two = list(neuroear.analyze_file(example, hop=1.0, detector=detector, smooth=2))
    p = np.stack([r.probs for r in plain])
    mean = np.vstack([p[:1], (p[1:] + p[:-1]) / 2])
    want = [tuple(lab for lab, m, q, t in zip(detector.labels, row, now, detector.thresholds) if m >= t and (i == 0 or q >= 0.5 * t))
            for i, (row, now) in enumerate(zip(mean, p))]
    assert [r.active for r in two] == want
    assert want != [r.active for r in plain]  # the example is one where smoothing changes decisions
    # the default at hop 1 s is that mean of two: the windows of the last 2 s
    assert [r.active for r in neuroear.analyze_file(example, hop=1.0, detector=detector)] == want
    r = run_cli("analyze", str(example), "--smooth", "0")
    assert r.returncode != 0 and "--smooth must be between" in r.stderr and "Traceback" not in r.stderr
