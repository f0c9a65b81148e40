"""Decision policy: thresholds, hysteresis, smoothing and events, with known answers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroear.errors import NeuroEarError
from neuroear.infer import parse_thresholds
from neuroear.live.policy import MAX_SMOOTH, Policy, PolicyConfig, default_smooth, resolve_smooth
from neuroear.live.session import make_policy

LABELS = ("piano", "violin")


def feed(policy, rows, hop=1.0):
    out = []
    for k, row in enumerate(rows):
        out.append(policy.update(np.array(row), start=k * hop, end=k * hop + 1.0))
    return out


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=2, max_size=2), min_size=1, max_size=30), st.floats(0.05, 0.95))
def test_defaults_are_exactly_the_threshold_rule_of_analyze(rows, thr):
    pol = Policy(PolicyConfig.build(LABELS, [thr, 0.5]))
    for row, d in zip(rows, feed(pol, rows)):
        expected = tuple(lab for lab, p, t in zip(LABELS, row, (thr, 0.5)) if p >= t)
        assert d.active == expected
        np.testing.assert_allclose(d.smoothed, row, rtol=0, atol=1e-7)


def test_overrides_replace_model_thresholds_as_in_analyze(detector):
    """listen's --threshold goes through Detector.thresholds_for, the overrides of analyze."""
    lab = detector.labels[1]
    thr = detector.thresholds_for(parse_thresholds([f"{lab}=0.7"], detector.labels))
    pol = make_policy(detector, thresholds=[f"{lab}=0.7"])
    assert pol.config.on == tuple(float(t) for t in thr) and pol.config.on[1] == pytest.approx(0.7)
    # probabilities exactly at each threshold: all active by analyze's rule (float32 0.7 < 0.7), and so here
    d = pol.update(thr.copy(), start=0.0, end=1.0)
    assert d.active == tuple(detector.active(thr[None, :])[0]) == detector.labels
    d = pol.update(np.where(np.arange(len(thr)) == 1, np.float32(0.69), thr), start=1.0, end=2.0)
    assert lab not in d.active


def test_hysteresis_keeps_a_label_on_until_it_falls_below_the_off_level():
    pol = Policy(PolicyConfig.build(LABELS, [0.5, 0.5], hysteresis=0.1))
    seq = [[0.45, 0], [0.55, 0], [0.45, 0], [0.41, 0], [0.39, 0], [0.45, 0], [0.5, 0]]
    active = [("piano" in d.active) for d in feed(pol, seq)]
    assert active == [False, True, True, True, False, False, True]


def test_smoothing_averages_the_last_n_hops():
    pol = Policy(PolicyConfig.build(LABELS, [0.5, 0.5], smooth=3))
    ds = feed(pol, [[0.9, 0], [0.0, 0], [0.0, 0], [0.9, 0], [0.9, 0]])
    np.testing.assert_allclose([d.smoothed[0] for d in ds], [0.9, 0.45, 0.3, 0.3, 0.6], atol=1e-6)
    assert [("piano" in d.active) for d in ds] == [True, False, False, False, True]


def test_smoothing_does_not_carry_an_instrument_that_stopped():
    # the mean of 0.99 and 0.03 is over the level, but the latest window is far under it
    pol = Policy(PolicyConfig.build(LABELS, [0.4, 0.4], smooth=2))
    ds = feed(pol, [[0.99, 0.0], [0.03, 0.0], [0.35, 0.0], [0.3, 0.0], [0.19, 0.0]])
    np.testing.assert_allclose([d.smoothed[0] for d in ds], [0.99, 0.51, 0.19, 0.325, 0.245], atol=1e-6)
    assert [("piano" in d.active) for d in ds] == [True, False, False, False, False]
    # a dip under the level is bridged while the latest window keeps half of it (0.2 at 0.4)
    pol = Policy(PolicyConfig.build(LABELS, [0.4, 0.4], smooth=2))
    assert [("piano" in d.active) for d in feed(pol, [[0.9, 0.0], [0.25, 0.0], [0.15, 0.0]])] == [True, True, False]


@pytest.mark.parametrize("hop, hops", [(1.0, 2), (0.5, 3), (0.25, 5), (0.75, 2), (0.3, 4), (2.5, 1), (0.01, MAX_SMOOTH)])
def test_default_smoothing_spans_the_windows_of_the_last_two_seconds(hop, hops):
    assert default_smooth(hop) == hops
    assert resolve_smooth(None, hop) == hops


def test_an_explicit_smooth_is_kept_and_checked():
    assert resolve_smooth(1, 0.5) == 1 and resolve_smooth(3, 1.0) == 3
    with pytest.raises(NeuroEarError, match="--smooth must be between"):
        resolve_smooth(0, 1.0)
    assert default_smooth(0) == 1  # a bad hop is left to its own check, not a ZeroDivisionError


def test_mask_is_the_active_labels_in_label_order_with_smoothing_and_hysteresis():
    pol = Policy(PolicyConfig.build(LABELS, [0.5, 0.5], smooth=2, hysteresis=0.1))
    ds = feed(pol, [[0.6, 0.2], [0.3, 0.9], [0.3, 0.2], [0.3, 0.2]])
    # smoothed: [0.6, 0.2], [0.45, 0.55], [0.3, 0.55], [0.3, 0.2]; on at 0.5, off below 0.4
    # (the raw probabilities alone would give [T, F], [F, T], [F, F], [F, F])
    want = [[True, False], [True, True], [False, True], [False, False]]
    assert [d.mask.tolist() for d in ds] == want
    assert [d.active for d in ds] == [("piano",), ("piano", "violin"), ("violin",), ()]
    for d in ds:
        assert d.mask.dtype == bool and d.mask.shape == (len(LABELS),)
        assert d.active == tuple(lab for lab, on in zip(LABELS, d.mask) if on)


def test_events_onset_at_window_start_offset_at_end_of_last_active_window():
    pol = Policy(PolicyConfig.build(LABELS, [0.5, 0.5]))
    ds = feed(pol, [[0.1, 0.9], [0.8, 0.9], [0.8, 0.1], [0.1, 0.1]], hop=0.5)
    events = [(e.kind, e.label, e.time) for d in ds for e in d.events]
    assert events == [("onset", "violin", 0.0), ("onset", "piano", 0.5), ("offset", "violin", 1.5), ("offset", "piano", 2.0)]
    assert pol.onsets == {}


def test_finish_closes_labels_still_on_and_resets():
    pol = Policy(PolicyConfig.build(LABELS, [0.5, 0.5]))
    feed(pol, [[0.9, 0.1], [0.9, 0.1]])
    assert pol.onsets == {"piano": 0.0}
    ev = pol.finish()
    assert [(e.kind, e.label, e.time) for e in ev] == [("offset", "piano", 2.0)]
    assert pol.onsets == {} and pol.finish() == []


@pytest.mark.parametrize(
    "items, message",
    [
        (["violin"], "LABEL=VALUE"),
        (["drums=0.5"], "unknown label"),
        (["violin=abc"], "not a number"),
        (["violin=1.5"], "between 0 and 1"),
    ],
)
def test_bad_threshold_overrides_are_clear_errors(items, message):
    with pytest.raises(NeuroEarError, match=message):
        parse_thresholds(items, LABELS)


def test_bad_config_values():
    with pytest.raises(NeuroEarError, match="smooth"):
        PolicyConfig.build(LABELS, [0.5, 0.5], smooth=0)
    with pytest.raises(NeuroEarError, match="hysteresis"):
        PolicyConfig.build(LABELS, [0.5, 0.5], hysteresis=-0.1)
