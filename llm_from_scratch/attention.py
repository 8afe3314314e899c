"""Attention as forward/backward pairs of pure numpy functions.

Scaled dot-product attention (Vaswani et al. 2017, section 3.2.1, equation 1):

    A   = q @ k^T / sqrt(HS)          scores,                         (B, NH, T, T)
    P   = softmax(A + mask)           each query's weights over keys, (B, NH, T, T)
    out = P @ v                       a weighted average of values,   (B, NH, T, HS)

The causal mask hides the future (query t sees keys 0..t); a padding mask hides padded keys.
Multi-head attention (section 3.2.2) runs NH such attentions side by side on slices of the
channels: one fused linear map makes q, k and v at once (GPT-2's ``c_attn``, weight ``(C, 3C)``),
the heads are split out of the channels, attended, merged back, and projected (``c_proj``).

The backward pass, derived in chapter 6:

    dv = P^T @ dout                   dP = dout @ v^T
    dA = P * (dP - sum_j P dP)        (the softmax backward, row by row)
    dq = dA @ k / sqrt(HS)            dk = dA^T @ q / sqrt(HS)

Queries and keys may come from sequences of different lengths, T queries against S keys:

- cross-attention (the encoder-decoder's): queries from the decoder, keys and values from the
  encoder's output ``memory``, with a key padding mask for the padded source positions;
- decoding with a key/value cache: T new queries against the S = start + T keys cached so far.
  The causal mask then lines the queries up with the *last* T keys: query i sees keys
  0 .. i + S - T.

``mha_forward`` is the one multi-head attention of the package: GPT's causal self-attention,
BERT's bidirectional self-attention with padding and dropout on the weights, cross-attention
(``memory=``) and cached decoding (``kv_cache=``) are the same function called with different
inputs. It takes the ops namespace of ``llm_from_scratch.kernels.backend.get_ops``, so the
numba twins replace the linear layers and, where the shapes allow (T = S, no dropout), the
attention itself.

A query row whose keys are all masked (possible with padding) gets weights 0, output 0 and
gradient 0, where PyTorch would give NaN. The numba kernel for causal attention, which never
builds masked-out scores, is ``llm_from_scratch.kernels.attention``.

Left out: attention biases (ALiBi, relative positions), grouped-query attention, and the
gradient through a key/value cache (cached decoding is inference only).

References: A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017; A. Radford et al.,
"Language Models are Unsupervised Multitask Learners", 2019 (the fused ``c_attn`` layout);
A. Karpathy, llm.c ``train_gpt2.c`` (``attention_forward``/``attention_backward``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np

from llm_from_scratch import ops

# Dimension letters: B batch, T query positions, S key/value positions (S = T in
# self-attention), C channels, NH heads, HS head size = C // NH.

__all__ = ["causal_mask", "AttentionCache", "attention_forward", "attention_backward", "split_heads",
           "merge_heads", "MHACache", "MHAGrads", "mha_forward", "mha_backward"]


def causal_mask(T: int, S: int | None = None) -> np.ndarray:
    """(T, S) boolean mask, True where query ``i`` may look at key ``j``: ``j <= i + S - T``.

    With S = T (the default) that is ``j <= i``; with more keys than queries (new tokens
    attending to a key/value cache) the queries are the last T positions.

    >>> causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    >>> causal_mask(2, 4).astype(int)  # two new tokens after two cached ones
    array([[1, 1, 1, 0],
           [1, 1, 1, 1]])
    """
    S = T if S is None else S
    return np.arange(S)[None, :] <= np.arange(T)[:, None] + (S - T)  # (T, S)


def _full_mask(T: int, S: int, causal: bool, key_mask: np.ndarray | None) -> np.ndarray | None:
    """Combine the causal mask (T, S) and a key mask into one that broadcasts to (B, NH, T, S);
    None when nothing is masked. ``key_mask`` is (B, S), the same keys hidden from every query
    (padding), or (B, T, S), a mask per query (sequences at different positions of a cache)."""
    mask = causal_mask(T, S) if causal and not (T == 1) else None  # one query (the last) sees every key
    if key_mask is not None:
        if key_mask.dtype != np.bool_ or key_mask.ndim not in (2, 3) or key_mask.shape[-1] != S \
                or (key_mask.ndim == 3 and key_mask.shape[1] != T):
            raise ValueError(f"key_mask must be a boolean (B, S) = (B, {S}) or (B, T, S) = (B, {T}, {S}) array, "
                             f"True for keys a query may see, got {key_mask.dtype} {key_mask.shape}")
        km = key_mask[:, None, None, :] if key_mask.ndim == 2 else key_mask[:, None]  # (B, 1, 1, S) or (B, 1, T, S)
        mask = km if mask is None else (km & mask)  # (B, 1, T, S)
    return mask


class AttentionCache(NamedTuple):
    """What ``attention_backward`` needs from ``attention_forward``."""
    q: np.ndarray  # (B, NH, T, HS) queries
    k: np.ndarray  # (B, NH, S, HS) keys
    v: np.ndarray  # (B, NH, S, HS) values
    p: np.ndarray  # (B, NH, T, S) attention weights, before dropout
    scale: float  # 1 / sqrt(HS)
    drop: np.ndarray | None  # (B, NH, T, S) dropout's scaled mask on p, or None without dropout


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = True,
                      key_mask: np.ndarray | None = None, dropout: float = 0.0,
                      rng: np.random.Generator | None = None):
    """Scaled dot-product attention of (B, NH, T, HS) queries over (B, NH, S, HS) keys and values.

    ``key_mask`` (B, S) is True for real tokens and False for padding. ``dropout`` > 0 zeroes
    attention weights with that probability (masks drawn from ``rng``), as BERT trains:
    ``out = dropout(P) @ v``. Returns ``(out, cache)``.

    Example: one query attending to two keys with equal scores averages their values.

    >>> q = np.zeros((1, 1, 2, 2)); k = np.zeros((1, 1, 2, 2))
    >>> v = np.array([[[[1.0, 0.0], [3.0, 2.0]]]])
    >>> attention_forward(q, k, v, causal=False)[0]
    array([[[[2., 1.],
             [2., 1.]]]])
    >>> attention_forward(q, k, v, causal=True)[0]  # the first query sees only the first key
    array([[[[1., 0.],
             [2., 1.]]]])
    """
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q must be (B, NH, T, HS) and k, v (B, NH, S, HS) with the same B, NH and HS, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    B, NH, T, HS = q.shape
    S = k.shape[2]
    scale = 1.0 / np.sqrt(HS)
    att = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # (B, NH, T, HS) @ (B, NH, HS, S) -> (B, NH, T, S)
    p, _ = ops.softmax_forward(att, _full_mask(T, S, causal, key_mask))  # (B, NH, T, S)
    drop = None
    if dropout:
        if not isinstance(rng, np.random.Generator):
            raise ValueError("attention dropout needs rng=np.random.default_rng(seed) to draw the masks")
        p_used, drop = ops.dropout_forward(p, dropout, rng)  # (B, NH, T, S)
    else:
        p_used = p
    out = p_used @ v  # (B, NH, T, S) @ (B, NH, S, HS) -> (B, NH, T, HS)
    return out, AttentionCache(q, k, v, p, scale, drop)


def attention_backward(dout: np.ndarray, cache: AttentionCache):
    """Gradients of ``attention_forward``: returns ``(dq, dk, dv)``."""
    q, k, v, p, scale, drop = cache
    p_used = p if drop is None else p * drop  # (B, NH, T, S) the weights that multiplied v
    # in the forward pass this was: out = p_used @ v, so now
    dp = dout @ v.transpose(0, 1, 3, 2)  # (B, NH, T, HS) @ (B, NH, HS, S) -> (B, NH, T, S)
    dv = p_used.transpose(0, 1, 3, 2) @ dout  # (B, NH, S, T) @ (B, NH, T, HS) -> (B, NH, S, HS)
    if drop is not None:
        dp = ops.dropout_backward(dp, drop)  # p_used = dropout(p)
    # p = softmax(att): masked entries have p = 0, so they get no gradient
    datt = ops.softmax_backward(dp, p)  # (B, NH, T, S)
    datt *= datt.dtype.type(scale)  # att = q @ k^T * scale
    dq = datt @ k  # (B, NH, T, S) @ (B, NH, S, HS) -> (B, NH, T, HS)
    dk = datt.transpose(0, 1, 3, 2) @ q  # (B, NH, S, T) @ (B, NH, T, HS) -> (B, NH, S, HS)
    return dq, dk, dv


def split_heads(x: np.ndarray, NH: int) -> np.ndarray:
    """(B, T, C) -> (B, NH, T, HS): head h takes channels h*HS .. (h+1)*HS - 1."""
    B, T, C = x.shape
    if C % NH:
        raise ValueError(f"the channels C = {C} must divide evenly among NH = {NH} heads")
    return x.reshape(B, T, NH, C // NH).transpose(0, 2, 1, 3)  # (B, NH, T, HS)


def merge_heads(x: np.ndarray) -> np.ndarray:
    """(B, NH, T, HS) -> (B, T, C), the inverse of ``split_heads``."""
    B, NH, T, HS = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, NH * HS)  # (B, T, C)


def _linear_forward(K, x, w, b):
    """``K.linear_forward`` on the rows of ``x`` (..., C) flattened to one (N, C) matrix:
    numpy multiplies a (B, T, C) array by a matrix as B separate products, which was 1.2 to
    1.7x slower than one (B*T, C) product at (32, 24, 384) @ (384, 1536)."""
    out, cache = K.linear_forward(x.reshape(-1, x.shape[-1]), w, b)  # (N, C) @ (C, OC) -> (N, OC)
    return out.reshape(x.shape[:-1] + (w.shape[1],)), cache  # (..., OC)


def _linear_backward(K, dout, cache):
    """Gradients of ``_linear_forward``: ``(dx, dw, db)``."""
    dx, dw, db = K.linear_backward(dout.reshape(-1, dout.shape[-1]), cache)  # (N, C), (C, OC), (OC,)
    return dx.reshape(dout.shape[:-1] + (dx.shape[-1],)), dw, db  # dx: (..., C)


class MHACache(NamedTuple):
    """What ``mha_backward`` needs from ``mha_forward``."""
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    NH: int  # heads
    q: tuple  # linear cache of the projection of x: q, k and v at once (self-attention) or q alone
    kv: tuple | None  # cross-attention: linear cache of the k, v projection of memory; else None
    attention: tuple  # the attention's cache
    attention_backward: Callable  # the backward that matches that cache (numpy's or the numba kernel's)
    proj: tuple  # linear cache of the output projection


class MHAGrads(NamedTuple):
    """The gradients ``mha_backward`` returns, in the order of ``mha_forward``'s arguments."""
    dx: np.ndarray  # (B, T, C)
    dw_attn: np.ndarray  # (C, 3C)
    db_attn: np.ndarray  # (3C,)
    dw_proj: np.ndarray  # (C, C)
    db_proj: np.ndarray  # (C,)
    dmemory: np.ndarray | None  # (B, S, C) with cross-attention, else None


def mha_forward(x: np.ndarray, w_attn: np.ndarray, b_attn: np.ndarray, w_proj: np.ndarray,
                b_proj: np.ndarray, NH: int, causal: bool = True, key_mask: np.ndarray | None = None, *,
                memory: np.ndarray | None = None, ops: SimpleNamespace | None = None, dropout: float = 0.0,
                rng: np.random.Generator | None = None, kv_cache: np.ndarray | None = None, start: int = 0):
    """Multi-head attention of ``x`` (B, T, C) with GPT-2's fused layout. Returns ``(out, cache)``.

    ``w_attn`` (C, 3C) and ``b_attn`` (3C,) make q, k, v (in that order along the last axis);
    ``w_proj`` (C, C), ``b_proj`` (C,) mix the merged heads:

        q, k, v = x @ w_attn + b_attn                  self-attention: one matmul, (B, T, 3C)
        q = x @ w_attn[:, :C] + b_attn[:C]             cross-attention: queries from x,
        k, v = memory @ w_attn[:, C:] + b_attn[C:]     keys and values from memory (B, S, C)
        y = attention(q, k, v) per head, heads merged  (B, T, C)
        out = y @ w_proj + b_proj                      (B, T, C)

    ``key_mask`` (B, S) hides padded keys; ``causal`` hides later positions. ``dropout`` drops
    attention weights (masks from ``rng``). ``ops`` is a namespace from
    ``kernels.backend.get_ops`` (default: the numpy ops). ``kv_cache`` (2, B, NH, P, HS), for
    decoding: the new keys and values are written at positions ``start .. start + T - 1`` and
    the queries attend to positions ``0 .. start + T - 1`` (inference only). ``start`` may be a
    (B,) array, one position per sequence, for a batch whose sequences are at different lengths
    (continuous batching).

    Example: cross-attention over a memory that is x itself is self-attention.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((1, 3, 4)); w, b = rng.standard_normal((4, 12)), rng.standard_normal(12)
    >>> wp, bp = rng.standard_normal((4, 4)), rng.standard_normal(4)
    >>> self_out, _ = mha_forward(x, w, b, wp, bp, NH=2, causal=False)
    >>> cross_out, _ = mha_forward(x, w, b, wp, bp, NH=2, causal=False, memory=x)
    >>> bool(np.allclose(self_out, cross_out))
    True
    """
    if ops is None:
        from llm_from_scratch.kernels.backend import get_ops
        ops = get_ops("numpy")
    C = x.shape[-1]
    if memory is None:
        qkv, q_cache = _linear_forward(ops, x, w_attn, b_attn)  # (B, T, C) -> (B, T, 3C)
        q, k, v = np.split(qkv, 3, axis=2)  # 3 x (B, T, C)
        kv_cache_lin = None
    else:
        q, q_cache = _linear_forward(ops, x, w_attn[:, :C], b_attn[:C])  # (B, T, C)
        kv, kv_cache_lin = _linear_forward(ops, memory, w_attn[:, C:], b_attn[C:])  # (B, S, 2C)
        k, v = np.split(kv, 2, axis=2)  # 2 x (B, S, C)
    q, k, v = split_heads(q, NH), split_heads(k, NH), split_heads(v, NH)  # (B, NH, T, HS), 2 x (B, NH, S, HS)
    if kv_cache is not None:
        T = q.shape[2]
        if np.ndim(start) == 0:
            S = start + T  # positions attended to: the cached ones and the new ones
            kv_cache[0, :, :, start:S] = k  # (B, NH, T, HS) keys of the new positions
            kv_cache[1, :, :, start:S] = v  # (B, NH, T, HS) and their values
        else:  # (B,) positions: each sequence writes its keys and values at its own offset
            S = int(np.max(start)) + T
            for b, s0 in enumerate(start):
                kv_cache[0, b, :, s0:s0 + T] = k[b]  # (NH, T, HS)
                kv_cache[1, b, :, s0:s0 + T] = v[b]  # (NH, T, HS)
            # query t of sequence b sees keys 0 .. start_b + t, not the longer history of another row
            rows = np.arange(S)[None, None, :] <= np.asarray(start)[:, None, None] + np.arange(T)[None, :, None]
            key_mask = rows if key_mask is None else rows & key_mask[:, None, :]  # (B, T, S)
            causal = False  # the per-row mask says it all
        k, v = kv_cache[0, :, :, :S], kv_cache[1, :, :, :S]  # 2 x (B, NH, S, HS)
    q, k, v = np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v)
    if dropout:  # only the numpy attention implements dropout on the weights
        y, att_cache = attention_forward(q, k, v, causal, key_mask, dropout, rng)  # (B, NH, T, HS)
        att_backward = attention_backward
    elif q.shape == k.shape and (key_mask is None or key_mask.ndim == 2):  # the kernel's case
        y, att_cache = ops.attention_forward(q, k, v, causal=causal, key_mask=key_mask)  # (B, NH, T, HS)
        att_backward = ops.attention_backward
    else:
        y, att_cache = attention_forward(q, k, v, causal, key_mask)  # (B, NH, T, HS)
        att_backward = attention_backward
    out, proj_cache = _linear_forward(ops, merge_heads(y), w_proj, b_proj)  # (B, T, C)
    return out, MHACache(ops, NH, q_cache, kv_cache_lin, att_cache, att_backward, proj_cache)


def mha_backward(dout: np.ndarray, cache: MHACache) -> MHAGrads:
    """Gradients of ``mha_forward``: ``(dx, dw_attn, db_attn, dw_proj, db_proj, dmemory)``,
    a ``MHAGrads``; ``dmemory`` is None for self-attention."""
    K, NH = cache.ops, cache.NH
    # out = y @ w_proj + b_proj
    dy, dw_proj, db_proj = _linear_backward(K, dout, cache.proj)  # (B, T, C)
    # y = merge_heads(attention(q, k, v))
    dq, dk, dv = cache.attention_backward(np.ascontiguousarray(split_heads(dy, NH)), cache.attention)
    if cache.kv is None:
        # q, k, v = split(x @ w_attn + b_attn): the gradients concatenate back along the channels
        dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=2)  # (B, T, 3C)
        dx, dw_attn, db_attn = _linear_backward(K, dqkv, cache.q)  # (B, T, C)
        return MHAGrads(dx, dw_attn, db_attn, dw_proj, db_proj, None)
    # cross-attention: q came from x, k and v from memory, through two slices of w_attn
    dx, dw_q, db_q = _linear_backward(K, merge_heads(dq), cache.q)  # (B, T, C)
    dkv = np.concatenate([merge_heads(dk), merge_heads(dv)], axis=2)  # (B, S, 2C)
    dmemory, dw_kv, db_kv = _linear_backward(K, dkv, cache.kv)  # (B, S, C)
    dw_attn = np.concatenate([dw_q, dw_kv], axis=-1)  # (C, 3C), or (B, C, 3C) with per-example ops
    db_attn = np.concatenate([db_q, db_kv], axis=-1)  # (3C,)
    return MHAGrads(dx, dw_attn, db_attn, dw_proj, db_proj, dmemory)
