"""The stage tools of `listen` (issue 16 item 5): the events pane with wall-clock times, clipping
count and peak hold, a note when a starved device delivers again, and `--record` keeping the
input as received beside the JSON lines."""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from neuroear.live.dashboard import EventView, render

from test_dashboard import LABELS, make_state
from test_live import signal_at


def text_at(state, width: int, height: int | None = None) -> str:
    con = Console(record=True, width=width, height=height or 50, color_system=None, file=io.StringIO())
    con.print(render(state, width=width, height=height))
    return con.export_text()


EVENTS = (EventView("21:59:58", "piano", "onset"), EventView("22:00:03", "piano", "offset"), EventView("22:00:04", "violin", "onset"))


def test_events_pane_lists_wall_clock_onsets_and_offsets_newest_first():
    txt = text_at(make_state(events=EVENTS), 80, 24)
    rows = txt.rstrip("\n").split("\n")
    assert len(rows) <= 24 and max(len(r) for r in rows) <= 80
    assert "events (wall clock)" in txt
    hits = [r for r in rows if re.search(r"\d\d:\d\d:\d\d (on |off)", r)]
    assert [re.search(r"(\d\d:\d\d:\d\d) (on |off) (\w+)", r).groups() for r in hits] == [
        ("22:00:04", "on ", "violin"), ("22:00:03", "off", "piano")]  # the newest, as many as fit
    for lab in LABELS:
        assert lab in txt


def test_events_share_the_notice_row_at_60x15_without_hiding_active_rows():
    from neuroear.live.dashboard import LabelView

    views = tuple(LabelView(name=lab, prob=0.9 if lab in ("violin", "voice") else 0.05, active=lab in ("violin", "voice"),
                            threshold=0.5) for lab in LABELS)
    txt = text_at(make_state(labels=views, events=EVENTS), 60, 15)
    rows = txt.rstrip("\n").split("\n")
    assert len(rows) <= 15 and max(len(r) for r in rows) <= 60
    assert "violin" in txt and "voice" in txt and re.search(r"\+5 below", txt)
    assert "events 22:00:04 violin on · 22:00:03 piano off" in txt
    warned = text_at(make_state(labels=views, events=EVENTS, message="no audio from the device for 3 s"), 60, 15)
    assert "no audio from the device" in warned  # a warning wins the row


def test_clipping_count_and_peak_hold_are_shown():
    txt = text_at(make_state(clipping=True, clipped=37, level_dbfs=-6.0, peak_dbfs=-0.0), 80)
    assert "CLIPPING ×37" in txt and "pk   0.0" in txt.replace("-0.0", " 0.0")
    txt = text_at(make_state(clipped=37, peak_dbfs=-4.2), 60, 15)
    level = next(r for r in txt.splitlines() if "level" in r)
    assert "clipped 37" in level and "pk  -4.2" in level and "│" in level  # the peak's mark on the meter
    assert len(level) <= 60


def test_listen_record_keeps_the_input_as_received(tmp_path):
    """A 2-channel 44.1 kHz file in odd blocks: the recording is the input, sample for sample."""
    from conftest import run_cli

    rng = np.random.default_rng(0)
    x = (0.5 * rng.uniform(-1, 1, (int(44100 * 3.3), 2))).astype(np.float32)
    x[1000:1010] = 1.0  # 20 samples at full scale
    src = tmp_path / "in.wav"
    sf.write(src, x, 44100, subtype="FLOAT")
    for name in ("take.flac", "take.wav"):
        take = tmp_path / name
        r = run_cli("listen", "--input", str(src), "--record", str(take), "--no-dashboard", "--block", "777", "--hop", "0.5")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(rows) == 6 and rows[-1]["end"] == pytest.approx(3.3, abs=1e-3)
        y, rate = sf.read(take, dtype="float32", always_2d=True)
        assert rate == 44100 and y.shape == x.shape
        assert np.abs(y - x).max() <= (0.0 if name.endswith(".wav") else 2 ** -23)
        assert f"recorded  {take}" in r.stderr and "20 samples clipped" in r.stderr, r.stderr


@pytest.mark.parametrize("bad, says", [("take.mp3", ".flac, .wav or .ogg"), ("nowhere/take.flac", "does not exist")])
def test_listen_record_bad_path_is_one_line(tmp_path, bad, says):
    from conftest import run_cli

    src = tmp_path / "in.wav"
    sf.write(src, signal_at(16000, 1.0), 16000)
    r = run_cli("listen", "--input", str(src), "--record", str(tmp_path / bad), "--no-dashboard")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr
    assert r.stdout == ""


def test_recorder_writes_lost_frames_as_silence(tmp_path):
    from neuroear.live.record import Recorder
    from neuroear.live.sources import Block

    rec = Recorder(tmp_path / "t.wav")
    a, b = np.full((100, 1), 0.5, np.float32), np.full((50, 1), -0.25, np.float32)
    rec.write([Block(a, 0.0), Block(b, 0.0, lost_frames=30)], rate=8000, channels=1)
    rec.close()
    y, rate = sf.read(tmp_path / "t.wav", dtype="float32")
    assert rate == 8000 and rec.frames == 180
    np.testing.assert_array_equal(y, np.concatenate([a[:, 0], np.zeros(30, np.float32), b[:, 0]]))


class StarvingDevice:
    """A live source that delivers 1 s, nothing for 2.6 s (as a muted or starved device), then 1 s."""

    name, rate, channels, live, overflows, missing, latency = "fake mic", 16000, 1, True, 0, False, 0.0

    def __init__(self) -> None:
        self._plan = [("audio", 1.0), ("gap", 2.6), ("audio", 1.0)]
        self._t = None

    def start(self) -> None:
        self._t = time.monotonic()

    def read(self, timeout: float):
        from neuroear.live.sources import Block

        el = time.monotonic() - self._t
        for kind, d in self._plan:
            if el < d:
                time.sleep(min(timeout, 0.05))
                if kind == "gap":
                    return []
                return [Block(0.1 * np.ones((800, 1), np.float32), time.monotonic())]
            el -= d
        return None

    def stop(self) -> bool:
        return True


def test_a_starved_device_that_delivers_again_gets_a_note():
    from neuroear.infer import Detector
    from neuroear.live.session import Session, make_policy

    det = Detector(threads=1)
    s = Session(detector=det, source=StarvingDevice(), policy=make_policy(det), hop=0.5)
    assert s.is_device
    notes: list[str] = []
    s.run(on_tick=lambda st: notes.extend(s.watch(st)), tick_seconds=0.05)
    assert len(notes) == 1, notes
    m = re.fullmatch(r"audio from 'fake mic' is back after (\d+\.\d) s without any", notes[0])
    assert m and 2.0 < float(m.group(1)) < 3.5, notes


def test_session_events_carry_wall_clock_times(tmp_path):
    from neuroear.infer import Detector
    from neuroear.live.session import Session, make_policy
    from neuroear.live.sources import FileSource

    det = Detector(threads=1)
    f = tmp_path / "a.wav"
    sf.write(f, signal_at(16000, 3.0), 16000)
    thr = {lab: (0.0 if lab == det.labels[0] else 1.0) for lab in det.labels}
    s = Session(detector=det, source=FileSource(f), policy=make_policy(det, thresholds=thr), hop=1.0)
    t0 = time.time()
    stats = s.run()
    s.finish()
    st = s.state(stats)
    assert [(e.label, e.kind) for e in st.events] == [(det.labels[0], "onset"), (det.labels[0], "offset")]
    assert st.events[0].time == time.strftime("%H:%M:%S", time.localtime(s.event_log[0][0]))
    assert abs(s.event_log[0][0] - t0) < 2 and s.event_log[1][0] - s.event_log[0][0] == pytest.approx(3.0, abs=0.01)
