"""The dashboard shows the numbers it is given, fits 80×24, degrades when narrow; and, drawn by
`listen` in a real terminal (tmux), stays pinned while piped output scrolls under it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from neuroear.live.dashboard import PinnedView, LabelView, State, bar, render, sparkline, summary

from test_live import ROOT, cli, env, signal_at

LABELS = ("accordion", "cello", "clarinet", "flute", "guitar", "organ", "piano", "saxophone", "trumpet", "violin", "voice")


def make_state(**kw) -> State:
    probs = dict(zip(LABELS, np.linspace(0.03, 0.93, len(LABELS)).round(2)))
    probs["violin"] = 0.84
    views = tuple(
        LabelView(
            name=lab, prob=float(p), active=lab == "violin", on_for=12.34 if lab == "violin" else None,
            history=tuple(np.linspace(0, float(p), 60)),
        )
        for lab, p in probs.items()
    )
    base = dict(
        labels=views, source="USB Audio Device", rate=48000, channels=2, model="neuroear-v2",
        provider="CPUExecutionProvider", level_dbfs=-23.4, clipping=False,
        latency={"capture": (3.2, 5.1), "infer": (8.4, 12.6), "emit": (0.2, 0.4), "total": (12.0, 19.0)},
        hops=123, dropped=4, overflows=2, elapsed=125.5, hop=1.0,
    )
    base.update(kw)
    return State(**base)


def text_of(state: State, width: int) -> str:
    con = Console(record=True, width=width, color_system=None, file=io.StringIO())
    con.print(render(state, width=width))
    return con.export_text()


def test_shows_the_numbers_it_is_given_and_fits_80x24():
    text = text_of(make_state(), 80)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
    for needle in ("USB Audio Device", "48 kHz", "2 ch", "neuroear-v2", "CPUExecutionProvider", "-23.4 dBFS",
                   "capture 3.2/5.1", "infer 8.4/13", "emit 0.2/0.4", "total 12/19",
                   "hops 123", "dropped 4", "overflows 2", "elapsed 02:05.5", "12.3 s"):
        assert needle in text, needle
    violin = next(line for line in lines if "violin" in line)
    assert "0.84" in violin and "12.3 s" in violin and "▁" in violin and "█" in violin
    assert "CLIPPING" not in text
    for lab in LABELS:
        assert lab in text


def test_clipping_and_messages_are_shown():
    text = text_of(make_state(clipping=True, level_dbfs=-0.1, message="no audio from the device for 3 s"), 80)
    assert "CLIPPING" in text and "-0.1 dBFS" in text and "no audio from the device" in text


def test_active_label_is_highlighted():
    con = Console(record=True, width=80, color_system="truecolor", file=io.StringIO())
    con.print(render(make_state(), width=80))
    html = con.export_html(inline_styles=True)
    violin_row = next(seg for seg in html.split("\n") if "violin" in seg)
    piano_row = next(seg for seg in html.split("\n") if "piano" in seg)
    assert "background-color" in violin_row and "background-color" not in piano_row


@pytest.mark.parametrize("width", [60, 40, 30])
def test_degrades_gracefully_when_narrow(width):
    text = text_of(make_state(), width)
    lines = text.rstrip("\n").split("\n")
    assert max(len(line) for line in lines) <= width
    assert len(lines) == len(text_of(make_state(), 80).rstrip("\n").split("\n"))  # no wrapping
    for lab in LABELS:
        assert any(line.startswith(f"│ {lab}") for line in lines), lab
    assert "0.84" in next(line for line in lines if "violin" in line)


def test_bar_and_sparkline_known_answers():
    assert bar(0.5, 4) == "██  "
    assert bar(1.0, 3) == "███" and bar(0.0, 3) == "   " and bar(float("nan"), 2) == "  "
    assert bar(1 / 16, 2) == "▏ "
    assert sparkline([0.0, 1.0], 2, points=2) == "▁█"
    assert sparkline([1.0], 4, points=4) == "   █"  # history so far sits at the right
    assert sparkline([0.0, 0.0, 1.0, 0.0], 2, points=4) == "▁█"  # a cell shows its maximum


def test_summary_lists_detections_drops_and_latency():
    text = summary(stream_seconds=61.0, wall_seconds=61.2, hops=61, dropped=1, overflows=0, hop=1.0,
                   detections={"violin": 20, "piano": 0}, onsets={"violin": 2},
                   latency={"total": (30.0, 45.0, 80.0)}, source="default", stopped_by="signal")
    assert "61.00 s of audio" in text and "61 processed, 1 dropped" in text
    assert "violin" in text and "piano" not in text and "2 onsets" in text
    assert "30 /     45 /     80" in text
    assert len(text.splitlines()) <= 24
    assert "mean of" not in text  # smooth 1: each hop decided alone
    smoothed = summary(stream_seconds=61.0, wall_seconds=61.2, hops=61, dropped=1, overflows=0, hop=0.5,
                       detections={}, onsets={}, latency={}, smooth=3)
    assert "(hop 0.5 s, decided on the mean of 3 hops)" in smoothed


def test_subtitle_names_the_averaging_when_the_decision_smooths():
    assert "mean of" not in text_of(make_state(), 100)
    assert "mean of 3 hops" in text_of(make_state(smooth=3), 100)


def test_pinned_view_keeps_the_dashboard_on_top_rows():
    buf = io.StringIO()
    con = Console(file=buf, width=80, height=24, force_terminal=True, color_system="standard")
    with PinnedView(con) as view:
        view.update(render(make_state(), width=80))
        view.update(render(make_state(hops=124), width=80))
    out = buf.getvalue()
    height = len(text_of(make_state(), 80).rstrip("\n").split("\n"))
    assert f"\x1b[{height + 1};24r" in out  # scrolling region under the dashboard
    assert out.count("\x1b7") == 2 and out.count("\x1b8") == 2  # cursor saved/restored each redraw
    assert "hops 124" in re.sub(r"\x1b\[[0-9;]*m", "", out) and out.endswith("\x1b[r\x1b[24;1H\n")  # whole screen given back


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_listen_dashboard_in_a_real_terminal_with_output_piped(tmp_path):
    clip = tmp_path / "clip.wav"
    sf.write(clip, signal_at(16000, 4.0), 16000)
    out = tmp_path / "piped.txt"
    session = f"neuroear-test-{time.monotonic_ns()}"
    cmd = " ".join(f"'{c}'" for c in cli("listen", "--input", str(clip), "--realtime", "--hop", "0.5"))
    envs = " ".join(f"{k}='{v}'" for k, v in env().items() if k == "PYTHONPATH")
    script = f"cd '{ROOT}' && env {envs} {cmd} | tee '{out}'; sleep 60"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", script], check=True, timeout=10)
    def capture(*extra: str) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", *extra, "-t", session], capture_output=True, text=True, timeout=10).stdout

    try:
        deadline = time.monotonic() + 30
        during = final = ""
        while time.monotonic() < deadline:
            time.sleep(0.3)
            screen = capture()
            if not during and "hops 3" in screen:
                during = screen  # mid-run: the whole dashboard, with piped lines scrolling under it
            if "end of input" in screen:
                final = capture("-S", "-200")
                break
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
    assert during, final
    lines = during.split("\n")
    assert lines[0].startswith("╭─ Neuro-Ear · listening") and "CPUExecutionProvider" in during
    assert all(f"│ {lab}" in during for lab in LABELS)
    # tee's copy scrolls below; the terminal wraps it wherever the line's length puts the edge
    assert "dropped 0" in during and '"provider": "CPUExecutionProvider"}' in during.replace("\n", "")
    assert "hops 7" in final and "end of input" in final, final
    rows = out.read_text().splitlines()
    assert len(rows) == 7 and all(r.startswith('{"source"') for r in rows)  # the pipe got every line


# ---------------------------------------------------------------- a stage tool (issue 16, item 5)


def test_active_rows_never_vanish_at_60x15():
    views = tuple(
        LabelView(name=lab, prob=0.9 if lab in ("violin", "voice") else 0.05, active=lab in ("violin", "voice"), threshold=0.5)
        for lab in LABELS
    )
    txt = text_of_at(make_state(labels=views), 60, 15)
    rows = txt.rstrip("\n").split("\n")
    assert len(rows) <= 15 and max(len(r) for r in rows) <= 60
    assert "violin" in txt and "voice" in txt  # below saxophone, active: shown
    assert re.search(r"\+5 below: guitar organ", txt)  # the rest are named, not dropped silently


def test_bar_is_the_smoothed_value_with_a_threshold_mark():
    assert bar(0.25, 8, mark=0.5) == "██  │   "
    assert bar(0.75, 8, mark=0.5) == "██████  "  # reached: the bar covers the mark


def test_quiet_gate_is_shown():
    txt = text_of_at(make_state(gated=True, gate_dbfs=-60.0, level_dbfs=-78.0), 60, 15)
    assert "TOO QUIET" in txt


def test_session_bars_follow_the_policy_not_the_raw_probabilities(tmp_path):
    from types import SimpleNamespace

    from neuroear.infer import Detector
    from neuroear.live.policy import Policy, PolicyConfig
    from neuroear.live.session import Session
    from neuroear.live.sources import FileSource
    from neuroear.live.streamer import Window

    det = Detector()
    f = tmp_path / "a.wav"
    sf.write(f, (0.3 * np.sin(np.arange(32000) / 3)).astype(np.float32), 16000)
    s = Session(detector=det, source=FileSource(f), policy=Policy(PolicyConfig.build(det.labels, det.thresholds, smooth=2)), hop=1.0)
    w = Window(0, 0, 16000, (0.1 * np.ones(16000)).astype(np.float32), 0.0, 0.0)
    n = len(det.labels)
    s.on_hop(w, np.zeros(n, np.float32), None)
    s.on_hop(w, np.ones(n, np.float32), None)
    st = s.state(SimpleNamespace(stream_seconds=2.0, silent_for=0.0, source="a", rate=16000, channels=1, level_dbfs=-20.0,
                                 clipping=False, recent=lambda k: (0.0, 0.0), hops=2, dropped=0, overflows=0), title="t")
    assert all(abs(v.prob - 0.5) < 1e-6 for v in st.labels)  # the mean of 0 and 1, what "on" is decided from
    assert all(v.threshold is not None for v in st.labels)


def test_listen_reports_nothing_below_the_quiet_gate(tmp_path):
    from conftest import run_cli

    f = tmp_path / "hiss.wav"
    x = (10 ** (-78 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    sf.write(f, x, 16000, subtype="FLOAT")
    args = ["listen", "--input", str(f), "--jsonl", "--no-dashboard"] + sum((["--threshold", f"{lab}=0.001"] for lab in LABELS), [])
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    import json

    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert rows and all(row["active"] == [] for row in rows)
    r = run_cli(*args, "--gate", "-120")
    assert any(json.loads(x)["active"] for x in r.stdout.splitlines())  # the gate, not the model, kept them off


def text_of_at(state: State, width: int, height: int) -> str:
    con = Console(record=True, width=width, height=height, color_system=None, file=io.StringIO())
    con.print(render(state, width=width, height=height))
    return con.export_text()
