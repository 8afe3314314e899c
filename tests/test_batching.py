"""Batching: windows come from the data, targets are the next tokens, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from llm_from_scratch.data import get_batch, iter_windows


def test_get_batch_windows_and_targets():
    rng = np.random.default_rng(0)
    tokens = rng.permutation(1000).astype(np.uint16)   # distinct ids: a window's start is known
    position = np.argsort(tokens)                        # id -> index in tokens
    B, T = 7, 5
    x, y = get_batch(tokens, B, T, np.random.default_rng(1))
    assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == np.int64
    assert np.array_equal(y[:, :-1], x[:, 1:])
    for b in range(B):
        s = position[x[b, 0]]
        assert np.array_equal(x[b], tokens[s:s + T])
        assert np.array_equal(y[b], tokens[s + 1:s + T + 1])


def test_get_batch_is_deterministic_and_reaches_both_ends():
    tokens = np.arange(12)
    a = get_batch(tokens, 4, 3, np.random.default_rng(5))
    b = get_batch(tokens, 4, 3, np.random.default_rng(5))
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    x, y = get_batch(tokens, 2000, 3, np.random.default_rng(6))
    assert x[:, 0].min() == 0 and x[:, 0].max() == 12 - 3 - 1
    assert y.max() == 11
    counts = np.bincount(x[:, 0], minlength=9)
    assert counts.min() > 150, counts                    # uniform: 2000 / 9 = 222 each
    x, y = get_batch([3, 1, 4], 2, 2, np.random.default_rng(0))   # the only window
    assert x.tolist() == [[3, 1], [3, 1]] and y.tolist() == [[1, 4], [1, 4]]


def test_iter_windows_covers_every_target_once():
    tokens = np.arange(100, 123)                          # 23 tokens: 22 targets
    batches = list(iter_windows(tokens, batch_size=3, block_size=4))
    shapes = [x.shape for x, _ in batches]
    assert shapes == [(3, 4), (2, 4), (1, 2)]             # 5 full windows, then 2 targets
    assert np.array_equal(np.concatenate([y.ravel() for _, y in batches]), tokens[1:])
    assert np.array_equal(np.concatenate([x.ravel() for x, _ in batches]), tokens[:-1])
    for x, y in batches:
        assert x.dtype == y.dtype == np.int64 and np.array_equal(y[:, :-1], x[:, 1:])
    exact = list(iter_windows(np.arange(9), 2, 4))        # 8 targets = 2 full windows
    assert [x.shape for x, _ in exact] == [(2, 4)]
    full = list(iter_windows(tokens, 3, 4, include_remainder=False))
    assert [x.shape for x, _ in full] == [(3, 4), (2, 4)]
    assert list(iter_windows(tokens, 3, 4)) is not None
    short = list(iter_windows([7, 8, 9], 4, 10))          # fewer tokens than a window
    assert [(x.tolist(), y.tolist()) for x, y in short] == [([[7, 8]], [[8, 9]])]


def test_mean_loss_over_iter_windows_is_the_loss_on_the_data():
    # a "model" with a fixed loss per target token: the weighted mean must be the plain mean
    tokens = np.random.default_rng(2).integers(0, 50, size=101)
    loss_of = np.random.default_rng(3).random(50)
    total = n = 0.0
    for x, y in iter_windows(tokens, 4, 8):
        total += loss_of[y].sum()
        n += y.size
    assert n == 100
    assert abs(total / n - loss_of[tokens[1:]].mean()) < 1e-12


@pytest.mark.parametrize("tokens, B, T, error, message", [
    (np.arange(5), 2, 5, ValueError, "need at least 6 tokens"),
    (np.arange(5.0), 2, 2, TypeError, "integer token ids"),
    (np.array([True, False, True]), 1, 1, TypeError, "integer token ids"),
    (np.arange(12).reshape(3, 4), 2, 2, ValueError, "1-D"),
    (np.arange(12), 0, 2, ValueError, "batch_size must be a positive integer"),
    (np.arange(12), 2, 2.0, ValueError, "block_size must be a positive integer"),
])
def test_errors(tokens, B, T, error, message):
    with pytest.raises(error, match=message):
        get_batch(tokens, B, T, np.random.default_rng(0))
    if "need at least" not in message:
        with pytest.raises(error, match=message):
            list(iter_windows(tokens, B, T))


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="default_rng"):
        get_batch(np.arange(10), 2, 3, rng=0)
    with pytest.raises(ValueError, match="need at least 2 tokens"):
        list(iter_windows([1], 2, 3))
