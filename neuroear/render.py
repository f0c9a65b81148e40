"""Rendered training audio: real scores → notes → sampled instruments → labelled mono clips.

Data flow
    music21 corpus (ABC folk tunes, Bach chorales) → `load_phrases` (parsed once, cached as JSON)
    → per clip: one instrument program, styles (melody, chorale, block chords, arpeggios, strums,
      power chords, oom-pah), tempo, articulation, dynamics and controllers → timed notes (s)
    → synthesis: FluidSynth (pyfluidsynth, offline, float output) for the SoundFont families,
      TiMidity++ for ``freepats`` (GUS ``.pat`` patches, which FluidSynth cannot read)
    → soxr to ``sample_rate`` → random peak level → FLAC (PCM_16) + one manifest line per clip.

Each clip holds ONE instrument: mixtures are made at training time by summing clips.

Families are timbre families, so that a model can be validated on a font it never heard:
``fluid`` (FluidR3 + MuseScore General), ``timgm`` (TimGM6mb + csound's sf_GMbank) and
``freepats`` (the freepats GUS set through TiMidity++, only the programs its config lists:
Debian's ``timidity.cfg`` is always read first and would silently fill the gaps, e.g. choir
program 52 and reed organ 20, from FluidR3, i.e. from another family).

Speed (2-core VM, one core, 44.1 kHz synthesis + soxr to 16 kHz + FLAC): about 140× real time
for ``timgm``, 100× for ``fluid`` (plus ~10 s to load its two fonts once), 105× for ``freepats``;
parsing 200 corpus pieces the first time takes ~30 s, then they come from the cache.

The manifest's ``notes`` are the union of the intervals in which the instrument is sounding
(note-on to note-off, extended while the sustain pedal holds; release and reverb tails
excluded), in seconds from the start of the clip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuroear.errors import NeuroEarError

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = (
    "accordion", "cello", "clarinet", "flute", "guitar", "organ",
    "piano", "saxophone", "trumpet", "violin", "voice",
)  # fmt: skip

# General MIDI programs (0-based) per label. Guitar includes overdrive (29) and distortion (30):
# the real dev set's guitar is mostly distorted electric.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "accordion": (21, 23),
    "cello": (42,),
    "clarinet": (71,),
    "flute": (73,),
    "guitar": (24, 25, 26, 27, 29, 30),
    "organ": (19, 20, 16),
    "piano": (0, 1, 2),
    "saxophone": (64, 65, 66, 67),
    "trumpet": (56, 59),
    "violin": (40,),
    "voice": (52, 53),
}

# Playable MIDI pitch range (lowest, highest) per label; phrases are transposed inside it.
RANGES: dict[str, tuple[int, int]] = {
    "accordion": (41, 89),  # F2–F6: left-hand basses to the right-hand top
    "cello": (36, 76),  # C2–E5
    "clarinet": (50, 89),  # D3–F6 (written E3 on a B♭ clarinet)
    "flute": (60, 93),  # C4–A6
    "guitar": (40, 84),  # E2–C6
    "organ": (36, 96),  # C2–C7 (manuals)
    "piano": (24, 103),  # C1–G7, the part of the keyboard music uses most
    "saxophone": (36, 87),  # baritone low A♭ to soprano high E♭; see _PROGRAM_RANGES
    "trumpet": (54, 84),  # F♯3–C6
    "violin": (55, 96),  # G3–C7
    "voice": (43, 79),  # G2–G5: bass to soprano
}
_PROGRAM_RANGES: dict[int, tuple[int, int]] = {64: (56, 87), 65: (49, 80), 66: (44, 75), 67: (36, 68)}  # saxophones
_PROGRAM_WEIGHTS: dict[int, float] = {29: 2.0, 30: 2.0}  # half of the guitar clips overdriven or distorted

FAMILIES: dict[str, tuple[str, ...]] = {
    "fluid": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf3/MuseScore_General.sf3"),
    "timgm": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/sf_GMbank.sf2"),
    "freepats": ("/etc/timidity/freepats.cfg",),
}

POLYPHONIC = frozenset({"accordion", "guitar", "organ", "piano"})  # also get chords and polyphony
VIBRATO = frozenset({"cello", "clarinet", "flute", "saxophone", "trumpet", "violin", "voice"})
SUSTAINED = VIBRATO | {"accordion", "organ"}  # can swell (CC11 hairpins) while a note holds

RENDER_RATE = 44_100  # Hz: synthesis rate; soxr then resamples (FluidSynth does not band-limit pitch-up)
TEMPO_BPM = (60.0, 160.0)  # quarter notes per minute
VELOCITY = (40, 120)  # MIDI velocity of a phrase, before ± per-note variation
PEAK_DBFS = (-20.0, -1.0)  # dBFS: random peak level of each finished clip
MIN_NOTE_SECONDS = 0.05  # s: shortest note played
SILENT_PEAK = 1e-4  # linear: a raw render below this peak (-80 dBFS) is a missing or broken program
QUIET_INTERVAL_DB = 40.0  # dB: a sounding interval this far below the clip's loudest is dropped from `notes`
_RENDER_VERSION = 1  # bump when the output of the same parameters changes
_CACHE_VERSION = 1  # bump when the phrase cache format changes

CC_MODULATION, CC_VOLUME, CC_EXPRESSION, CC_SUSTAIN, CC_REVERB, CC_CHORUS = 1, 7, 11, 64, 91, 93


# --------------------------------------------------------------------------- scores → phrases
@dataclass(frozen=True)
class Phrase:
    """Notes of one score passage: (onset, duration, MIDI pitch), onset and duration in quarter notes.

    ``polyphonic`` phrases hold all parts of a chorale together; the others are single lines.
    """

    piece: str
    notes: tuple[tuple[float, float, int], ...]
    polyphonic: bool

    @property
    def pitch_range(self) -> tuple[int, int]:
        """(lowest, highest) MIDI pitch."""
        p = [n[2] for n in self.notes]
        return min(p), max(p)


def _cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neuroear"


def _corpus_pool(cache: Path) -> tuple[list[str], list[str]]:
    """Ids of every usable folk tune (``abc/<file>#<k>``) and Bach chorale (``bach/<file>``)."""
    import music21
    from music21 import corpus

    index = cache / f"pool-{music21.__version__}.json"
    if index.exists():
        d = json.loads(index.read_text())
        return d["abc"], d["bach"]
    root = Path(corpus.__file__).parent
    abc = []
    for p in sorted(corpus.getPaths(fileExtensions=("abc",))):
        rel = p.relative_to(root).as_posix()
        if rel.startswith("josquin/"):  # multi-voice renaissance pieces, not melodies
            continue
        n = len(re.findall(r"^X:", p.read_text(errors="replace"), flags=re.M))
        abc += [f"abc/{rel}#{k}" for k in range(n)]
    bach = sorted(f"bach/{p.relative_to(root / 'bach').as_posix()}" for p in corpus.getComposer("bach") if p.suffix in (".mxl", ".xml"))
    cache.mkdir(parents=True, exist_ok=True)
    _atomic_write(index, json.dumps({"abc": abc, "bach": bach}))
    return abc, bach


def _part_notes(part) -> list[list[float]]:  # noqa: ANN001 (music21 stream)
    """[[onset q, duration q, pitch], ...] of one part; ties merged, grace notes dropped, chords → top note."""
    out = []
    flat = part.flatten().stripTies()
    for n in flat.notes:
        dur = float(n.quarterLength)
        if dur <= 0:
            continue
        pitch = max(p.midi for p in n.pitches) if n.isChord else n.pitch.midi
        out.append([round(float(n.offset), 4), round(dur, 4), int(pitch)])
    return out


def _parse_piece(piece: str) -> list[list[list[float]]]:
    """Parse one corpus piece with music21 → its parts as note lists (slow: ~0.1–0.3 s)."""
    from music21 import converter, corpus

    root = Path(corpus.__file__).parent
    if piece.startswith("abc/"):
        rel, k = piece[4:].rsplit("#", 1)
        text = (root / rel).read_text(errors="replace")
        chunks = re.split(r"(?m)^(?=X:)", text)
        header, tunes = (chunks[0], chunks[1:]) if not chunks[0].startswith("X:") else ("", chunks)
        score = converter.parse(header + tunes[int(k)], format="abc")
        parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
        return [_part_notes(parts[0])]
    score = corpus.parse(str(root / "bach" / piece[5:]))
    parts = list(score.parts)
    named = {}
    for p in parts:
        name = (p.partName or "").lower()
        for voice in ("soprano", "alto", "tenor", "bass"):
            if name.startswith(voice) and voice not in named:
                named[voice] = p
    chosen = list(named.values()) if len(named) == 4 else parts[-4:]
    return [_part_notes(p) for p in chosen]


def load_phrases(*, n_pieces: int, seed: int, cache_dir: Path | None = None) -> list[Phrase]:
    """Pick ``n_pieces`` corpus pieces (half folk tunes, half Bach chorales) and return their phrases.

    Folk tunes are drawn so that each ABC collection (Essen, O'Neill's, Ryan's Mammoth, Aird's
    Airs, ...) is equally likely, as the Essen collection alone holds most of the tunes.

    A folk tune gives one monophonic melody; a chorale gives its four parts together (one
    polyphonic phrase) and each part alone (four melodies). Parsed pieces are cached as JSON
    under ``cache_dir`` (default ``$XDG_CACHE_HOME/neuroear`` or ``~/.cache/neuroear``), as
    music21 parsing is slow. Pieces that fail to parse are skipped with a warning.
    Deterministic in (``n_pieces``, ``seed``, music21 corpus).
    """
    if n_pieces < 1:
        raise NeuroEarError(f"n_pieces must be at least 1, got {n_pieces}")
    cache = _cache_root(cache_dir) / f"phrases-v{_CACHE_VERSION}"
    abc, bach = _corpus_pool(cache)
    rng = np.random.default_rng(seed)
    n_bach = min(n_pieces // 2, len(bach))
    folder = [a.split("/")[1] for a in abc]  # collections weigh the same: Essen alone holds most tunes
    counts = {f: folder.count(f) for f in set(folder)}
    w = np.array([1.0 / counts[f] for f in folder])
    pieces = [abc[i] for i in sorted(rng.choice(len(abc), n_pieces - n_bach, replace=False, p=w / w.sum()))]
    pieces += [bach[i] for i in sorted(rng.choice(len(bach), n_bach, replace=False))]
    phrases = []
    for piece in pieces:
        path = cache / (re.sub(r"[^A-Za-z0-9._-]", "_", piece) + ".json")
        if path.exists():
            parts = json.loads(path.read_text())
        else:
            try:
                parts = _parse_piece(piece)
            except Exception as exc:  # music21 raises many types on odd ABC; skip the piece
                parts = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            _atomic_write(path, json.dumps(parts))
        if isinstance(parts, dict) or not parts or any(len(p) < 4 for p in parts):
            warnings.warn(f"{piece}: skipped ({parts.get('error') if isinstance(parts, dict) else 'too few notes'})", stacklevel=2)
            continue
        lines = [tuple((float(a), float(b), int(c)) for a, b, c in p) for p in parts]
        phrases += [Phrase(piece, line, False) for line in lines]
        if len(lines) > 1:
            phrases.append(Phrase(piece, tuple(sorted(n for line in lines for n in line)), True))
    if not phrases:
        raise NeuroEarError("no usable phrases in the music21 corpus selection")
    return phrases


# --------------------------------------------------------------------------- phrases → timed notes
def fit_pitches(pitches: np.ndarray, lo: int, hi: int, *, rng: np.random.Generator) -> np.ndarray:
    """Transpose MIDI ``pitches`` [n] by one random shift so all lie in [lo, hi].

    A passage wider than the range is centred and its outlying notes folded by octaves.
    """
    pitches = np.asarray(pitches, dtype=np.int64)
    if hi - lo < 12:
        raise NeuroEarError(f"pitch range {lo}–{hi} is narrower than an octave")
    low, high = lo - pitches.min(), hi - pitches.max()
    if low <= high:
        return pitches + int(rng.integers(low, high + 1))
    out = pitches + int(round((lo + hi - pitches.min() - pitches.max()) / 2))
    while (out < lo).any() or (out > hi).any():
        out = np.where(out < lo, out + 12, np.where(out > hi, out - 12, out))
    return out


def transpose_into_range(phrase: Phrase, lo: int, hi: int, *, rng: np.random.Generator) -> Phrase:
    """The phrase moved by a random whole-phrase shift into MIDI range [lo, hi] (see `fit_pitches`)."""
    p = fit_pitches(np.array([n[2] for n in phrase.notes]), lo, hi, rng=rng)
    return Phrase(phrase.piece, tuple((a, b, int(c)) for (a, b, _), c in zip(phrase.notes, p)), phrase.polyphonic)


@dataclass
class _Score:
    """A clip's performance: notes (on s, off s, pitch, velocity), controllers (t s, cc, value), pedal (down s, up s)."""

    notes: list[tuple[float, float, int, int]] = field(default_factory=list)
    ccs: list[tuple[float, int, int]] = field(default_factory=list)
    pedal: list[tuple[float, float]] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)


def _excerpt(phrase: Phrase, max_q: float, rng: np.random.Generator) -> list[tuple[float, float, int]]:
    """Notes of a random stretch of at most ``max_q`` quarter notes, re-timed to start at 0."""
    onsets = sorted({n[0] for n in phrase.notes})
    end = max(n[0] + n[1] for n in phrase.notes)
    starts = [t for t in onsets if t <= end - min(max_q, end - onsets[0]) * 0.7] or onsets[:1]
    t0 = float(starts[int(rng.integers(len(starts)))])
    return [(a - t0, min(b, t0 + max_q - a), p) for a, b, p in phrase.notes if t0 <= a < t0 + max_q]


def _harmony(notes: list[tuple[float, float, int]], step: float) -> list[tuple[float, float, list[int]]]:
    """Chords sounding every ``step`` quarter notes: [(onset q, duration q, pitches)], repeats merged."""
    end = max(a + b for a, b, _ in notes)
    out: list[tuple[float, float, list[int]]] = []
    for t in np.arange(0.0, end, step):
        ps = sorted({p for a, b, p in notes if a <= t + 1e-6 < a + b})
        if not ps:
            continue
        if out and out[-1][2] == ps and abs(out[-1][0] + out[-1][1] - t) < 1e-6:
            out[-1] = (out[-1][0], out[-1][1] + step, ps)
        else:
            out.append((float(t), step, ps))
    return out


def _skyline(notes: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Top line of polyphony: the highest note at each onset, cut at the next onset."""
    top: dict[float, tuple[float, float, int]] = {}
    for n in notes:
        if n[0] not in top or n[2] > top[n[0]][2]:
            top[n[0]] = n
    line = [top[k] for k in sorted(top)]
    return [(a, min(b, line[i + 1][0] - a) if i + 1 < len(line) else b, p) for i, (a, b, p) in enumerate(line)]


def _guitar_voicing(pitches: list[int], rng: np.random.Generator) -> list[int]:
    """4–6 'strings': the bass then chord tones stacked upward at least a minor third apart."""
    pcs = {p % 12 for p in pitches}
    bass = 40 + (min(pitches) - 40) % 12
    out = [bass]
    for p in range(bass + 3, bass + 26):
        if p % 12 in pcs and p - out[-1] >= 3:
            out.append(p)
    return out[: int(rng.integers(4, 7))]


def _styles(label: str, program: int) -> tuple[list[str], list[float]]:
    if label == "guitar" and program in (29, 30):
        return ["power", "melody", "strum", "arpeggio"], [0.4, 0.35, 0.15, 0.1]
    return {
        "guitar": (["strum", "arpeggio", "melody", "power"], [0.35, 0.35, 0.2, 0.1]),
        "piano": (["chorale", "block", "arpeggio", "oompah", "melody"], [0.3, 0.15, 0.2, 0.1, 0.25]),
        "organ": (["chorale", "block", "melody", "arpeggio"], [0.45, 0.25, 0.2, 0.1]),
        "accordion": (["oompah", "chorale", "block", "melody"], [0.35, 0.2, 0.15, 0.3]),
        "voice": (["melody", "chorale"], [0.9, 0.1]),
    }.get(label, (["melody"], [1.0]))


def _accent(t: float) -> int:
    """Velocity offset of a note at ``t`` quarter notes: strong beats louder, off-beats softer."""
    if abs(t - round(t)) > 1e-6:
        return -4
    return 6 if round(t) % 2 == 0 else 0


def _perform(style: str, ex: list[tuple[float, float, int]], spq: float, label: str, rng: np.random.Generator):  # noqa: ANN202
    """Notes [(on q, off q, pitch, velocity offset)] and pedal [(down q, up q)] of one excerpt in one style."""
    art = rng.choice(["legato", "normal", "staccato"], p=[0.35, 0.45, 0.2])
    factor = {"legato": 1.0, "normal": rng.uniform(0.75, 0.9), "staccato": rng.uniform(0.3, 0.5)}[str(art)]
    acc = _accent
    notes: list[tuple[float, float, int, int]] = []
    pedal: list[tuple[float, float]] = []
    spread = lambda lo, hi: rng.uniform(lo, hi) / spq  # noqa: E731  (seconds → quarter notes)
    if style == "melody":
        line = _skyline(ex) if len({a for a, _, _ in ex}) < len(ex) else ex
        notes = [(a, a + b * factor, p, acc(a)) for a, b, p in line]
    elif style == "chorale":
        notes = [(a, a + b * factor, p, acc(a)) for a, b, p in ex]
    else:
        harm = _harmony(ex, float(rng.choice([1.0, 2.0])) if style != "oompah" else 2.0)
        for h0, hd, ps in harm:
            h1 = h0 + hd
            if style == "block":
                hold = label in ("organ", "accordion") and rng.random() < 0.6
                beats = [h0] if hold else list(np.arange(h0, h1, 1.0))
                for t in beats:
                    off = h1 if hold else t + min(1.0, h1 - t) * factor
                    notes += [(t, off, p, acc(t)) for p in ps]
            elif style == "strum":
                voicing = _guitar_voicing(ps, rng)
                step = float(rng.choice([0.5, 1.0]))
                for k, t in enumerate(np.arange(h0, h1, step)):
                    up = k % 2 == 1 and step == 0.5
                    strings = voicing[::-1][: max(3, len(voicing) - 2)] if up else voicing
                    d = spread(0.008, 0.03)
                    off = min(t + step, h1) if art != "staccato" else t + step * factor
                    notes += [(t + i * d, off, p, acc(t) - 2 * i - (6 if up else 0)) for i, p in enumerate(strings)]
            elif style == "power":
                root = 40 + (min(ps) - 40) % 12
                step = float(rng.choice([0.5, 1.0, hd]))
                muted = rng.random() < 0.5
                for t in np.arange(h0, h1, step):
                    off = t + step * (0.35 if muted else 1.0)
                    d = spread(0.002, 0.01)
                    notes += [(t + i * d, off, p, acc(t)) for i, p in enumerate((root, root + 7, root + 12))]
            elif style == "arpeggio":
                tones = sorted(ps) if len(ps) >= 3 else sorted(ps + [p + 12 for p in ps])
                order = {"up": tones, "updown": tones + tones[-2:0:-1], "alberti": [tones[0], tones[-1], tones[len(tones) // 2], tones[-1]]}
                pattern = order[str(rng.choice(list(order)))]
                step = float(rng.choice([0.25, 0.5]))
                ring = label in ("guitar", "piano") and rng.random() < 0.6
                for k, t in enumerate(np.arange(h0, h1, step)):
                    p = pattern[k % len(pattern)]
                    notes.append((t, h1 if ring else t + step * factor, p, acc(t)))
            elif style == "oompah":
                bass = min(ps)
                upper = [p for p in ps if p != bass] or [bass + 12]
                for k, t in enumerate(np.arange(h0, h1, 1.0)):
                    if k % 2 == 0:
                        notes.append((t, t + 0.9, bass - 12 if k % 4 == 0 else bass - 5, 4))
                    else:
                        notes += [(t, t + 0.45, p, -8) for p in upper]
            if label == "piano" and style in ("block", "arpeggio") and rng.random() < 0.5:
                pedal.append((h0 + spread(0.03, 0.08), h1 - spread(0.01, 0.03)))
        if style == "oompah":
            notes += [(a, a + b * factor, p + 12, 8) for a, b, p in _skyline(ex)]
    return notes, pedal


def compose(label: str, program: int, phrases: Sequence[Phrase], *, seconds: float, rng: np.random.Generator) -> _Score:
    """A random performance of score excerpts by one instrument, filling ``seconds`` (s).

    Excerpts follow one another with rests between them now and then (and sometimes a silent
    start), each with its own tempo, style, articulation, velocity and CC11 expression.
    """
    lo, hi = _PROGRAM_RANGES.get(program, RANGES[label]) if label == "saxophone" else RANGES[label]
    mono = [p for p in phrases if not p.polyphonic]
    poly = [p for p in phrases if p.polyphonic] or mono
    styles, weights = _styles(label, program)
    sc = _Score()
    sc.ccs.append((0.0, CC_VOLUME, int(rng.integers(85, 128))))
    sc.ccs.append((0.0, CC_REVERB, int(rng.integers(0, 90))))
    sc.ccs.append((0.0, CC_CHORUS, int(rng.integers(0, 50))))
    if label in VIBRATO and rng.random() < 0.5:
        sc.ccs.append((0.0, CC_MODULATION, int(rng.integers(10, 70))))
    t = float(rng.uniform(0.0, 2.0)) if rng.random() < 0.3 else 0.0
    while t < seconds - 0.5:
        style = str(rng.choice(styles, p=weights))
        pool = mono if style == "melody" else poly
        phrase = pool[int(rng.integers(len(pool)))]
        spq = 60.0 / rng.uniform(*TEMPO_BPM)  # s per quarter note
        dur = min(seconds - t, rng.uniform(3.0, 12.0))
        ex = _excerpt(phrase, dur / spq, rng)
        notes, pedal = _perform(style, ex, spq, label, rng)
        if not notes:
            t += 0.5
            continue
        pitches = fit_pitches(np.array([n[2] for n in notes]), lo, hi, rng=rng)
        base = rng.uniform(*VELOCITY)
        jitter = rng.normal(0.0, 5.0, len(notes))
        for (a, b, _, dv), p, j in zip(notes, pitches, jitter):
            on, off = t + a * spq, t + max(b * spq, a * spq + MIN_NOTE_SECONDS)
            sc.notes.append((on, off, int(p), int(np.clip(round(base + dv + j), 1, 127))))
        sc.pedal += [(t + a * spq, t + b * spq) for a, b in pedal]
        end = t + max(n[1] for n in notes) * spq
        if label in SUSTAINED and rng.random() < 0.5:  # hairpin: CC11 ramps every 50 ms
            e0, e1 = rng.integers(64, 128, 2)
            for tt in np.arange(t, end, 0.05):
                sc.ccs.append((float(tt), CC_EXPRESSION, int(round(e0 + (e1 - e0) * (tt - t) / max(end - t, 1e-3)))))
        else:
            sc.ccs.append((t, CC_EXPRESSION, int(rng.integers(70, 128))))
        sc.pieces.append(phrase.piece)
        t = end + (rng.uniform(0.0, 0.2) if rng.random() < 0.4 else rng.uniform(0.5, 4.0))
    _tidy(sc, seconds)
    return sc


def _tidy(sc: _Score, seconds: float) -> None:
    """Clip notes to the clip, enforce a minimum length, and end a note before the same pitch restarts."""
    notes = sorted((on, min(off, seconds), p, v) for on, off, p, v in sc.notes if on < seconds - MIN_NOTE_SECONDS)
    by_pitch: dict[int, int] = {}
    out: list[list] = []
    for on, off, p, v in notes:
        if p in by_pitch:
            prev = out[by_pitch[p]]
            if on - prev[0] < 0.015:  # a unison of two parts: one key, held for the longer
                prev[1], prev[3] = max(prev[1], off), max(prev[3], v)
                continue
            prev[1] = min(prev[1], on - 0.005)
        by_pitch[p] = len(out)
        out.append([on, max(off, min(on + MIN_NOTE_SECONDS, seconds)), p, v])
    sc.notes = [tuple(n) for n in out if n[1] > n[0]]  # type: ignore[misc]
    sc.pedal = [(a, min(b, seconds)) for a, b in sc.pedal if b > a and a < seconds]
    sc.ccs = sorted(c for c in sc.ccs if c[0] < seconds)


def sounding(sc: _Score) -> list[tuple[float, float]]:
    """Union of the intervals (s) in which notes are held, by key or by the sustain pedal."""
    iv = []
    for on, off, _, _ in sc.notes:
        for a, b in sc.pedal:
            if a <= off < b:
                off = b
        iv.append((on, off))
    merged: list[list[float]] = []
    for a, b in sorted(iv):
        if merged and a <= merged[-1][1] + 1e-3:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(round(a, 4), round(b, 4)) for a, b in merged]


# --------------------------------------------------------------------------- notes → audio
def _events(sc: _Score) -> list[tuple[float, int, str, int, int]]:
    """(time s, order, kind, a, b) sorted; at equal times note-offs, then controllers, then note-ons."""
    ev = [(on, 2, "on", p, v) for on, _, p, v in sc.notes] + [(off, 0, "off", p, 0) for _, off, p, _ in sc.notes]
    ev += [(t, 1, "cc", c, v) for t, c, v in sc.ccs]
    ev += [(a, 1, "cc", CC_SUSTAIN, 127) for a, _ in sc.pedal] + [(b, 1, "cc", CC_SUSTAIN, 0) for _, b in sc.pedal]
    return sorted(ev)


class _Fluid:
    """One FluidSynth instance with one SoundFont loaded (loading MuseScore's .sf3 takes seconds)."""

    def __init__(self, font: Path, *, rate: int) -> None:
        import ctypes

        import fluidsynth

        self.rate = rate
        self.synth = fluidsynth.Synth(gain=0.3, samplerate=float(rate), **{"synth.cpu-cores": 1, "synth.polyphony": 256})
        self.sfid = self.synth.sfload(str(font))
        if self.sfid < 0:
            raise NeuroEarError(f"{font}: FluidSynth cannot load this SoundFont")
        self.programs = {p for p in range(128) if self.synth.sfpreset_name(self.sfid, 0, p) is not None}
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
        self._write.restype = ctypes.c_int

    def render(self, sc: _Score, *, program: int, seconds: float, fx: dict[str, float]) -> np.ndarray:
        """Mono float32 [seconds · rate] of the score played by ``program``."""
        s = self.synth
        s.system_reset()
        s.set_reverb(fx["room"], fx["damp"], fx["width"], fx["reverb"])
        s.set_chorus(3, fx["chorus"], fx["speed"], fx["depth"], 0)
        if s.program_select(0, self.sfid, 0, program) != 0:
            raise NeuroEarError(f"program {program} missing from the loaded SoundFont")
        total = int(round(seconds * self.rate))
        buf = np.zeros(2 * total, dtype=np.float32)
        pos = 0
        for t, _, kind, a, b in _events(sc):
            f = min(total, int(round(t * self.rate)))
            if f > pos:
                self._write(s.synth, f - pos, buf.ctypes.data, 2 * pos, 2, buf.ctypes.data, 2 * pos + 1, 2)
                pos = f
            if kind == "on":
                s.noteon(0, a, b)
            elif kind == "off":
                s.noteoff(0, a)
            else:
                s.cc(0, a, b)
        if total > pos:
            self._write(s.synth, total - pos, buf.ctypes.data, 2 * pos, 2, buf.ctypes.data, 2 * pos + 1, 2)
        return buf.reshape(-1, 2).mean(axis=1)

    def close(self) -> None:
        self.synth.delete()


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    while n > 127:
        n >>= 7
        out.append((n & 0x7F) | 0x80)
    return bytes(reversed(out))


def _midi_file(sc: _Score, program: int) -> bytes:
    """Standard MIDI file (format 0, 1 tick = 1/960 s) of the score on channel 0."""
    track, last = bytearray(_vlq(0) + b"\xff\x51\x03" + (500_000).to_bytes(3, "big")), 0  # 120 bpm, 480 ppq
    track += _vlq(0) + bytes([0xC0, program])
    codes = {"on": 0x90, "off": 0x80, "cc": 0xB0}
    for t, _, kind, a, b in _events(sc):
        tick = int(round(t * 960))
        track += _vlq(tick - last) + bytes([codes[kind], a, b if kind != "off" else 64])
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


class _Timidity:
    """TiMidity++ with a GUS patch config, one subprocess per clip (~10 ms overhead)."""

    def __init__(self, cfg: Path, *, rate: int) -> None:
        self.cfg, self.rate = cfg, rate
        self.programs = _cfg_programs(cfg)
        self.tmp = Path(tempfile.mkdtemp(prefix="neuroear-timidity-"))

    def render(self, sc: _Score, *, program: int, seconds: float, fx: dict[str, float]) -> np.ndarray:
        import soundfile as sf

        mid, wav = self.tmp / "clip.mid", self.tmp / "clip.wav"
        mid.write_bytes(_midi_file(sc, program))
        # --preserve-silence: keep a leading rest (else the audio starts at the first note);
        # -S 0: no resample cache, whose use varies run to run and makes the output differ.
        # Reverb and chorus come from the score's CC91/CC93 sends; `fx` is FluidSynth's.
        cmd = ["timidity", "-c", str(self.cfg), "-s", str(self.rate), "-Ow", "--output-mono", "--preserve-silence", "-S", "0"]
        cmd += ["-o", str(wav), str(mid)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not wav.exists():
            raise NeuroEarError(f"timidity failed on {self.cfg}: {r.stderr.strip()[-200:]}")
        x, _ = sf.read(str(wav), dtype="float32")
        total = int(round(seconds * self.rate))
        return np.pad(x, (0, max(0, total - x.size)))[:total]

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _cfg_programs(cfg: Path) -> set[int]:
    """Programs of melodic bank 0 that a TiMidity config lists."""
    progs, bank = set(), None
    for line in cfg.read_text(errors="replace").splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        if words[0] in ("bank", "drumset"):
            bank = (words[0], words[1] if len(words) > 1 else "")
        elif bank == ("bank", "0") and words[0].isdigit():
            progs.add(int(words[0]))
    return progs


def _open(family: str, font: Path, *, rate: int) -> _Fluid | _Timidity:
    return _Timidity(font, rate=rate) if family == "freepats" else _Fluid(font, rate=rate)


def render_notes(
    font: Path, notes: Sequence[tuple[float, float, int, int]], *, program: int, seconds: float, sample_rate: int = 16_000
) -> np.ndarray:
    """Play ``notes`` [(on s, off s, MIDI pitch, velocity)] on one program of a SoundFont, dry.

    Returns mono float32 [seconds · sample_rate] at the synth's own level (no normalisation).
    """
    r = _Fluid(Path(font), rate=RENDER_RATE)
    try:
        sc = _Score(notes=list(notes), ccs=[(0.0, CC_REVERB, 0), (0.0, CC_CHORUS, 0)])
        fx = {"room": 0.2, "damp": 0.5, "width": 0.5, "reverb": 0.0, "chorus": 0.0, "speed": 0.3, "depth": 2.0}
        x = r.render(sc, program=program, seconds=seconds, fx=fx)
    finally:
        r.close()
    from neuroear.audio import resample

    return resample(x, RENDER_RATE, sample_rate)


# --------------------------------------------------------------------------- the set
def available_families() -> dict[str, list[Path]]:
    """Families whose synthesiser and fonts are installed here → their existing font files."""
    out: dict[str, list[Path]] = {}
    try:
        import fluidsynth  # noqa: F401

        have_fluid = True
    except (ImportError, OSError):  # OSError: libfluidsynth not found
        have_fluid = False
    for fam, paths in FAMILIES.items():
        usable = shutil.which("timidity") is not None if fam == "freepats" else have_fluid
        found = [Path(p) for p in paths if Path(p).is_file()]
        if usable and found:
            out[fam] = found
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _clip_seed(seed: int, label: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{label}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def render_set(
    out_dir: Path,
    *,
    families: Sequence[str],
    labels: Sequence[str] = LABELS,
    seconds_per_label: float,
    clip_seconds: float = 12.0,
    seed: int = 0,
    sample_rate: int = 16_000,
    n_pieces: int = 200,
    cache_dir: Path | None = None,
) -> Path:
    """Render one-instrument clips for ``labels`` and return the path of ``out_dir/manifest.jsonl``.

    ``seconds_per_label`` (s) is the total per label over all ``families``: clip k of a label
    goes to family k mod len(families), and within it to its fonts in turn. Clips are
    ``clip_seconds`` (s) long, mono PCM_16 FLAC at ``sample_rate`` (Hz) in ``out_dir/clips``;
    each manifest line: file, label, family, font, program, piece (corpus ids, ``+``-joined),
    seconds, notes ([[on s, off s], ...] sounding), seed (the clip's own). Deterministic in
    the parameters; if ``out_dir/params.json`` matches them, returns at once without
    rendering. A clip that comes out silent (broken program) is skipped with a warning.
    ``n_pieces`` and ``cache_dir`` go to `load_phrases`.
    """
    out_dir = Path(out_dir)
    have = available_families()
    bad = [f for f in families if f not in have]
    if not families or bad or len(set(families)) < len(families):
        raise NeuroEarError(f"families {bad or '[]'} not available here (have: {sorted(have) or 'none'})")
    unknown = [lab for lab in labels if lab not in LABELS]
    if not labels or unknown or len(set(labels)) < len(labels):
        raise NeuroEarError(f"unknown labels {unknown} (known: {', '.join(LABELS)})")
    if seconds_per_label <= 0 or clip_seconds < 1.0 or not 8_000 <= sample_rate <= 96_000:
        raise NeuroEarError("need seconds_per_label > 0, clip_seconds >= 1 and 8000 <= sample_rate <= 96000")
    params = {
        "version": _RENDER_VERSION, "families": list(families), "labels": list(labels),
        "seconds_per_label": float(seconds_per_label), "clip_seconds": float(clip_seconds), "seed": int(seed),
        "sample_rate": int(sample_rate), "n_pieces": int(n_pieces),
        "fonts": {f: [p.name for p in have[f]] for f in families},
    }  # fmt: skip
    manifest, params_path = out_dir / "manifest.jsonl", out_dir / "params.json"
    if manifest.exists() and params_path.exists() and json.loads(params_path.read_text()) == params:
        return manifest
    params_path.unlink(missing_ok=True)  # an interrupted run must not look complete
    clips = out_dir / "clips"
    if clips.is_dir():
        for old in clips.glob("*.flac"):
            old.unlink()
    clips.mkdir(parents=True, exist_ok=True)

    import soundfile as sf

    from neuroear.audio import resample

    start = time.perf_counter()
    phrases = load_phrases(n_pieces=n_pieces, seed=seed, cache_dir=cache_dir)
    n_clips = math.ceil(seconds_per_label / clip_seconds)
    jobs: dict[tuple[str, Path], list[tuple[str, int]]] = {}
    for label in labels:
        for k in range(n_clips):
            fam = families[k % len(families)]
            fonts = have[fam]
            jobs.setdefault((fam, fonts[(k // len(families)) % len(fonts)]), []).append((label, k))
    rows: dict[tuple[int, int], dict] = {}
    rendered = 0.0
    for (fam, font), todo in jobs.items():
        synth = _open(fam, font, rate=RENDER_RATE)
        try:
            for label, k in todo:
                cs = _clip_seed(seed, label, k)
                rng = np.random.default_rng(cs)
                progs = [p for p in PROGRAMS[label] if p in synth.programs]
                if not progs:
                    warnings.warn(f"{font.name}: has none of {label}'s programs {PROGRAMS[label]}; clip skipped", stacklevel=2)
                    continue
                w = np.array([_PROGRAM_WEIGHTS.get(p, 1.0) for p in progs])
                program = int(rng.choice(progs, p=w / w.sum()))
                sc = compose(label, program, phrases, seconds=clip_seconds, rng=rng)
                fx = {
                    "room": rng.uniform(0.1, 0.9), "damp": rng.uniform(0.0, 1.0), "width": rng.uniform(0.5, 1.0),
                    "reverb": rng.uniform(0.0, 0.6), "chorus": rng.uniform(0.0, 2.0), "speed": rng.uniform(0.3, 1.0),
                    "depth": rng.uniform(2.0, 10.0),
                }  # fmt: skip
                x = resample(synth.render(sc, program=program, seconds=clip_seconds, fx=fx), RENDER_RATE, sample_rate)
                peak = float(np.abs(x).max()) if x.size else 0.0
                if peak < SILENT_PEAK:
                    warnings.warn(f"{font.name} program {program} ({label}) rendered silence; clip skipped", stacklevel=2)
                    continue
                notes = _audible(x, sounding(sc), sample_rate)
                x *= 10 ** (rng.uniform(*PEAK_DBFS) / 20) / peak
                name = f"{label}_{fam}_{k:04d}.flac"
                sf.write(str(clips / name), x, sample_rate, subtype="PCM_16")
                rendered += clip_seconds
                rows[(labels.index(label), k)] = {
                    "file": f"clips/{name}", "label": label, "family": fam, "font": font.name, "program": program,
                    "piece": "+".join(dict.fromkeys(sc.pieces)), "seconds": float(clip_seconds),
                    "notes": [list(iv) for iv in notes], "seed": cs,
                }  # fmt: skip
        finally:
            synth.close()
    _atomic_write(manifest, "".join(json.dumps(rows[key]) + "\n" for key in sorted(rows)))
    _atomic_write(params_path, json.dumps(params, indent=1))
    wall = time.perf_counter() - start
    log.info("rendered %.0f s of audio in %.1f s (%.0f× real time) to %s", rendered, wall, rendered / max(wall, 1e-9), out_dir)
    return manifest


def _audible(x: np.ndarray, intervals: list[tuple[float, float]], rate: int) -> list[tuple[float, float]]:
    """Keep the sounding intervals whose RMS is within QUIET_INTERVAL_DB of the clip's loudest 50 ms."""
    hop = max(1, int(0.05 * rate))
    energy = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])  # running Σx²
    ref = float(np.max(np.diff(energy[::hop]))) / hop if x.size >= hop else 0.0
    keep = []
    for a, b in intervals:
        i, j = int(a * rate), min(x.size, max(int(b * rate), int(a * rate) + 1))
        if j > i and (energy[j] - energy[i]) / (j - i) > ref * 10 ** (-QUIET_INTERVAL_DB / 10):
            keep.append((a, b))
    return keep


__all__ = [
    "FAMILIES",
    "LABELS",
    "PROGRAMS",
    "RANGES",
    "Phrase",
    "available_families",
    "compose",
    "fit_pitches",
    "load_phrases",
    "render_notes",
    "render_set",
    "sounding",
    "transpose_into_range",
]
