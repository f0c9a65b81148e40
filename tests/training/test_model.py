"""Front end, CNN and export (need the 'train' extra: torch + nnAudio + onnx)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SR, needs_torch, tone

pytestmark = needs_torch


def test_cqt_a4_sine_peaks_in_a4_bin():
    import torch

    from neuroear.training.features import CQTConfig, CQTFrontEnd

    cfg = CQTConfig(norm="none")
    fe = CQTFrontEnd(cfg)
    x = torch.from_numpy(tone(440.0, 1.0))[None]
    spec = fe(x)[0, 0].numpy()  # [bins, frames]
    a4 = round(cfg.bins_per_octave * np.log2(440.0 / cfg.fmin))  # 45 from C1
    assert spec.shape == (cfg.n_bins, SR // cfg.hop_length + 1)
    assert int(spec[:, 4:-4].mean(axis=1).argmax()) == a4
    # an octave up moves the peak by one octave of bins
    spec2 = fe(torch.from_numpy(tone(880.0, 1.0))[None])[0, 0].numpy()
    assert int(spec2[:, 4:-4].mean(axis=1).argmax()) == a4 + cfg.bins_per_octave


def test_window_norm_removes_gain():
    import torch

    from neuroear.training.features import CQTFrontEnd

    fe = CQTFrontEnd()
    x = torch.from_numpy(tone(330.0, 1.0, amp=0.5))[None]
    a, b = fe(x), fe(x * 0.25)  # -12 dB; log1p is only near-invariant, so far larger gaps drift
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.95


@pytest.mark.parametrize("residual", [False, True])
def test_detector_shapes(residual):
    import torch

    from neuroear.training.model import InstrumentNet, NetConfig

    det = InstrumentNet(("a", "b", "c"), net=NetConfig(channels=(8, 16), residual=residual))
    out = det(torch.zeros(2, SR))
    assert out.shape == (2, 3)


def test_export_parity_and_metadata(tmp_path):
    import onnx
    import torch

    from neuroear.training.export import export
    from neuroear.infer import Detector as OrtDetector
    from neuroear.metadata import METADATA_KEY, ModelCard
    from neuroear.training.model import InstrumentNet, NetConfig

    torch.manual_seed(0)
    labels = ("piano", "violin")
    det = InstrumentNet(labels, net=NetConfig(channels=(8, 16))).eval()
    card = ModelCard(name="t", labels=labels, sample_rate=SR, window_samples=SR, cqt=det.cqt_cfg.to_dict(), thresholds={"piano": 0.4, "violin": 0.6})
    out = tmp_path / "t.onnx"
    rep = export(det, card, out)
    assert rep["max_abs_diff"] <= 1e-4
    m = onnx.load(str(out))
    assert any(p.key == METADATA_KEY for p in m.metadata_props)
    assert (tmp_path / "t.json").is_file()
    ort = OrtDetector(out)
    assert ort.labels == labels and ort.window_samples == SR
    assert ort.thresholds.tolist() == pytest.approx([0.4, 0.6])
    x = np.stack([tone(440, 1.0), np.zeros(SR, np.float32)])
    with torch.no_grad():
        want = torch.sigmoid(det(torch.from_numpy(x))).numpy()
    assert np.abs(ort.predict(x) - want).max() < 1e-4


def test_pcen_smoother_is_the_iir_filter_started_at_steady_state():
    import scipy.signal as ss

    from neuroear.training.features import pcen_smoother

    w = pcen_smoother(32, SR, 512).double().numpy()
    b = w[1, 1]
    e = np.abs(np.random.default_rng(0).standard_normal((5, 32))) * 100
    want, _ = ss.lfilter([b], [1, b - 1], e, zi=ss.lfilter_zi([b], [1, b - 1]) * e[:, :1], axis=-1)
    np.testing.assert_allclose(e @ w.T, want, rtol=1e-5)
    assert 0.05 < b < 0.1  # 0.4 s time constant at 32 ms frames


def test_pcen_cancels_gain_and_a_fixed_colouring_better_than_the_log():
    import torch

    from neuroear.training.features import CQTConfig, CQTFrontEnd

    rng = np.random.default_rng(1)
    x = tone(220.0, 1.0, amp=0.3) * (1 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(SR) / SR)).astype(np.float32)
    x = x + tone(1320.0, 1.0, amp=0.1) + 0.01 * rng.standard_normal(SR).astype(np.float32)
    # a recording chain: a quieter, brighter copy (first difference = +6 dB/octave tilt)
    y = np.diff(x, prepend=0.0).astype(np.float32) * 2.0
    def gap(norm: str) -> float:
        fe = CQTFrontEnd(CQTConfig(norm=norm))
        a, b = fe(torch.from_numpy(x)[None]), fe(torch.from_numpy(y)[None])
        return float((a - b).abs().mean())
    assert gap("pcen") < gap("window")


def test_pcen_model_exports_with_parity(tmp_path):
    import torch

    from neuroear.training.export import export
    from neuroear.training.features import CQTConfig
    from neuroear.infer import Detector as OrtDetector
    from neuroear.metadata import ModelCard
    from neuroear.training.model import InstrumentNet, NetConfig

    torch.manual_seed(0)
    det = InstrumentNet(("piano", "violin"), CQTConfig(norm="pcen"), NetConfig(channels=(8, 16))).eval()
    card = ModelCard(name="p", labels=det.labels, sample_rate=SR, window_samples=SR, cqt=det.cqt_cfg.to_dict(), thresholds={"piano": 0.5, "violin": 0.5})
    rep = export(det, card, tmp_path / "p.onnx")
    assert rep["max_abs_diff"] <= 1e-4
    assert OrtDetector(tmp_path / "p.onnx").predict(np.stack([tone(440, 1.0)])).shape == (1, 2)


def test_spec_mask_only_in_training_and_within_its_widths():
    import torch

    from neuroear.training.model import CNN, NetConfig, spec_mask

    torch.manual_seed(0)
    x = torch.ones(64, 1, 84, 32)
    y = spec_mask(x, 10, 5)
    assert torch.equal(x, torch.ones_like(x))  # input untouched
    bins_hit = (y == 0).all(dim=3).sum(dim=2).flatten()  # fully masked bins per example
    frames_hit = (y == 0).all(dim=2).sum(dim=2).flatten()
    assert bins_hit.max() <= 20 and frames_hit.max() <= 10 and bins_hit.sum() > 0 and frames_hit.sum() > 0
    net = CNN(3, NetConfig(channels=(8, 16), spec_mask=10, dropout=0.0)).eval()
    z = torch.randn(4, 1, 84, 32)
    assert torch.equal(net(z), net(z))  # eval: deterministic, no masking
    net.train()
    assert not torch.equal(net(z), net(z))


def test_a_context_model_reads_the_past_and_scores_the_latest_second(tmp_path) -> None:
    import torch

    from neuroear.errors import NeuroEarError
    from neuroear.training import export as X
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    torch.manual_seed(0)
    cqt = CQTConfig(context_seconds=2.0)
    assert cqt.input_samples == 3 * cqt.window_samples
    net = InstrumentNet(("a", "b"), cqt, NetConfig(channels=(4, 8))).eval()
    x = torch.randn(2, cqt.input_samples) * 0.1
    with torch.no_grad():
        base = net(x)
        past = x.clone()
        past[:, : cqt.sample_rate] = 0.0  # change only the oldest second of the past
        assert base.shape == (2, 2)
        assert not torch.allclose(net(past), base)  # the past informs the decision
    with pytest.raises(ValueError, match="PCEN"):
        InstrumentNet(("a",), CQTConfig(context_seconds=1.0, norm="pcen"))
    # exported, its card tells the runtime to hand it the 2 s before each window
    card = X.build_card(net, {"labels": ["a", "b"], "thresholds": {"a": 0.5, "b": 0.5}, "config": {}}, name="ctx")
    assert (card.window_samples, card.context_samples) == (16000, 32000)
    rep = X.export(net, card, tmp_path / "ctx.onnx")
    assert rep["max_abs_diff"] <= rep["atol"]
    from neuroear.framing import Framing
    from neuroear.infer import Detector

    det = Detector(tmp_path / "ctx.onnx", provider="cpu")
    assert det.framing == Framing(sample_rate=16000, window=16000, context=32000)
    with torch.no_grad():
        np.testing.assert_allclose(det.predict(x.numpy()), torch.sigmoid(net(x)).numpy(), rtol=0, atol=1e-4)
    with pytest.raises(NeuroEarError, match="48000"):
        det.predict(np.zeros((1, 16000), np.float32))  # a bare window is not what it reads


def test_attention_head_exports_in_the_one_graph_with_parity(tmp_path) -> None:
    import torch

    from neuroear.infer import Detector
    from neuroear.training import export as X
    from neuroear.training.model import InstrumentNet, NetConfig

    torch.manual_seed(0)
    net = InstrumentNet(("a", "b"), net=NetConfig(channels=(4, 8), attention=True)).eval()
    with torch.no_grad():
        net.cnn.att.weight.normal_()  # a trained head, not its zero start
    x = torch.randn(2, 16000) * 0.1
    card = X.build_card(net, {"labels": ["a", "b"], "thresholds": {"a": 0.5, "b": 0.5}, "config": {}}, name="att")
    rep = X.export(net, card, tmp_path / "att.onnx")
    assert rep["max_abs_diff"] <= rep["atol"]
    with torch.no_grad():
        np.testing.assert_allclose(Detector(tmp_path / "att.onnx", provider="cpu").predict(x.numpy()), torch.sigmoid(net(x)).numpy(), rtol=0, atol=1e-4)


def test_harmonic_stack_puts_a_notes_partials_in_one_bin_of_every_channel() -> None:
    import json

    import torch

    from neuroear.training.features import CQTConfig, CQTFrontEnd, harmonic_stack

    cfg = CQTConfig(harmonics=[0.5, 1, 2, 3, 4, 5])  # a list, as JSON gives it
    assert cfg.harmonics == (0.5, 1.0, 2.0, 3.0, 4.0, 5.0) and cfg.channels == 6
    assert cfg.harmonic_shifts == (-12, 0, 12, 19, 24, 28)
    assert CQTConfig(**json.loads(json.dumps(cfg.to_dict()))) == cfg  # a card's or recipe's JSON rebuilds it
    # A3 (220 Hz) with its 2nd–5th partials
    t = torch.arange(16000) / 16000
    f0 = 220.0
    tone = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 6)).unsqueeze(0) * 0.2
    x = CQTFrontEnd(cfg)(tone)
    assert x.shape == (1, 6, 84, 32)
    a3 = 12 * 2 + 9  # bin of A3: C1 + 2 octaves + 9 semitones
    mid = x[0, :, :, 8:24].mean(dim=-1)  # away from the window's edges
    for ch in range(1, 6):  # channel h at A3's bin holds the h-th partial: high in every channel
        assert mid[ch, a3] > mid[ch].median() + 1.0, ch
    assert mid[0, a3] < mid[0].median() + 0.5  # and the subharmonic channel there holds A2: nothing
    # the shifted-in edge takes the window's floor, not its mean (0)
    plain = CQTFrontEnd(CQTConfig())(tone)[:, 0]
    assert torch.equal(x[0, 1], plain[0])
    assert torch.all(x[0, 5, -28:] == plain.min())
    assert torch.all(x[0, 0, :12] == plain.min()) and torch.equal(x[0, 0, 12:], plain[0, :-12])
    assert torch.equal(harmonic_stack(plain, (0,)), plain.unsqueeze(1))


def test_harmonic_model_exports_in_the_one_graph_with_parity(tmp_path) -> None:
    import torch

    from neuroear.infer import Detector
    from neuroear.training import export as X
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    torch.manual_seed(0)
    net = InstrumentNet(("a", "b"), CQTConfig(harmonics=(0.5, 1, 2, 3)), NetConfig(channels=(4, 8))).eval()
    assert net.cnn.features[0].body[0].weight.shape[1] == 4
    x = torch.randn(2, 16000) * 0.1
    card = X.build_card(net, {"labels": ["a", "b"], "thresholds": {"a": 0.5, "b": 0.5}, "config": {}}, name="hcqt")
    rep = X.export(net, card, tmp_path / "hcqt.onnx")
    assert rep["max_abs_diff"] <= rep["atol"]
    det = Detector(tmp_path / "hcqt.onnx", provider="cpu")
    assert det.card.cqt["harmonics"] == [0.5, 1.0, 2.0, 3.0]
    with torch.no_grad():
        np.testing.assert_allclose(det.predict(x.numpy()), torch.sigmoid(net(x)).numpy(), rtol=0, atol=1e-4)
