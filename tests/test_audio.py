"""Decoding, mono, resampling and framing (no torch, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroear import audio, framing
from neuroear import resample as rs
from neuroear.errors import NeuroEarError

from conftest import SR, tone


def test_constants_are_consistent():
    assert framing.WINDOW_SAMPLES == int(framing.SAMPLE_RATE * framing.WINDOW_SECONDS)
    assert framing.hop_samples(0.25) == framing.SAMPLE_RATE // 4


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 96000, 192000])
def test_resample_keeps_pitch(tmp_path, rate):
    f = tmp_path / f"a{rate}.wav"
    sf.write(f, tone(440, 1.5, sr=rate), rate)
    x = audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert abs(x.size - int(1.5 * SR)) <= 2
    spec = np.abs(np.fft.rfft(x[:SR]))
    assert abs(np.argmax(spec) - 440) <= 1  # 1 Hz bins for a 1 s window


def test_multichannel_downmix(tmp_path):
    f = tmp_path / "eight.wav"
    x = np.stack([tone(440, 1.0) * (c % 2) for c in range(8)], axis=1)  # odd channels carry the tone
    sf.write(f, x, SR)
    y = audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert np.isclose(np.abs(y).max(), 0.25, atol=0.01)  # averaged: 4 of 8 channels at 0.5


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_bit_depths(tmp_path, subtype):
    f = tmp_path / f"{subtype}.wav"
    sf.write(f, tone(440, 0.5), SR, subtype=subtype)
    y = audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert y.dtype == np.float32 and np.isclose(np.abs(y).max(), 0.5, atol=0.02)


def test_nan_inf_become_silence(tmp_path):
    x = tone(440, 1.0)
    x[100:200] = np.nan
    x[300] = np.inf
    f = tmp_path / "nan.wav"
    sf.write(f, x, SR, subtype="FLOAT")
    with pytest.warns(UserWarning, match="NaN/Inf"):
        y = audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert np.isfinite(y).all() and (y[100:200] == 0).all()


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty"), (b"this is not audio at all\n" * 20, "cannot decode"), (b"RIFF\x10\x00\x00\x00WAVEfmt ", "cannot decode")],
)
def test_bad_files_raise_one_clear_error(tmp_path, content, reason):
    f = tmp_path / "bad.wav"
    f.write_bytes(content)
    with pytest.raises(NeuroEarError, match=reason) as e:
        audio.load(f, sample_rate=framing.SAMPLE_RATE)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_info_opens_as_audiofile_and_a_cut_short_wav_warns_when_read(tmp_path):
    """audio.info and AudioFile share one open (libsndfile, else PyAV); the cut-short warning comes
    with the reading, so probing a header (the progress bar, the archive, the web page) says nothing."""
    import io
    import warnings

    buf = io.BytesIO()
    sf.write(buf, tone(440, 3.0), SR, format="WAV", subtype="PCM_16")
    f = tmp_path / "cut.wav"
    f.write_bytes(buf.getvalue()[: 44 + 2 * int(1.5 * SR)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inf = audio.info(f)
        a = audio.AudioFile(f)
    assert (inf.sample_rate, inf.channels, inf.frames) == (a.rate, a.channels, a.frames) == (SR, 1, int(1.5 * SR))
    with a, pytest.warns(UserWarning, match=r"cut short: its header promises 1\.50 s more"):
        assert sum(b.shape[0] for b in a.blocks(SR)) == int(1.5 * SR)


def test_decoder_messages_become_one_reason_without_the_path():
    from neuroear.errors import reason

    p = "/music/it is.wav"
    assert reason(RuntimeError(f"Error opening {p!r}: Format not recognised."), p) == "Format not recognised"
    assert reason(RuntimeError("Error : flac decoder lost sync."), p) == "flac decoder lost sync"
    pyav = f"[Errno 1094995529] Invalid data found when processing input: {p!r}; last error log: [mov] moov atom not found"
    assert reason(OSError(pyav), p) == reason(OSError(pyav)) == "Invalid data found when processing input"
    assert reason(ValueError(""), p) == "ValueError"


def test_missing_file(tmp_path):
    with pytest.raises(NeuroEarError, match="no such file"):
        audio.load(tmp_path / "nope.wav", sample_rate=framing.SAMPLE_RATE)


def test_windows_cover_file_and_pad_short_tail():
    x = np.ones(int(2.5 * SR), dtype=np.float32)
    starts, w = framing.windows(x, hop=SR)
    assert starts.tolist() == [0, SR, 2 * SR]
    assert w.shape == (3, SR) and w[2, : SR // 2].all() and not w[2, SR // 2 :].any()
    # a 0.1 s tail is dropped, a 0.2 s clip alone is kept
    assert framing.windows(np.ones(SR + SR // 10, np.float32), hop=SR)[0].tolist() == [0]
    assert framing.windows(np.ones(SR // 5, np.float32), hop=SR)[0].tolist() == [0]
    assert framing.windows(np.zeros(0, np.float32), hop=SR)[1].shape == (0, SR)


def test_overlapping_hops():
    starts, _ = framing.windows(np.ones(2 * SR, np.float32), hop=SR // 4)
    assert starts.tolist() == [0, 4000, 8000, 12000, 16000]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 5 * SR),
    hop=st.sampled_from([SR // 4, SR // 2, SR]),
    blocks=st.lists(st.integers(1, 3 * SR), min_size=1, max_size=8),
)
def test_framer_is_block_size_invariant(n, hop, blocks):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ref_starts, ref = framing.windows(x, hop=hop)
    fr = framing.Framer(hop=hop)
    got, i, k = [], 0, 0
    while i < n:
        b = blocks[k % len(blocks)]
        got += fr.push(x[i : i + b])
        i += b
        k += 1
    got += fr.finish()
    assert [s for s, _ in got] == ref_starts.tolist()
    if got:
        assert np.array_equal(np.stack([w for _, w in got]), ref)


def test_iter_files_expands_folders(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/2.wav", "1.flac", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    got = [p.name for p in audio.iter_files([str(tmp_path)])]
    assert got == ["1.flac", "2.wav"]


def test_prefetch_keeps_order_and_raises_after_the_items_before_the_error():
    import threading

    threads = []

    def source():
        for i in range(5):
            threads.append(threading.current_thread().name)
            yield np.full(3, i, dtype=np.float32)
        raise NeuroEarError("broken at 5")

    got = []
    with pytest.raises(NeuroEarError, match="broken at 5"):
        for b in audio.prefetch(source()):
            got.append(int(b[0]))
    assert got == [0, 1, 2, 3, 4]
    assert set(threads) == {"neuroear-decode"}  # produced beside the caller, not in it


def test_closing_prefetch_closes_its_source():
    import time

    closed = []

    def source():
        try:
            for i in range(1000):
                yield np.full(3, i, dtype=np.float32)
        finally:
            closed.append(True)

    it = audio.prefetch(source(), depth=2)
    assert int(next(it)[0]) == 0
    it.close()
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == [True]


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000, 192000])
def test_antialias_fir_is_flat_where_the_model_looks_and_stops_what_would_fold_there(rate):
    h = rs.antialias_fir(rate)
    assert h.size % 2 == 1 and h.size <= 160
    f = np.array([100.0, 1000.0, 3950.0, 4400.0, SR - rs.RESAMPLE_PASS_HZ, min(20000.0, rate / 2)])
    resp = np.abs(np.exp(-2j * np.pi * np.outer(f / rate, np.arange(h.size))) @ h)
    db = 20 * np.log10(resp + 1e-12)
    assert np.abs(db[:4]).max() < 0.05  # flat over the CQT's range
    if rate / 2 > SR - rs.RESAMPLE_PASS_HZ:
        assert db[4] < -rs.RESAMPLE_ATTEN_DB + 1 and db[5] < -rs.RESAMPLE_ATTEN_DB + 1


@pytest.mark.parametrize("rate", [44100, 48000])
def test_resampler_never_waits_for_future_input(rate):
    x = tone(440.0, 1.0, sr=rate)
    r = rs.Resampler(rate)
    got = 0
    for n in (1, 7, 1024, 999, 3000, rate - 5031):
        got += r.resample_chunk(x[:n]).size
        x = x[n:]
        fed = 1 + 7 + 1024 + 999 + 3000 + rate - 5031
    # every output sample whose time has been fed is out already (soxr HQ held back ~21 ms)
    assert got >= int(fed * SR / rate) - 1
    assert r.delay_seconds < 0.0005


@pytest.mark.parametrize("rate", [44100, 48000, 8000])
def test_resampler_keeps_a_tone_and_any_chunking_gives_the_same_samples(rate):
    high = min(3900.0, 0.4 * rate)  # an 8 kHz source holds nothing near its 4 kHz Nyquist
    x = tone(1000.0, 2.0, sr=rate, amp=0.5) + tone(high, 2.0, sr=rate, amp=0.2)
    one = rs.resample(x, rate)
    assert abs(one.size - 2 * SR) <= 2
    spec = np.abs(np.fft.rfft(one[4000:20000] * np.hanning(16000)))
    freqs = np.fft.rfftfreq(16000, 1 / SR)
    for f, amp in ((1000.0, 0.5), (high, 0.2)):
        peak = spec[np.abs(freqs - f) < 20].max() / (np.hanning(16000).sum() / 2)
        assert peak == pytest.approx(amp, rel=0.02)
    r = rs.Resampler(rate)
    rng = np.random.default_rng(0)
    parts, pos = [], 0
    while pos < x.size:
        n = int(rng.integers(1, 4000))
        parts.append(r.resample_chunk(x[pos : pos + n]))
        pos += n
    parts.append(r.resample_chunk(np.zeros(0, np.float32), last=True))
    chunked = np.concatenate(parts)
    assert chunked.shape == one.shape
    np.testing.assert_allclose(chunked, one, rtol=0, atol=1e-6)


def test_resampler_stops_what_would_alias_into_the_model_band():
    rate = 48000
    x = tone(13000.0, 1.0, sr=rate, amp=0.9)  # would fold to 3 kHz at 16 kHz
    y = rs.resample(x, rate)
    assert 20 * np.log10(np.sqrt(np.mean(y[200:-200] ** 2)) / 0.9 * np.sqrt(2)) < -65
