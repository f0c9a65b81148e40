"""Rendered training audio: real scores → notes → sampled instruments → labelled mono clips.

Data flow
    music21 corpus (ABC folk tunes, Bach chorales) → `load_phrases` (parsed once, cached as JSON)
    → per clip: one instrument program, styles (melody, chorale, block chords, arpeggios, strums,
      power chords, oom-pah), tempo, articulation, dynamics and controllers → timed notes (s)
      (these two steps live in ``music``)
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
import shutil
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neuroear.errors import NeuroEarError
from neuroear.training.music import (  # the score half of rendering
    CC_CHORUS,
    CC_REVERB,
    DRUM_CHANNEL,
    DRUM_PROGRAM,
    LABELS,
    PROGRAMS,
    RANGES,
    Phrase,
    Score,
    compose,
    fit_pitches,
    load_phrases,
    midi_events,
    sounding,
    transpose_into_range,
    write_atomic,
)

log = logging.getLogger(__name__)

_PROGRAM_WEIGHTS: dict[int, float] = {29: 2.0, 30: 2.0}  # half of the guitar clips overdriven or distorted

FAMILIES: dict[str, tuple[str, ...]] = {
    "fluid": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf3/MuseScore_General.sf3"),
    "timgm": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/sf_GMbank.sf2"),
    "freepats": ("/etc/timidity/freepats.cfg",),
}

# Drum-only SoundFonts, used for the drums label of a family beside its GM fonts' kits:
# avldrums' two kits are multi-sampled recordings of real acoustic drum kits.
DRUM_FONTS: dict[str, tuple[str, ...]] = {
    "fluid": ("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2", "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"),
}

RENDER_RATE = 44_100  # Hz: synthesis rate; soxr then resamples (FluidSynth does not band-limit pitch-up)
PEAK_DBFS = (-20.0, -1.0)  # dBFS: random peak level of each finished clip
SILENT_PEAK = 1e-4  # linear: a raw render below this peak (-80 dBFS) is a missing or broken program
QUIET_INTERVAL_DB = 40.0  # dB: a sounding interval this far below the clip's loudest is dropped from `notes`
_RENDER_VERSION = 1  # bump when the output of the same parameters changes

# --------------------------------------------------------------------------- notes → audio
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
        # a GM kit in the percussion bank, or (drum-only fonts) a kit as the font's first preset
        self.kit = next(((b, 0) for b in (128, 0) if self.synth.sfpreset_name(self.sfid, b, 0) is not None), None)
        if self.kit is not None and (self.kit[0] == 128 or not self.programs - {0}):
            self.programs.add(DRUM_PROGRAM)
        self._write = fluidsynth._fl.fluid_synth_write_float
        self._write.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int] * 2
        self._write.restype = ctypes.c_int

    def render(self, sc: Score, *, program: int, seconds: float, fx: dict[str, float]) -> np.ndarray:
        """Mono float32 [seconds · rate] of the score played by ``program``."""
        s = self.synth
        s.system_reset()
        s.set_reverb(fx["room"], fx["damp"], fx["width"], fx["reverb"])
        s.set_chorus(3, fx["chorus"], fx["speed"], fx["depth"], 0)
        ch = DRUM_CHANNEL if program == DRUM_PROGRAM else 0
        bank, preset = self.kit if program == DRUM_PROGRAM and self.kit else (0, program)
        if s.program_select(ch, self.sfid, bank, preset) != 0:
            raise NeuroEarError(f"program {program} missing from the loaded SoundFont")
        total = int(round(seconds * self.rate))
        buf = np.zeros(2 * total, dtype=np.float32)
        pos = 0
        for t, _, kind, a, b in midi_events(sc):
            f = min(total, int(round(t * self.rate)))
            if f > pos:
                self._write(s.synth, f - pos, buf.ctypes.data, 2 * pos, 2, buf.ctypes.data, 2 * pos + 1, 2)
                pos = f
            if kind == "on":
                s.noteon(ch, a, b)
            elif kind == "off":
                s.noteoff(ch, a)
            else:
                s.cc(ch, a, b)
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


def _midi_file(sc: Score, program: int) -> bytes:
    """Standard MIDI file (format 0, 1 tick = 1/960 s) of the score on channel 0 (drums: channel 10)."""
    track, last = bytearray(_vlq(0) + b"\xff\x51\x03" + (500_000).to_bytes(3, "big")), 0  # 120 bpm, 480 ppq
    ch = DRUM_CHANNEL if program == DRUM_PROGRAM else 0
    if program != DRUM_PROGRAM:
        track += _vlq(0) + bytes([0xC0, program])
    codes = {"on": 0x90 | ch, "off": 0x80 | ch, "cc": 0xB0 | ch}
    for t, _, kind, a, b in midi_events(sc):
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

    def render(self, sc: Score, *, program: int, seconds: float, fx: dict[str, float]) -> np.ndarray:
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
        elif bank == ("drumset", "0") and words[0].isdigit():
            progs.add(DRUM_PROGRAM)  # a standard kit with at least one patch
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
        sc = Score(notes=list(notes), ccs=[(0.0, CC_REVERB, 0), (0.0, CC_CHORUS, 0)])
        fx = {"room": 0.2, "damp": 0.5, "width": 0.5, "reverb": 0.0, "chorus": 0.0, "speed": 0.3, "depth": 2.0}
        x = r.render(sc, program=program, seconds=seconds, fx=fx)
    finally:
        r.close()
    from neuroear.resample import resample

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


def _drum_fonts(family: str) -> list[Path]:
    """The family's drum-only SoundFonts that are installed here."""
    return [Path(p) for p in DRUM_FONTS.get(family, ()) if Path(p).is_file()]


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
        "fonts": {f: [p.name for p in have[f] + _drum_fonts(f)] for f in families},
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

    from neuroear.resample import resample

    start = time.perf_counter()
    phrases = load_phrases(n_pieces=n_pieces, seed=seed, cache_dir=cache_dir)
    n_clips = math.ceil(seconds_per_label / clip_seconds)
    jobs: dict[tuple[str, Path], list[tuple[str, int]]] = {}
    for label in labels:
        for k in range(n_clips):
            fam = families[k % len(families)]
            fonts = have[fam] + (_drum_fonts(fam) if label == "drums" else [])
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
    write_atomic(manifest, "".join(json.dumps(rows[key]) + "\n" for key in sorted(rows)))
    write_atomic(params_path, json.dumps(params, indent=1))
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
