"""The model shipped in models/: its contract, and its accuracy on audio it never trained on."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import DEV, ROOT, has_module, run_cli

MODEL = ROOT / "models" / "neuroear-v5.onnx"
CARD = ROOT / "models" / "neuroear-v5.json"
EXAMPLE = ROOT / "neuroear" / "examples" / "example.ogg"
SEED_FOUR = ("accordion", "guitar", "piano", "violin")
# Floor measured on the real dev set when this model was exported (see models/README.md),
# less a margin for ONNX Runtime / platform float differences.
DEV_MACRO_F1_FLOOR = 0.77  # measured 0.811 with neuroear-v5 (0.793 with v4, 0.813 with v3, 0.767 with v2, 0.724 with v1)


def test_metadata_agrees_with_graph(detector):
    import onnx

    m = onnx.load(str(MODEL))
    out_dim = m.graph.output[0].type.tensor_type.shape.dim[1].dim_value
    in_dim = m.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    assert out_dim == len(detector.labels) and in_dim == detector.window_samples == detector.sample_rate
    assert set(SEED_FOUR) <= set(detector.labels) and len(detector.labels) >= 10
    assert json.loads(CARD.read_text()) == json.loads(detector.card.to_json())
    assert all(0.0 < t < 1.0 for t in detector.thresholds)
    assert MODEL.stat().st_size <= 2_000_000
    assert detector.card.training.get("note", "") != "UNTRAINED placeholder: random weights"


def test_example_clip_names_the_instrument_playing(detector):
    from neuroear import audio, framing

    truth = list(csv.DictReader((EXAMPLE.parent / "example.labels.csv").open()))
    fr = detector.framing  # the model's own rate, window and context
    x = audio.load(EXAMPLE, sample_rate=fr.sample_rate)
    starts, w = framing.windows(x, hop=fr.window, window=fr.window, sample_rate=fr.sample_rate, context=fr.context)
    probs = detector.predict(w)
    solo = {}
    for row in truth:
        solo.setdefault((float(row["start"]), float(row["end"])), []).append(row["label"])
    hits = total = 0
    for (a, b), labs in solo.items():
        if len(labs) != 1:
            continue
        idx = [i for i, s in enumerate(starts / fr.sample_rate) if a <= s < b]
        top = [detector.labels[int(probs[i].argmax())] for i in idx]
        hits += sum(t == labs[0] for t in top)
        total += len(top)
    assert total == 24 and hits / total >= 0.75, (hits, total)


@pytest.mark.skipif(not (has_module("fluidsynth") and has_module("music21")), reason="needs pyfluidsynth + music21")
def test_fresh_renders_on_a_held_out_font_name_each_instrument(detector, tmp_path):
    """One fresh clip per label on TimGM6mb, a SoundFont family training never heard."""
    from neuroear import evaluate as E
    from neuroear.training import render

    if "timgm" not in render.available_families():
        pytest.skip("timgm6mb-soundfont not installed")
    manifest = render.render_set(tmp_path, families=["timgm"], labels=detector.labels, seconds_per_label=24, seed=12345, n_pieces=24)
    res = E.evaluate_set(detector, str(manifest))
    single = res.truth.sum(1) == 1
    t, p = res.truth[single].argmax(1), res.probs[single]
    rank = (p > p[np.arange(len(t)), t][:, None]).sum(1)  # 0 = the true label is the most probable
    top1 = {lab: float((rank[t == i] == 0).mean()) for i, lab in enumerate(detector.labels) if (t == i).any()}
    top3 = {lab: float((rank[t == i] < 3).mean()) for i, lab in enumerate(detector.labels) if (t == i).any()}
    print("top-1", top1, "\ntop-3", top3)
    assert set(top1) == set(detector.labels)
    # Floors sit below what the shipped models measured here: neuroear-v5 (13 labels, 24 kHz) mean
    # top-1 0.67, piano 0.84, every label but the weak three top-3 >= 0.94; v4 mean 0.66, piano 0.84;
    # v3 mean 0.68, piano 0.89. Their known weaknesses on this font get regression floors only:
    # bowed strings (v5 top-3 violin 0.47, cello 0.32 of ~22 windows; v4 0.42, 0.27; v3 0.47, 0.45;
    # v2 0.42, 0.09) and accordion (v5 and v4 top-3 0.81, v3 0.76; see models/README.md).
    weak = ("violin", "cello", "accordion")
    assert top1["piano"] >= 0.8, top1
    assert np.mean(list(top1.values())) >= 0.6, top1
    assert all(v >= 0.8 for lab, v in top3.items() if lab not in weak), top3
    assert top3["accordion"] >= 0.6, top3
    assert top3["violin"] >= 0.3 and top3["cello"] >= 0.25, top3


@pytest.mark.skipif(not DEV.is_dir(), reason="real dev set (../shared/data/real-dev) not present")
def test_real_dev_macro_f1_stays_above_floor():
    r = run_cli("evaluate", str(DEV), "--json", timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 97
    assert out["table"]["macro"]["f1"] >= DEV_MACRO_F1_FLOOR, out["table"]["macro"]
