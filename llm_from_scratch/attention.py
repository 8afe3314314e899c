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

A query row whose keys are all masked (possible with padding) gets weights 0, output 0 and
gradient 0, where PyTorch would give NaN. The numba kernel for causal attention, which never
builds masked-out scores, is ``llm_from_scratch.kernels.attention``.

Left out: dropout on the attention weights, attention biases (ALiBi, relative positions),
grouped-query attention, and key/value caching (in the GPT model's generation code).

References: A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017; A. Radford et al.,
"Language Models are Unsupervised Multitask Learners", 2019 (the fused ``c_attn`` layout);
A. Karpathy, llm.c ``train_gpt2.c`` (``attention_forward``/``attention_backward``).
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch import ops

# Dimension letters: B batch, T sequence length (queries and keys), C channels,
# NH heads, HS head size = C // NH.

__all__ = ["causal_mask", "attention_forward", "attention_backward", "split_heads", "merge_heads",
           "mha_forward", "mha_backward"]


def causal_mask(T: int) -> np.ndarray:
    """(T, T) boolean mask, True where query ``i`` may look at key ``j`` (``j <= i``).

    >>> causal_mask(3).astype(int)
    array([[1, 0, 0],
           [1, 1, 0],
           [1, 1, 1]])
    """
    return np.tril(np.ones((T, T), dtype=bool))


def _full_mask(T: int, causal: bool, key_mask: np.ndarray | None) -> np.ndarray | None:
    """Combine the causal mask (T, T) and a key padding mask (B, T) into one that broadcasts to
    (B, NH, T, T); None when nothing is masked."""
    mask = causal_mask(T) if causal else None
    if key_mask is not None:
        if key_mask.dtype != np.bool_ or key_mask.ndim != 2 or key_mask.shape[1] != T:
            raise ValueError(f"key_mask must be a boolean (B, T) = (B, {T}) array, True for real tokens, "
                             f"got {key_mask.dtype} {key_mask.shape}")
        km = key_mask[:, None, None, :]  # (B, 1, 1, T)
        mask = km if mask is None else (km & mask)  # (B, 1, T, T)
    return mask


def attention_forward(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = True,
                      key_mask: np.ndarray | None = None):
    """Scaled dot-product attention of (B, NH, T, HS) queries, keys and values.

    ``key_mask`` (B, T) is True for real tokens and False for padding. Returns ``(out, cache)``.

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
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"q, k, v must have the same shape (B, NH, T, HS), got {q.shape}, {k.shape}, {v.shape}")
    B, NH, T, HS = q.shape
    scale = 1.0 / np.sqrt(HS)
    att = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # (B, NH, T, HS) @ (B, NH, HS, T) -> (B, NH, T, T)
    p, _ = ops.softmax_forward(att, _full_mask(T, causal, key_mask))  # (B, NH, T, T)
    out = p @ v  # (B, NH, T, T) @ (B, NH, T, HS) -> (B, NH, T, HS)
    return out, (q, k, v, p, scale)


def attention_backward(dout: np.ndarray, cache):
    """Gradients of ``attention_forward``: returns ``(dq, dk, dv)``."""
    q, k, v, p, scale = cache
    # in the forward pass this was: out = p @ v, so now
    dp = dout @ v.transpose(0, 1, 3, 2)  # (B, NH, T, HS) @ (B, NH, HS, T) -> (B, NH, T, T)
    dv = p.transpose(0, 1, 3, 2) @ dout  # (B, NH, T, T) @ (B, NH, T, HS) -> (B, NH, T, HS)
    # p = softmax(att): masked entries have p = 0, so they get no gradient
    datt = ops.softmax_backward(dp, p)  # (B, NH, T, T)
    datt *= datt.dtype.type(scale)  # att = q @ k^T * scale
    dq = datt @ k  # (B, NH, T, T) @ (B, NH, T, HS) -> (B, NH, T, HS)
    dk = datt.transpose(0, 1, 3, 2) @ q  # (B, NH, T, T) @ (B, NH, T, HS) -> (B, NH, T, HS)
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


def mha_forward(x: np.ndarray, w_attn: np.ndarray, b_attn: np.ndarray, w_proj: np.ndarray,
                b_proj: np.ndarray, NH: int, causal: bool = True, key_mask: np.ndarray | None = None,
                attention=None):
    """Multi-head self-attention of ``x`` (B, T, C) with GPT-2's fused layout.

    ``w_attn`` (C, 3C) and ``b_attn`` (3C,) make q, k, v in one matmul (in that order along the
    last axis); ``w_proj`` (C, C), ``b_proj`` (C,) mix the merged heads. ``attention`` is an
    optional ``(forward, backward)`` pair with the signatures of ``attention_forward`` /
    ``attention_backward`` (for instance the numba kernel); the numpy one by default.
    Returns ``(out, cache)``.
    """
    attn_fwd = attention[0] if attention is not None else attention_forward
    B, T, C = x.shape
    qkv, qkv_cache = ops.linear_forward(x, w_attn, b_attn)  # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=2)  # 3 x (B, T, C)
    q, k, v = split_heads(q, NH), split_heads(k, NH), split_heads(v, NH)  # 3 x (B, NH, T, HS)
    y, att_cache = attn_fwd(np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v),
                            causal=causal, key_mask=key_mask)  # (B, NH, T, HS)
    y = merge_heads(y)  # (B, T, C)
    out, proj_cache = ops.linear_forward(y, w_proj, b_proj)  # (B, T, C)
    return out, (qkv_cache, att_cache, proj_cache, NH, attention)


def mha_backward(dout: np.ndarray, cache):
    """Gradients of ``mha_forward``: returns ``(dx, dw_attn, db_attn, dw_proj, db_proj)``."""
    qkv_cache, att_cache, proj_cache, NH, attention = cache
    attn_bwd = attention[1] if attention is not None else attention_backward
    # out = y @ w_proj + b_proj
    dy, dw_proj, db_proj = ops.linear_backward(dout, proj_cache)  # (B, T, C)
    # y = merge_heads(attention(q, k, v))
    dq, dk, dv = attn_bwd(np.ascontiguousarray(split_heads(dy, NH)), att_cache)  # 3 x (B, NH, T, HS)
    # q, k, v = split(qkv): the gradients concatenate back along the channels
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=2)  # (B, T, 3C)
    # qkv = x @ w_attn + b_attn
    dx, dw_attn, db_attn = ops.linear_backward(dqkv, qkv_cache)  # (B, T, C)
    return dx, dw_attn, db_attn, dw_proj, db_proj
