"""Rendered training audio: valid FLAC at the asked rate, labels that match the sound, determinism, caching.

Only TimGM6mb (6 MB) is used, through family "timgm" narrowed to that one font, so the suite
stays fast; it skips cleanly where FluidSynth or the font is missing.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from neuroear.training import music, render
from neuroear.errors import NeuroEarError
from neuroear.training.music import LABELS, PROGRAMS, RANGES, Phrase

TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
RATE = 16_000  # Hz
ASKED = ("flute", "guitar")
KW = dict(families=["timgm"], labels=ASKED, seconds_per_label=20.0, clip_seconds=10.0, sample_rate=RATE, n_pieces=4)


def _need_timgm() -> None:
    if "timgm" not in render.available_families() or not TIMGM.is_file():
        pytest.skip("FluidSynth or TimGM6mb.sf2 not installed")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("music21")
    return tmp_path_factory.mktemp("phrase-cache")


@pytest.fixture(scope="module")
def timgm_only():
    """Family "timgm" narrowed to TimGM6mb alone."""
    _need_timgm()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(render.FAMILIES, "timgm", (str(TIMGM),))
        yield


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, timgm_only: None) -> Path:
    return render.render_set(tmp_path_factory.mktemp("set-a"), seed=0, cache_dir=cache_dir, **KW)


def _rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_tables_are_consistent() -> None:
    assert set(PROGRAMS) == set(RANGES) == set(LABELS)
    assert all(0 <= p < 128 for lab, progs in PROGRAMS.items() if lab != "drums" for p in progs)
    assert PROGRAMS["drums"] == (music.DRUM_PROGRAM,)  # the GM percussion bank, not a melodic program
    assert all(12 <= hi - lo <= 88 and 21 <= lo for lo, hi in RANGES.values())
    assert {29, 30} <= set(PROGRAMS["guitar"])  # distorted electric guitar is in the dev set


@pytest.mark.parametrize("label", LABELS)
def test_phrase_transposed_into_range(label: str) -> None:
    lo, hi = RANGES[label]
    rng = np.random.default_rng(7)
    narrow = Phrase("test", tuple((float(i), 1.0, p) for i, p in enumerate([60, 64, 67, 72, 71, 62])), False)
    wide = Phrase("test", tuple((float(i), 1.0, p) for i, p in enumerate([20, 50, 80, 110])), True)
    shifts = set()
    for _ in range(20):
        moved = music.transpose_into_range(narrow, lo, hi, rng=rng)
        pitches = np.array([n[2] for n in moved.notes])
        assert lo <= pitches.min() and pitches.max() <= hi
        assert np.array_equal(np.diff(pitches), np.diff([n[2] for n in narrow.notes]))  # one shift: same intervals
        shifts.add(int(pitches[0]) - 60)
        folded = music.transpose_into_range(wide, lo, hi, rng=rng)
        assert all(lo <= n[2] <= hi for n in folded.notes)
    assert len(shifts) > 1  # the position in the range is random


@pytest.mark.parametrize("label", LABELS)
def test_compose_plays_inside_the_range_and_clip(label: str) -> None:
    lines = [Phrase("p", tuple((i * 0.5, 0.5, 60 + (i * 5) % 14) for i in range(40)), False)]
    chorale = tuple(sorted((float(i), 1.0, p + d) for i in range(24) for d, p in enumerate((48, 55, 64, 72))))
    phrases = lines + [Phrase("c", chorale, True)]
    for program in PROGRAMS[label]:
        sc = music.compose(label, program, phrases, seconds=8.0, rng=np.random.default_rng(program))
        lo, hi = RANGES[label]
        assert sc.notes
        assert all(lo <= p <= hi and 1 <= v <= 127 for _, _, p, v in sc.notes)
        assert all(0.0 <= on < off <= 8.0 for on, off, _, _ in sc.notes)
        ivs = music.sounding(sc)
        assert all(a < b <= c for (a, b), (c, _) in zip(ivs, ivs[1:]))  # merged, sorted, disjoint


def test_render_set_writes_valid_labelled_flac(rendered: Path) -> None:
    import soundfile as sf

    rows = _rows(rendered)
    assert {r["label"] for r in rows} == set(ASKED)
    assert len(rows) == 4  # 20 s per label in 10 s clips
    for r in rows:
        assert r["program"] in PROGRAMS[r["label"]]
        assert r["family"] == "timgm" and r["font"] == TIMGM.name
        path = rendered.parent / r["file"]
        info = sf.info(str(path))
        assert (info.format, info.subtype, info.channels, info.samplerate) == ("FLAC", "PCM_16", 1, RATE)
        assert info.frames == int(r["seconds"] * RATE)
        x, _ = sf.read(str(path), dtype="float32")
        peak_db = 20 * np.log10(np.abs(x).max())
        assert -20.5 <= peak_db <= -0.9
        assert r["notes"], "every clip plays something"
        for a, b in r["notes"]:
            assert 0.0 <= a < b <= r["seconds"]
            if b - a >= 0.2:  # where the manifest says the instrument sounds, it does
                seg = x[int(a * RATE) : int(b * RATE)]
                assert 20 * np.log10(np.sqrt(np.mean(seg**2)) + 1e-12) > peak_db - 45
    params = json.loads((rendered.parent / "params.json").read_text())
    assert params["seed"] == 0 and params["labels"] == list(ASKED)


def test_same_seed_same_audio_other_seed_differs(rendered: Path, tmp_path: Path, cache_dir: Path, timgm_only: None) -> None:
    again = render.render_set(tmp_path / "b", seed=0, cache_dir=cache_dir, **KW)
    other = render.render_set(tmp_path / "c", seed=1, cache_dir=cache_dir, **KW)
    assert again.read_text() == rendered.read_text()
    for r in _rows(rendered):
        assert (again.parent / r["file"]).read_bytes() == (rendered.parent / r["file"]).read_bytes()
    assert other.read_text() != rendered.read_text()
    first = _rows(rendered)[0]["file"]
    assert (other.parent / first).read_bytes() != (rendered.parent / first).read_bytes()


def test_second_call_is_cached(rendered: Path, cache_dir: Path, timgm_only: None) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in [rendered, *(rendered.parent / "clips").iterdir()]}
    assert render.render_set(rendered.parent, seed=0, cache_dir=cache_dir, **KW) == rendered
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_silent_program_is_skipped_with_a_warning(tmp_path: Path, cache_dir: Path, timgm_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render._Fluid, "render", lambda self, sc, *, program, seconds, fx: np.zeros(int(seconds * self.rate), np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = render.render_set(tmp_path / "silent", seed=0, cache_dir=cache_dir, **KW)
    assert manifest.read_text() == ""
    assert not list((tmp_path / "silent" / "clips").glob("*.flac"))
    assert any("silence" in str(w.message) for w in caught)


def test_a4_sounds_at_440_hz(timgm_only: None) -> None:
    x = render.render_notes(TIMGM, [(0.1, 1.1, 69, 100)], program=73, seconds=1.2, sample_rate=RATE)  # flute
    assert x.shape == (int(1.2 * RATE),)
    seg = x[int(0.3 * RATE) : int(1.0 * RATE)] * np.hanning(int(0.7 * RATE))
    spectrum = np.abs(np.fft.rfft(seg, 8 * seg.size))
    freqs = np.fft.rfftfreq(8 * seg.size, 1 / RATE)
    assert abs(freqs[np.argmax(spectrum)] - 440.0) < 5.0


def test_unknown_family_or_label_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NeuroEarError, match="families"):
        render.render_set(tmp_path, families=["nope"], seconds_per_label=1.0)
    _need_timgm()
    with pytest.raises(NeuroEarError, match="labels"):
        render.render_set(tmp_path, families=["timgm"], labels=["kazoo"], seconds_per_label=1.0)


def test_drums_and_bass_render_as_a_kit_and_a_low_line(timgm_only: None, cache_dir: Path, tmp_path: Path) -> None:
    import soundfile as sf

    manifest = render.render_set(tmp_path / "db", families=["timgm"], labels=("drums", "bass"), seconds_per_label=10.0,
                                 clip_seconds=10.0, sample_rate=RATE, n_pieces=4, seed=0, cache_dir=cache_dir)  # fmt: skip
    rows = {r["label"]: r for r in _rows(manifest)}
    assert set(rows) == {"drums", "bass"}
    assert rows["drums"]["program"] == music.DRUM_PROGRAM and rows["bass"]["program"] in PROGRAMS["bass"]
    spectra = {}
    for lab, r in rows.items():
        x, _ = sf.read(str(manifest.parent / r["file"]), dtype="float32")
        assert np.abs(x).max() > 0.05 and r["notes"]
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / RATE)
        spectra[lab] = (spec, f)
    # the bass line lives below ~300 Hz; a kit's cymbals and snare put far more energy above 2 kHz
    share_low = {lab: s[f < 300].sum() / s.sum() for lab, (s, f) in spectra.items()}
    share_high = {lab: s[f > 2000].sum() / s.sum() for lab, (s, f) in spectra.items()}
    assert share_low["bass"] > 0.6
    assert share_high["drums"] > 10 * share_high["bass"], share_high


def test_drum_score_is_a_groove_on_percussion_keys() -> None:
    sc = music.compose("drums", music.DRUM_PROGRAM, [], seconds=8.0, rng=np.random.default_rng(3))
    keys = {p for _, _, p, _ in sc.notes}
    assert {36, 38} <= keys  # kick and snare in every groove
    assert keys & {42, 44, 46, 51}  # and a hi-hat or ride keeping time
    assert all(0.0 <= on < off <= 8.0 and 1 <= v <= 127 for on, off, _, v in sc.notes)
    iv = music.sounding(sc)
    assert sum(b - a for a, b in iv) > 4.0  # mostly playing
