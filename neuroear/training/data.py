"""Training data: labelled clips in memory, window sampling and mixing (augmentation: ``augment``).

Two kinds of source are mixed in every batch (probes here: renders alone reach ~0.5 macro F1
on real audio, real notes alone collapse on phrases, half and half did best):
- real recordings, one label per file, given as folders (folder = label) or a CSV manifest;
- rendered clips from ``neuroear.training.render`` with per-note timing, so silence gets no label.

Each window is augmented (``training.augment``: rooms, microphones, noise) as a source and
again as a mixture.
"""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from neuroear import audio, framing
from neuroear.errors import NeuroEarError
from neuroear.resample import resample
from neuroear.training.augment import LibraryAugment, augment, coloured_noise
from neuroear.training.augment import rms as _rms

SR = framing.SAMPLE_RATE  # Hz: the default training rate (a run trains at its CQTConfig.sample_rate)
FRAMES_PER_SECOND = 100  # activity and level frames: 10 ms at any training rate
HISTORY_SECONDS = 0.5  # s of audio augmented before each window, so reverb tails come from real history
CONTEXT_CUT_P = 0.15  # chance a context model's past is cut short (a stream that just started: zeros before)
MIN_ACTIVE_SECONDS = 0.15  # s of sounding notes a window needs to carry a rendered label
NOTE_MAX_SECONDS = 8.0  # a real clip this short is one note (or one chord) that a note chain may extend
NOTE_SECONDS = (0.12, 0.7)  # a chained note's length before the next begins: s, uniform
RELEASE_SECONDS = (0.03, 0.3)  # its fade after the next note begins (legato overlap): s, uniform
REAL_QUIET_DB = 35.0  # dB below a real clip's loudest window: quieter windows carry no label
PARTNER_DB = (-8.0, 3.0)  # dB: a labelled mixture partner's level relative to the lead (MixConfig.partner_db's default)
NEGATIVE_LABEL = "other"  # real-train folder of real instruments outside the label set: windows that must fire nothing
# Sources whose files are stems of one song (a multitrack collection): the split keeps a whole
# song on one side, so validation never hears a song whose other stems were trained on.
SONG_SOURCE_PREFIXES = ("mt5_",)


@dataclass
class Clip:
    """One mono recording at ``rate`` Hz with one label; ``active`` marks where it sounds.

    ``active`` is a boolean mask per 10 ms frame (None = the whole clip sounds where it is not
    much quieter than its loudest part). ``kind`` is "real" or "render".
    """

    audio: np.ndarray  # int16 [samples] at ``rate`` (half the memory of float32)
    label: str
    kind: str
    name: str
    family: str = ""
    active: np.ndarray | None = None
    group: str = ""  # what the train/validation split hashes (default: the name)
    source: str = ""  # where a real recording comes from (a manifest's ``source`` column): "source_sqrt" weighting
    level_db: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per 10 ms frame, dBFS
    rate: int = SR  # Hz

    def __post_init__(self) -> None:
        f = frame_samples(self.rate)
        x = self.audio.astype(np.float32) / 32768.0
        n = max(1, -(-x.size // f))
        frames = np.pad(x, (0, n * f - x.size)).reshape(n, f)
        self.level_db = audio.dbfs(frames).astype(np.float32)


def frame_samples(rate: int) -> int:
    """Samples per 10 ms activity frame at ``rate`` Hz (a training rate must be a multiple of 100 Hz)."""
    if rate % FRAMES_PER_SECOND:
        raise NeuroEarError(f"training sample rate must be a multiple of {FRAMES_PER_SECOND} Hz, got {rate}")
    return rate // FRAMES_PER_SECOND


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def split_of(name: str, *, val_fraction: float = 0.1) -> str:
    """Deterministic train/val split by hash of a file name (or a clip's group): "train" or "val"."""
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def read_labelled(source: str | Path) -> list[tuple[Path, str]]:
    """(file, label) pairs from a folder (subfolder name = label) or a CSV with file,label columns.

    CSV paths are relative to the CSV's folder; extra columns are ignored; a ``label``
    column may come first (``label,file,...``) as in ../shared manifests.
    """
    src = Path(source)
    if src.is_dir() and (src / "manifest.csv").is_file():
        src = src / "manifest.csv"
    if src.is_file() and src.suffix.lower() == ".csv":
        with src.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or "file" not in rows[0] or not ({"label", "instrument"} & set(rows[0])):
            raise NeuroEarError(f"{src}: CSV manifest needs 'file' and 'label' columns")
        key = "label" if "label" in rows[0] else "instrument"
        return [(src.parent / r["file"], r[key].strip()) for r in rows if r.get("file")]
    if src.is_dir():
        out = []
        for sub in sorted(p for p in src.iterdir() if p.is_dir()):
            out += [(f, sub.name) for f in audio.iter_files([str(sub)])]
        if not out:
            raise NeuroEarError(f"{src}: no labelled audio (expected one subfolder per label)")
        return out
    raise NeuroEarError(f"{src}: not a folder or CSV manifest")


def manifest_sources(source: str | Path) -> dict[str, str]:
    """file path → the manifest's ``source`` column (where the recording comes from). Empty for
    plain folders and manifests without that column."""
    src = Path(source)
    if src.is_dir():
        src = src / "manifest.csv"
    if not src.is_file() or src.suffix.lower() != ".csv":
        return {}
    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {str(src.parent / r["file"]): r["source"] for r in rows if r.get("file") and r.get("source")}


def split_groups(sources: dict[str, str]) -> dict[str, str]:
    """file path → split group, from `manifest_sources`' answer: the song for multitrack stems
    (``SONG_SOURCE_PREFIXES``); files of other sources are absent (each file is its own group)."""
    return {f: s for f, s in sources.items() if s.startswith(SONG_SOURCE_PREFIXES)}


def labelled_splits(source: str | Path) -> list[tuple[Path, str, str]]:
    """(file, label, "train" or "val") for every file of ``source``, split as training splits it:
    by `split_groups`' group (a multitrack song), else by the file's own path."""
    groups = split_groups(manifest_sources(source))
    return [(p, lab, split_of(groups.get(str(p), str(p)))) for p, lab in read_labelled(source)]


def load_real(
    sources: Sequence[str | Path],
    labels: Sequence[str],
    *,
    cache: Path | None = None,
    negatives: bool = False,
    rate: int = SR,
) -> list[Clip]:
    """Decode real recordings (labels outside ``labels`` are skipped) into clips at ``rate`` Hz.

    With ``negatives``, files labelled ``NEGATIVE_LABEL`` are loaded too (label "other"): real
    instruments the model must not name. Each clip's ``group`` (the split key) comes from
    `split_groups`. The decoded audio is cached as one .npz per source list, keyed by the file list.
    """
    keep = set(labels) | ({NEGATIVE_LABEL} if negatives else set())
    pairs = [(p, lab) for s in sources for p, lab in read_labelled(s) if lab in keep]
    origin: dict[str, str] = {}
    for s_ in sources:
        origin.update(manifest_sources(s_))
    groups = split_groups(origin)
    frame_samples(rate)  # refuse a rate the activity frames cannot use before decoding anything
    listed = [[str(p), lab] for p, lab in pairs]
    key = hashlib.sha1(json.dumps(listed if rate == SR else [rate, listed]).encode()).hexdigest()[:12]
    cache_file = cache / f"real-{key}.npz" if cache else None
    if cache_file and cache_file.is_file():
        z = np.load(cache_file, allow_pickle=False)
        names, labs = [str(n) for n in z["names"]], [str(lab) for lab in z["labels"]]
        offsets, pcm = z["offsets"], z["audio"]  # read each array once: NpzFile re-reads on every access
        return [
            Clip(pcm[offsets[i] : offsets[i + 1]], labs[i], "real", names[i], group=groups.get(names[i], names[i]), source=origin.get(names[i], ""), rate=rate)
            for i in range(len(names))
        ]
    clips = []
    for p, lab in pairs:
        try:
            x = audio.load(p, sample_rate=rate)
        except NeuroEarError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
            continue
        if x.size >= rate // 4:
            clips.append(Clip(_to_int16(x), lab, "real", str(p), group=groups.get(str(p), str(p)), source=origin.get(str(p), ""), rate=rate))
    if cache_file:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [c.audio.size for c in clips])
        np.savez(
            cache_file,
            audio=np.concatenate([c.audio for c in clips]) if clips else np.zeros(0, np.int16),
            offsets=offsets,
            names=np.array([c.name for c in clips]),
            labels=np.array([c.label for c in clips]),
        )
    return clips


def load_rendered(manifest: Path, labels: Sequence[str], *, rate: int = SR) -> list[Clip]:
    """Clips listed in a ``training.render`` manifest.jsonl at ``rate`` Hz (resampled if the
    render's rate differs), with 10 ms activity masks."""
    import soundfile as sf

    clips = []
    root = manifest.parent
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        m = json.loads(line)
        if m["label"] not in labels:
            continue
        x, file_rate = sf.read(str(root / m["file"]), dtype="int16")
        if file_rate != rate:
            x = _to_int16(resample(x.astype(np.float32) / 32768.0, file_rate, rate))
        active = np.zeros(max(1, -(-x.size // frame_samples(rate))), dtype=bool)
        for on, off in m["notes"]:
            active[int(on * FRAMES_PER_SECOND) : int(np.ceil(off * FRAMES_PER_SECOND))] = True
        clips.append(Clip(x, m["label"], "render", m["file"], family=m.get("family", ""), active=active, rate=rate))
    return clips


def window_labels(clip: Clip, start: int, length: int | None = None) -> bool:
    """Whether ``clip`` sounds in [start, start + length) samples (default: one second; start may be negative)."""
    f = frame_samples(clip.rate)
    length = clip.rate if length is None else length
    a, b = max(0, start // f), max(0, (start + length) // f)
    if b <= a:
        return False
    if clip.active is not None:
        return int(clip.active[a:b].sum()) >= int(MIN_ACTIVE_SECONDS * FRAMES_PER_SECOND)
    lv = clip.level_db[a:b]
    if lv.size == 0:
        return False
    loud = float(clip.level_db.max())
    return int((lv > max(loud - REAL_QUIET_DB, -60.0)).sum()) >= int(MIN_ACTIVE_SECONDS * FRAMES_PER_SECOND)


def crop(clip: Clip, start: int, length: int) -> np.ndarray:
    """float32 [length] from clip at ``start`` (zero-padded outside the clip)."""
    out = np.zeros(length, dtype=np.float32)
    a, b = max(0, start), min(clip.audio.size, start + length)
    if b > a:
        out[a - start : b - start] = clip.audio[a:b].astype(np.float32) / 32768.0
    return out


# ---------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class MixConfig:
    """Batch composition: share of real clips vs renders, mixtures, negatives; augmentation."""

    real_fraction: float = 0.5
    mix_p: float = 0.25  # chance a window gets a second instrument added
    third_p: float = 0.2  # ...and a third, given a second
    negative_p: float = 0.05  # noise-only / silent windows with no label
    augment_strength: float = 1.0
    guitar_distort_p: float = 0.4  # amp-style clipping of guitar (the dev guitar is distorted electric)
    augment_library: str = "numpy"  # "numpy": hand-rolled ``augment``; "audiomentations": ``LibraryAugment``
    # How a clip is picked within its (kind, label) pool. "clip": uniformly, so a 5 s note counts
    # as much as a 3 min phrase stem; "sqrt_duration": weight ∝ √duration, which gives the few long
    # real phrases (guitar, voice, accordion) more windows without letting one stem dominate;
    # "source_sqrt": a source (Clip.source; a render's family) with probability ∝ √(its total
    # duration), then a clip of it ∝ √duration — so 373 chord strums or 264 notes of one guitar
    # count about as much as a handful of DI riffs, not 40× more.
    clip_weighting: str = "clip"
    # Chance a labelled window gets an unlabelled bed of 2–4 other instruments far below it:
    # sound that far under the lead is background, not a detection (secondary instruments of a
    # mixture stay labelled down to PARTNER_DB[0] = -8 dB, so the two never overlap).
    background_p: float = 0.0
    # The bed's level in dB below the lead, drawn uniformly from (lo, hi); lo stays above the
    # mixture partners' lowest level (PARTNER_DB) so a labelled partner is never quieter than an unlabelled bed.
    background_db: tuple[float, float] = (14.0, 30.0)
    # A labelled mixture partner's level relative to the lead, dB, drawn uniformly (ensembles
    # of real phrases sit within about ±6 dB of each other).
    partner_db: tuple[float, float] = PARTNER_DB
    # Real recordings of instruments outside the label set (``NEGATIVE_LABEL`` clips): the chance
    # a window is one of them alone (no label), and the chance one joins a labelled window as an
    # unlabelled partner at a partner's level, so unknown instruments in a band fire nothing.
    other_p: float = 0.0
    other_partner_p: float = 0.0
    # The chance a mixture's partners (not its lead) are real recordings where a label has both
    # kinds; None: ``real_fraction``, as for the lead. Real ensembles are real over real: a
    # real-plus-render mixture lets a net tell its stems apart by how rendered they sound.
    partner_real_p: float | None = None
    # The chance a drawn real note (a clip of at most NOTE_MAX_SECONDS) becomes a run of notes of
    # the same source played one after another: most real clarinet, flute, saxophone, trumpet and
    # cello audio is single notes (Philharmonia), while performances are phrases, so a net never
    # hears those timbres change note, overlap a release or move through a register in a window.
    note_chain_p: float = 0.0
    # Window-level dynamics of real ensembles, dB (0: off). ``partner_db`` sets the stems' levels
    # over a whole phrase, but within one second a real phrase strays from its own level (real-train
    # phrases: 5th–95th percentile of a window's level −11.6 to +4.1 dB around its phrase's RMS),
    # so in a real mix at ±6 dB one window's partner is often 10 dB under the lead. Each stem's
    # level then strays by this much (a normal clipped at ±2 σ, the lead's too), the partner's
    # level relative to the lead staying above −(background_db[0] − 1) dB so a labelled partner
    # is never as quiet as an unlabelled bed.
    partner_spread_db: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "MixConfig":
        """Rebuild from a config.json entry: JSON's lists back to tuples."""
        d = dict(d)
        for k in ("background_db", "partner_db"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


CLIP_WEIGHTINGS = ("clip", "sqrt_duration", "source_sqrt")


def clip_weights(pool: Sequence[Clip], weighting: str) -> np.ndarray:
    """Unnormalised draw weights [len(pool)] of ``MixConfig.clip_weighting`` (not "clip": uniform)."""
    root = np.sqrt(np.array([c.audio.size for c in pool], dtype=np.float64))
    if weighting == "sqrt_duration":
        return root
    src = [c.source or c.family or c.name for c in pool]
    total, roots = {}, {}
    for s, c, r in zip(src, pool, root):
        total[s] = total.get(s, 0) + c.audio.size
        roots[s] = roots.get(s, 0.0) + r
    return np.array([np.sqrt(total[s]) * r / roots[s] for s, r in zip(src, root)])


class Sampler:
    """Draws labelled training windows: x [batch, context + window] float32 at ``rate`` Hz,
    y [batch, n_labels] float32 for the window (the input's latest second).

    ``context`` (s) is audio before the window that a context model also reads; its labels are
    not the target. The clips must be at ``rate``.
    """

    def __init__(
        self,
        clips: list[Clip],
        labels: Sequence[str],
        *,
        cfg: MixConfig = MixConfig(),
        seed: int = 0,
        strict: bool = True,
        rate: int = SR,
        context: float = 0.0,
    ) -> None:
        if any(c.rate != rate for c in clips):
            raise NeuroEarError(f"clips at {sorted({c.rate for c in clips})} Hz given to a {rate} Hz sampler")
        self.rate = rate
        self.win = int(round(rate * framing.WINDOW_SECONDS))
        self.context = int(round(rate * context))  # model input before the window
        self.history = int(rate * HISTORY_SECONDS)  # augmented but not returned
        self.labels = tuple(labels)
        self.cfg = cfg
        self.rng = np.random.default_rng(seed)
        self.pools: dict[tuple[str, str], list[Clip]] = {}
        self.others: list[Clip] = []
        for c in clips:
            if c.label == NEGATIVE_LABEL and c.label not in self.labels:
                self.others.append(c)
            else:
                self.pools.setdefault((c.kind, c.label), []).append(c)
        self.kinds = {lab: [k for k in ("real", "render") if (k, lab) in self.pools] for lab in self.labels}
        missing = [lab for lab, ks in self.kinds.items() if not ks]
        if missing and strict:
            raise NeuroEarError(f"no training audio for labels: {', '.join(missing)}")
        self.drawable = np.array([i for i, lab in enumerate(self.labels) if self.kinds[lab]])
        lo, hi = cfg.background_db
        if not -cfg.partner_db[0] < lo <= hi:
            raise NeuroEarError(
                f"background_db {cfg.background_db!r}: need {-cfg.partner_db[0]:g} < lo <= hi dB below the lead "
                f"(labelled partners go down to {-cfg.partner_db[0]:g})"
            )
        if not 0.0 <= cfg.partner_spread_db <= 12.0:
            raise NeuroEarError(f"partner_spread_db {cfg.partner_spread_db!r}: need 0 to 12 dB")
        if not 0.0 <= cfg.note_chain_p <= 1.0:
            raise NeuroEarError(f"note_chain_p {cfg.note_chain_p!r}: need a probability in [0, 1]")
        # real notes by (label, source): what a chain continues with (sources of a single note cannot
        # chain); empty when chains are off, so nothing chains and nothing is drawn for them
        self.notes: dict[tuple[str, str], list[Clip]] = {}
        for (kind, lab), pool in self.pools.items() if cfg.note_chain_p > 0 else ():
            for c in pool:
                if kind == "real" and self._is_note(c):
                    self.notes.setdefault((lab, c.source or c.name), []).append(c)
        if cfg.partner_real_p is not None and not 0.0 <= cfg.partner_real_p <= 1.0:
            raise NeuroEarError(f"partner_real_p {cfg.partner_real_p!r}: need a probability in [0, 1] (or null: real_fraction)")
        if cfg.clip_weighting not in CLIP_WEIGHTINGS:
            raise NeuroEarError(f"unknown clip_weighting {cfg.clip_weighting!r}: {', '.join(CLIP_WEIGHTINGS)}")
        self.pool_cdf: dict[tuple[str, str], np.ndarray] = {}  # weighted pools only; others are uniform
        if cfg.clip_weighting != "clip":
            for key, pool in self.pools.items():
                w = clip_weights(pool, cfg.clip_weighting)
                self.pool_cdf[key] = np.cumsum(w) / w.sum()
        if cfg.augment_library == "numpy":
            self.augment = augment
        elif cfg.augment_library == "audiomentations":
            self.augment = LibraryAugment(seed, rate=rate)
        else:
            raise NeuroEarError(f"unknown augment_library {cfg.augment_library!r}: numpy or audiomentations")
        if self.drawable.size == 0:
            raise NeuroEarError("no audio for any label")

    def _draw(self, label: str, *, augment: bool = True, real_p: float | None = None) -> tuple[np.ndarray, bool]:
        if label == NEGATIVE_LABEL and label not in self.labels:
            kind, pool, cdf = "real", self.others, None
        else:
            kinds = self.kinds[label]
            if len(kinds) == 2:
                kind = "real" if self.rng.random() < (self.cfg.real_fraction if real_p is None else real_p) else "render"
            else:
                kind = kinds[0]
            pool = self.pools[(kind, label)]
            cdf = self.pool_cdf.get((kind, label))
        if cdf is None:
            clip = pool[self.rng.integers(len(pool))]
        else:
            clip = pool[min(int(np.searchsorted(cdf, self.rng.random(), side="right")), len(pool) - 1)]
        win, before = self.win, self.history + self.context
        chain = self.notes.get((label, clip.source or clip.name), ()) if kind == "real" else ()
        if len(chain) > 1 and self._is_note(clip) and self.rng.random() < self.cfg.note_chain_p:
            seg, on = self._note_chain(clip, chain, before + win), True
        else:
            # windows may start a little before the clip, so onsets after silence are seen too
            lo, hi = -win // 3, max(-win // 3 + 1, clip.audio.size - (2 * win) // 3)
            for _ in range(4):  # prefer sounding windows
                start = int(self.rng.integers(lo, hi))
                on = window_labels(clip, start, win)
                if on:
                    break
            seg = crop(clip, start - before, before + win)
        if not augment:
            return seg, on
        distort = self.cfg.guitar_distort_p if label == "guitar" else 0.05  # chained guitar notes too
        seg = self.augment(seg, self.rng, strength=self.cfg.augment_strength * 0.6, distort_p=distort, rate=self.rate)
        return seg, on

    def _is_note(self, clip: Clip) -> bool:
        """Whether a clip is short enough to be one note (or chord) that a note chain may extend."""
        return clip.audio.size <= NOTE_MAX_SECONDS * self.rate

    def _note_chain(self, first: Clip, notes: Sequence[Clip], length: int) -> np.ndarray:
        """float32 [length]: notes of one source back to back from ``first`` on, each from its onset
        for NOTE_SECONDS, overlapping the next by a RELEASE_SECONDS fade, levels within ±4 dB."""
        rate, out = self.rate, np.zeros(length, dtype=np.float32)
        f = frame_samples(rate)
        pos = -int(self.rng.uniform(0.0, NOTE_SECONDS[1]) * rate)  # the first note may have begun before
        clip = first
        while pos < length:
            loud = clip.level_db > (clip.level_db.max() - 20.0) if clip.level_db.size else np.ones(1, bool)
            onset = max(0, int(np.argmax(loud)) * f - int(0.02 * rate))
            hold = int(self.rng.uniform(*NOTE_SECONDS) * rate)
            rel = int(self.rng.uniform(*RELEASE_SECONDS) * rate)
            seg = crop(clip, onset, hold + rel)
            seg[hold:] *= np.linspace(1.0, 0.0, rel, dtype=np.float32)
            seg *= 0.1 / (_rms(seg[:hold]) + 1e-9) * 10 ** (self.rng.uniform(-4.0, 4.0) / 20)
            a, b = max(0, pos), min(length, pos + seg.size)
            if b > a:
                out[a:b] += seg[a - pos : b - pos]
            pos += hold
            clip = notes[self.rng.integers(len(notes))]
        return out

    def one(self) -> tuple[np.ndarray, np.ndarray]:
        """One model input [context + window] and the window's multi-hot label vector [n_labels]."""
        x, y = self._one()
        if self.context and self.rng.random() < CONTEXT_CUT_P:
            x[: int(self.rng.integers(1, self.context + 1))] = 0.0
        return x, y

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        y = np.zeros(len(self.labels), dtype=np.float32)
        win, rate = self.win, self.rate
        out = self.context + win
        n = self.history + out
        if self.rng.random() < self.cfg.negative_p:
            colour = self.rng.choice(["white", "pink", "brown"])
            x = coloured_noise(n, self.rng, colour) * 10 ** (self.rng.uniform(-70, -15) / 20)
            return x[-out:].astype(np.float32), y
        # drawn only when enabled, so configs without them keep their exact random stream
        if self.others and self.cfg.other_p > 0 and self.rng.random() < self.cfg.other_p:
            seg, _ = self._draw(NEGATIVE_LABEL)
            x = self.augment(seg, self.rng, strength=self.cfg.augment_strength * 0.5, distort_p=0.0, rate=rate)
            return x[-out:], y
        k = 1
        if self.rng.random() < self.cfg.mix_p:
            k = 3 if self.rng.random() < self.cfg.third_p else 2
        chosen = self.rng.choice(self.drawable, size=min(k, self.drawable.size), replace=False)
        x = np.zeros(n, dtype=np.float32)
        for j, li in enumerate(chosen):
            seg, on = self._draw(self.labels[li], real_p=self.cfg.partner_real_p if j else None)
            rms = _rms(seg[-win:]) + 1e-9
            gain = 1.0 if j == 0 else 10 ** (self._partner_db() / 20)
            x += seg / rms * gain * 0.1
            y[li] = max(y[li], float(on))
        if self.others and self.cfg.other_partner_p > 0 and self.rng.random() < self.cfg.other_partner_p:
            seg, _ = self._draw(NEGATIVE_LABEL)
            x += seg / (_rms(seg[-win:]) + 1e-9) * 10 ** (self.rng.uniform(*self.cfg.partner_db) / 20) * 0.1
        # drawn only when enabled, so configs without a bed keep their exact random stream
        if self.cfg.background_p > 0 and y.any() and self.rng.random() < self.cfg.background_p:
            x += self._background(n, float(_rms(x[-win:])))
        x = self.augment(x, self.rng, strength=self.cfg.augment_strength * 0.5, distort_p=0.0, rate=rate)
        return x[-out:], y

    def _partner_db(self) -> float:
        """A labelled partner's level relative to the lead in this window, dB (``MixConfig.partner_db``
        and, when on, ``partner_spread_db``)."""
        db = float(self.rng.uniform(*self.cfg.partner_db))
        sd = self.cfg.partner_spread_db
        if sd > 0:  # drawn only when on, so configs without it keep their exact random stream
            stray = np.clip(self.rng.normal(size=2), -2.0, 2.0) * sd
            floor = self.cfg.background_db[0] - 1.0
            db = float(np.clip(db + stray[0] - stray[1], -floor, floor))
        return db

    def _background(self, n: int, fg_rms: float) -> np.ndarray:
        """An unlabelled bed [n] of 2–4 instruments, in total ``cfg.background_db`` dB below ``fg_rms``."""
        bed = np.zeros(n, dtype=np.float32)
        for li in self.rng.choice(self.drawable, size=int(self.rng.integers(2, 5))):
            seg, _ = self._draw(self.labels[li], augment=False)
            bed += seg / (_rms(seg[-self.win :]) + 1e-9)
        rms = float(_rms(bed[-self.win :]))
        if rms < 1e-9:
            return bed
        lo, hi = self.cfg.background_db
        return bed * (fg_rms / rms * 10 ** (-self.rng.uniform(lo, hi) / 20))

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """x [size, context + window] float32 in [-1, 1], y [size, n_labels] float32 multi-hot."""
        xs, ys = zip(*(self.one() for _ in range(size)))
        return np.stack(xs), np.stack(ys)
