"""Exercises for chapter 4, the cross-entropy loss."""

from __future__ import annotations


import numpy as np

from llm_from_scratch import ops
from llm_from_scratch.exercises import Case, Exercise, register


# ---------------------------------------------------------------------------------------------
# cross_entropy_ignore_index

def cross_entropy_ignore_index(logits, targets, ignore_index=-100):
    """Mean cross-entropy of ``softmax(logits)`` against integer targets, skipping padding.

    ``logits`` has shape ``(N, V)`` (or ``(B, T, V)``) and ``targets`` shape ``(N,)`` (or
    ``(B, T)``). Row i contributes ``-log softmax(logits[i])[targets[i]]``; rows whose target
    is ``ignore_index`` contribute nothing and are not counted. Return the mean over the
    counted rows as a Python float, 0.0 if no row is counted. It must stay finite for logits
    as large as +-1e4 (subtract each row's maximum before exponentiating).

    Example: uniform logits over V = 4 give -log(1/4) = log 4 = 1.386294 on every row, so
    ``cross_entropy_ignore_index(np.zeros((3, 4)), np.array([0, -100, 3]))`` is 1.386294 (two
    counted rows, the second is padding).

    (The reference solution calls ``ops.cross_entropy_forward``, whose source chapter 4
    shows; write your own with numpy.)
    """
    loss, _ = ops.cross_entropy_forward(logits, targets, ignore_index=ignore_index)
    return float(loss)


def _wrong_cross_entropy_ignore_index(logits, targets, ignore_index=-100):
    # a common slip: zero the ignored rows' losses but still divide by every row
    V = logits.shape[-1]
    x = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    xmax = x.max(axis=1, keepdims=True)  # (N, 1)
    lse = xmax[:, 0] + np.log(np.exp(x - xmax).sum(axis=1))  # (N,)
    nll = lse - x[np.arange(len(t)), np.where(valid, t, 0)]  # (N,)
    return float(np.where(valid, nll, 0.0).mean())


def _ce_case(seed, shape, V, scale, frac_ignored, ignore_index=-100):
    def make():
        rng = np.random.default_rng(seed)
        logits = rng.standard_normal((*shape, V)) * scale  # (..., V)
        targets = rng.integers(0, V, shape)  # (...)
        targets[rng.random(shape) < frac_ignored] = ignore_index
        return (logits, targets, ignore_index)
    return make


# ---------------------------------------------------------------------------------------------
# log_sum_exp

def log_sum_exp(x):
    """``log(sum(exp(x)))`` over the last axis, computed without overflow or underflow.

    ``x`` is a float array of shape ``(..., V)``; return an array of shape ``(...)``. Use
    ``log sum_j exp(x_j) = m + log sum_j exp(x_j - m)`` with ``m`` the row maximum: every
    exponent is then <= 0 and one of them is exactly 0, so the sum lies in [1, V]. Entries may
    be ``-inf`` (they contribute exp(-inf) = 0), as long as every row has a finite entry.

    Example: ``log_sum_exp(np.array([[1000.0, 1000.0]]))`` is ``[1000 + log 2] = [1000.693147]``,
    where ``np.log(np.exp(x).sum(-1))`` gives ``inf``.
    """
    m = x.max(axis=-1, keepdims=True)  # (..., 1)
    return m[..., 0] + np.log(np.exp(x - m).sum(axis=-1))  # (...)


def _wrong_log_sum_exp(x):
    # the textbook formula: overflows to inf for large x, underflows to -inf for very negative x
    with np.errstate(over="ignore", divide="ignore"):
        return np.log(np.exp(x).sum(axis=-1))


def _lse_case(seed, shape, scale, shift=0.0, n_neg_inf=0):
    def make():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape) * scale + shift  # (..., V)
        if n_neg_inf:
            x[..., :n_neg_inf] = -np.inf
        return (x,)
    return make


# ---------------------------------------------------------------------------------------------
# kl_divergence

def kl_divergence(p, q):
    """The Kullback-Leibler divergence ``D(p || q) = sum_i p_i log(p_i / q_i)`` in nats.

    ``p`` and ``q`` are 1-D arrays of probabilities over the same outcomes, each summing to 1.
    Terms with ``p_i = 0`` contribute 0 (the limit of p log p as p -> 0); if some ``q_i = 0``
    where ``p_i > 0`` the divergence is ``inf`` (q calls impossible something that happens).
    Return a Python float.

    Example: p = [1/2, 1/2], q = [1/4, 3/4]:
    D = 1/2 log 2 + 1/2 log(2/3) = 1/2 log(4/3) = 0.143841.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    nz = p > 0  # (V,) only outcomes that can happen count
    with np.errstate(divide="ignore"):
        return float(np.sum(p[nz] * (np.log(p[nz]) - np.log(q[nz]))))


def _wrong_kl_divergence(p, q):
    # forgets that 0 log 0 = 0: a zero in p gives 0 * log(0) = 0 * -inf = nan
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(p * np.log(p / q)))


def _kl_case(seed, V, zeros_in_p=0, zeros_in_q=0, peaked=False):
    def make():
        rng = np.random.default_rng(seed)
        p = rng.random(V) ** (8 if peaked else 1)
        q = rng.random(V)
        p[:zeros_in_p] = 0.0
        q[V - zeros_in_q:] = 0.0
        return (p / p.sum(), q / q.sum())
    return make


# ---------------------------------------------------------------------------------------------
# perplexity_to_bits_per_char

def perplexity_to_bits_per_char(perplexity, n_tokens, n_chars):
    """Convert a per-token perplexity into bits per character.

    A model with perplexity ``P`` per token has loss ``ln P`` nats per token, that is
    ``log2 P`` bits per token. A text of ``n_chars`` characters that the tokenizer turns into
    ``n_tokens`` tokens costs ``n_tokens * log2 P`` bits in total, so the loss per character
    is ``(n_tokens / n_chars) * log2 P``. ``perplexity`` may be a number or an array; return
    the same kind.

    Example: perplexity 16 per token with a tokenizer that makes 1 token of every 4
    characters: log2 16 = 4 bits per token, 4 / 4 = 1.0 bit per character.
    """
    return (n_tokens / n_chars) * np.log2(perplexity)


def _wrong_perplexity_to_bits_per_char(perplexity, n_tokens, n_chars):
    # turns the ratio upside down: multiplies by characters per token
    return (n_chars / n_tokens) * np.log2(perplexity)


# ---------------------------------------------------------------------------------------------
# smoothed_loss_minimum (a derivation)

def smoothed_loss_minimum(p, eps):
    """The lowest expected label-smoothed loss, in nats, that any prediction can reach when the
    next token comes from ``p`` (a 1-D distribution over V tokens) and the targets are smoothed
    with ``eps`` as in ``ops.cross_entropy_forward``.

    The expected smoothed loss of a prediction q is the cross-entropy H(p_eps, q) against the
    mixture ``p_eps = (1 - eps) p + eps / V``, which is H(p_eps) + KL(p_eps || q): by Gibbs'
    inequality it is smallest at q = p_eps, and the minimum is the entropy of the mixture,
    ``H(p_eps)``. It is not ``(1 - eps) H(p) + eps log V``: the entropy of a mixture is larger
    than the mixture of the entropies.

    Example: a certain token (p = [1, 0]) with eps = 0.5: p_eps = [0.75, 0.25] and the minimum is
    -(0.75 ln 0.75 + 0.25 ln 0.25) = 0.5623 nats (the wrong mixture of entropies gives
    0.5 ln 2 = 0.3466).
    """
    p = np.asarray(p, dtype=np.float64)                      # (V,)
    mixture = (1.0 - eps) * p + eps / p.size                 # (V,) the smoothed target's mean
    nz = mixture[mixture > 0]
    return float(-(nz * np.log(nz)).sum())


def _wrong_smoothed_loss_minimum(p, eps):
    # a common slip: mix the entropies instead of taking the entropy of the mixture
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float((1.0 - eps) * -(nz * np.log(nz)).sum() + eps * np.log(p.size))


def _smoothed_case(seed, V, zeros, eps):
    def make():
        rng = np.random.default_rng(seed)
        p = rng.random(V)
        p[:zeros] = 0.0
        return (p / p.sum(), eps)
    return make


EXERCISES = [
    register(Exercise(
        name="cross_entropy_ignore_index", chapter=4,
        title="mean cross-entropy from logits, skipping padded targets",
        reference=cross_entropy_ignore_index,
        cases=(
            Case("the worked example (uniform logits, one padded row)",
                 lambda: (np.zeros((3, 4)), np.array([0, -100, 3]), -100)),
            Case("random logits (N, V) = (12, 7), a third of the rows padded",
                 _ce_case(0, (12,), 7, 2.0, 0.33)),
            Case("(B, T, V) = (3, 5, 11), ignore_index -1", _ce_case(1, (3, 5), 11, 1.0, 0.4, -1)),
            Case("extreme logits of size 1e4", _ce_case(2, (8,), 5, 1e4, 0.25)),
            Case("every row but a few padded", _ce_case(3, (40,), 6, 3.0, 0.9)),
            Case("every row padded: the loss is 0.0", lambda: (np.ones((4, 3)), np.full(4, -100), -100)),
        ),
        hint="divide by the number of rows whose target is not ignore_index (not by all rows), "
             "and subtract each row's maximum before np.exp",
    )),
    register(Exercise(
        name="log_sum_exp", chapter=4, title="a stable log-sum-exp over rows",
        reference=log_sum_exp,
        cases=(
            Case("the worked example [[1000, 1000]]", lambda: (np.array([[1000.0, 1000.0]]),)),
            Case("random rows (6, 9) of moderate size", _lse_case(0, (6, 9), 3.0)),
            Case("logits around +1e4 (np.exp overflows)", _lse_case(1, (4, 5), 10.0, shift=1e4)),
            Case("logits around -1e4 (np.exp underflows to 0)", _lse_case(2, (4, 5), 10.0, shift=-1e4)),
            Case("(B, T, V) = (2, 3, 50) with a few -inf entries per row",
                 _lse_case(3, (2, 3, 50), 20.0, n_neg_inf=3)),
        ),
        hint="take m = x.max(axis=-1, keepdims=True) and return m[..., 0] + log(sum(exp(x - m)))",
    )),
    register(Exercise(
        name="kl_divergence", chapter=4, title="the KL divergence between two distributions",
        reference=kl_divergence,
        cases=(
            Case("the worked example", lambda: (np.array([0.5, 0.5]), np.array([0.25, 0.75]))),
            Case("D(p || p) = 0", lambda: (np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5]))),
            Case("random distributions over 20 outcomes", _kl_case(0, 20)),
            Case("p has zeros (0 log 0 = 0)", _kl_case(1, 30, zeros_in_p=10)),
            Case("a peaked p against a spread q", _kl_case(2, 50, peaked=True)),
            Case("q = 0 where p > 0: the divergence is inf", _kl_case(3, 8, zeros_in_q=2)),
        ),
        hint="skip the outcomes with p_i = 0 (their terms are 0, not 0 * log 0 = nan)",
    )),
    register(Exercise(
        name="perplexity_to_bits_per_char", chapter=4,
        title="per-token perplexity to bits per character",
        reference=perplexity_to_bits_per_char,
        cases=(
            Case("the worked example: perplexity 16, 4 characters per token", lambda: (16.0, 250, 1000)),
            Case("a character model: tokens = characters", lambda: (2.0, 1000, 1000)),
            Case("a BPE model, 3.8 characters per token", lambda: (2.92, 52_600, 199_828)),
            Case("an array of perplexities", lambda: (np.array([1.0, 1.5, 30.0, 512.0]), 1_234, 5_000)),
        ),
        hint="bits per character = log2(perplexity) * n_tokens / n_chars: a text costs "
             "n_tokens * log2(P) bits in total",
    )),
    register(Exercise(
        name="smoothed_loss_minimum", chapter=4,
        title="the lowest label-smoothed loss any prediction can reach (a derivation)",
        reference=smoothed_loss_minimum,
        rtol=1e-10, atol=1e-12,
        cases=(
            Case("the docstring's example: a certain token of two, eps = 0.5", lambda: (np.array([1.0, 0.0]), 0.5)),
            Case("a certain token of 10, eps = 0.1", lambda: (np.eye(10)[3], 0.1)),
            Case("the chapter's six-token distribution, eps = 0.1",
                 lambda: (np.array([0.55, 0.25, 0.1, 0.05, 0.05, 0.0]), 0.1)),
            Case("uniform over 8 of 37 tokens, eps = 0.3", lambda: (np.r_[np.full(8, 1 / 8), np.zeros(29)], 0.3)),
            Case("a random distribution over 37 with zeros, eps = 0.05", _smoothed_case(0, 37, 9, 0.05)),
        ),
        hint="the expected smoothed loss of q is a cross-entropy against (1 - eps) p + eps / V; "
             "Gibbs' inequality says where it is smallest and what it is there",
    )),
]

WRONG = {
    "cross_entropy_ignore_index": _wrong_cross_entropy_ignore_index,
    "log_sum_exp": _wrong_log_sum_exp,
    "kl_divergence": _wrong_kl_divergence,
    "perplexity_to_bits_per_char": _wrong_perplexity_to_bits_per_char,
    "smoothed_loss_minimum": _wrong_smoothed_loss_minimum,
}
