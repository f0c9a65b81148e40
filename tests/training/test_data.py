"""Training data: window labels, the sampler's batches and both augmentation back ends."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SR, has_module, tone
from neuroear import framing
from neuroear.training import augment as A
from neuroear.training import data as D
from neuroear.errors import NeuroEarError

LABELS = ("piano", "violin", "flute")


def clips() -> list[D.Clip]:
    """Three 4-second tones with distinct labels; the violin one is silent for its first 2 s."""
    out = []
    for lab, f in zip(LABELS, (220.0, 440.0, 880.0)):
        x = np.tile(tone(f, 1.0), 4)
        active = None
        if lab == "violin":
            x[: 2 * SR] = 0.0
            active = np.zeros(400, dtype=bool)
            active[200:] = True
        out.append(D.Clip(np.round(x * 32767).astype(np.int16), lab, "render", f"{lab}.flac", active=active))
    return out


def test_window_labels_follow_the_notes_and_the_level() -> None:
    piano, violin, _ = clips()
    assert D.window_labels(violin, 2 * SR)
    assert not D.window_labels(violin, 0)  # silent part: no label even though the clip is "violin"
    assert D.window_labels(violin, SR + SR // 2)  # 0.5 s of notes ≥ 0.15 s
    assert not D.window_labels(violin, 2 * SR - SR + 1000)  # < 0.15 s of notes
    assert D.window_labels(piano, 0) and not D.window_labels(piano, 10 * SR)


@pytest.mark.parametrize("library", ["numpy", pytest.param("audiomentations", marks=pytest.mark.skipif(not (has_module("audiomentations") and has_module("pyroomacoustics")), reason="needs the 'train' extra"))])
def test_sampler_batches_are_labelled_bounded_and_reproducible(library: str) -> None:
    cfg = D.MixConfig(mix_p=0.5, negative_p=0.1, augment_library=library)
    x, y = D.Sampler(clips(), LABELS, cfg=cfg, seed=3).batch(48)
    assert x.shape == (48, framing.WINDOW_SAMPLES) and x.dtype == np.float32 and y.shape == (48, 3)
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert (y.sum(1) >= 2).any()  # mixtures
    assert (y.sum(1) == 0).any()  # negatives (noise) and silent violin windows
    x2, y2 = D.Sampler(clips(), LABELS, cfg=cfg, seed=3).batch(48)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _ = D.Sampler(clips(), LABELS, cfg=cfg, seed=4).batch(48)
    assert not np.array_equal(x, x3)


def test_solo_windows_carry_their_own_label() -> None:
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0)
    s = D.Sampler(clips(), LABELS, cfg=cfg, seed=0)
    for _ in range(60):
        x, y = s.one()
        if y.sum() == 0:
            continue
        assert y.sum() == 1
        # the tone's own frequency dominates the spectrum: the label belongs to the audio
        f = np.fft.rfftfreq(x.size, 1 / SR)[np.abs(np.fft.rfft(x)).argmax()]
        assert LABELS[int(y.argmax())] == {220: "piano", 440: "violin", 880: "flute"}[int(round(f / 10) * 10)]


@pytest.mark.skipif(not (has_module("audiomentations") and has_module("pyroomacoustics")), reason="needs the 'train' extra")
def test_library_augmentation_changes_the_sound_within_bounds() -> None:
    aug = A.LibraryAugment(0, n_rooms=8)
    assert 1 <= len(aug.rirs) <= 8 and all(abs(float(np.sqrt(np.sum(ir**2))) - 1) < 1e-3 for ir in aug.rirs)
    rng = np.random.default_rng(0)
    x = tone(440.0, 1.5, amp=0.3)
    outs = [aug(x, rng, strength=1.0, distort_p=0.5) for _ in range(20)]
    assert all(o.shape == x.shape and o.dtype == np.float32 and np.abs(o).max() <= 1.0 for o in outs)
    peaks = [20 * np.log10(np.abs(o).max()) for o in outs]
    assert min(peaks) >= -35.5 and max(peaks) <= -0.5 and np.ptp(peaks) > 5  # random peak gain
    # the chain changes more than the gain: spectra differ from the clean tone's
    clean = np.abs(np.fft.rfft(x))
    clean /= clean.sum()
    diffs = [np.abs(np.abs(np.fft.rfft(o)) / np.abs(np.fft.rfft(o)).sum() - clean).sum() for o in outs]
    assert max(diffs) > 0.2


def test_unknown_augment_library_is_refused() -> None:
    with pytest.raises(NeuroEarError, match="augment_library"):
        D.Sampler(clips(), LABELS, cfg=D.MixConfig(augment_library="sox"))


@pytest.mark.parametrize(("weighting", "expected_long_share"), [("clip", 0.5), ("sqrt_duration", 0.8)])
def test_clip_weighting_favours_long_clips_by_root_duration(weighting: str, expected_long_share: float) -> None:
    # one label, two clips: a 1 s note at 220 Hz and a 16 s phrase at 660 Hz; √16 : √1 = 4 : 1
    short = np.round(tone(220.0, 1.0) * 32767).astype(np.int16)
    long = np.round(np.tile(tone(660.0, 1.0), 16) * 32767).astype(np.int16)
    pool = [D.Clip(short, "piano", "render", "short.flac"), D.Clip(long, "piano", "render", "long.flac")]
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0, clip_weighting=weighting)
    s = D.Sampler(pool, ("piano",), cfg=cfg, seed=1)
    picks = []
    for _ in range(300):
        x, _ = s.one()
        f = np.fft.rfftfreq(x.size, 1 / SR)[np.abs(np.fft.rfft(x)).argmax()]
        picks.append(abs(f - 660.0) < 20)
    assert abs(np.mean(picks) - expected_long_share) < 0.08


def test_source_weighting_lets_a_few_long_takes_count_as_much_as_many_notes() -> None:
    # source A: sixteen 1 s notes; source B: one 16 s phrase — the same duration in each source
    note = np.zeros(SR, np.int16)
    pool = [D.Clip(note, "guitar", "real", f"a{i}.ogg", source="A") for i in range(16)]
    pool.append(D.Clip(np.zeros(16 * SR, np.int16), "guitar", "real", "b.ogg", source="B"))
    share_b = {w: D.clip_weights(pool, w)[-1] / D.clip_weights(pool, w).sum() for w in ("sqrt_duration", "source_sqrt")}
    assert share_b["sqrt_duration"] == pytest.approx(4 / 20)  # √16 against sixteen √1
    assert share_b["source_sqrt"] == pytest.approx(0.5)  # equal durations, equal sources
    # within a source, clips still go by √duration; renders fall back to their family
    mixed = [D.Clip(note, "piano", "render", "x.flac", family="fluid"), D.Clip(np.zeros(4 * SR, np.int16), "piano", "render", "y.flac", family="fluid")]
    w = D.clip_weights(mixed, "source_sqrt")
    assert w[1] / w[0] == pytest.approx(2.0)


def test_unknown_clip_weighting_is_refused() -> None:
    with pytest.raises(NeuroEarError, match="clip_weighting"):
        D.Sampler(clips(), LABELS, cfg=D.MixConfig(clip_weighting="length"))


@pytest.mark.parametrize("db", [(14.0, 30.0), (10.0, 12.0)])
def test_background_bed_is_quiet_and_unlabelled(db: tuple[float, float]) -> None:
    # tones at distinct pitches: 220 (piano), 440 (violin), 880 Hz (flute), all sounding throughout
    pool = [D.Clip(np.round(np.tile(tone(f, 1.0), 4) * 32767).astype(np.int16), lab, "render", f"{lab}.flac") for lab, f in zip(LABELS, (220.0, 440.0, 880.0))]
    freqs = {220: "piano", 440: "violin", 880: "flute"}
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0, background_p=1.0, background_db=db)
    s = D.Sampler(pool, LABELS, cfg=cfg, seed=3)
    beds, ratios = 0, []
    for _ in range(40):
        x, y = s.one()
        assert y.sum() == 1  # the bed never adds a label
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
        f = np.fft.rfftfreq(x.size, 1 / SR)
        power = {lab: spec[np.abs(f - hz) < 15].sum() for hz, lab in freqs.items()}
        lead = LABELS[int(y.argmax())]
        assert max(power, key=power.get) == lead
        others = sum(p for lab, p in power.items() if lab != lead)
        if others > 0:
            ratio_db = 10 * np.log10(power[lead] / others)
            assert ratio_db > db[0] - 2.0  # bed total ≥ db[0] down, minus leakage of a same-pitch bed part
            beds += ratio_db < 40.0
            ratios.append(ratio_db)
    assert beds >= 20  # and it is really there most of the time
    if db[1] < 20.0:  # a narrow, loud range is obeyed from above too: no bed far quieter than asked
        assert np.median(ratios) < db[1] + 3.0


def test_background_db_must_stay_above_mixture_partners() -> None:
    with pytest.raises(NeuroEarError, match="background_db"):
        D.Sampler(clips(), LABELS, cfg=D.MixConfig(background_db=(6.0, 30.0)))


def test_other_instruments_are_negatives_never_labels() -> None:
    pool = clips() + [D.Clip(np.round(np.tile(tone(1320.0, 1.0), 4) * 32767).astype(np.int16), D.NEGATIVE_LABEL, "real", "sitar.flac")]
    cfg = D.MixConfig(mix_p=0.5, negative_p=0.0, augment_strength=0.0, other_p=0.3, other_partner_p=0.5)
    s = D.Sampler(pool, LABELS, cfg=cfg, seed=1)
    assert len(s.others) == 1 and all(lab != D.NEGATIVE_LABEL for _, lab in s.pools)
    alone = joined = 0
    for _ in range(200):
        x, y = s.one()
        assert y.shape == (len(LABELS),)
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / SR)
        other = spec[np.abs(f - 1320.0) < 15].sum() / spec.sum()
        if other > 0.9:
            assert not y.any()  # an unknown instrument alone fires nothing
            alone += 1
        elif other > 0.02:
            joined += bool(y.any())  # ... and beside a labelled one it adds no label
    assert 30 < alone < 90 and joined > 30


def partner_level_ratios(draws: int, spread_db: float = 0.0) -> np.ndarray:
    """dB of the louder over the quieter stem in ``draws`` duo windows of three steady tones mixed
    at ±6 dB (and ``spread_db``), measured from the spectrum; each window must label both."""
    pool = [D.Clip(np.round(np.tile(tone(f, 1.0), 4) * 32767).astype(np.int16), lab, "render", f"{lab}.flac") for lab, f in zip(LABELS, (220.0, 440.0, 880.0))]
    cfg = D.MixConfig(mix_p=1.0, third_p=0.0, negative_p=0.0, augment_strength=0.0, partner_db=(-6.0, 6.0), partner_spread_db=spread_db)
    s = D.Sampler(pool, LABELS, cfg=cfg, seed=2)
    f = np.fft.rfftfreq(16000, 1 / SR)
    ratios = []
    for _ in range(draws):
        x, y = s.one()
        assert y.sum() == 2  # a quieter partner is still labelled
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
        p = sorted(spec[np.abs(f - hz) < 15].sum() for hz, lab in zip((220, 440, 880), LABELS) if y[LABELS.index(lab)])
        ratios.append(10 * np.log10(p[1] / p[0]))
    return np.array(ratios)


def test_mixture_partners_stay_within_the_partner_range() -> None:
    ratios = partner_level_ratios(60)
    assert max(ratios) < 7.5 and np.percentile(ratios, 75) > 2.0  # within ±6 dB (+ window-edge leakage), spread over it


def test_partner_spread_gives_windows_the_level_swings_of_real_phrases() -> None:
    plain, spread = partner_level_ratios(200), partner_level_ratios(200, spread_db=4.5)
    assert plain.max() < 7.5
    # beyond ±6 dB in a good share of windows, but never past the bed's edge (13 dB + leakage)
    assert np.mean(spread > 7.5) > 0.15 and spread.max() < 14.5


def test_partner_spread_db_is_bounded() -> None:
    with pytest.raises(NeuroEarError, match="partner_spread_db"):
        D.Sampler(clips(), LABELS, cfg=D.MixConfig(partner_spread_db=-1.0))


@pytest.mark.parametrize("partner_real_p", [None, 1.0])
def test_mixture_partners_can_be_drawn_real_apart_from_the_lead(partner_real_p: float | None) -> None:
    # each label has a rendered tone and a real tone at other pitches: which one sounds says which kind was drawn
    hz = {("render", lab): f for lab, f in zip(LABELS, (220.0, 440.0, 880.0))}
    hz |= {("real", lab): f for lab, f in zip(LABELS, (330.0, 660.0, 1320.0))}
    pool = [D.Clip(np.round(np.tile(tone(f, 1.0), 4) * 32767).astype(np.int16), lab, kind, f"{kind}-{lab}.flac") for (kind, lab), f in hz.items()]
    cfg = D.MixConfig(real_fraction=0.0, mix_p=1.0, third_p=0.0, negative_p=0.0, augment_strength=0.0, partner_db=(0.0, 0.0), partner_real_p=partner_real_p)
    s = D.Sampler(pool, LABELS, cfg=cfg, seed=3)
    f = np.fft.rfftfreq(SR, 1 / SR)
    for _ in range(40):
        x, y = s.one()
        spec = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
        sounding = {key for key, v in hz.items() if spec[np.abs(f - v) < 15].sum() > 0.1 * spec.sum()}
        assert {lab for _, lab in sounding} == {lab for lab, on in zip(LABELS, y) if on}
        kinds = sorted(kind for kind, _ in sounding)
        # the lead is always rendered (real_fraction 0); the partner follows partner_real_p, else real_fraction
        assert kinds == (["real", "render"] if partner_real_p else ["render", "render"])


def test_partner_real_p_must_be_a_probability() -> None:
    with pytest.raises(NeuroEarError, match="partner_real_p"):
        D.Sampler(clips(), LABELS, cfg=D.MixConfig(partner_real_p=1.5))


def test_split_keeps_the_stems_of_a_song_together(tmp_path) -> None:
    import soundfile as sf

    rows = ["label,file,source"]
    for song in ("mt5_a", "mt5_b", "mt5_c", "mt5_d"):
        for lab in ("piano", "violin"):
            sf.write(str(tmp_path / f"{song}-{lab}.flac"), tone(220.0, 0.5), SR)
            rows.append(f"{lab},{song}-{lab}.flac,{song}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    got = D.load_real([tmp_path], ("piano", "violin"))
    assert {c.group for c in got} == {"mt5_a", "mt5_b", "mt5_c", "mt5_d"}
    for song in ("mt5_a", "mt5_b", "mt5_c", "mt5_d"):
        assert len({D.split_of(c.group) for c in got if c.group == song}) == 1
    splits = {str(p): split for p, _, split in D.labelled_splits(tmp_path)}
    assert splits == {c.name: D.split_of(c.group) for c in got}  # the scripts' split is training's


def clips_at(rate: int) -> list[D.Clip]:
    """``clips()`` at another rate: the same tones, the violin silent for its first 2 s."""
    out = []
    for c in clips():
        x = np.tile(tone({"piano": 220.0, "violin": 440.0, "flute": 880.0}[c.label], 1.0, sr=rate), 4)
        if c.label == "violin":
            x[: 2 * rate] = 0.0
        out.append(D.Clip(np.round(x * 32767).astype(np.int16), c.label, "render", c.name, active=c.active, rate=rate))
    return out


def test_a_24k_sampler_frames_one_second_at_its_own_rate() -> None:
    violin = clips_at(24_000)[1]
    assert D.window_labels(violin, 2 * 24_000) and not D.window_labels(violin, 0)
    # 10 ms frames at 24 kHz are 240 samples: 0.1 s of notes is below the 0.15 s a label needs, 0.2 s is not
    assert not D.window_labels(violin, 24_000 + 2_400) and D.window_labels(violin, 24_000 + 4_800)
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0)
    s = D.Sampler(clips_at(24_000), LABELS, cfg=cfg, seed=0, rate=24_000)
    x, y = s.batch(30)
    assert x.shape == (30, 24_000) and y.shape == (30, 3)
    spec = np.abs(np.fft.rfft(x[y[:, 2] == 1][0]))  # the 880 Hz tone lands on 880 Hz at 24 kHz
    assert abs(np.argmax(spec) * 24_000 / x.shape[1] - 880.0) < 5.0


def test_clips_and_sampler_rates_must_agree() -> None:
    with pytest.raises(NeuroEarError, match="24000 Hz sampler"):
        D.Sampler(clips(), LABELS, rate=24_000)
    with pytest.raises(NeuroEarError, match="multiple of 100"):
        D.frame_samples(22_050)


def test_context_windows_label_only_their_latest_second() -> None:
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0)
    s = D.Sampler(clips(), LABELS, cfg=cfg, seed=1, context=2.0)
    x, y = s.batch(200)
    assert x.shape == (200, 3 * SR)
    violin = y[:, 1] == 1
    assert violin.any()
    # the violin clip is silent for its first 2 s: a labelled window's last second sounds, and
    # windows whose past reaches into the silence (or before the clip) carry zeros there
    assert all(np.abs(w[-SR:]).max() > 0.01 for w in x[violin])
    assert any(np.abs(w[: SR // 2]).max() == 0.0 for w in x[violin])


@pytest.mark.parametrize("chain_p", [0.0, 1.0])
def test_note_chains_play_notes_of_one_source_one_after_another(chain_p: float) -> None:
    # source A: a 220 Hz and a 530 Hz note, 2 s each; source B: one 370 Hz note (nothing to chain with);
    # no pitch a harmonic of another, as the occasional distortion of augmentation adds harmonics
    def note(f: float) -> np.ndarray:
        return np.round(tone(f, 2.0) * 32767).astype(np.int16)

    pool = [D.Clip(note(220.0), "piano", "real", "a1.flac", source="A"), D.Clip(note(530.0), "piano", "real", "a2.flac", source="A")]
    pool.append(D.Clip(note(370.0), "piano", "real", "b.flac", source="B"))
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0, note_chain_p=chain_p)
    s = D.Sampler(pool, ("piano",), cfg=cfg, seed=3)
    both, with_b = 0, 0
    for _ in range(200):
        x, y = s.one()
        assert y[0] == 1.0
        spec = np.abs(np.fft.rfft(x))
        at = {f: spec[int(f)] > 0.25 * spec.max() for f in (220, 370, 530)}  # 1 s windows: 1 Hz bins
        both += at[220] and at[530]
        with_b += at[370] and (at[220] or at[530])
    assert with_b == 0  # a chain never leaves its source
    if chain_p:
        assert both > 40  # one window moves from one note of A to the other
    else:
        assert both == 0
    with pytest.raises(NeuroEarError, match="note_chain_p"):
        D.Sampler(pool, ("piano",), cfg=D.MixConfig(note_chain_p=1.5))


@pytest.mark.parametrize("distort_p", [0.0, 1.0])
def test_chained_guitar_notes_get_the_guitar_distortion(distort_p: float) -> None:
    # the real dev set's guitar is distorted: a chain of clean real notes must be distorted as often as one note
    notes = [D.Clip(np.round(tone(f, 2.0) * 32767).astype(np.int16), "guitar", "real", f"{f}.flac", source="A") for f in (220.0, 247.0)]
    cfg = D.MixConfig(mix_p=0.0, negative_p=0.0, augment_strength=0.0, note_chain_p=1.0, guitar_distort_p=distort_p, augment_library="numpy")
    s = D.Sampler(notes, ("guitar",), cfg=cfg, seed=5)
    distorted = 0
    for _ in range(60):
        spec = np.abs(np.fft.rfft(s.one()[0]))
        distorted += spec[660] + spec[741] > 0.02 * spec.max()  # tanh clipping adds odd harmonics
    assert (distorted >= 50) if distort_p else (distorted <= 5)
