"""Numba twin of ``llm_from_scratch.attention.attention_forward`` / ``attention_backward``.

Same names, signatures and results (to float rounding) as the plain numpy reference in
``llm_from_scratch.attention``, which is the version the book teaches and the one to read first.
Multi-head attention uses it through the ops namespace:
``mha_forward(..., ops=kernels.backend.get_ops("numba"))``, whenever there are as many queries
as keys and no dropout (the kernel's case).

What is different is the order of work. The reference makes the whole (B, NH, T, T) score
matrix, softmaxes it, keeps it in the cache and multiplies by it again in the backward pass.
This kernel follows FlashAttention (Dao et al. 2022): for each (batch, head) it walks down
the query rows, four at a time, and for those rows alone

    s[r, j] = q_i . k_j / sqrt(HS)          for the keys j <= i only (causal), in a (4, T) scratch
    m       = max_j s[r, j];  l = sum_j exp(s[r, j] - m)       the softmax of the row, exactly
    out_i   = sum_j exp(s[r, j] - m) v_j / l                   the weighted sum of values
    lse_i   = m + log(l)                                        the row's log-sum-exp

so the masked-out upper triangle is never computed, no T x T array exists, and the cache is
``(q, k, v, out, lse)`` with ``lse`` of shape (B, NH, T). A whole row of scores fits in the
scratch (T floats), so the softmax is the exact two-pass one (max, then sum); FlashAttention's
running "online" rescaling is only needed when a row does not fit in fast memory.

The backward pass recomputes each block of probabilities from ``lse`` (Dao et al. 2022,
appendix B):

    p[r, j]  = exp(s[r, j] - lse_i)                   (s recomputed as above)
    dp[r, j] = dout_i . v_j
    D_i      = dout_i . out_i                         (= sum_j p[r, j] dp[r, j])
    ds[r, j] = p[r, j] (dp[r, j] - D_i) / sqrt(HS)    (the softmax backward, row by row)
    dq_i = sum_j ds[r, j] k_j     dk_j += ds[r, j] q_i     dv_j += p[r, j] dout_i

Design choice, measured side by side (float32, forward + backward, one thread): a twin of
this kernel that keeps the probabilities of the causal triangle in the cache instead of
``lse``, so that its backward pass skips recomputing s and exp, was no faster: 4.6 against
4.5 ms at (B, NH, T, HS) = (16, 4, 128, 32), 14.1 against 13.7 ms at (8, 8, 256, 32) (writing
and reading P costs what recomputing it saves), and it holds B*NH*T*T floats (16 MB per layer
at the second shape) where ``lse`` is B*NH*T. So the cache keeps ``lse``.

How it is fast on a CPU (see ``llm_from_scratch.kernels.ops`` for the general numba notes):

- ``prange`` over the B*NH (batch, head) pairs: each thread owns whole heads, so ``dk`` and
  ``dv``, which sum over query rows, need no locks or per-thread copies. numpy's batched
  matmul over heads runs on one core;
- k and v are transposed per head to (HS, T), so every inner loop runs along the keys j with
  unit stride and vectorises; the key count is rounded up to a multiple of 16 (the extra
  scores are computed and ignored) so those loops have no scalar tail;
- four query rows share each load of k (or v), and the score loop handles four channels per
  pass over the row, which cuts the loads and stores of the scratch row by four;
- ``exp`` is ``vexp`` (vectorisable), and the row maximum keeps eight running maxima.

A fully masked query row (every key padding) gives output 0 and gradient 0, as in the
reference; its ``lse`` is stored as +inf to mark it. Sums inside the kernel (dot products over
HS, the softmax denominator) are accumulated in the input dtype.

Left out: dropout on the attention weights, attention biases, and parallelism over query rows
within a head (it would need per-thread ``dk``/``dv`` copies, and B*NH is usually well above
the number of cores).

References: T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Re, "FlashAttention: Fast and
Memory-Efficient Exact Attention with IO-Awareness", NeurIPS 2022 (section 3.1, tiling and
recomputation; appendix B, the backward pass); M. Milakov, N. Gimelshein, "Online normalizer
calculation for softmax", 2018 (the one-pass softmax not needed here); A. Vaswani et al.,
"Attention Is All You Need", NeurIPS 2017, equation 1.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from llm_from_scratch.attention import merge_heads, split_heads
from llm_from_scratch.kernels.ops import _NO_TRANS, _TRANS, BLAS, FASTMATH, _gemm, vexp

__all__ = ["attention_forward", "attention_backward", "self_attention_packed"]

# Dimension letters, as in llm_from_scratch.attention: B batch, NH heads, T sequence length
# (queries and keys), HS head size. Tp is T rounded up to a multiple of LANES.

ROWS = 4  # query rows per block; the helpers below are written out for exactly four
LANES = 16  # key counts are rounded up to a multiple of this (one AVX-512 register of float32)


# ----------------------------------------------------------------------------------------
# helpers on one head

@njit(fastmath=FASTMATH, cache=True)
def _transpose(x, xT):
    # (T, HS) -> the first T columns of (HS, Tp); the loop writes xT contiguously
    T, HS = x.shape
    for c in range(HS):
        for j in range(T):
            xT[c, j] = x[j, c]


@njit(fastmath=FASTMATH, cache=True)
def _scores(x, yT, i0, i1, i2, i3, scale, s, n):
    # s[r, j] = scale * x[i_r] . y[j] for the rows i0..i3 of x (T, HS) and the keys j < n of
    # yT (HS, Tp): four rows share each load of yT, and each pass over the row adds four
    # channels, so the scratch row s is read and written HS / 4 times instead of HS times.
    HS = yT.shape[0]
    for j in range(n):
        s[0, j] = 0.0
        s[1, j] = 0.0
        s[2, j] = 0.0
        s[3, j] = 0.0
    C4 = HS - HS % 4
    for c in range(0, C4, 4):
        a00, a01, a02, a03 = x[i0, c] * scale, x[i0, c + 1] * scale, x[i0, c + 2] * scale, x[i0, c + 3] * scale
        a10, a11, a12, a13 = x[i1, c] * scale, x[i1, c + 1] * scale, x[i1, c + 2] * scale, x[i1, c + 3] * scale
        a20, a21, a22, a23 = x[i2, c] * scale, x[i2, c + 1] * scale, x[i2, c + 2] * scale, x[i2, c + 3] * scale
        a30, a31, a32, a33 = x[i3, c] * scale, x[i3, c + 1] * scale, x[i3, c + 2] * scale, x[i3, c + 3] * scale
        for j in range(n):
            y0, y1, y2, y3 = yT[c, j], yT[c + 1, j], yT[c + 2, j], yT[c + 3, j]
            s[0, j] += a00 * y0 + a01 * y1 + a02 * y2 + a03 * y3
            s[1, j] += a10 * y0 + a11 * y1 + a12 * y2 + a13 * y3
            s[2, j] += a20 * y0 + a21 * y1 + a22 * y2 + a23 * y3
            s[3, j] += a30 * y0 + a31 * y1 + a32 * y2 + a33 * y3
    for c in range(C4, HS):  # the last HS % 4 channels
        a0, a1, a2, a3 = x[i0, c] * scale, x[i1, c] * scale, x[i2, c] * scale, x[i3, c] * scale
        for j in range(n):
            y = yT[c, j]
            s[0, j] += a0 * y
            s[1, j] += a1 * y
            s[2, j] += a2 * y
            s[3, j] += a3 * y


@njit(fastmath=FASTMATH, cache=True)
def _row_max(s, r, n):
    # max of s[r, :n] (-inf when n = 0) with eight independent running maxima, which run side
    # by side; one running max is a chain of dependent compares
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = s.dtype.type(-np.inf)
    j = 0
    while j + 8 <= n:
        m0 = max(m0, s[r, j])
        m1 = max(m1, s[r, j + 1])
        m2 = max(m2, s[r, j + 2])
        m3 = max(m3, s[r, j + 3])
        m4 = max(m4, s[r, j + 4])
        m5 = max(m5, s[r, j + 5])
        m6 = max(m6, s[r, j + 6])
        m7 = max(m7, s[r, j + 7])
        j += 8
    for j in range(j, n):
        m0 = max(m0, s[r, j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(fastmath=FASTMATH, cache=True)
def _weighted_sum(p, vT, inv, nk, nr, out, i0):
    # out[i0 + r, c] = inv[r] * sum_{j < nk} p[r, j] v[j, c] for the first nr rows, four
    # channels at a time: sixteen running sums, each load of p used four times
    HS = vT.shape[0]
    dt = p.dtype.type
    C4 = HS - HS % 4
    for c in range(0, C4, 4):
        o00 = o01 = o02 = o03 = o10 = o11 = o12 = o13 = dt(0.0)
        o20 = o21 = o22 = o23 = o30 = o31 = o32 = o33 = dt(0.0)
        for j in range(nk):
            v0, v1, v2, v3 = vT[c, j], vT[c + 1, j], vT[c + 2, j], vT[c + 3, j]
            p0, p1, p2, p3 = p[0, j], p[1, j], p[2, j], p[3, j]
            o00 += p0 * v0
            o01 += p0 * v1
            o02 += p0 * v2
            o03 += p0 * v3
            o10 += p1 * v0
            o11 += p1 * v1
            o12 += p1 * v2
            o13 += p1 * v3
            o20 += p2 * v0
            o21 += p2 * v1
            o22 += p2 * v2
            o23 += p2 * v3
            o30 += p3 * v0
            o31 += p3 * v1
            o32 += p3 * v2
            o33 += p3 * v3
        rows = ((o00, o01, o02, o03), (o10, o11, o12, o13), (o20, o21, o22, o23), (o30, o31, o32, o33))
        for r, (x0, x1, x2, x3) in enumerate(rows):
            if r < nr:
                out[i0 + r, c] = x0 * inv[r]
                out[i0 + r, c + 1] = x1 * inv[r]
                out[i0 + r, c + 2] = x2 * inv[r]
                out[i0 + r, c + 3] = x3 * inv[r]
    for c in range(C4, HS):  # the last HS % 4 channels
        o0 = o1 = o2 = o3 = dt(0.0)
        for j in range(nk):
            v = vT[c, j]
            o0 += p[0, j] * v
            o1 += p[1, j] * v
            o2 += p[2, j] * v
            o3 += p[3, j] * v
        for r, x in enumerate((o0, o1, o2, o3)):
            if r < nr:
                out[i0 + r, c] = x * inv[r]


# ----------------------------------------------------------------------------------------
# forward

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _attention_forward_heads(q, k, v, scale, causal, has_mask, key_mask, out, lse):
    B, NH, T, HS = q.shape
    Tp = (T + LANES - 1) // LANES * LANES
    dt = q.dtype.type
    ninf = dt(-np.inf)
    for bh in prange(B * NH):
        b = bh // NH
        h = bh - b * NH
        qh = q[b, h]  # (T, HS)
        oh = out[b, h]  # (T, HS)
        kT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp) keys, transposed, zero-padded
        vT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp) values, transposed, zero-padded
        _transpose(k[b, h], kT)
        _transpose(v[b, h], vT)
        s = np.empty((ROWS, Tp), q.dtype)  # (4, Tp) scores, then unnormalised probabilities
        inv = np.empty(ROWS, q.dtype)  # (4,) 1 / l of each row
        for i0 in range(0, T, ROWS):
            nr = min(ROWS, T - i0)  # real rows in this block; the others repeat row T - 1
            i1, i2, i3 = min(i0 + 1, T - 1), min(i0 + 2, T - 1), min(i0 + 3, T - 1)
            nk = min(i0 + ROWS, T) if causal else T  # keys any row of the block can see
            n = min((nk + LANES - 1) // LANES * LANES, Tp)
            _scores(qh, kT, i0, i1, i2, i3, scale, s, n)
            for r in range(ROWS):
                i = i0 + r
                if r >= nr:  # a repeated row: weight 0, output not written
                    s[r, :nk] = 0.0
                    inv[r] = 0.0
                    continue
                kmax = i + 1 if causal else T  # this row sees keys 0 .. kmax - 1
                if has_mask:
                    for j in range(kmax):
                        if not key_mask[b, j]:
                            s[r, j] = ninf
                m = _row_max(s, r, kmax)
                if m == ninf:  # every key masked: output 0, marked by lse = +inf
                    s[r, :nk] = 0.0
                    inv[r] = 0.0
                    lse[b, h, i] = np.inf
                    continue
                l = dt(0.0)
                for j in range(kmax):
                    e = vexp(s[r, j] - m)  # exp(-inf) = 0 for masked keys
                    s[r, j] = e
                    l += e
                s[r, kmax:nk] = 0.0  # keys this row may not see
                inv[r] = dt(1.0) / l
                lse[b, h, i] = m + math.log(l)
            _weighted_sum(s, vT, inv, nk, nr, oh, i0)


def _check_qkv(q, k, v):
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise TypeError(f"{name} must be a float32 or float64 numpy array, got {got}; "
                            f"convert it with np.asarray({name}, dtype=np.float32)")
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must have the same shape (B, NH, T, HS), got {q.shape}, {k.shape}, {v.shape}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}")


def _check_key_mask(key_mask, B: int, T: int) -> np.ndarray:
    """``key_mask`` as a contiguous, writable boolean (B, T) array (a (1, T) mask is repeated).

    Writable, because numba compiles a separate version of a kernel for read-only arrays.
    """
    if (not isinstance(key_mask, np.ndarray) or key_mask.dtype != np.bool_ or key_mask.ndim != 2
            or key_mask.shape[1] != T or key_mask.shape[0] not in (1, B)):
        got = (f"{key_mask.dtype} {key_mask.shape}" if isinstance(key_mask, np.ndarray)
               else type(key_mask).__name__)
        raise ValueError(f"key_mask must be a boolean (B, T) = ({B}, {T}) array, True for real tokens, "
                         f"got {got}")
    return np.repeat(key_mask, B, axis=0) if key_mask.shape[0] != B else np.ascontiguousarray(key_mask)


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = True,
                      key_mask: np.ndarray | None = None):
    """Numba twin of ``llm_from_scratch.attention.attention_forward`` for (B, NH, T, HS) arrays.

    Same arguments and output; the cache is ``(q, k, v, out, lse, scale, causal, key_mask)``
    with the per-row log-sum-exp ``lse`` (B, NH, T) instead of the (B, NH, T, T) probabilities,
    so it is not interchangeable with the reference's cache.

    Example (the reference's): one query attending to two keys with equal scores averages
    their values; causally, the first query sees only the first key.

    >>> q = np.zeros((1, 1, 2, 2)); k = np.zeros((1, 1, 2, 2))
    >>> v = np.array([[[[1.0, 0.0], [3.0, 2.0]]]])
    >>> attention_forward(q, k, v, causal=False)[0]
    array([[[[2., 1.],
             [2., 1.]]]])
    >>> out, cache = attention_forward(q, k, v, causal=True)
    >>> out
    array([[[[1., 0.],
             [2., 1.]]]])
    >>> cache[4].round(6)  # lse: log(exp(0)) and log(exp(0) + exp(0))
    array([[[0.      , 0.693147]]])
    """
    _check_qkv(q, k, v)
    B, NH, T, HS = q.shape
    km = None if key_mask is None else _check_key_mask(key_mask, B, T)  # (B, T)
    q, k, v = np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v)
    scale = 1.0 / np.sqrt(HS)
    out = np.empty_like(q)  # (B, NH, T, HS)
    lse = np.empty((B, NH, T), dtype=q.dtype)  # (B, NH, T)
    if T:
        _attention_forward_heads(q, k, v, q.dtype.type(scale), bool(causal), km is not None,
                                 km if km is not None else np.ones((1, 1), dtype=bool), out, lse)
    return out, (q, k, v, out, lse, scale, bool(causal), km)


# ----------------------------------------------------------------------------------------
# backward

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _attention_backward_heads(dout, q, k, v, out, lse, scale, causal, has_mask, key_mask, dq, dk, dv):
    B, NH, T, HS = q.shape
    Tp = (T + LANES - 1) // LANES * LANES
    dt = q.dtype.type
    ninf = dt(-np.inf)
    for bh in prange(B * NH):
        b = bh // NH
        h = bh - b * NH
        qh, oh, douth, dqh = q[b, h], out[b, h], dout[b, h], dq[b, h]  # (T, HS) each
        kT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp)
        vT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp)
        _transpose(k[b, h], kT)
        _transpose(v[b, h], vT)
        dkT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp) dk of this head, transposed
        dvT = np.zeros((HS, Tp), q.dtype)  # (HS, Tp) dv of this head, transposed
        p = np.empty((ROWS, Tp), q.dtype)  # (4, Tp) scores, then probabilities
        ds = np.empty((ROWS, Tp), q.dtype)  # (4, Tp) dp, then the score gradients
        for i0 in range(0, T, ROWS):
            nr = min(ROWS, T - i0)
            i1, i2, i3 = min(i0 + 1, T - 1), min(i0 + 2, T - 1), min(i0 + 3, T - 1)
            nk = min(i0 + ROWS, T) if causal else T
            n = min((nk + LANES - 1) // LANES * LANES, Tp)
            # in the forward pass this was: s = q k^T * scale, p = exp(s - lse); out = p @ v
            _scores(qh, kT, i0, i1, i2, i3, scale, p, n)  # s, exactly as in the forward pass
            _scores(douth, vT, i0, i1, i2, i3, dt(1.0), ds, n)  # dp = dout @ v^T
            for r in range(ROWS):
                i = i0 + r
                L = lse[b, h, min(i, T - 1)]
                if r >= nr or L == np.inf:  # a repeated row, or every key masked: no gradient
                    p[r, :nk] = 0.0
                    ds[r, :nk] = 0.0
                    continue
                kmax = i + 1 if causal else T
                D = dt(0.0)  # sum_j p[r, j] dp[r, j] = dout_i . out_i
                for c in range(HS):
                    D += douth[i, c] * oh[i, c]
                if has_mask:
                    for j in range(kmax):
                        if not key_mask[b, j]:
                            p[r, j] = ninf
                for j in range(kmax):
                    pj = vexp(p[r, j] - L)
                    p[r, j] = pj
                    ds[r, j] = pj * (ds[r, j] - D) * scale  # softmax backward, and s = ... * scale
                p[r, kmax:nk] = 0.0
                ds[r, kmax:nk] = 0.0
            # dv_j += sum_r p[r, j] dout_r;  dk_j += sum_r ds[r, j] q_r;  dq_r = sum_j ds[r, j] k_j
            for c in range(HS):
                d0, d1, d2, d3 = douth[i0, c], douth[i1, c], douth[i2, c], douth[i3, c]
                a0, a1, a2, a3 = qh[i0, c], qh[i1, c], qh[i2, c], qh[i3, c]
                g0 = g1 = g2 = g3 = dt(0.0)
                for j in range(nk):
                    dvT[c, j] += d0 * p[0, j] + d1 * p[1, j] + d2 * p[2, j] + d3 * p[3, j]
                    dkT[c, j] += a0 * ds[0, j] + a1 * ds[1, j] + a2 * ds[2, j] + a3 * ds[3, j]
                    kc = kT[c, j]
                    g0 += ds[0, j] * kc
                    g1 += ds[1, j] * kc
                    g2 += ds[2, j] * kc
                    g3 += ds[3, j] * kc
                for r, g in enumerate((g0, g1, g2, g3)):
                    if r < nr:
                        dqh[i0 + r, c] = g
        dkh, dvh = dk[b, h], dv[b, h]  # (T, HS) each
        for c in range(HS):
            for j in range(T):
                dkh[j, c] = dkT[c, j]
                dvh[j, c] = dvT[c, j]


def attention_backward(dout: np.ndarray, cache):
    """Numba twin of ``llm_from_scratch.attention.attention_backward``: returns ``(dq, dk, dv)``.

    Takes the cache of this module's ``attention_forward`` and recomputes the probabilities
    from its ``lse``. Example: causally, the first query puts weight 1 on the first value and
    the second splits it 1/2, 1/2, so ``dv = p^T @ dout``:

    >>> q = np.zeros((1, 1, 2, 2)); k = np.zeros((1, 1, 2, 2))
    >>> v = np.array([[[[1.0, 0.0], [3.0, 2.0]]]])
    >>> out, cache = attention_forward(q, k, v)
    >>> dq, dk, dv = attention_backward(np.array([[[[1.0, 0.0], [0.0, 1.0]]]]), cache)
    >>> dv
    array([[[[1. , 0.5],
             [0. , 0.5]]]])
    """
    q, k, v, out, lse, scale, causal, km = cache
    if not isinstance(dout, np.ndarray) or dout.shape != q.shape:
        got = dout.shape if isinstance(dout, np.ndarray) else type(dout).__name__
        raise ValueError(f"dout must have the output's shape {q.shape}, got {got}")
    dout = np.ascontiguousarray(dout, dtype=q.dtype)  # (B, NH, T, HS)
    dq = np.empty_like(q)  # (B, NH, T, HS)
    dk = np.empty_like(q)  # (B, NH, T, HS)
    dv = np.empty_like(q)  # (B, NH, T, HS)
    if q.shape[2]:
        _attention_backward_heads(dout, q, k, v, out, lse, q.dtype.type(scale), causal, km is not None,
                                  km if km is not None else np.ones((1, 1), dtype=bool), dq, dk, dv)
    return dq, dk, dv


# ----------------------------------------------------------------------------------------
# inference: bidirectional attention straight from the fused q, k, v projection

# For inference nothing is kept for a backward pass, and BERT's attention is not causal, so
# each (batch, head) pair is two matrix products around a row softmax, and the products are
# OpenBLAS's gemm run on the calling numba thread (``ops._gemm``):
#
#     S = Q_h K_h^T               (T, n)  scores of every query against the keys 0 .. n - 1
#     P = softmax(S / sqrt(HS))   row by row, padded keys at -inf
#     Y_h = P V_h                 (T, HS)
#
# Q_h, K_h and V_h are read in place from the (B, T, 3C) output of the fused projection (a
# leading dimension of 3C), and Y_h is written in place into the (B, T, C) merged output (a
# leading dimension of C): the heads are never split or merged by copying. n is one past the
# last real key of the sequence, so padding at the end of a batch's shorter sequences is not
# multiplied at all; a masked key before it gets probability 0.

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _self_attention_packed_heads(qkv, NH, scale, has_mask, key_mask, out):
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // NH
    dt = qkv.dtype.type
    zero = dt(0.0)
    size = qkv.itemsize
    for bh in prange(B * NH):
        b = bh // NH
        h = bh - b * NH
        n = T  # keys 0 .. n - 1 are multiplied: up to the last real one
        if has_mask:
            n = 0
            for j in range(T):
                if key_mask[b, j]:
                    n = j + 1
        if n == 0:  # every key is padding: output 0, as attention_forward gives
            for i in range(T):
                for c in range(HS):
                    out[b, i, h * HS + c] = zero
            continue
        q_at = qkv.ctypes.data + (b * T * C3 + h * HS) * size  # Q_h: (T, HS), rows 3C apart
        k_at = q_at + C * size  # K_h
        v_at = q_at + 2 * C * size  # V_h
        s = np.empty((T, n), qkv.dtype)  # (T, n) scores, then probabilities
        _gemm(_NO_TRANS, _TRANS, T, n, HS, q_at, C3, k_at, C3, s.ctypes.data, n, zero)  # S = Q_h K_h^T
        for i in range(T):
            for j in range(n):
                s[i, j] *= scale
            if has_mask:
                for j in range(n):
                    if not key_mask[b, j]:
                        s[i, j] = -np.inf
            m = _row_max(s, i, n)
            total = zero
            for j in range(n):
                e = vexp(s[i, j] - m)  # exp(-inf) = 0 for padded keys
                s[i, j] = e
                total += e
            inv = dt(1.0) / total
            for j in range(n):
                s[i, j] *= inv
        _gemm(_NO_TRANS, _NO_TRANS, T, HS, n, s.ctypes.data, n, v_at, C3,
              out.ctypes.data + (b * T * C + h * HS) * size, C, zero)  # Y_h = P V_h


def self_attention_packed(qkv: np.ndarray, NH: int, key_mask: np.ndarray | None = None) -> np.ndarray:
    """Bidirectional multi-head attention for inference, from the fused projection ``qkv``
    (B, T, 3C) (queries, keys, values along the last axis, GPT-2's ``c_attn`` layout) to the
    merged heads (B, T, C); ``key_mask`` (B, T) is True for real tokens (None: all real).

    The same result, to float rounding, as the numpy reference
    ``merge_heads(attention.attention_forward(split_heads(q, NH), split_heads(k, NH),
    split_heads(v, NH), causal=False, key_mask=key_mask)[0])`` with ``q, k, v =
    np.split(qkv, 3, axis=2)``, but without a cache (nothing for a backward pass), without
    copies to split or merge the heads, and without work on the padding after a sequence's last
    real key. A query whose keys are all padding gets output 0.

    Example: two keys with equal scores are averaged, whatever the queries.

    >>> qkv = np.array([[[0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
    ...                  [0.0, 0.0, 1.0, 0.0, 3.0, 2.0]]])  # (B, T, 3C) = (1, 2, 6): q = k = 0
    >>> self_attention_packed(qkv, NH=1)
    array([[[2., 1.],
            [2., 1.]]])
    >>> self_attention_packed(qkv, NH=1, key_mask=np.array([[True, False]]))  # the second key is padding
    array([[[1., 0.],
            [1., 0.]]])
    """
    if not isinstance(qkv, np.ndarray) or qkv.dtype not in (np.float32, np.float64) or qkv.ndim != 3:
        got = f"{qkv.dtype} {qkv.shape}" if isinstance(qkv, np.ndarray) else type(qkv).__name__
        raise ValueError(f"qkv must be a float32 or float64 (B, T, 3C) numpy array, got {got}")
    B, T, C3 = qkv.shape
    if isinstance(NH, bool) or not isinstance(NH, (int, np.integer)) or NH < 1 or C3 % (3 * NH):
        raise ValueError(f"qkv's last axis 3C = {C3} must split into q, k, v of NH = {NH!r} heads each "
                         f"(3C divisible by 3 * NH)")
    km = None if key_mask is None else _check_key_mask(key_mask, B, T)  # (B, T)
    qkv = np.ascontiguousarray(qkv)  # (B, T, 3C)
    out = np.empty((B, T, C3 // 3), dtype=qkv.dtype)  # (B, T, C)
    if BLAS is None:  # no gemm to call: the reference, through the kernel of the training path
        q, k, v = (split_heads(a, NH) for a in np.split(qkv, 3, axis=2))  # 3 x (B, NH, T, HS)
        return merge_heads(attention_forward(q, k, v, causal=False, key_mask=km)[0])
    scale = qkv.dtype.type(1.0 / np.sqrt(C3 // 3 // NH))  # 1 / sqrt(HS)
    if T and B:
        BLAS.run_single_threaded(_self_attention_packed_heads, qkv, int(NH), scale, km is not None,
                                 km if km is not None else np.ones((1, 1), dtype=bool), out)
    return out
