"""The live view: a pure function from a state snapshot to a Rich renderable.

``render(state, width=…)`` draws what ``neuroear listen`` shows on stderr; it holds no state
and does no I/O, so a test renders it on a recording console and reads the numbers back.
The caller redraws it with ``rich.live.Live(auto_refresh=False)`` a few times a second.
``summary(...)`` is the plain-text report printed when listening ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

SPARK = " ▁▂▃▄▅▆▇█"  # 0 … 1 in eighths (blank = no data)
BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"
HISTORY_SECONDS = 60.0  # s of probability history behind each sparkline
LEVEL_FLOOR_DBFS = -60.0  # dBFS at the left end of the level meter
NAME_WIDTH = 10
STAGES = ("total", "capture", "infer", "emit")  # latency stages, most telling first (a narrow line cuts the end)
EVENT_ROWS = 3  # rows of the events pane when the terminal has them to spare


@dataclass(frozen=True)
class LabelView:
    """One instrument's row: probability now, whether it is on, since when, the last minute."""

    name: str
    prob: float
    active: bool = False
    on_for: float | None = None  # s since onset (stream time) while active
    history: tuple[float, ...] = ()  # probabilities of the last minute, oldest first, one per hop
    threshold: float | None = None  # the probability at which it turns on (a mark on the bar)


@dataclass(frozen=True)
class EventView:
    """One onset or offset for the events pane, at wall-clock ``time`` ("HH:MM:SS", local)."""

    time: str
    label: str
    kind: str  # "onset" | "offset"


@dataclass(frozen=True)
class State:
    """Everything the dashboard shows; build one per redraw."""

    labels: tuple[LabelView, ...]
    source: str = ""
    rate: int = 0  # Hz at the source
    channels: int = 0
    model: str = ""
    provider: str = ""
    smooth: int = 1  # hops the decision averages over (the bars show what it decided on)
    level_dbfs: float = -120.0
    clipping: bool = False
    latency: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # stage → (p50, p95) ms
    hops: int = 0
    dropped: int = 0
    overflows: int = 0
    elapsed: float = 0.0  # s of stream time
    hop: float = 1.0  # s
    message: str = ""  # a warning line (e.g. no audio from the device)
    gated: bool = False  # input below the quiet gate: nothing is reported as sounding
    gate_dbfs: float | None = None
    title: str = "listening"
    events: tuple[EventView, ...] = ()  # oldest first; the pane shows the newest
    clipped: int = 0  # samples at full scale since the start
    peak_dbfs: float = -120.0  # held peak (highest sample of the last few seconds), dBFS


def _ms(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.1f}" if x < 9.95 else f"{x:.0f}"


def _clock(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h >= 1 else f"{int(m):02d}:{s:04.1f}"


def _since(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def bar(p: float, width: int, *, mark: float | None = None) -> str:
    """A horizontal bar of ``width`` cells for p in [0, 1], in eighths of a cell; ``mark`` (a
    threshold in [0, 1]) puts a "│" in its cell where the bar has not reached it."""
    if width <= 0:
        return ""
    p = min(1.0, max(0.0, float(p) if math.isfinite(p) else 0.0))
    eighths = int(round(p * width * 8))
    full, part = divmod(eighths, 8)
    s = ("█" * full + (BAR_EIGHTHS[part] if part and full < width else "")).ljust(width)
    if mark is not None and math.isfinite(mark):
        j = min(width - 1, max(0, int(mark * width)))
        if j >= full:
            s = s[:j] + "│" + s[j + 1:]
    return s


def sparkline(history: Sequence[float], width: int, *, points: int) -> str:
    """The last ``points`` values (p in [0, 1], oldest first) in ``width`` cells, newest at the right.

    Several values per cell show their maximum (a one-hop detection stays visible); cells
    before the history begins are blank.
    """
    if width <= 0 or points <= 0:
        return ""
    h = list(history)[-points:]
    slots = [float("nan")] * (points - len(h)) + [float(x) for x in h]
    cells = min(width, points)
    out = []
    for j in range(cells):
        a, b = (j * points) // cells, ((j + 1) * points) // cells
        vals = [v for v in slots[a:b] if math.isfinite(v)]
        out.append(" " if not vals else SPARK[1 + int(round(min(1.0, max(0.0, max(vals))) * 7))])
    return "".join(out).rjust(width)


def _layout(inner: int) -> tuple[int, int, int]:
    """(bar, sparkline, since) widths for a row of ``inner`` cells; sparkline and bar go first."""
    rest = inner - (NAME_WIDTH + 1 + 4)  # name, space, "0.84"
    since = 8 if rest >= 8 + 4 else 0
    rest -= since
    bar_w = max(0, min(12, rest - 1)) if rest >= 4 else 0
    rest -= bar_w + 1 if bar_w else 0
    spark = rest - 2 if rest >= 12 else 0
    return bar_w, spark, since


def _rows_that_fit(labels: Sequence[LabelView], room: int) -> tuple[list[LabelView], list[LabelView]]:
    """(rows shown in label order, rows left out) when only ``room`` rows fit: the active ones
    first, then the most probable; the rest are named on one line."""
    if len(labels) <= room:
        return list(labels), []
    keep_n = max(0, room - 1)  # one row names the rest
    rank = sorted(range(len(labels)), key=lambda i: (not labels[i].active, -(labels[i].prob if math.isfinite(labels[i].prob) else 0.0), i))
    keep = sorted(rank[:keep_n])
    shown = [labels[i] for i in keep]
    return shown, [lab for i, lab in enumerate(labels) if i not in keep]


def render(state: State, *, width: int = 80, height: int | None = None) -> RenderableType:
    """The dashboard for ``state`` in a terminal ``width`` columns wide and ``height`` rows high
    (fits 80×24; narrower drops columns; lower shows the active and most probable instruments and
    names the rest on one line, so an active one never vanishes)."""
    inner = max(10, width - 4)
    bar_w, spark_w, since_w = _layout(inner)
    points = max(1, int(round(HISTORY_SECONDS / max(state.hop, 1e-3))))
    lines: list[Text] = []

    def line(*parts: tuple[str, str] | str) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        for part in parts:
            if isinstance(part, tuple):
                t.append(part[0], style=part[1])
            else:
                t.append(part)
        return t

    rate = f"{state.rate / 1000:g} kHz" + (f" · {state.channels} ch" if state.channels else "")
    lines.append(line(("input ", "dim"), (state.source, "bold"), (" · " + rate, "")))

    clip_txt = f"  CLIPPING ×{state.clipped}" if state.clipping else f"  clipped {state.clipped}" if state.clipped else ""
    meter_w = max(0, min(30, inner - 24 - 9 - len(clip_txt)))
    lvl = state.level_dbfs if math.isfinite(state.level_dbfs) else -120.0
    frac = min(1.0, max(0.0, (lvl - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS))
    pk = state.peak_dbfs if math.isfinite(state.peak_dbfs) else -120.0
    pk_frac = min(1.0, max(0.0, (pk - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS))
    colour = "red" if lvl > -3 else "yellow" if lvl > -12 else "green"
    lines.append(
        line(
            ("level ", "dim"),
            (bar(frac, meter_w, mark=pk_frac if pk > LEVEL_FLOOR_DBFS else None), colour),
            (f" {lvl:6.1f} dBFS", "bold" if lvl > LEVEL_FLOOR_DBFS else "dim"),
            (" pk ", "dim"), (f"{pk:5.1f}" if pk > -100 else "  –  ", "bold red" if pk > -0.1 else ""),
            (clip_txt, "bold white on red" if state.clipping else "red"),
        )
    )

    head = [("instrument".ljust(NAME_WIDTH) + " ", "dim")]
    if bar_w:
        head.append(("prob".ljust(bar_w) + " ", "dim"))
    head.append(("    ", "dim"))
    if spark_w:
        head.append(("  " + "last minute".ljust(spark_w), "dim"))
    if since_w:
        head.append((" " + "on for".rjust(since_w - 1), "dim"))
    lines.append(line(*head))

    fixed = 2 + 6  # panel borders; input, level, header, latency, counters, message
    room = len(state.labels) if height is None else max(1, height - fixed)
    shown, rest = _rows_that_fit(state.labels, room)
    for lab in shown:
        on = lab.active
        parts: list[tuple[str, str] | str] = [(lab.name[:NAME_WIDTH].ljust(NAME_WIDTH), "bold black on green" if on else ""), " "]
        if bar_w:
            parts += [(bar(lab.prob, bar_w, mark=lab.threshold), "green" if on else "blue"), " "]
        parts.append((f"{lab.prob:4.2f}" if math.isfinite(lab.prob) else "  – ", "bold green" if on else ""))
        if spark_w:
            parts += ["  ", (sparkline(lab.history, spark_w, points=points), "green" if on else "cyan")]
        if since_w:
            parts.append((" " + (_since(lab.on_for) if on else "").rjust(since_w - 1), "green"))
        lines.append(line(*parts))
    if rest:
        lines.append(line((f"+{len(rest)} below: ", "dim"), (" ".join(lab.name for lab in rest), "dim")))
    spare = EVENT_ROWS if height is None else max(0, room - len(shown) - (1 if rest else 0))
    pane = _event_lines(state.events, min(EVENT_ROWS, spare))
    for text in pane:
        lines.append(line(*text))

    lat = [f"{k} {_ms(state.latency[k][0])}/{_ms(state.latency[k][1])}" for k in STAGES if k in state.latency]
    lines.append(line(("latency p50/p95 ms ", "dim"), "  ".join(lat)))
    lines.append(
        line(
            ("hops ", "dim"), f"{state.hops}",
            ("  dropped ", "dim"), (f"{state.dropped}", "bold red" if state.dropped else ""),
            ("  overflows ", "dim"), (f"{state.overflows}", "bold red" if state.overflows else ""),
            ("  elapsed ", "dim"), _clock(state.elapsed),
            ("  hop ", "dim"), f"{state.hop:g} s",
        )
    )
    message = state.message
    if not message and state.gated and state.gate_dbfs is not None:
        message = f"TOO QUIET: input under {state.gate_dbfs:g} dBFS, nothing reported (--gate)"
    if message or pane or not state.events:
        lines.append(line((message, "bold yellow")))  # always there (maybe blank): constant height
    else:  # no room for the events pane: the newest events share the notice row
        lines.append(line(("events ", "dim"), " · ".join(f"{e.time} {e.label} {'on' if e.kind == 'onset' else 'off'}"
                                                          for e in reversed(state.events[-4:]))))
    model = f"model {state.model} · {state.provider}" if state.provider else f"model {state.model}"
    if state.smooth > 1:
        model += f" · mean of {state.smooth} hops"
    return Panel(
        Group(*lines), title=f"Neuro-Ear · {state.title}", title_align="left",
        subtitle=model, subtitle_align="right", width=width, padding=(0, 1),
    )


def _event_lines(events: Sequence[EventView], rows: int) -> list[tuple[tuple[str, str], ...]]:
    """The events pane: a header and up to ``rows - 1`` newest events, one per row (newest first)."""
    if rows < 2:
        return []
    out: list[tuple[tuple[str, str], ...]] = [(("events (wall clock)", "dim"),)]
    for e in list(reversed(events))[: rows - 1]:
        on = e.kind == "onset"
        out.append(((f"  {e.time} ", ""), ("on " if on else "off", "bold green" if on else "dim"), (f" {e.label}", "bold" if on else "")))
    if len(out) == 1:
        out.append((("  none yet", "dim"),))
    return out


def summary(
    *,
    stream_seconds: float,
    wall_seconds: float,
    hops: int,
    dropped: int,
    overflows: int,
    hop: float,
    detections: Mapping[str, int],
    onsets: Mapping[str, int],
    latency: Mapping[str, tuple[float, float, float]],
    source: str = "",
    stopped_by: str = "",
    clipped: int = 0,
    peak_dbfs: float | None = None,
    recorded: str = "",
    smooth: int = 1,
) -> str:
    """Plain-text end-of-run report (fits one screen).

    ``detections``: label → hops active; ``onsets``: label → onsets; ``latency``: stage →
    (p50, p95, max) ms; ``clipped`` samples at full scale, ``peak_dbfs`` the loudest sample;
    ``recorded`` a line about the ``--record`` file; ``smooth`` the hops each decision averaged.
    """
    why = {"signal": "stopped", "duration": "duration reached", "end": "end of input", "pipe": "output closed"}.get(stopped_by, stopped_by)
    out = [
        f"neuroear listen: {source} · {why}" if source else f"neuroear listen: {why}",
        f"  duration  {stream_seconds:.2f} s of audio in {wall_seconds:.2f} s",
        f"  hops      {hops} processed, {dropped} dropped, {overflows} input overflows (hop {hop:g} s"
        + (f", decided on the mean of {smooth} hops)" if smooth > 1 else ")"),
    ]
    if peak_dbfs is not None:
        out.append(f"  input     peak {peak_dbfs:.1f} dBFS, {clipped} samples clipped" if peak_dbfs > -120 else "  input     silence")
    if recorded:
        out.append(f"  recorded  {recorded}")
    det = [(lab, n) for lab, n in detections.items() if n]
    if det:
        out.append("  detected  (hops active ≈ seconds, onsets)")
        for lab, n in sorted(det, key=lambda kv: -kv[1]):
            out.append(f"    {lab:<{NAME_WIDTH}} {n:6d} hops ≈ {n * hop:8.1f} s  {onsets.get(lab, 0):4d} onsets")
    else:
        out.append("  detected  nothing")
    if latency:
        out.append("  latency   p50 / p95 / max ms")
        for k in STAGES:
            if k in latency:
                p50, p95, mx = latency[k]
                out.append(f"    {k:<8} {_ms(p50):>6} / {_ms(p95):>6} / {_ms(mx):>6}")
    return "\n".join(out)


# ----------------------------------------------------------------------------- drawing


class PinnedView:
    """Keeps a renderable drawn on the top rows of a terminal while other output scrolls below it.

    Used instead of ``rich.live.Live`` because ``neuroear listen | jq …`` shares the terminal with
    another process: Live redraws relative to where it last drew, so every foreign line corrupts
    it. Here the rows under the dashboard are a terminal scrolling region (DECSTBM): jq's lines,
    warnings and ``--jsonl`` output scroll there, and each redraw is one write that saves the
    cursor, paints the top rows and restores it. Same interface as Live: ``update(r, refresh=True)``.
    """

    MIN_SCROLL_ROWS = 3  # rows kept for other output under the dashboard

    def __init__(self, console) -> None:
        self.console = console
        self._top = 0  # rows pinned
        self._rows = 0
        self._cols = 0

    def __enter__(self) -> "PinnedView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, s: str) -> None:
        try:
            self.console.file.write(s)
            self.console.file.flush()
        except (OSError, ValueError):
            pass

    def update(self, renderable: RenderableType, *, refresh: bool = True) -> None:
        """Draw ``renderable`` (``refresh`` is accepted for Live compatibility; drawing is immediate)."""
        cols, rows = self.console.size
        with self.console.capture() as cap:
            self.console.print(renderable, crop=True)
        lines = cap.get().rstrip("\n").split("\n")
        top = max(1, min(len(lines), rows - self.MIN_SCROLL_ROWS))
        lines = lines[:top]
        out = []
        if not self._top:  # first draw: push the screen's content into scrollback, pin the top rows
            out.append("\n" * max(0, rows - 1))
        if (top, rows, cols) != (self._top, self._rows, self._cols):
            out.append(f"\x1b[{top + 1};{rows}r\x1b[{rows};1H")  # scrolling region under the dashboard
            self._top, self._rows, self._cols = top, rows, cols
        out.append("\x1b7")  # save cursor (where other output continues)
        for i, text in enumerate(lines):
            out.append(f"\x1b[{i + 1};1H\x1b[2K{text}\x1b[0m")
        out.append("\x1b8")
        self._write("".join(out))

    def close(self) -> None:
        """Give the whole screen back (the last dashboard stays visible) and move below it."""
        if self._top:
            self._write(f"\x1b[r\x1b[{self._rows};1H\n")
            self._top = 0
