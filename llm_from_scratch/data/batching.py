"""Batches for next-token prediction: random windows for training, sequential ones for eval.

A language model learns from windows of ``T`` consecutive token ids ``x`` and the same window
shifted by one, ``y``: at every position ``t`` the target ``y[t] = x[t + 1]`` is the next token.

    tokens = [5, 6, 7, 8, 9],  T = 3,  window at 1:  x = [6, 7, 8]   y = [7, 8, 9]

``get_batch`` draws ``B`` such windows at random starts (training); ``iter_windows`` walks
non-overlapping windows from the start so that every token after the first is a target exactly
once (evaluation: the mean loss over its batches, weighted by size, is the loss on the data).

Dimensions: ``B`` batch size, ``T`` block size (context length); token ids are int64.

Left out: padding and attention masks (windows are always full except the last evaluation
window), document boundaries (a window may span two stories, as in nanoGPT), and sharding.

References: Karpathy, nanoGPT ``train.py`` (``get_batch``), whose convention this follows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["get_batch", "iter_windows"]


def _check_tokens(tokens, block_size, batch_size, need):
    """Validate arguments; return the tokens as a 1-D integer array (no copy if possible)."""
    arr = np.asarray(tokens)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected integer token ids, got an array of dtype {arr.dtype}; "
                        f"encode the text with a tokenizer first")
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array of token ids, got shape {arr.shape}; "
                         f"flatten or concatenate the sequences first")
    for name, v in (("batch_size", batch_size), ("block_size", block_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if len(arr) < need:
        what = (f"for block_size={block_size} (a window of {block_size} plus the next token)"
                if need > 2 else "(an input and its target)")
        raise ValueError(f"need at least {need} tokens {what}, got {len(arr)}; use more data"
                         + (" or a smaller block_size" if need > 2 else ""))
    return arr


def get_batch(tokens, batch_size: int, block_size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``B`` random windows ``x`` of ``T`` tokens and their next tokens ``y``, both ``[B, T]``.

    Starts are uniform over ``0 .. len(tokens) - T - 1``, so every window and its target fit.

    >>> x, y = get_batch(np.arange(10, 20), batch_size=2, block_size=3,
    ...                  rng=np.random.default_rng(0))
    >>> x.tolist(), y.tolist()          # windows at 5 and 4; y is x shifted by one
    ([[15, 16, 17], [14, 15, 16]], [[16, 17, 18], [15, 16, 17]])
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    arr = _check_tokens(tokens, block_size, batch_size, need=block_size + 1)
    B, T = int(batch_size), int(block_size)
    starts = rng.integers(0, len(arr) - T, size=B)           # [B]
    idx = starts[:, None] + np.arange(T)                      # [B, T]
    x = arr[idx].astype(np.int64)                             # [B, T]
    y = arr[idx + 1].astype(np.int64)                         # [B, T]
    return x, y


def iter_windows(tokens, batch_size: int, block_size: int,
                 include_remainder: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping windows from the start, ``B`` at a time: ``(x, y)`` each ``[b, T]``.

    Windows start at ``0, T, 2T, ...``; the last batch may have fewer than ``B`` rows. The
    ``(len(tokens) - 1) % T`` targets left after the last full window come as one final
    shorter window ``[1, r]`` (unless ``include_remainder=False``), so every token but the first
    is a target exactly once.

    >>> [(x.tolist(), y.tolist()) for x, y in iter_windows(np.arange(8), 2, 3)]
    [([[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]]), ([[6]], [[7]])]
    """
    arr = _check_tokens(tokens, block_size, batch_size, need=2)
    B, T = int(batch_size), int(block_size)
    n_windows = (len(arr) - 1) // T
    for first in range(0, n_windows, B):
        starts = np.arange(first, min(first + B, n_windows)) * T   # [b]
        idx = starts[:, None] + np.arange(T)                         # [b, T]
        yield arr[idx].astype(np.int64), arr[idx + 1].astype(np.int64)
    r = (len(arr) - 1) - n_windows * T
    if include_remainder and r > 0:
        s = n_windows * T
        yield (arr[None, s:s + r].astype(np.int64),                 # [1, r]
               arr[None, s + 1:s + 1 + r].astype(np.int64))         # [1, r]
