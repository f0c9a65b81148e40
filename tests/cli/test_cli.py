"""`neuroear analyze` / `evaluate` end to end through the real CLI and ONNX Runtime."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import BLOCK_TORCH, ROOT, SR, has_module, run_cli, tone


@pytest.fixture
def clip(tmp_path):
    f = tmp_path / "clip.wav"
    sf.write(f, tone(440, 3.5, sr=44100), 44100)
    return f


def test_jsonl_contract(clip):
    r = run_cli("analyze", str(clip), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["start"], x["end"]) for x in lines] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 3.5)]
    for x in lines:
        assert x["source"] == str(clip)
        assert set(x) >= {"source", "start", "end", "probs", "active"}
        assert all(0.0 <= p <= 1.0 for p in x["probs"].values())
        assert set(x["active"]) <= set(x["probs"])
    assert "provider" in r.stderr and "CPUExecutionProvider" in r.stderr


def test_pipe_defaults_to_jsonl_and_hop_overlaps(clip):
    r = run_cli("analyze", str(clip), "--hop", "0.5")
    starts = [json.loads(x)["start"] for x in r.stdout.splitlines()]
    assert starts == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]  # the 2.5 s window already reaches the end


def test_csv_and_table(clip):
    r = run_cli("analyze", str(clip), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 4 and float(rows[1]["start"]) == 1.0 and "piano" in rows[0]
    r = run_cli("analyze", str(clip), "--format", "table")
    assert r.returncode == 0 and "active" in r.stdout and str(clip) in r.stdout


@pytest.mark.skipif(not has_module("matplotlib"), reason="needs matplotlib")
def test_plot(clip, tmp_path):
    out = tmp_path / "p.png"
    r = run_cli("analyze", str(clip), "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_short_clip_is_padded_with_warning(tmp_path):
    f = tmp_path / "short.flac"
    sf.write(f, tone(440, 0.2), SR)
    r = run_cli("analyze", str(f), "--format", "jsonl")
    assert r.returncode == 0
    (line,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert line["start"] == 0.0 and line["end"] == pytest.approx(0.2)
    assert "shorter than" in r.stderr


def test_nan_never_reaches_probabilities(tmp_path):
    x = tone(440, 2.0)
    x[::7] = np.nan
    x[5] = np.inf
    f = tmp_path / "nan.wav"
    sf.write(f, x, SR, subtype="FLOAT")
    r = run_cli("analyze", str(f), "--format", "jsonl")
    assert r.returncode == 0
    for line in r.stdout.splitlines():
        assert all(np.isfinite(p) for p in json.loads(line)["probs"].values())


@pytest.mark.parametrize("rate, channels, seconds", [(8000, 1, 1.5), (96000, 2, 1.5), (22050, 8, 1.2)])
def test_unusual_valid_inputs(tmp_path, rate, channels, seconds):
    f = tmp_path / f"x{rate}.wav"
    sf.write(f, np.tile(tone(440, seconds, sr=rate)[:, None], (1, channels)), rate)
    r = run_cli("analyze", str(f), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 + (seconds - 1 >= 0.25)


def test_bad_inputs_one_line_each_and_good_files_still_reported(tmp_path, clip):
    d = tmp_path / "mixed"
    d.mkdir()
    sf.write(d / "good.wav", tone(440, 1.0), SR)
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("hello, not audio\n" * 50)
    good = (tmp_path / "clip.wav").read_bytes()
    (d / "truncated.wav").write_bytes(good[:30])
    r = run_cli("analyze", str(d), str(tmp_path / "missing.flac"), "--format", "jsonl")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("neuroear: error:")]
    assert len(errors) == 4
    assert any("empty.wav" in e and "empty" in e for e in errors)
    assert any("missing.flac" in e and "no such file" in e for e in errors)
    sources = {json.loads(x)["source"] for x in r.stdout.splitlines()}
    assert sources == {str(d / "good.wav")}


def test_missing_model_is_a_clear_error(clip, tmp_path):
    r = run_cli("analyze", str(clip), "--model", str(tmp_path / "none.onnx"))
    assert r.returncode == 1 and "model file" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    r = run_cli("analyze", str(clip), "--model", str(bad))
    assert r.returncode == 1 and "not a loadable ONNX model" in r.stderr and len(r.stderr.splitlines()) == 1


def test_runtime_never_imports_torch(clip):
    code = (
        BLOCK_TORCH +
        "from neuroear.cli.main import main\n"
        f"rc = main(['analyze', {str(clip)!r}, '--format', 'jsonl'])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 4


def test_evaluate_on_folder(tmp_path):
    for lab in ("piano", "violin"):
        (tmp_path / lab).mkdir()
        sf.write(tmp_path / lab / "a.wav", tone(440 if lab == "piano" else 660, 2.0), SR)
    sf.write(tmp_path / "piano" / "quiet.wav", tone(440, 1.0, amp=0.001), SR)
    r = run_cli("evaluate", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["windows"] == 4 and out["quiet_windows"] == 1 and out["files"] == 3
    assert {"macro", "micro", "weighted"} <= set(out["table"])
    r = run_cli("evaluate", str(tmp_path))
    assert "precision" in r.stdout and "below -45 dBFS" in r.stdout
    png = tmp_path / "cm.png"
    r = run_cli("evaluate", str(tmp_path), "--json", "--noise", "pink", "--snr", "0", "--confusion", str(png))
    noisy = json.loads(r.stdout)
    # evaluate decides as analyze does by default: on the mean of the windows of the last 2 s
    assert noisy["condition"] == "pink noise at 0 dB SNR (seed 0), decided over 2 windows" and noisy["windows"] == 4
    assert sum(map(sum, noisy["confusion"]["counts"])) == 4
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = run_cli("evaluate", str(tmp_path), "--snr", "3")
    assert r.returncode == 1 and "--noise" in r.stderr


def test_env_model_lookup(clip, tmp_path):
    r = run_cli("analyze", str(clip), env={"NEUROEAR_MODEL": str(tmp_path / "nothing.onnx")})
    assert r.returncode == 1 and "NEUROEAR_MODEL" in r.stderr


@pytest.mark.parametrize("name, why", [("out.txt", "must end in"), ("no/such/folder/out.png", "does not exist")])
def test_bad_plot_path_is_one_line_before_any_work(clip, tmp_path, name, why):
    target = tmp_path / name
    r = run_cli("analyze", str(clip), "--plot", str(target), "--format", "jsonl")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [x for x in r.stderr.splitlines() if x.startswith("neuroear: error:")] == [x for x in r.stderr.splitlines() if why in x]
    assert not target.parent.exists() or not target.exists()
    assert not (tmp_path / "no").exists()  # no folder created behind the user's back


def test_plot_that_cannot_be_written_keeps_the_rows(clip, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    target = d / "out.png"
    target.mkdir()  # a folder where the picture should go: found before the work
    r = run_cli("analyze", str(clip), "--plot", str(target), "--format", "jsonl")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "is a folder" in r.stderr


def test_plot_write_failure_is_a_neuroear_error_and_creates_nothing(tmp_path, detector):
    from neuroear.analyze import analyze_file, plot
    from neuroear.errors import NeuroEarError

    f = tmp_path / "c.wav"
    sf.write(f, tone(440, 2.0), SR)
    rows = list(analyze_file(f, detector=detector))
    with pytest.raises(NeuroEarError, match="cannot write the plot"):
        plot(rows, detector.labels, tmp_path / "gone" / "x.png")
    assert not (tmp_path / "gone").exists()


# ---------------------------------------------------------------- options that agree (issue 16, item 7)


def test_stdin_dash_is_read_for_piping(clip):
    r = run_cli("analyze", "-", "--format", "jsonl", input=clip.read_bytes())
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(rows) == 4 and all(row["source"] == "-" for row in rows)


def test_file_named_with_a_dash_gets_a_hint(tmp_path):
    f = tmp_path / "-take1.wav"
    sf.write(f, tone(440, 1.0), SR)
    r = subprocess.run([sys.executable, "-m", "neuroear", "analyze", "-take1.wav"], capture_output=True, text=True, cwd=tmp_path,
                       env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "put -- before" in r.stderr and "Traceback" not in r.stderr


def test_hop_and_channel_options_agree(clip):
    r = run_cli("analyze", str(clip), "--hop", "0")
    assert r.returncode == 1 and "--hop must be more than 0" in r.stderr and "files failed" not in r.stderr
    r = run_cli("listen", "--channels", "0")
    assert r.returncode == 1 and "--channels must be a positive" in r.stderr
    for cmd in (["analyze", str(clip)], ["listen", "--input", str(clip)]):
        r = run_cli(*cmd, "--threshold", "piano=2")
        assert r.returncode == 1 and "value must be between 0 and 1" in r.stderr


@pytest.mark.parametrize("command", [["analyze", "x.wav"], ["evaluate", "data"], ["listen", "--no-dashboard", "--input", "x.wav"], ["serve"]])
def test_negative_threads_is_one_line_in_every_command(command, capsys):
    from neuroear.cli.main import main

    assert main([*command, "--threads", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["neuroear: error: --threads must be 0 (all cores) or more, got -1"], err


def test_one_devnull_helper_for_c_chatter_and_closed_pipes():
    """neuroear.devnull: fd 2 muted (Python's stderr kept or not) and restored; stdout pointed away for good."""
    code = (
        "import os, sys\n"
        "from neuroear import devnull\n"
        "with devnull.muted(keep_python=True):\n"
        "    os.write(2, b'C chatter\\n'); print('ours', file=sys.stderr)\n"
        "with devnull.muted():\n"
        "    os.write(2, b'C again\\n'); print('dropped', file=sys.stderr)\n"
        "os.write(2, b'after\\n')\n"
        "print('kept', flush=True)\n"
        "devnull.to_devnull(sys.stdout)\n"
        "print('gone', flush=True)\n"
        "assert devnull.to_devnull(__import__('io').StringIO()) is None\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "ours\nafter\n" and r.stdout == "kept\n", (r.stdout, r.stderr)


def test_evaluate_takes_threshold_like_the_others(tmp_path):
    (tmp_path / "violin").mkdir()
    sf.write(tmp_path / "violin" / "a.wav", tone(440, 2.0), SR)
    r = run_cli("evaluate", str(tmp_path), "--json", "--threshold", "0.5", "--threshold", "violin=0.3")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", str(tmp_path), "--threshold", "violin=2")
    assert r.returncode == 1 and "between 0 and 1" in r.stderr


@pytest.mark.parametrize("columns", [80, 200])
def test_table_never_cuts_names_or_wraps(clip, columns):
    r = run_cli("analyze", str(clip), "--format", "table", env={"COLUMNS": str(columns)})
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stdout.splitlines() if x]
    assert all(len(x) <= columns for x in lines), lines
    assert "violi " not in r.stdout and "saxop" not in r.stdout.replace("saxophone", "")
    if columns == 200:
        assert "saxophone" in lines[1]  # every label by its full name


def test_errors_point_pip_users_to_what_the_wheel_ships(tmp_path):
    """Issue 16 item 8: the no-device hint names `neuroear virtual-mic`, and a built wheel holds its script."""
    import shutil
    import subprocess
    import zipfile
    from pathlib import Path

    from neuroear.cli.live import virtual_mic_script
    from neuroear.live.choose import NO_DEVICE_HELP

    assert "stream/" not in NO_DEVICE_HELP and "`neuroear virtual-mic start`" in NO_DEVICE_HELP
    assert Path(virtual_mic_script()).read_bytes() == (ROOT / "stream" / "virtual-mic.sh").read_bytes()
    r = subprocess.run([sys.executable, "-m", "neuroear", "virtual-mic", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "start" in r.stdout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("neuroear", "models", "stream"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("neuroear-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("neuroear/live/virtual-mic.sh") == (ROOT / "stream" / "virtual-mic.sh").read_bytes()
