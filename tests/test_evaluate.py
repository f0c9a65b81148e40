"""The seed's table against numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from neuroear import evaluate as E

LABELS = ("a", "b", "c")


def test_table_matches_hand_computation():
    # truth / predictions for 5 windows
    t = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    p = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]])
    rows = {r.name: r for r in E.report(t, p, LABELS)}
    # a: tp=1 fp=1 fn=1 -> P=.5 R=.5 F=.5 ; b: tp=1 fp=1 fn=1 -> .5 .5 .5 ; c: tp=1 fp=0 fn=0 -> 1 1 1
    assert rows["a"].precision == pytest.approx(0.5) and rows["a"].recall == pytest.approx(0.5)
    assert rows["c"].f1 == pytest.approx(1.0) and rows["c"].support == 1
    assert rows["macro"].f1 == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    # micro: tp=3 fp=2 fn=2 -> P=R=F=.6
    assert rows["micro"].precision == pytest.approx(0.6) and rows["micro"].f1 == pytest.approx(0.6)
    # weighted by support 2, 2, 1
    assert rows["weighted"].f1 == pytest.approx((0.5 * 2 + 0.5 * 2 + 1.0) / 5)


def test_absent_class_does_not_pull_macro_down_but_false_alarms_show():
    t = np.array([[1, 0, 0], [1, 0, 0]])
    p = np.array([[1, 0, 0], [1, 0, 1]])
    rows = {r.name: r for r in E.report(t, p, LABELS)}
    assert "b" not in rows  # never true, never predicted
    assert rows["c"].precision == 0.0 and rows["c"].support == 0  # a false alarm is listed
    assert rows["macro"].f1 == pytest.approx(1.0)  # macro over classes present in the data


def test_top1_and_calibrate():
    t = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.1], [0.5, 0.0, 0.4], [0.1, 0.35, 0.2]])
    assert E.top1(t, probs) == pytest.approx(0.75)
    thr = E.calibrate(t, probs, LABELS, grid=[0.1, 0.25, 0.5, 0.8])
    # b's positives sit at 0.3/0.35 and its negatives at <=0.1: 0.25 separates them
    assert thr["b"] == 0.25
    assert 0.15 <= thr["a"] <= 0.85


def test_format_table_has_every_row():
    t = np.eye(3, dtype=int)
    text = E.format_table(E.report(t, t, LABELS))
    for name in ("a", "b", "c", "micro", "macro", "weighted"):
        assert any(line.startswith(name) for line in text.splitlines())
    assert "1.000" in text


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("snr", [20.0, 0.0])
def test_add_noise_hits_the_snr_and_is_deterministic(kind, snr):
    rng = np.random.default_rng(1)
    t = np.arange(16000) / 16000
    x = np.stack([0.1 * np.sin(2 * np.pi * f * t) for f in (220, 330, 440, 550)]).astype(np.float32)
    x += 0.001 * rng.standard_normal(x.shape).astype(np.float32)
    groups = np.array([0, 0, 1, 2])
    y = E.add_noise(x, groups, kind=kind, snr_db=snr, seed=5)
    noise = y - x
    got = 10 * np.log10(np.mean(x**2, axis=1) / np.mean(noise**2, axis=1))
    assert np.allclose(got, snr, atol=0.5)
    assert np.array_equal(y, E.add_noise(x, groups, kind=kind, snr_db=snr, seed=5))
    assert not np.array_equal(y, E.add_noise(x, groups, kind=kind, snr_db=snr, seed=6))


def test_babble_comes_from_other_files():
    x = np.zeros((3, 1000), np.float32)
    x[0, :] = 0.1  # file 0 is DC, files 1 and 2 are silence-free tones
    x[1] = 0.1 * np.sin(np.arange(1000))
    x[2] = 0.1 * np.sin(np.arange(1000) * 0.5)
    y = E.add_noise(x, np.array([0, 1, 2]), kind="babble", snr_db=0.0, seed=0)
    # window 0's babble holds no DC from itself: its added part has (almost) zero mean
    assert abs((y[0] - x[0]).mean()) < 0.02


def test_confusion_counts_single_label_windows():
    t = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    p = np.array([[0.9, 0.1, 0], [0.1, 0.8, 0], [0, 0.9, 0.1], [0.5, 0.5, 0]])
    cm = E.confusion(t, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_decide_smooths_within_a_file_and_starts_afresh_at_the_next():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.7], [0.9, 0.1], [0.3, 0.1]], dtype=np.float32)
    files = np.array([1, 1, 1, 2, 2])
    thr = np.array([0.5, 0.5], dtype=np.float32)
    assert (E.decide(p, files, thr) == (p >= thr)).all()
    got = E.decide(p, files, thr, smooth=2)
    # window 1: mean(0.9, 0.3)=0.6 keeps a on (0.3 is over half its level), mean(0.1, 0.7)=0.4
    # keeps b off; window 3 is a new
    # file, so the third window of file 1 (b=0.7) is not averaged into it
    assert got.tolist() == [[True, False], [True, False], [False, True], [True, False], [True, False]]
    # hysteresis: on at 0.5, off only below 0.3
    assert E.decide(np.array([[0.6], [0.35], [0.25]]), np.zeros(3), np.array([0.5]), hysteresis=0.2)[:, 0].tolist() == [True, True, False]


def test_evaluate_smooth_is_the_table_of_smoothed_decisions(tmp_path, detector):
    import json

    import soundfile as sf

    from conftest import run_cli, tone

    for lab, f in (("violin", 440), ("flute", 880)):
        (tmp_path / lab).mkdir()
        sf.write(tmp_path / lab / "a.wav", np.concatenate([tone(f, 3.0), tone(f * 1.5, 3.0)]), 16000)
    res = E.evaluate_set(detector, str(tmp_path), smooth=3, hysteresis=0.1)
    assert res.windows == 12  # 6 one-second windows per file, files in folder order
    want = E.report(res.truth, E.decide(res.probs, np.repeat([0, 1], 6), detector.thresholds, smooth=3, hysteresis=0.1), detector.labels)
    assert [(r.name, r.f1) for r in res.rows] == [(r.name, r.f1) for r in want]
    r = run_cli("evaluate", str(tmp_path), "--json", "--smooth", "3", "--hysteresis", "0.1")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert "decided over 3 windows with hysteresis 0.1" in got["condition"]
    assert got["table"]["macro"]["f1"] == pytest.approx(next(r.f1 for r in want if r.name == "macro"))
    r = run_cli("evaluate", str(tmp_path), "--smooth", "0")
    assert r.returncode != 0 and "--smooth must be between" in r.stderr and "Traceback" not in r.stderr
