"""RingBuffer: absolute indexing, wrap-around, fixed memory."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroear.framing import RingBuffer


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 50),
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=20),
)
def test_holds_the_newest_samples_for_any_block_sizes(capacity, sizes):
    rb = RingBuffer(capacity)
    stream = np.arange(sum(sizes), dtype=np.float32)
    pos = 0
    for n in sizes:
        rb.write(stream[pos : pos + n])
        pos += n
        assert rb.total == pos
        assert rb.oldest == max(0, pos - capacity)
        if pos:
            np.testing.assert_array_equal(rb.read(rb.oldest, pos - rb.oldest), stream[rb.oldest : pos])


def test_read_any_sub_range_across_the_wrap():
    rb = RingBuffer(10)
    rb.write(np.arange(7, dtype=np.float32))
    rb.write(np.arange(7, 15, dtype=np.float32))  # wraps: holds 5..14
    assert rb.oldest == 5
    np.testing.assert_array_equal(rb.read(8, 4), [8, 9, 10, 11])
    np.testing.assert_array_equal(rb.read(5, 10), np.arange(5, 15))


def test_overwritten_and_future_samples_raise():
    rb = RingBuffer(4)
    rb.write(np.ones(6, dtype=np.float32))
    with pytest.raises(IndexError, match="overwritten"):
        rb.read(1, 2)
    with pytest.raises(IndexError, match="written"):
        rb.read(4, 4)


def test_pad_reads_zeros_past_the_end():
    rb = RingBuffer(8)
    rb.write(np.array([1, 2, 3], dtype=np.float32))
    np.testing.assert_array_equal(rb.read(1, 5, pad=True), [2, 3, 0, 0, 0])


def test_memory_is_fixed_and_reset_restarts_time():
    rb = RingBuffer(1000)
    before = rb.nbytes
    for _ in range(50):
        rb.write(np.random.default_rng(0).standard_normal(777).astype(np.float32))
    assert rb.nbytes == before == 4000
    rb.reset()
    assert rb.total == 0 and rb.oldest == 0
    rb.write(np.array([5.0], dtype=np.float32))
    assert rb.read(0, 1)[0] == 5.0


def test_block_larger_than_capacity_keeps_its_tail():
    rb = RingBuffer(5)
    rb.write(np.arange(3, dtype=np.float32))
    rb.write(np.arange(3, 20, dtype=np.float32))
    np.testing.assert_array_equal(rb.read(15, 5), np.arange(15, 20))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        RingBuffer(0)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 9000),
    context=st.sampled_from([0, 700, 2500]),
    hop=st.sampled_from([250, 1000]),
    blocks=st.lists(st.integers(1, 3000), min_size=1, max_size=6),
)
def test_context_windows_are_the_samples_before_each_window_for_any_blocks(n, context, hop, blocks):
    from neuroear.framing import Framer, windows

    window = 1000
    x = np.arange(1, n + 1, dtype=np.float32)  # distinct non-zero samples: any misplacement shows
    fr = Framer(window=window, hop=hop, sample_rate=4000, context=context)
    got, i, k = [], 0, 0
    while i < n:
        step = blocks[k % len(blocks)]
        got += fr.push(x[i : i + step])
        i, k = i + step, k + 1
    got += fr.finish()
    starts, whole = windows(x, hop=hop, window=window, sample_rate=4000, context=context)
    assert [s for s, _ in got] == starts.tolist()
    padded = np.concatenate([np.zeros(context, np.float32), x, np.zeros(window, np.float32)])
    for s, w in got:
        assert w.shape == (context + window,)
        np.testing.assert_array_equal(w, padded[s : s + context + window])  # zeros before 0 and after the end
    if got:
        np.testing.assert_array_equal(np.stack([w for _, w in got]), whole)
    # the scored windows are the same as a one-window framer's, context or not
    assert starts.tolist() == windows(x, hop=hop, window=window, sample_rate=4000)[0].tolist()
