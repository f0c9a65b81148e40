"""Training configs: what `train` saves as config.json must rebuild the very same config."""

from __future__ import annotations

import json
from dataclasses import replace

from conftest import needs_torch

pytestmark = needs_torch


def test_config_survives_a_json_round_trip() -> None:
    from neuroear.training import data as D
    from neuroear.training import train as T
    from neuroear.training.model import NetConfig

    cfg = replace(
        T.TrainConfig(),
        real=("real-train",),
        rendered=("render/manifest.jsonl",),
        net=NetConfig(channels=(24, 48, 96, 128)),
        mix=D.MixConfig(clip_weighting="sqrt_duration", background_p=0.3, background_db=(10.0, 30.0)),
        init="runs/base/checkpoint.pt",
    )
    back = T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg  # tuples, not JSON's lists, so `--init` and recipes compare equal
    assert back.mix.background_db == (10.0, 30.0) and back.net.channels == (24, 48, 96, 128)
