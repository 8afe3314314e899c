"""Exercises for chapter 6, attention.

The references are the package's own code: ``attention.attention_forward`` on one sequence and
one head (causal attention), ``attention.attention_forward`` followed by
``attention.attention_backward`` (the backward pass from q, k, v and the upstream gradient), and
``attention.split_heads``. Each wrapper imports what it calls inside its body, so its source,
copied into a file on its own, still runs. ``scaled_score_variance`` is a derivation whose answer
is a number: the variance of ``q . k / sqrt(d)`` for entries with nonzero means.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register

# ---------------------------------------------------------------------------------------------
# causal_attention


def causal_attention(q, k, v):
    """Causal scaled dot-product attention of one head; ``q``, ``k``, ``v`` are (T, HS) arrays.

    Row ``i`` of the output is a weighted average of the values ``v[0], ..., v[i]``. The weights
    are the softmax, over the keys ``j <= i`` only, of the scores ``q[i] . k[j] / sqrt(HS)``;
    the keys after ``i`` (the future) get weight exactly 0. Return a (T, HS) array. Subtract
    each row's largest score before exponentiating, so large scores cannot overflow.

    Example: with ``q`` and ``k`` all zeros every score is 0, so row ``i`` is the plain mean of
    ``v[0..i]``: for ``v = [[1, 0], [3, 2], [5, 4]]`` the output is ``[[1, 0], [2, 1], [3, 2]]``.

    The reference is the package's ``llm_from_scratch.attention.attention_forward`` on a batch
    of one sequence with one head.
    """
    from llm_from_scratch.attention import attention_forward

    out, _ = attention_forward(q[None, None], k[None, None], v[None, None], causal=True)  # (1, 1, T, HS)
    return out[0, 0]  # (T, HS)


def _wrong_causal_attention(q, k, v):
    # the mask applied after the softmax: the future gets weight 0, but the weights of the
    # past were normalised over every key, so they no longer sum to 1
    T, HS = q.shape
    scores = q @ k.T / np.sqrt(HS)  # (T, T)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))  # (T, T)
    p /= p.sum(axis=1, keepdims=True)
    p *= np.tril(np.ones((T, T)))  # (T, T) future weights zeroed, too late
    return p @ v  # (T, HS)


def _qkv_case(seed, T, HS, scale=1.0):
    def make():
        rng = np.random.default_rng(seed)
        return tuple(scale * rng.standard_normal((T, HS)) for _ in range(3))
    return make


# ---------------------------------------------------------------------------------------------
# attention_backward


def attention_backward(q, k, v, dout):
    """Gradients of causal attention: return ``(dq, dk, dv)`` for (B, NH, T, HS) arrays.

    The forward pass is ``s = q @ k^T / sqrt(HS)``, ``p = softmax(s)`` over the keys ``j <= i``
    of each query row ``i`` (0 for the others), ``out = p @ v``; ``dout`` is the gradient of
    the loss with respect to ``out``. Recompute ``p`` from ``q`` and ``k``, then go backwards:
    ``dv = p^T dout``, ``dp = dout v^T``, the softmax backward row by row
    (``ds = p * (dp - sum_j p dp)``), and the scale, which multiplies both ``dq = ds k`` and
    ``dk = ds^T q``. Each result has the shape of ``q``.

    Example: for one head with ``q = k = 0`` and ``v = [[1, 0], [3, 2]]``, the first query puts
    weight 1 on the first value and the second splits it 1/2, 1/2. With ``dout = [[1, 0], [0, 1]]``,
    ``dv = p^T dout = [[1, 0.5], [0, 0.5]]``; ``dq = ds k = 0`` and ``dk = ds^T q = 0`` because
    ``k`` and ``q`` are zero.

    The reference is the package's ``attention_forward`` and ``attention_backward``
    (``llm_from_scratch.attention``).
    """
    from llm_from_scratch import attention

    _, cache = attention.attention_forward(q, k, v, causal=True)
    return attention.attention_backward(dout, cache)  # dq, dk, dv: (B, NH, T, HS) each


def _wrong_attention_backward(q, k, v, dout):
    # every step right except the scale: s = q k^T / sqrt(HS), so ds must be divided by sqrt(HS)
    HS, T = q.shape[-1], q.shape[-2]
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(HS)  # (B, NH, T, T)
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))  # (B, NH, T, T)
    p /= p.sum(axis=-1, keepdims=True)
    dv = np.swapaxes(p, -1, -2) @ dout  # (B, NH, T, HS)
    dp = dout @ np.swapaxes(v, -1, -2)  # (B, NH, T, T)
    ds = p * (dp - (p * dp).sum(axis=-1, keepdims=True))  # (B, NH, T, T)
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, dv  # the 1 / sqrt(HS) forgotten


def _backward_case(seed, shape, scale=1.0):
    def make():
        rng = np.random.default_rng(seed)
        q, k, v = (scale * rng.standard_normal(shape) for _ in range(3))
        return q, k, v, rng.standard_normal(shape)
    return make


def _worked_backward_case():
    z = np.zeros((1, 1, 2, 2))
    return z, z.copy(), np.array([[[[1.0, 0.0], [3.0, 2.0]]]]), np.array([[[[1.0, 0.0], [0.0, 1.0]]]])


# ---------------------------------------------------------------------------------------------
# split_heads


def split_heads(x, NH):
    """Split the channels of ``x`` (B, T, C) among ``NH`` heads: return (B, NH, T, HS), HS = C // NH.

    Head ``h`` takes the consecutive channels ``h * HS, ..., (h + 1) * HS - 1``, the layout of
    GPT-2's weights (so a checkpoint's heads land where they were trained), and the head axis
    comes before the time axis, so each head is a (T, HS) matrix of its own.

    Example: one token with channels ``[0, 1, 2, 3, 4, 5]`` and ``NH = 2`` gives head 0 the
    channels ``[0, 1, 2]`` and head 1 ``[3, 4, 5]``: ``split_heads(np.arange(6.0).reshape(1, 1, 6), 2)``
    is ``[[[[0, 1, 2]], [[3, 4, 5]]]]``, of shape (1, 2, 1, 3).

    The reference is the package's ``llm_from_scratch.attention.split_heads``.
    """
    from llm_from_scratch.attention import split_heads as split

    return split(x, NH)  # (B, NH, T, HS)


def _wrong_split_heads(x, NH):
    # the reshape the other way round: head h gets every NH-th channel (h, h + NH, ...)
    B, T, C = x.shape
    return x.reshape(B, T, C // NH, NH).transpose(0, 3, 1, 2)  # (B, NH, T, HS), wrong channels


def _split_case(seed, shape, NH):
    def make():
        return np.random.default_rng(seed).standard_normal(shape), NH
    return make


# ---------------------------------------------------------------------------------------------
# scaled_score_variance (a derivation)

def scaled_score_variance(mu_q, var_q, mu_k, var_k):
    """The variance of the scaled score ``q . k / sqrt(d)`` when the ``d`` entries of ``q`` and of
    ``k`` are independent, those of ``q`` with mean ``mu_q`` and variance ``var_q``, those of
    ``k`` with mean ``mu_k`` and variance ``var_k``. It does not depend on ``d``.

    One term: ``Var(q_i k_i) = E[q_i^2] E[k_i^2] - (E[q_i] E[k_i])^2
    = (var_q + mu_q^2)(var_k + mu_k^2) - mu_q^2 mu_k^2``. The ``d`` terms are independent, so
    their sum has ``d`` times that variance, and dividing by ``sqrt(d)`` divides it by ``d``.

    Example: mean-zero entries of variance 1 give 1, the chapter's case; with mu_q = 1, var_q = 1,
    mu_k = 0, var_k = 2: (1 + 1)(2 + 0) - 0 = 4, not var_q var_k = 2.
    """
    e_q2 = var_q + mu_q ** 2                     # E[q_i^2]
    e_k2 = var_k + mu_k ** 2                     # E[k_i^2]
    return float(e_q2 * e_k2 - (mu_q * mu_k) ** 2)


def _wrong_scaled_score_variance(mu_q, var_q, mu_k, var_k):
    # a common slip: multiply the variances, as if the means did not matter
    return float(var_q * var_k)


EXERCISES = [
    register(Exercise(
        name="causal_attention", chapter=6, title="causal scaled dot-product attention of one head",
        reference=causal_attention,
        cases=(
            Case("the worked example (q = k = 0: running means of v)",
                 lambda: (np.zeros((3, 2)), np.zeros((3, 2)), np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]]))),
            Case("random T, HS = 5, 4", _qkv_case(0, 5, 4)),
            Case("a single position, T = 1", _qkv_case(1, 1, 3)),
            Case("random T, HS = 9, 16", _qkv_case(2, 9, 16)),
            Case("large scores (up to about 1000): the softmax must subtract the row maximum",
                 _qkv_case(3, 7, 3, scale=20.0)),
        ),
        hint="mask the scores before the softmax (set the future to -inf, or leave it out), so each row's "
             "weights are normalised over the keys j <= i only; divide the scores by sqrt(HS)",
    )),
    register(Exercise(
        name="attention_backward", chapter=6, title="the backward pass of causal attention",
        reference=attention_backward,
        cases=(
            Case("the worked example", _worked_backward_case),
            Case("random (B, NH, T, HS) = (2, 3, 5, 4)", _backward_case(0, (2, 3, 5, 4))),
            Case("a single position, T = 1", _backward_case(1, (1, 2, 1, 3))),
            Case("random (1, 2, 6, 8)", _backward_case(2, (1, 2, 6, 8))),
            Case("sharp weights (scores of several units)", _backward_case(3, (1, 1, 7, 5), scale=2.0)),
        ),
        hint="s = q k^T / sqrt(HS): the 1 / sqrt(HS) multiplies ds in both dq = ds k and dk = ds^T q; "
             "dv = p^T dout needs no scale",
    )),
    register(Exercise(
        name="split_heads", chapter=6, title="split the channels among the heads",
        reference=split_heads,
        cases=(
            Case("the worked example", lambda: (np.arange(6.0).reshape(1, 1, 6), 2)),
            Case("(B, T, C) = (2, 3, 8) into 4 heads", _split_case(0, (2, 3, 8), 4)),
            Case("(1, 5, 6) into 3 heads", _split_case(1, (1, 5, 6), 3)),
            Case("one head: the channels stay together", _split_case(2, (2, 4, 5), 1)),
            Case("one channel per head", _split_case(3, (1, 3, 4), 4)),
        ),
        hint="reshape (B, T, C) to (B, T, NH, HS), so consecutive channels stay in one head, then move "
             "the head axis before the time axis",
    )),
    register(Exercise(
        name="scaled_score_variance", chapter=6,
        title="the variance of a scaled attention score (a derivation)",
        reference=scaled_score_variance,
        rtol=1e-12, atol=1e-12,
        cases=(
            Case("the docstring's example: mu_q 1, var_q 1, mu_k 0, var_k 2", lambda: (1.0, 1.0, 0.0, 2.0)),
            Case("the chapter's case: means 0, variances 1", lambda: (0.0, 1.0, 0.0, 1.0)),
            Case("both means nonzero", lambda: (0.5, 2.0, -1.5, 0.25)),
            Case("small variances, large means", lambda: (3.0, 0.01, 2.0, 0.04)),
            Case("constant keys (var_k = 0)", lambda: (0.0, 1.5, 0.7, 0.0)),
        ),
        hint="Var(q_i k_i) = E[q_i^2] E[k_i^2] - (E[q_i k_i])^2 for independent q_i and k_i, and "
             "E[x^2] = Var(x) + E[x]^2",
    )),
]

WRONG = {"causal_attention": _wrong_causal_attention, "attention_backward": _wrong_attention_backward,
         "split_heads": _wrong_split_heads, "scaled_score_variance": _wrong_scaled_score_variance}
