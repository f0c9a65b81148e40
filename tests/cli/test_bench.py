"""`neuroear bench`: a smoke run of the benchmark scripts with tiny repeat counts.

Checks that the scripts run end to end through the ``bench`` subcommand and that the result JSON has
its fields. No timing assertions: speed targets live in ``benchmarks/``, not in tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroear.cli import bench as bench_cli
from neuroear.errors import NeuroEarError

ROOT = Path(__file__).resolve().parents[2]
FAST = "per_hop,throughput,analyze,profile,optim,live,startup,memory"


def _bench_module(name: str):  # noqa: ANN202 (a module)
    """benchmarks/<name>.py loaded as a module, with benchmarks/ importable while it loads (its sibling imports)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neuroear")
    sub = ap.add_subparsers(dest="command", required=True)
    bench_cli.register(sub)
    return ap


def _bench(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "result.json"
    md = tmp_path / "result.md"
    args = _parser().parse_args(["bench", "--quick", "--no-mic", "--out", str(out), "--markdown", str(md), "--long-seconds", "12", *extra])
    assert args.func is bench_cli.cmd_bench
    rc = args.func(args)
    assert out.is_file(), "the benchmark wrote no result file"
    data = json.loads(out.read_text())
    assert rc == 0, data.get("errors")
    assert md.read_text().count("|") > 10
    return data


def _stats(d: dict) -> None:
    for k in ("n", "p50_ms", "p95_ms", "p99_ms"):
        assert k in d, d
    assert d["n"] > 0


def test_register_and_argv() -> None:
    args = _parser().parse_args(["bench", "--quick", "--sections", "per_hop", "--no-mic", "--long-seconds", "60"])
    assert bench_cli.runner_argv(args) == ["--quick", "--sections", "per_hop", "--long-seconds", "60.0", "--no-mic"]
    assert bench_cli.find_runner() == ROOT / "benchmarks" / "run.py"


def test_long_seconds_given_wins_over_quick() -> None:
    run = _bench_module("run")
    assert run.sizes(True)["mem_long_s"] == 20.0 and run.sizes(False)["mem_long_s"] == 3600.0
    assert run.sizes(True, 12.0)["mem_long_s"] == 12.0  # was ignored under --quick
    assert run.sizes(False, 90.0)["mem_long_s"] == 90.0


def test_missing_checkout_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_cli, "RUNNER", Path("benchmarks") / "no-such-runner.py")
    monkeypatch.delenv("NEUROEAR_REPO", raising=False)
    with pytest.raises(NeuroEarError) as e:
        bench_cli.find_runner()
    msg = str(e.value)
    assert "\n" not in msg and "source checkout" in msg


def test_quick_run_writes_all_fields(tmp_path: Path) -> None:
    r = _bench(tmp_path, "--sections", FAST)
    m = r["machine"]
    for k in ("cpu_model", "usable_cpus", "logical_cpus", "versions", "git_commit", "ort_available_providers", "cuda", "date_utc"):
        assert k in m, k
    assert "CPUExecutionProvider" in m["ort_available_providers"]
    assert r["model"]["bytes"] > 0 and len(r["model"]["sha256"]) == 64
    s = r["sections"]
    assert set(FAST.split(",")) <= set(s), r["errors"]

    assert s["per_hop"]["provider"] == "CPUExecutionProvider"
    for t in (1, 2):
        _stats(s["per_hop"][f"threads_{t}"])
        for b in (1, 8, 64):
            assert s["throughput"][f"threads_{t}_batch_{b}"]["x_realtime"] > 0
            assert s["analyze"][f"threads_{t}_batch_{b}"]["x_realtime"] > 0
    prof = s["profile"]
    assert prof["ort"]["batch_1"]["by_op_share"] and prof["ort"]["batch_1"]["by_region_share"]
    assert set(prof["analyze_stages"]["seconds"]) >= {"decode", "resample", "predict", "json"}
    assert "Detector.predict (shipped)" in s["optim"]["threads_1"]

    for key in ("file_fast_44k", "file_realtime_44k", "file_realtime_model_rate"):
        run = s["live"][key]
        assert run["hops"] > 0 and run["lines"] == run["hops"]
        for stage in ("capture", "window", "cut", "infer", "policy", "emit", "total"):
            _stats(run["stages"][stage])
    assert "resample" in s["live"]["file_realtime_44k"]["stages"]
    assert "resample" not in s["live"]["file_realtime_model_rate"]["stages"]

    for cmd in ("analyze", "listen"):
        assert s["startup"][cmd]["ok"], s["startup"][cmd]
        assert s["startup"][cmd]["imports"]["torch_imported"] is False  # the runtime never imports torch
        assert s["memory"][cmd]["short"]["peak_rss_mb"] > 0 and s["memory"][cmd]["long"]["peak_rss_mb"] > 0
    for k in ("per_hop_p50_ms", "file_x_realtime", "line_latency_p99_ms", "listen_rss_mb", "model_mb", "analyze_growth_mb"):
        assert set(r["targets"][k]) >= {"value", "limit", "met"}
    # the header states the lengths measured (--quick: 5 and 10 s, then --long-seconds 12), not 1 min / 10 min / 1 h
    md = (tmp_path / "result.md").read_text()
    assert "peak RSS MB: 5 s / 10 s / 12 s of audio" in md and "1 min / 10 min / 1 h" not in md, md
    assert s["memory"]["seconds"] == {"short": 5.0, "mid": 10.0, "long": 12.0}
    assert "12 s file minus 5 s file" in r["targets"]["analyze_growth_mb"]["note"]
    assert r["targets"]["seed_ratio"]["why"] == "the compare section was not run (--sections)"
    assert re.search(r"\| seed_ratio \| None \| [\d.]+ \| not measured \(the compare section was not run", md), md


def _has(*mods: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in mods)


@pytest.mark.skipif(not _has("torch", "nnAudio", "librosa"), reason="needs the 'train' and 'bench' extras (torch, nnAudio, librosa)")
def test_quick_compare_with_seed_style(tmp_path: Path) -> None:
    r = _bench(tmp_path, "--sections", "compare")
    c = r["sections"]["compare"]
    for k in ("ours", "seed_style", "torch_eager"):
        assert c["file"][k]["x_realtime"] > 0
        _stats(c["per_hop"][k if k != "ours" else "ours_ort_threads1"])
    assert 13.0e6 < c["params"]["seed_style"] < 14.0e6  # the seed's CNN: ≈ 13.5 M parameters
    assert c["file_ratio_seed_over_ours"] > 0 and c["ort_provider"] == "CPUExecutionProvider"


@pytest.mark.skipif(not _has("torch"), reason="needs torch")
def test_seed_cnn_shape() -> None:
    seed = _bench_module("seed")
    import torch

    net = seed.build_seed_cnn()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size == (3, 3) for m in convs) and len(convs) == 11
    assert [m.out_channels for m in convs] == [16, 32, 32, 64, 64, 128, 128, 256, 256, 1024, 1024]
    with torch.inference_mode():
        y = net(torch.zeros(2, 1, seed.SEED_BINS, 1 + seed.SEED_RATE // seed.SEED_HOP))
    assert tuple(y.shape) == (2, 10)
    assert sys.modules.get("neuroear.cli.bench") is not None


@pytest.mark.skipif(not _has("torch", "nnAudio"), reason="needs the 'train' extra (torch, nnAudio)")
def test_gemm_decimation_matches_nnaudio() -> None:
    """The experiment in benchmarks/frontend_gemm.py computes nnAudio's decimation exactly (any length)."""
    fg = _bench_module("frontend_gemm")
    import torch
    from nnAudio.utils import downsampling_by_2

    g = torch.Generator().manual_seed(0)
    kernel = torch.randn(1, 1, 256, generator=g)
    for n in (16000, 8000, 1000, 250, 125):
        x = torch.randn(3, 1, n, generator=g)
        a, b = downsampling_by_2(x, kernel), fg.downsampling_by_2_gemm(x, kernel)
        assert a.shape == b.shape
        assert float((a - b).abs().max()) < 1e-4 * float(a.abs().max())


def _result(sections: dict, errors: dict | None = None) -> dict:
    machine = {"date_utc": "2026-01-01T00:00:00Z", "cpu_model": "cpu", "usable_cpus": 2, "versions": {}, "ort_available_providers": ["CPUExecutionProvider"],
               "git_commit": "0" * 40, "git_dirty": False, "loadavg_start": 0.0, "cuda": "none"}
    return {"machine": machine, "model": {"name": "m", "bytes": 1}, "sizes": {}, "sections": sections, "errors": errors or {}}


def test_seed_comparison_says_why_it_is_not_measured() -> None:
    run = _bench_module("run")
    why = "needs the 'bench' and 'train' extras (librosa not installed: pip install -e '.[train,bench]')"
    r = _result({"compare": {"skipped": why}})
    r["targets"] = run.check_targets(r)
    assert r["targets"]["seed_ratio"]["met"] is None and r["targets"]["seed_ratio"]["why"] == why
    md = run.markdown(r)
    assert f"Seed-style comparison (librosa CQT + 13.5 M CNN, torch): not measured — {why}." in md
    assert f"| seed_ratio | None | {run.TARGETS['seed_ratio']} | not measured ({why}) |" in md, md
    r = _result({}, errors={"compare": "RuntimeError: boom\ntraceback"})
    assert run.check_targets(r)["seed_ratio"]["why"] == "the compare section failed: RuntimeError: boom"


def test_memory_header_uses_the_durations_measured() -> None:
    run = _bench_module("run")
    mem = {"seconds": {"short": 60.0, "mid": 600.0, "long": 5400.0},
           **{c: {k: {"peak_rss_mb": 50.0} for k in ("short", "mid", "long")} for c in ("analyze", "listen")}}
    md = run.markdown(_result({"memory": mem}))
    assert "peak RSS MB: 1 min / 10 min / 1.5 h of audio" in md, md
    assert [run.duration(x) for x in (5, 20, 90, 3600)] == ["5 s", "20 s", "1.5 min", "1 h"]


def test_time_interleaved_alternates_call_by_call() -> None:
    # the latency scripts' ratios are only fair if the callables alternate after the warm-up
    common = _bench_module("common")
    order: list[str] = []
    times = common.time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=2)
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3}
    assert all(ms >= 0 for t in times.values() for ms in t)


def test_top_k_exact_scores_the_ranking_alone() -> None:
    """benchmarks/mixtures.py: told how many instruments a window holds, are the most probable the true ones?"""
    mix = _bench_module("mixtures")
    import numpy as np

    labels = ("flute", "piano", "violin")
    probs = np.array([[0.9, 0.2, 0.1], [0.05, 0.3, 0.2], [0.4, 0.1, 0.3], [0.9, 0.9, 0.9]])
    truth = [["flute"], ["piano", "violin"], ["flute", "piano"], []]  # right, right (however low), wrong, no truth
    assert mix.top_k_exact(labels, probs, truth) == pytest.approx(2 / 3, abs=1e-4)  # rounded to 4 places, as reported
    assert mix.top_k_exact(labels, probs, [[], [], [], []]) is None


def test_mixture_recall_by_level_bins_each_stem_by_its_level_under_the_loudest():
    M = _bench_module("mixtures")
    labels = ("flute", "piano", "violin")
    levels = [{"piano": 0.0, "flute": -4.0}, {"piano": 0.0, "flute": -4.5, "violin": -13.0}, {"flute": 0.0, "piano": -1.0}]
    active = np.array([[False, True, False], [True, True, False], [True, False, False]])
    got = M.recall_by_level(labels, active, levels)
    assert got["loudest"] == {"recall": 1.0, "n": 3}
    assert got["0 to -3 dB"] == {"recall": 0.0, "n": 1}  # piano at -1 dB, not named
    assert got["-3 to -6 dB"] == {"recall": 0.5, "n": 2}  # flute at -4 missed, at -4.5 named
    assert got["under -12 dB"] == {"recall": 0.0, "n": 1} and got["-6 to -9 dB"] == {"recall": None, "n": 0}
    # make_mixtures reports the same stems it labels, each at or under 0 dB
    rng = np.random.default_rng(0)
    clips = [(lab, rng.standard_normal(3 * 1000).astype(np.float32) * 0.1) for lab in labels for _ in range(2)]
    lv: list = []
    mixes = M.make_mixtures(clips, n=5, seed=1, window=1000, levels=lv)
    assert len(lv) == len(mixes)
    for (_, per_window), under in zip(mixes, lv):
        assert [sorted(u) for u in under] == per_window and all(v <= 0.0 for u in under for v in u.values())
        assert all(max(u.values()) == 0.0 for u in under)
