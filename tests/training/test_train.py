"""Training configs: what `train` saves as config.json must rebuild the very same config."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import needs_torch

pytestmark = needs_torch


def test_config_survives_a_json_round_trip() -> None:
    from neuroear.training import data as D
    from neuroear.training import train as T
    from neuroear.training.losses import LossConfig
    from neuroear.training.model import NetConfig

    cfg = replace(
        T.TrainConfig(),
        real=("real-train",),
        rendered=("render/manifest.jsonl",),
        net=NetConfig(channels=(24, 48, 96, 128)),
        mix=D.MixConfig(clip_weighting="sqrt_duration", background_p=0.3, background_db=(10.0, 30.0)),
        init="runs/base/checkpoint.pt",
        loss=LossConfig(kind="asl", gamma_neg=2.0),
    )
    back = T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg  # tuples, not JSON's lists, so `--init` and recipes compare equal
    assert back.mix.background_db == (10.0, 30.0) and back.net.channels == (24, 48, 96, 128)


def test_the_asymmetric_loss_is_bce_when_its_knobs_are_off_and_spares_easy_negatives() -> None:
    import pytest
    import torch

    from neuroear.errors import NeuroEarError
    from neuroear.training.losses import LossConfig, asymmetric_loss, loss_function

    g = torch.Generator().manual_seed(0)
    logits, y = 3 * torch.randn(64, 13, generator=g), (torch.rand(64, 13, generator=g) < 0.15).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    plain = asymmetric_loss(logits, y, LossConfig(kind="asl", gamma_neg=0.0, gamma_pos=0.0, clip=0.0))
    assert torch.allclose(plain, bce, atol=1e-6)
    assert loss_function(LossConfig())(logits, y) == bce  # the default stays plain BCE
    asl = LossConfig(kind="asl")  # gamma_neg 4, clip 0.05
    easy, confident = torch.tensor([[-6.0]]), torch.tensor([[3.0]])  # an absent label at p 0.002 and at p 0.95
    assert asymmetric_loss(easy, torch.zeros(1, 1), asl) == 0.0  # below the clip: no cost at all
    assert asymmetric_loss(confident, torch.zeros(1, 1), asl) > 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(confident, torch.zeros(1, 1))
    missed = torch.tensor([[-2.0]])  # a present label at p 0.12 costs what BCE charges (gamma_pos 0)
    assert torch.allclose(asymmetric_loss(missed, torch.ones(1, 1), asl), torch.nn.functional.binary_cross_entropy_with_logits(missed, torch.ones(1, 1)))
    # a window of one present and twelve absent labels: the positive's share of the gradient grows
    z = torch.full((1, 13), -1.0, requires_grad=True)
    t = torch.zeros(1, 13)
    t[0, 0] = 1.0
    shares = []
    for fn in (loss_function(LossConfig()), loss_function(asl)):
        (grad,) = torch.autograd.grad(fn(z, t), z)
        shares.append(float(grad[0, 0].abs() / grad.abs().sum()))
    assert shares[1] > 2 * shares[0]
    with pytest.raises(NeuroEarError, match="unknown loss"):
        LossConfig(kind="focal")
    with pytest.raises(NeuroEarError, match="clip"):
        LossConfig(kind="asl", clip=1.0)


def _old_checkpoint(tmp_path, net):  # noqa: ANN001, ANN202 (torch types, imported lazily)
    """A piano/violin InstrumentNet with a random classifier, saved as a training checkpoint."""
    import torch

    from neuroear.training.model import InstrumentNet

    old = InstrumentNet(("piano", "violin"), net=net)
    with torch.no_grad():
        old.cnn.head.weight.normal_()
    ck = tmp_path / "old.pt"
    torch.save({"state_dict": old.state_dict(), "labels": ["piano", "violin"], "cqt": old.cqt_cfg.to_dict(), "net": net.to_dict()}, str(ck))
    return old, ck


def test_init_from_a_checkpoint_with_fewer_labels_keeps_its_rows(tmp_path) -> None:
    import torch

    from neuroear.training import train as T
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    cfg = T.TrainConfig(labels=("drums", "piano", "violin"), net=net, init=str(ck))
    new = InstrumentNet(cfg.labels, net=net)
    fresh = new.cnn.head.weight[0].clone()
    T._load_init(new, cfg)
    assert torch.equal(new.cnn.head.weight[1:], old.cnn.head.weight)  # piano, violin rows moved to their new places
    assert torch.equal(new.cnn.head.weight[0], fresh)  # drums keeps its fresh row
    assert torch.equal(new.cnn.features[0].body[0].weight, old.cnn.features[0].body[0].weight)
    bad = T.TrainConfig(labels=("drums", "piano"), net=net, init=str(ck))  # would drop violin
    import pytest

    from neuroear.errors import NeuroEarError

    with pytest.raises(NeuroEarError, match="labels"):
        T._load_init(InstrumentNet(bad.labels, net=net), bad)


def test_a_one_window_checkpoint_starts_a_context_model(tmp_path) -> None:
    import torch

    from neuroear.training import train as T
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    cfg = T.TrainConfig(labels=("piano", "violin"), net=net, cqt=CQTConfig(context_seconds=2.0), init=str(ck))
    new = InstrumentNet(cfg.labels, cfg.cqt, net)
    T._load_init(new, cfg)
    w = new.cnn.head.weight
    assert w.shape == (2, 3 * 8)
    assert torch.equal(w[:, :16], old.cnn.head.weight) and not w[:, 16:].any()  # the past's columns start at zero
    assert torch.equal(new.cnn.features[0].body[0].weight, old.cnn.features[0].body[0].weight)
    # any other front-end change still refuses to start from it
    import pytest

    from neuroear.errors import NeuroEarError

    other = T.TrainConfig(labels=cfg.labels, net=net, cqt=CQTConfig(context_seconds=2.0, n_bins=72), init=str(ck))
    with pytest.raises(NeuroEarError, match="front end"):
        T._load_init(InstrumentNet(other.labels, other.cqt, net), other)


def test_a_16_khz_checkpoint_starts_a_wider_band_model(tmp_path) -> None:
    import pytest
    import torch

    from neuroear.errors import NeuroEarError
    from neuroear.training import train as T
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    wide = CQTConfig(sample_rate=24000, hop_length=768, n_bins=97)
    cfg = T.TrainConfig(labels=("piano", "violin"), net=net, cqt=wide, init=str(ck))
    new = InstrumentNet(cfg.labels, cfg.cqt, net)
    own_front = {k: v.clone() for k, v in new.state_dict().items() if k.startswith("frontend.")}
    T._load_init(new, cfg)
    state = new.state_dict()
    assert own_front and all(torch.equal(state[k], v) for k, v in own_front.items())  # the 24 kHz kernels stay
    assert torch.equal(new.cnn.head.weight, old.cnn.head.weight)
    assert all(torch.equal(state[k], v) for k, v in old.state_dict().items() if k.startswith("cnn."))
    with torch.no_grad():  # and it runs: 24 kHz in, one probability per label out
        assert new(torch.zeros(1, 24000)).shape == (1, 2)
    # a different frame duration, a narrower band or another lowest bin still refuse
    for bad in (
        CQTConfig(sample_rate=24000, hop_length=384, n_bins=97),
        CQTConfig(sample_rate=24000, hop_length=768, n_bins=72),
        CQTConfig(sample_rate=24000, hop_length=768, n_bins=85, fmin=65.4),
    ):
        other = T.TrainConfig(labels=cfg.labels, net=net, cqt=bad, init=str(ck))
        with pytest.raises(NeuroEarError, match="front end"):
            T._load_init(InstrumentNet(other.labels, other.cqt, net), other)


def test_a_checkpoint_without_attention_starts_an_attention_model_at_its_own_function(tmp_path) -> None:
    import pytest
    import torch

    from neuroear.errors import NeuroEarError
    from neuroear.training import train as T
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    att = replace(net, attention=True)
    cfg = T.TrainConfig(labels=("piano", "violin"), net=att, init=str(ck))
    new = InstrumentNet(cfg.labels, net=att)
    T._load_init(new, cfg)
    x = torch.randn(3, 16000) * 0.1
    old.eval(), new.eval()
    with torch.no_grad():
        assert torch.allclose(new(x), old(x), atol=1e-6)  # zero scores: the same logits as before
        new.cnn.att.weight[0].normal_()  # once its scores move, the head does change the output
        assert not torch.allclose(new(x)[:, 0], old(x)[:, 0], atol=1e-3)
    back = InstrumentNet(cfg.labels, net=net)  # and an attention checkpoint does not load into a plain net
    torch.save({"state_dict": new.state_dict(), "labels": list(cfg.labels), "cqt": new.cqt_cfg.to_dict(), "net": att.to_dict()}, str(tmp_path / "att.pt"))
    with pytest.raises(NeuroEarError, match="attention"):
        T._load_init(back, T.TrainConfig(labels=cfg.labels, net=net, init=str(tmp_path / "att.pt")))


def test_a_plain_checkpoint_starts_a_harmonic_stacked_model_at_its_own_function(tmp_path) -> None:
    import pytest
    import torch

    from neuroear.errors import NeuroEarError
    from neuroear.training import train as T
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    hcqt = CQTConfig(harmonics=(0.5, 1.0, 2.0))
    cfg = T.TrainConfig(labels=("piano", "violin"), net=net, cqt=hcqt, init=str(ck))
    new = InstrumentNet(cfg.labels, hcqt, net)
    T._load_init(new, cfg)
    w, w0 = new.cnn.features[0].body[0].weight, old.cnn.features[0].body[0].weight
    assert torch.equal(w[:, 1:2], w0) and not w[:, [0, 2]].any()  # the h = 1 channel carries the old taps
    x = torch.randn(3, 16000) * 0.1
    old.eval(), new.eval()
    with torch.no_grad():
        assert torch.allclose(new(x), old(x), atol=1e-6)
        w[:, 0].normal_()  # once the other channels' taps move, they change the output
        assert not torch.allclose(new(x), old(x), atol=1e-3)
    # without h = 1 there is no channel for the old taps: refused
    bad = T.TrainConfig(labels=cfg.labels, net=net, cqt=CQTConfig(harmonics=(2.0, 3.0)), init=str(ck))
    with pytest.raises(NeuroEarError, match="front end"):
        T._load_init(InstrumentNet(bad.labels, bad.cqt, net), bad)


def test_harmonic_init_gives_the_new_channels_random_taps_at_the_asked_norm(tmp_path) -> None:
    import torch

    from neuroear.training import train as T
    from neuroear.training.features import CQTConfig
    from neuroear.training.model import InstrumentNet, NetConfig

    net = NetConfig(channels=(4, 8))
    old, ck = _old_checkpoint(tmp_path, net)
    hcqt = CQTConfig(harmonics=(0.5, 1.0, 2.0))
    cfg = T.TrainConfig(labels=("piano", "violin"), net=net, cqt=hcqt, init=str(ck), harmonic_init=0.25)
    assert T.TrainConfig.from_dict(cfg.to_dict()).harmonic_init == 0.25  # a recipe carries it
    new = InstrumentNet(cfg.labels, hcqt, net)
    T._load_init(new, cfg)
    w, w0 = new.cnn.features[0].body[0].weight.detach(), old.cnn.features[0].body[0].weight.detach()
    assert torch.equal(w[:, 1:2], w0)  # the h = 1 channel still carries the old taps
    want = 0.25 * w0[:, 0].flatten(1).norm(dim=1)
    for j in (0, 2):  # every new channel's filter at a quarter of its h = 1 norm, and not all alike
        assert torch.allclose(w[:, j].flatten(1).norm(dim=1), want, rtol=1e-4)
    assert not torch.allclose(w[:, 0], w[:, 2])
    x = torch.randn(3, 16000) * 0.1
    old.eval(), new.eval()
    with torch.no_grad():
        assert not torch.allclose(new(x), old(x), atol=1e-4)  # no longer the checkpoint's function


def _fine_tune_checkpoint(tmp_path, name, net, seed):  # noqa: ANN001, ANN202 (torch types, imported lazily)
    """A piano/violin InstrumentNet with seeded random weights and BN statistics, saved as a
    training checkpoint whose config says it was trained on ``seed``."""
    import torch

    from neuroear.training import train as T
    from neuroear.training.model import InstrumentNet

    torch.manual_seed(seed)
    m = InstrumentNet(("piano", "violin"), net=net)
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1)
    cfg = T.TrainConfig(labels=("piano", "violin"), net=net, seed=seed, val_windows=16)
    T.save_checkpoint(T.TrainResult(m, {"piano": 0.5, "violin": 0.5}, {}, seconds=10.0 * seed), cfg, tmp_path / f"{name}.pt")
    return m, tmp_path / f"{name}.pt"


def test_a_soup_is_the_mean_of_its_ingredients_weights_calibrated_and_exportable(tmp_path) -> None:
    import numpy as np
    import pytest
    import torch

    from conftest import SR, tone
    from neuroear.errors import NeuroEarError
    from neuroear.metadata import read_card
    from neuroear.training import data as D
    from neuroear.training import soup as S
    from neuroear.training import train as T
    from neuroear.training.export import build_card, export, load_checkpoint
    from neuroear.training.model import NetConfig

    net = NetConfig(channels=(4, 8))
    a, pa = _fine_tune_checkpoint(tmp_path, "a", net, 1)
    b, pb = _fine_tune_checkpoint(tmp_path, "b", net, 2)
    mean = S.average_state_dicts([a.state_dict(), b.state_dict()])
    w = "cnn.head.weight"
    assert torch.allclose(mean[w], (a.state_dict()[w] + b.state_dict()[w]) / 2)
    assert not torch.allclose(mean[w], a.state_dict()[w])
    bn = next(k for k in mean if k.endswith("running_var"))
    assert torch.allclose(mean[bn], (a.state_dict()[bn] + b.state_dict()[bn]) / 2)  # BN statistics too

    note = lambda f: np.round(np.tile(tone(f, 1.0), 3) * 0.5 * 32767).astype(np.int16)  # noqa: E731
    pool = [D.Clip(note(220.0), "piano", "render", "p.flac"), D.Clip(note(660.0), "violin", "render", "v.flac")]
    res = S.soup([pa, pb], tmp_path / "soup.pt", clips=(pool, pool), log=lambda s: None)
    soup_net, ck = load_checkpoint(tmp_path / "soup.pt")
    assert torch.allclose(soup_net.state_dict()[w], mean[w])
    assert set(ck["thresholds"]) == {"piano", "violin"} and ck["val"]["windows"] == 16
    assert [i["seed"] for i in ck["config"]["soup"]] == [1, 2] and res.seconds == 30.0
    assert T.TrainConfig.from_dict(ck["config"]).seed == 1  # the card's record still rebuilds the recipe
    export(soup_net, build_card(soup_net, ck, name="soup"), tmp_path / "soup.onnx")
    assert [i["seed"] for i in read_card(tmp_path / "soup.onnx").training["soup"]] == [1, 2]

    _, pc = _fine_tune_checkpoint(tmp_path, "c", NetConfig(channels=(4, 6)), 3)
    with pytest.raises(NeuroEarError, match="shapes differ"):
        S.soup([pa, pc], tmp_path / "bad.pt", clips=(pool, pool))
    assert SR == 16000  # the clips above are at the default front end's rate
