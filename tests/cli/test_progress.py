"""`analyze` progress on a terminal (issue 16, item 4): a Rich bar on a pseudo-terminal's stderr
(files, audio time, × real time, ETA), nothing on a pipe or with --quiet, and one summary line
instead of one warning per file."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import soundfile as sf

from conftest import ROOT, SR, run_cli, tone


def _analyze_on_pty(*args: str, tmp_path) -> tuple[int, str, str]:
    """Run `neuroear analyze ARGS` with stderr on a 100×15 pseudo-terminal, stdout to a file."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 15, 100, 0, 0))
    out = tmp_path / "stdout.txt"
    with open(out, "wb") as f:
        p = subprocess.Popen([sys.executable, "-m", "neuroear", "analyze", *args], stdout=f, stderr=slave,
                             stdin=subprocess.DEVNULL, cwd=ROOT)
        os.close(slave)
        buf = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            buf += chunk
        rc = p.wait(timeout=120)
    os.close(master)
    return rc, buf.decode(errors="replace"), out.read_text()


def _folder(tmp_path, n: int = 3, seconds: float = 20.0):
    d = tmp_path / "takes"
    d.mkdir()
    for i in range(n):
        sf.write(d / f"take{i}.wav", tone(440, seconds), SR)
    return d


def test_progress_bar_on_a_terminal(tmp_path):
    d = _folder(tmp_path)
    rc, err, out = _analyze_on_pty(str(d), "--format", "jsonl", tmp_path=tmp_path)
    assert rc == 0, err
    assert len(out.splitlines()) == 3 * 20  # rows untouched on stdout
    assert "/3 files" in err and "real time" in err and "/1:00" in err  # files, audio time of the set, speed
    assert "━" in err  # the bar itself
    assert "of 0.3 min" not in err and "Traceback" not in err


def test_no_progress_on_a_pipe_or_with_quiet(tmp_path):
    d = _folder(tmp_path, n=2)
    r = run_cli("analyze", str(d), "--format", "jsonl")
    assert r.returncode == 0 and "real time" not in r.stderr and "━" not in r.stderr
    rc, err, out = _analyze_on_pty(str(d), "--format", "jsonl", "--quiet", tmp_path=tmp_path)
    assert rc == 0 and "real time" not in err and "model" not in err and len(out.splitlines()) == 40


def test_one_summary_line_instead_of_a_warning_per_file(tmp_path):
    d = tmp_path / "shorts"
    d.mkdir()
    for i in range(40):
        sf.write(d / f"s{i:02d}.wav", tone(440, 0.5), SR)
    r = run_cli("analyze", str(d), "--format", "jsonl")
    assert r.returncode == 0
    warns = [x for x in r.stderr.splitlines() if x.startswith("neuroear: warning:")]
    assert len(warns) == 2, warns
    assert "shorter than" in warns[0] and "39 more" in warns[1] and "shorter than" in warns[1]
