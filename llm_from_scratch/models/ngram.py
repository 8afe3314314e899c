"""N-gram language models by counting, with interpolated Kneser-Ney smoothing.

An n-gram model predicts the next token from the previous ``n - 1`` tokens only. Counting how often
each n-gram occurs gives the maximum-likelihood estimate ``c(h w) / c(h)``, which is zero for
anything unseen; smoothing moves a little probability to unseen continuations. Interpolated
Kneser-Ney does it best among the classic methods (Chen & Goodman 1996):

    P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P(w | h')

where ``h'`` is ``h`` without its first token, ``N1+(h .)`` is the number of distinct tokens seen
after ``h``, and ``D`` is a discount per order, ``D = n1 / (n1 + 2 n2)`` from the numbers of
n-grams seen once and twice (Ney, Essen & Kneser 1994). The lower orders count not occurrences but
*continuations*, ``N1+(. h w)``, the number of distinct tokens seen before ``h w``: a token that
follows many different contexts is a better guess for a new one. The lowest order is interpolated
with the uniform distribution over the vocabulary, so no token ever gets probability zero. When a
context was never seen (``c(h) = 0``) the model backs off to the shorter one entirely.

Counting uses integer codes: the n-gram ``(t1, ..., tn)`` becomes ``t1 V^(n-1) + ... + tn`` and
``numpy.unique`` does the rest, so an 8-gram model of a few million characters fits in seconds.

Left out: modified Kneser-Ney (three discounts per order), pruning, and sentence-boundary tokens
(the models read a continuous stream, like the neural models later in the book).

References: Kneser & Ney (1995); Chen & Goodman (1996), "An empirical study of smoothing
techniques for language modeling", section 2.7; Jurafsky & Martin, *Speech and Language
Processing*, 3rd ed. draft, chapter 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["NGramModel"]


@dataclass
class _Level:
    """Counts for one order: n-grams of length ``k`` (context length ``k - 1``)."""
    codes: np.ndarray        # (M,) sorted unique codes of the k-grams seen
    counts: np.ndarray       # (M,) their counts (raw at the top order, continuation counts below)
    ctx_codes: np.ndarray    # (H,) sorted unique context codes (the k-gram without its last token)
    ctx_totals: np.ndarray   # (H,) sum of counts over the next token, c(h)
    ctx_types: np.ndarray    # (H,) number of distinct next tokens, N1+(h .)
    discount: float


def _codes(tokens: np.ndarray, k: int, V: int) -> np.ndarray:
    """Integer codes of every k-gram in ``tokens``: (N - k + 1,)."""
    n = tokens.shape[0] - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    for i in range(k):
        code = code * V + tokens[i:i + n]
    return code


def _lookup(sorted_codes: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``values`` at the positions of ``queries`` in ``sorted_codes``, 0 where absent."""
    if sorted_codes.size == 0:
        return np.zeros(queries.shape, dtype=values.dtype)
    pos = np.searchsorted(sorted_codes, queries)
    pos = np.minimum(pos, sorted_codes.size - 1)
    found = sorted_codes[pos] == queries
    return np.where(found, values[pos], 0)


class NGramModel:
    """An interpolated Kneser-Ney n-gram model over token ids ``0 .. vocab_size - 1``.

    Example: a bigram model of "abab..." is sure that b follows a.

    >>> m = NGramModel(order=2, vocab_size=3).fit(np.array([0, 1] * 50))
    >>> p = m.next_distribution([0])
    >>> bool(p[1] > 0.9), round(float(p.sum()), 12)
    (True, 1.0)
    """

    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be at least 1, got {vocab_size}")
        if order * math.log2(vocab_size) >= 62:
            raise ValueError(f"order {order} with vocab_size {vocab_size} does not fit 64-bit n-gram codes: "
                             f"need order * log2(vocab_size) < 62, got {order * math.log2(vocab_size):.1f}")
        self.order = order
        self.vocab_size = vocab_size
        self.levels: list[_Level] = []

    def _check_tokens(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
            raise ValueError(f"expected a 1-D array of integer token ids, got shape {tokens.shape} "
                             f"and dtype {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            bad = int(np.argmax((tokens < 0) | (tokens >= self.vocab_size)))
            raise ValueError(f"expected token ids in [0, {self.vocab_size}), got {int(tokens[bad])} at position {bad}")
        return tokens.astype(np.int64)

    def fit(self, tokens) -> "NGramModel":
        """Count every k-gram for k = 1 .. order in a 1-D array of token ids."""
        tokens = self._check_tokens(tokens)
        if tokens.size < self.order:
            raise ValueError(f"need at least {self.order} tokens to fit an order-{self.order} model, got {tokens.size}")
        V = self.vocab_size
        self.levels = []
        codes = None
        for k in range(self.order, 0, -1):
            if k == self.order:
                codes, counts = np.unique(_codes(tokens, k, V), return_counts=True)
            else:
                # continuation count of a k-gram: how many distinct (k+1)-grams end with it
                codes, counts = np.unique(codes % V ** k, return_counts=True)
            self.levels.append(self._level(codes, counts, V))
        self.levels.reverse()  # levels[k - 1] holds the k-grams
        return self

    @staticmethod
    def _level(codes: np.ndarray, counts: np.ndarray, V: int) -> _Level:
        ctx, inverse = np.unique(codes // V, return_inverse=True)
        totals = np.bincount(inverse, weights=counts, minlength=ctx.size)
        types = np.bincount(inverse, minlength=ctx.size)
        n1 = int(np.sum(counts == 1))
        n2 = int(np.sum(counts == 2))
        discount = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
        discount = min(max(discount, 0.05), 0.95)
        return _Level(codes, counts.astype(np.float64), ctx, totals, types.astype(np.float64), discount)

    def _require_fit(self) -> None:
        if not self.levels:
            raise RuntimeError("the model has not been fitted: call fit(tokens) first")

    def token_logprobs(self, tokens) -> np.ndarray:
        """Natural-log probability of each token given the ones before it (at most ``order - 1``);
        the first tokens use the shorter contexts available. Shape ``(len(tokens),)``."""
        self._require_fit()
        tokens = self._check_tokens(tokens)
        V = self.vocab_size
        # order 1: unigram continuation counts interpolated with the uniform distribution
        lvl = self.levels[0]
        total, types = lvl.ctx_totals[0], lvl.ctx_types[0]
        c = _lookup(lvl.codes, lvl.counts, tokens)                         # (N,)
        p = (np.maximum(c - lvl.discount, 0.0) + lvl.discount * types / V) / total
        for k in range(2, self.order + 1):
            lvl = self.levels[k - 1]
            grams = _codes(tokens, k, V)                                     # (N - k + 1,)
            c = _lookup(lvl.codes, lvl.counts, grams)
            h = grams // V
            c_h = _lookup(lvl.ctx_codes, lvl.ctx_totals, h)
            n_h = _lookup(lvl.ctx_codes, lvl.ctx_types, h)
            if grams.size == 0:
                break
            lower = p[k - 1:]
            seen = c_h > 0
            safe = np.where(seen, c_h, 1.0)
            mixed = (np.maximum(c - lvl.discount, 0.0) + lvl.discount * n_h * lower) / safe
            p = np.concatenate([p[:k - 1], np.where(seen, mixed, lower)])
        return np.log(p)

    def cross_entropy(self, tokens) -> float:
        """Mean negative log-likelihood per token, in nats."""
        return float(-self.token_logprobs(tokens).mean())

    def next_distribution(self, context) -> np.ndarray:
        """The model's distribution over the next token after ``context``: ``(vocab_size,)``."""
        self._require_fit()
        context = self._check_tokens(np.asarray(context, dtype=np.int64))[-(self.order - 1):] if self.order > 1 \
            else np.zeros(0, dtype=np.int64)
        V = self.vocab_size
        candidates = np.arange(V, dtype=np.int64)
        lvl = self.levels[0]
        c = _lookup(lvl.codes, lvl.counts, candidates)
        p = (np.maximum(c - lvl.discount, 0.0) + lvl.discount * lvl.ctx_types[0] / V) / lvl.ctx_totals[0]
        for j in range(1, context.size + 1):  # context length j, (j+1)-grams
            lvl = self.levels[j]
            h = 0
            for t in context[-j:]:
                h = h * V + int(t)
            c_h = _lookup(lvl.ctx_codes, lvl.ctx_totals, np.array([h]))[0]
            if c_h == 0:
                continue
            n_h = _lookup(lvl.ctx_codes, lvl.ctx_types, np.array([h]))[0]
            c = _lookup(lvl.codes, lvl.counts, h * V + candidates)
            p = (np.maximum(c - lvl.discount, 0.0) + lvl.discount * n_h * p) / c_h
        return p

    def sample(self, n: int, rng: np.random.Generator, prompt=()) -> list[int]:
        """Sample ``n`` tokens after ``prompt`` (token ids), one at a time."""
        self._require_fit()
        out = [int(t) for t in prompt]
        for _ in range(n):
            p = self.next_distribution(np.array(out[-(self.order - 1):] if self.order > 1 else [], dtype=np.int64))
            out.append(int(rng.choice(self.vocab_size, p=p / p.sum())))
        return out[len(prompt):]

    def num_ngrams(self) -> int:
        """How many distinct n-grams of every order the model stores (its size)."""
        self._require_fit()
        return int(sum(level.codes.size for level in self.levels))
