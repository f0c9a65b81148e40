"""Phone and video recordings (issue 16, item 1): .m4a/.aac/.mp4 made here with PyAV are decoded by
the FFmpeg fallback behind soundfile, in `analyze` (files and folders), `listen --input` and the
library decoder; a file no decoder can read is counted and named, never skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuroear import audio, framing
from neuroear.errors import NeuroEarError

from conftest import SR, has_module, run_cli, tone, write_av

pytestmark = pytest.mark.skipif(not has_module("av"), reason="needs PyAV (pip install av)")


@pytest.mark.parametrize("ext", ["m4a", "aac", "mp4"])
def test_compressed_containers_decode_to_the_tone(tmp_path, ext):
    f = write_av(tmp_path / f"phone.{ext}", tone(440, 3.0, sr=44100), 44100, channels=2)
    inf = audio.info(f)
    assert inf.sample_rate == 44100 and inf.channels == 2 and abs(inf.duration - 3.0) < 0.1
    y = audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert abs(len(y) / framing.SAMPLE_RATE - 3.0) < 0.1
    spec = np.abs(np.fft.rfft(y[4000:20000]))
    assert abs(np.argmax(spec) * framing.SAMPLE_RATE / 16000 - 440) < 3  # the pitch survives AAC and resampling
    # any block size gives the same samples (the FFmpeg path re-blocks decoder frames)
    with audio.AudioFile(f) as a:
        big = np.concatenate(list(a.blocks(100_000)))
    with audio.AudioFile(f) as a:
        small = np.concatenate(list(a.blocks(333)))
    np.testing.assert_array_equal(big, small)


def test_undecodable_file_names_both_decoders(tmp_path):
    f = tmp_path / "voice-memo.m4a"
    f.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"garbage" * 100)
    with pytest.raises(NeuroEarError) as e:
        audio.load(f, sample_rate=SR)
    msg = str(e.value)
    assert str(f) in msg and "libsndfile" in msg and "FFmpeg" in msg and "\n" not in msg


def test_analyze_folder_of_phone_recordings_counts_every_file(tmp_path):
    d = tmp_path / "rehearsal"
    d.mkdir()
    write_av(d / "take1.m4a", tone(440, 2.0))
    write_av(d / "take2.aac", tone(440, 2.0))
    write_av(d / "video.mp4", tone(440, 2.0))
    (d / "broken.m4a").write_bytes(b"not audio" * 50)
    (d / "notes.txt").write_text("setlist")
    r = run_cli("analyze", str(d), "--format", "jsonl")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    sources = {json.loads(x)["source"] for x in r.stdout.splitlines()}
    assert sources == {str(d / n) for n in ("take1.m4a", "take2.aac", "video.mp4")}
    assert "1 of 4 files failed" in r.stderr
    assert any("broken.m4a" in x for x in r.stderr.splitlines() if x.startswith("neuroear: error:"))
    assert "notes.txt" in r.stderr  # named, not skipped silently


def test_folder_of_only_m4a_is_not_empty(tmp_path):
    d = tmp_path / "phone"
    d.mkdir()
    write_av(d / "a.m4a", tone(440, 1.5))
    r = run_cli("analyze", str(d), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert "no audio files" not in r.stderr and len(r.stdout.splitlines()) == 2


def test_listen_input_reads_m4a(tmp_path):
    f = write_av(tmp_path / "take.m4a", tone(440, 3.0))
    r = run_cli("listen", "--input", str(f), "--jsonl", "--no-dashboard")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) >= 2 and all(set(x["probs"]) for x in lines)
