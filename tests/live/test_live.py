"""The live loop fed from files: same windows and probabilities as `analyze` for any block size,
resampling, downmix, drops under a slow consumer, and the `listen` command's contract (JSON Lines,
schema, events, closed pipe, SIGTERM summary, clear errors). No sound card needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroear import audio, framing
from neuroear.live import loop, sources, streamer
from neuroear.errors import NeuroEarError
from neuroear.infer import Detector

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "stream" / "detection.schema.json"
FRAMING = framing.Framing()  # a 16 kHz one-second framing for the loop's mechanics; tests that score use the model's own

def cli(*args: str) -> list[str]:
    """Command line running ``neuroear ARGS`` with this interpreter."""
    return [sys.executable, "-m", "neuroear", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)


def signal_at(rate: int, seconds: float, *, seed: int = 0) -> np.ndarray:
    """A test signal with content at every sample: two tones, a chirp and seeded noise (mono)."""
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    x = 0.25 * np.sin(2 * np.pi * 440 * t) + 0.15 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    out = {}
    for rate in (16000, 44100, 48000):
        p = d / f"mono{rate}.wav"
        sf.write(p, signal_at(rate, 3.3), rate, subtype="FLOAT")
        out[f"mono{rate}"] = p
    x = signal_at(44100, 3.3)
    y = signal_at(44100, 3.3, seed=1)
    sf.write(d / "stereo.wav", np.stack([x, y], 1), 44100, subtype="FLOAT")
    sf.write(d / "downmixed.wav", (x + y) / 2, 44100, subtype="FLOAT")
    sf.write(d / "opposite.wav", np.stack([x, -x], 1), 44100, subtype="FLOAT")
    sf.write(d / "long.wav", signal_at(16000, 12.0), 16000, subtype="PCM_16")
    for k in ("stereo", "downmixed", "opposite", "long"):
        out[k] = d / f"{k}.wav"
    return out


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(threads=1)


def stream_file(path: Path, *, hop: int, block: int, predict=None, fr: framing.Framing = FRAMING, **kw):
    """Run the live loop over a file at framing ``fr``; returns (starts, windows, probs, stats)."""
    got = []
    predict = predict or (lambda w: np.zeros((w.shape[0], 1), np.float32))
    stats = loop.run(
        sources.FileSource(path, block=block),
        predict,
        framing=fr,
        hop=hop,
        on_hop=lambda w, p, s: got.append((w.start, w.samples, p)) or True,
        **kw,
    )
    if not got:
        return np.zeros(0, int), np.zeros((0, fr.input)), np.zeros((0, 1)), stats
    return np.array([g[0] for g in got]), np.stack([g[1] for g in got]), np.stack([g[2] for g in got]), stats


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
@pytest.mark.parametrize("block", [3, 1000, 4096, 1 << 20])
@pytest.mark.parametrize("hop_s", [0.25, 1.0])
def test_any_block_size_gives_the_windows_and_probs_of_analyze(clips, detector, rate, block, hop_s):
    path = clips[f"mono{rate}"]
    if block == 3 and rate != 16000:
        block = 97  # a few thousand tiny blocks are enough; single frames are covered below
    fr = detector.framing  # the shipped model's rate, window and context
    hop = fr.hop(hop_s)
    ref_starts, ref_windows = framing.windows(audio.load(path, sample_rate=fr.sample_rate), hop=hop, window=fr.window, sample_rate=fr.sample_rate, context=fr.context)
    starts, windows, probs, stats = stream_file(path, hop=hop, block=block, predict=detector.predict, fr=fr)
    np.testing.assert_array_equal(starts, ref_starts)
    assert starts[1] - starts[0] == hop
    np.testing.assert_allclose(windows, ref_windows, rtol=0, atol=1e-6)
    # per-hop batches vs one batch: ONNX Runtime may sum in another order per batch size (~1e-5)
    np.testing.assert_allclose(probs, detector.predict(ref_windows), rtol=0, atol=1e-4)
    assert stats.dropped == 0 and stats.hops == len(ref_starts)
    assert stats.stream_seconds == pytest.approx(3.3, abs=1e-3)


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=40))
def test_streamer_any_split_of_the_same_audio_frames_identically(cuts):
    rate = 44100
    x = signal_at(rate, 2.6)[:, None]
    one = streamer.Streamer(framing=FRAMING, in_rate=rate, hop=4000)
    ref = one.push([sources.Block(x, 0.0)], last=True) + one.finish()
    ref_starts, ref_windows = [w.start for w in ref], np.stack([w.samples for w in ref])
    s = streamer.Streamer(framing=FRAMING, in_rate=rate, hop=4000)
    wins, pos, i = [], 0, 0
    while pos < len(x):
        n = cuts[i % len(cuts)]
        wins += s.push([sources.Block(x[pos : pos + n], 0.0)])
        pos, i = pos + n, i + 1
    wins += s.push([], last=True) + s.finish()
    np.testing.assert_array_equal([w.start for w in wins], ref_starts)
    np.testing.assert_allclose(np.stack([w.samples for w in wins]), ref_windows, rtol=0, atol=1e-6)


def test_single_frame_blocks(clips):
    hop = framing.hop_samples(0.5)
    ref_starts, ref_windows = framing.windows(audio.load(clips["mono16000"], sample_rate=framing.SAMPLE_RATE), hop=hop)
    starts, windows, _, _ = stream_file(clips["mono16000"], hop=hop, block=1)
    np.testing.assert_array_equal(starts, ref_starts)
    np.testing.assert_array_equal(windows, ref_windows)


def test_stereo_is_downmixed_to_the_channel_mean(clips):
    hop = framing.hop_samples(1.0)
    _, stereo, _, _ = stream_file(clips["stereo"], hop=hop, block=512)
    _, mono, _, _ = stream_file(clips["downmixed"], hop=hop, block=512)
    np.testing.assert_allclose(stereo, mono, rtol=0, atol=1e-6)
    _, cancel, _, _ = stream_file(clips["opposite"], hop=hop, block=512)
    assert np.abs(cancel).max() < 1e-6  # L = -R sums to silence


def test_resampled_tone_keeps_its_pitch_and_level(tmp_path):
    for rate in (44100, 48000):
        t = np.arange(2 * rate) / rate
        sf.write(tmp_path / "a4.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate, subtype="FLOAT")
        _, w, _, stats = stream_file(tmp_path / "a4.wav", hop=16000, block=1024)
        spec = np.abs(np.fft.rfft(w[0]))
        assert np.argmax(spec) == 440  # 1 Hz bins over a one-second window at 16 kHz
        assert audio.dbfs(w[0][2000:-2000]) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
        assert stats.level_dbfs == pytest.approx(-9.03, abs=0.2)


def test_duration_counts_stream_time(clips):
    starts, _, _, stats = stream_file(clips["long"], hop=8000, block=1000, duration=2.0)
    assert list(starts) == [0, 8000, 16000]
    assert stats.stream_seconds == 2.0 and stats.stopped_by == "duration"


def test_clipping_is_flagged(tmp_path):
    sf.write(tmp_path / "clip.wav", np.clip(3 * signal_at(16000, 2.0), -1, 1), 16000, subtype="FLOAT")
    seen = []
    loop.run(sources.FileSource(tmp_path / "clip.wav"), lambda w: np.zeros((1, 1)), framing=FRAMING, hop=16000,
             on_hop=lambda *a: True, on_tick=lambda s: seen.append(s.clipping), tick_seconds=0)
    assert any(seen)


def test_slow_consumer_drops_hops_and_latency_and_memory_stay_bounded(clips):
    """A model slower than the hop on a real-time source: old hops are dropped and counted."""
    infer_s = 0.35

    def slow_predict(w):
        time.sleep(infer_s)
        return np.zeros((w.shape[0], 1), np.float32)

    src = sources.FileSource(clips["long"], block=1024, realtime=True)
    tracemalloc.start()
    stats = loop.run(src, slow_predict, framing=FRAMING, hop=4000, on_hop=lambda *a: True, duration=5.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    expected = (5 * 16000 - 16000) // 4000 + 1  # windows in 5 s at a 0.25 s hop
    assert stats.dropped > 0
    assert stats.hops + stats.dropped == expected
    max_lag_s = loop.DEFAULT_MAX_LAG_SECONDS
    assert max(stats.lat_total) < (max_lag_s + infer_s + 0.4) * 1e3  # bounded, not growing with time
    assert peak < 16 * 2**20


def test_a_fast_consumer_drops_nothing_in_real_time(clips):
    src = sources.FileSource(clips["long"], block=1024, realtime=True)
    stats = loop.run(src, lambda w: np.zeros((1, 1)), framing=FRAMING, hop=8000, on_hop=lambda *a: True, duration=2.5)
    assert stats.dropped == 0 and stats.hops == 4
    assert stats.wall_seconds == pytest.approx(2.5, abs=0.5)


def test_missing_example_or_demo_clip():
    try:
        clip = sources.example_clip()
    except NeuroEarError as exc:
        assert "example clip is missing" in str(exc)
    else:
        assert clip.is_file()


# ----------------------------------------------------------------------------- the command


def lines_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_listen_input_writes_schema_valid_lines_matching_predict(clips, detector):
    r = run_cli("listen", "--input", str(clips["mono44100"]), "--hop", "0.5", "--block", "333")
    assert r.returncode == 0, r.stderr
    rows = lines_of(r.stdout)
    v = validator()
    for row in rows:
        v.validate(row)
    fr = detector.framing
    starts, windows = framing.windows(audio.load(clips["mono44100"], sample_rate=fr.sample_rate), hop=fr.hop(0.5), window=fr.window, sample_rate=fr.sample_rate, context=fr.context)
    assert [row["start"] for row in rows] == list(starts / fr.sample_rate)
    assert [row["end"] for row in rows] == [min(s / fr.sample_rate + 1, 3.3) for s in starts]
    ref = detector.predict(windows)
    got = np.array([[row["probs"][lab] for lab in detector.labels] for row in rows])
    np.testing.assert_allclose(got, ref, rtol=0, atol=6e-5)
    assert all(row["source"] == str(clips["mono44100"]) for row in rows)
    assert all(row["provider"] == detector.provider for row in rows)
    # active: listen's default decision, the mean of the windows of the last 2 s (3 at hop 0.5)
    from neuroear.evaluate import decide
    from neuroear.live.policy import default_smooth

    mask = decide(ref, np.zeros(len(ref)), detector.thresholds, smooth=default_smooth(0.5))
    assert [row["active"] for row in rows] == [[lab for lab, on in zip(detector.labels, m) if on] for m in mask]
    assert "hops" in r.stderr and "dropped" in r.stderr  # the summary


def test_listen_events_mode(clips, detector):
    thr = [f"--threshold={lab}={'0' if lab == 'violin' else '1'}" for lab in detector.labels]
    r = run_cli("listen", "--input", str(clips["mono16000"]), "--events", *thr)
    assert r.returncode == 0, r.stderr
    rows = lines_of(r.stdout)
    v = validator()
    for row in rows:
        v.validate(row)
    assert rows == [{"event": "onset", "label": "violin", "time": 0.0}, {"event": "offset", "label": "violin", "time": 3.3}]


def test_closed_pipe_exits_quietly(clips):
    p = subprocess.Popen(cli("listen", "--input", str(clips["long"]), "--hop", "0.25", "--realtime"),
                         cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = [p.stdout.readline() for _ in range(2)]
        p.stdout.close()  # like `| head -2`
        rc = p.wait(timeout=60)
        err = p.stderr.read()
    finally:
        p.kill()
    assert all(json.loads(line)["start"] >= 0 for line in first)
    assert rc == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err


def test_sigterm_stops_and_prints_the_summary(clips):
    p = subprocess.Popen(cli("listen", "--input", str(clips["long"]), "--realtime", "--hop", "0.5"),
                         cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(p.stdout.readline())["start"] == 0.0
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert "stopped" in err and "hops" in err and "dropped" in err and "p50" in err
    assert "Traceback" not in err
    for line in out.splitlines():  # whatever was flushed is whole lines
        json.loads(line)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hop", "2"], "--hop"),
        (["--hop", "0.1"], "--hop"),
        (["--duration", "0"], "--duration"),
        (["--threshold", "kazoo=0.5"], "unknown label"),
        (["--input", "/nonexistent.wav"], "no such file"),
        (["--realtime"], "--realtime"),
        (["--model", "/nonexistent.onnx", "--input", "x.wav"], "not found"),
    ],
)
def test_bad_arguments_are_one_clear_line(args, message):
    r = run_cli("listen", "--no-dashboard", *args, timeout=60)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_demo_streams_the_example_clip_or_says_it_is_missing():
    r = run_cli("listen", "--demo", "--no-dashboard", "--duration", "1.5", "--hop", "0.5", timeout=60)
    try:
        sources.example_clip()
    except NeuroEarError:
        assert r.returncode == 1 and "example clip is missing" in r.stderr
        return
    assert r.returncode == 0, r.stderr
    rows = lines_of(r.stdout)
    assert [row["start"] for row in rows] == [0.0, 0.5] and rows[0]["source"].startswith("demo:")
