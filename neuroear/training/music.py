"""Musical scores for rendered training audio (not scoring): music21 corpus → phrases → one instrument's timed notes.

    music21 corpus (ABC folk tunes, Bach chorales) → `load_phrases` (parsed once, cached as JSON)
    → per clip `compose`: one instrument program, styles (melody, chorale, block chords, arpeggios,
      strums, power chords, oom-pah), tempo, articulation, dynamics and controllers → a ``Score``
      of notes in seconds, controller changes and sustain-pedal spans → `midi_events` for a synthesiser.

``render`` turns these scores into audio. ``sounding`` gives the intervals in which the
instrument sounds (note-on to note-off, extended while the pedal holds), the clips' labels.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuroear.errors import NeuroEarError


LABELS: tuple[str, ...] = (
    "accordion", "bass", "cello", "clarinet", "drums", "flute", "guitar", "organ",
    "piano", "saxophone", "trumpet", "violin", "voice",
)  # fmt: skip

# Drums are not a melodic program: GM percussion is bank 128 played on MIDI channel 10
# (index 9). DRUM_PROGRAM stands for it in PROGRAMS and manifests.
DRUM_PROGRAM = 128
DRUM_CHANNEL = 9

# General MIDI programs (0-based) per label. Guitar includes overdrive (29) and distortion (30):
# the real dev set's guitar is mostly distorted electric.
PROGRAMS: dict[str, tuple[int, ...]] = {
    "accordion": (21, 23),
    "bass": (32, 33, 34, 35, 36),  # acoustic (upright), finger, pick, fretless, slap
    "cello": (42,),
    "clarinet": (71,),
    "drums": (DRUM_PROGRAM,),
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
    "bass": (28, 60),  # E1–C4: four-string bass and double bass (sounding pitch)
    "drums": (35, 81),  # GM percussion keys (not pitches): acoustic bass drum .. open triangle
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

POLYPHONIC = frozenset({"accordion", "guitar", "organ", "piano"})  # also get chords and polyphony
VIBRATO = frozenset({"cello", "clarinet", "flute", "saxophone", "trumpet", "violin", "voice"})
SUSTAINED = VIBRATO | {"accordion", "organ"}  # can swell (CC11 hairpins) while a note holds

TEMPO_BPM = (60.0, 160.0)  # quarter notes per minute
VELOCITY = (40, 120)  # MIDI velocity of a phrase, before ± per-note variation
MIN_NOTE_SECONDS = 0.05  # s: shortest note played
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
    write_atomic(index, json.dumps({"abc": abc, "bach": bach}))
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
            write_atomic(path, json.dumps(parts))
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
class Score:
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
    if label == "bass":
        return ["bassline", "walking", "melody"], [0.5, 0.3, 0.2]
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
            elif style == "bassline":  # the chord's root on beats, now and then the fifth or octave
                step = float(rng.choice([0.5, 1.0, 2.0]))
                for k, t in enumerate(np.arange(h0, h1, step)):
                    p = min(ps) + int(rng.choice([0, 0, 0, 7, 12])) if k else min(ps)
                    notes.append((t, t + step * factor, p, acc(t)))
            elif style == "walking":  # quarter notes through the chord tones and passing steps
                tones = sorted({min(ps) + (p - min(ps)) % 12 for p in ps})
                for k, t in enumerate(np.arange(h0, h1, 1.0)):
                    p = tones[k % len(tones)] + (int(rng.choice([-1, 1, 2])) if k % 4 == 3 else 0)
                    notes.append((t, t + factor, p, acc(t)))
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


def compose(label: str, program: int, phrases: Sequence[Phrase], *, seconds: float, rng: np.random.Generator) -> Score:
    """A random performance of score excerpts by one instrument, filling ``seconds`` (s).

    Excerpts follow one another with rests between them now and then (and sometimes a silent
    start), each with its own tempo, style, articulation, velocity and CC11 expression.
    """
    if label == "drums":
        from neuroear.training.drums import compose_drums

        return compose_drums(seconds=seconds, rng=rng)
    lo, hi = _PROGRAM_RANGES.get(program, RANGES[label]) if label == "saxophone" else RANGES[label]
    mono = [p for p in phrases if not p.polyphonic]
    poly = [p for p in phrases if p.polyphonic] or mono
    styles, weights = _styles(label, program)
    sc = Score()
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
    tidy(sc, seconds)
    return sc


def tidy(sc: Score, seconds: float) -> None:
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


def sounding(sc: Score) -> list[tuple[float, float]]:
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


# --------------------------------------------------------------------------- score → timed events
def midi_events(sc: Score) -> list[tuple[float, int, str, int, int]]:
    """(time s, order, kind, a, b) sorted; at equal times note-offs, then controllers, then note-ons."""
    ev = [(on, 2, "on", p, v) for on, _, p, v in sc.notes] + [(off, 0, "off", p, 0) for _, off, p, _ in sc.notes]
    ev += [(t, 1, "cc", c, v) for t, c, v in sc.ccs]
    ev += [(a, 1, "cc", CC_SUSTAIN, 127) for a, _ in sc.pedal] + [(b, 1, "cc", CC_SUSTAIN, 0) for _, b in sc.pedal]
    return sorted(ev)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
