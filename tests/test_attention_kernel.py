"""The numba attention kernel (``llm_from_scratch.kernels.attention``) gives the numpy
reference's results (``llm_from_scratch.attention``), and PyTorch's.

Forward and all three gradients are compared in float64 (~1e-12) and float32 (~1e-5, the
kernel sums in float32 in a different order) on uneven shapes: T = 1, T not a multiple of the
four-row blocks or the 16-key padding, HS not a multiple of four, and the GPT size
T = 128, HS = 32; causal and not, with and without a key padding mask.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from llm_from_scratch import attention as ref
from llm_from_scratch.kernels import attention as kattn
from llm_from_scratch.testing import assert_close, assert_close_scaled, gradcheck

TOL = {np.float64: 1e-12, np.float32: 1e-5}
SHAPES = [(2, 3, 5, 4), (2, 2, 1, 4), (3, 1, 7, 5), (1, 2, 33, 3), (1, 2, 128, 32)]  # (B, NH, T, HS)


def qkv(rng, shape, dtype, n=3):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(n)]


def same(actual, expected, dtype, name):
    """Kernel vs reference: ``|a - e| <= tol * (|e| + max(1, max|e|))``."""
    assert_close_scaled(actual, expected, TOL[dtype], name)


def both(q, k, v, dout, **kw):
    """(out, dq, dk, dv) from the kernel and from the reference."""
    out, cache = kattn.attention_forward(q, k, v, **kw)
    out_ref, cache_ref = ref.attention_forward(q, k, v, **kw)
    return ((out, *kattn.attention_backward(dout, cache)),
            (out_ref, *ref.attention_backward(dout, cache_ref)))


def padding_mask(rng, B, T):
    """(B, T) key mask with a left-padded row (its first queries see only padding), a random
    row, and (when B > 2) an all-padding row."""
    km = rng.random((B, T)) > 0.3
    km[0, : max(1, T // 3)] = False
    if B > 2:
        km[2] = False
    return km


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [True, False])
def test_matches_reference(rng, shape, dtype, causal):
    q, k, v, dout = qkv(rng, shape, dtype, 4)
    for name, a, e in zip(("out", "dq", "dk", "dv"), *both(q, k, v, dout, causal=causal)):
        same(a, e, dtype, name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(3, 2, 6, 4), (3, 1, 37, 8)])
@pytest.mark.parametrize("causal", [True, False])
def test_key_mask_matches_reference(rng, shape, dtype, causal):
    q, k, v, dout = qkv(rng, shape, dtype, 4)
    km = padding_mask(rng, shape[0], shape[2])
    (out, dq, dk, dv), expected = both(q, k, v, dout, causal=causal, key_mask=km)
    for name, a, e in zip(("out", "dq", "dk", "dv"), (out, dq, dk, dv), expected):
        same(a, e, dtype, name)
    # the all-padding batch row: output 0 and gradient 0, not NaN
    assert np.all(out[2] == 0) and np.all(dq[2] == 0) and np.all(dk[2] == 0) and np.all(dv[2] == 0)
    if causal:  # the first (padding-only) queries of batch row 0 get nothing either
        assert np.all(out[0, :, 0] == 0) and np.all(dq[0, :, 0] == 0)


@pytest.mark.parametrize("causal,padded", [(True, False), (True, True), (False, True)])
def test_gradcheck(causal, padded):
    rng = np.random.default_rng(0)
    q, k, v = qkv(rng, (2, 3, 5, 4), np.float64)
    key_mask = np.array([[True] * 5, [False, True, True, False, True]]) if padded else None
    cache = {}

    def fwd(q, k, v):
        out, cache["c"] = kattn.attention_forward(q, k, v, causal=causal, key_mask=key_mask)
        return out

    fwd(q, k, v)
    gradcheck(fwd, lambda d: kattn.attention_backward(d, cache["c"]), {"q": q, "k": k, "v": v})


def test_cache_holds_log_sum_exp_not_probabilities(rng):
    B, NH, T, HS = 2, 3, 9, 4
    q, k, v = qkv(rng, (B, NH, T, HS), np.float64)
    _, cache = kattn.attention_forward(q, k, v)
    assert all(np.size(x) < T * T * B * NH for x in cache if isinstance(x, np.ndarray)), "no (T, T) array cached"
    lse = cache[4]
    att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)  # (B, NH, T, T)
    att = np.where(ref.causal_mask(T), att, -np.inf)
    expected = np.log(np.exp(att).sum(axis=-1))  # (B, NH, T)
    assert_close(lse, expected, rtol=1e-12, atol=1e-12, name="lse")


def test_non_contiguous_inputs(rng):
    B, T, C, NH = 2, 6, 12, 3
    x = rng.standard_normal((B, T, 3 * C))
    q, k, v = (ref.split_heads(a, NH) for a in np.split(x, 3, axis=2))  # strided views
    dout = ref.split_heads(rng.standard_normal((B, T, C)), NH)
    for name, a, e in zip(("out", "dq", "dk", "dv"), *both(q, k, v, dout)):
        same(a, e, np.float64, name)


def test_same_result_with_one_thread(rng):
    # every head is computed by one thread, in a fixed order: the thread count changes nothing
    q, k, v, dout = qkv(rng, (2, 3, 37, 8), np.float32, 4)
    out, cache = kattn.attention_forward(q, k, v)
    grads = kattn.attention_backward(dout, cache)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        out1, cache1 = kattn.attention_forward(q, k, v)
        grads1 = kattn.attention_backward(dout, cache1)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(out, out1) and all(np.array_equal(a, b) for a, b in zip(grads, grads1))


def test_plugs_into_multi_head_attention(rng):
    B, T, C, NH = 2, 7, 12, 3
    x = rng.standard_normal((B, T, C))
    p = {"w_attn": rng.standard_normal((C, 3 * C)) * 0.3, "b_attn": rng.standard_normal(3 * C) * 0.1,
         "w_proj": rng.standard_normal((C, C)) * 0.3, "b_proj": rng.standard_normal(C) * 0.1}
    dout = rng.standard_normal((B, T, C))
    key_mask = np.ones((B, T), dtype=bool)
    key_mask[1, :2] = False
    from llm_from_scratch.kernels.backend import get_ops
    for km in (None, key_mask):
        out, cache = ref.mha_forward(x, **p, NH=NH, key_mask=km, ops=get_ops("numba"))
        assert cache.attention_backward is kattn.attention_backward  # the kernel ran, not the reference
        out_ref, cache_ref = ref.mha_forward(x, **p, NH=NH, key_mask=km)
        same(out, out_ref, np.float64, "mha out")
        names = ("dx", "dw_attn", "db_attn", "dw_proj", "db_proj")
        for name, a, e in zip(names, ref.mha_backward(dout, cache), ref.mha_backward(dout, cache_ref)):
            same(a, e, np.float64, name)


def test_errors_say_what_was_expected(rng):
    q, k, v = qkv(rng, (2, 3, 5, 4), np.float64)
    with pytest.raises(ValueError, match=r"same shape \(B, NH, T, HS\)"):
        kattn.attention_forward(q, k[:, :, :4], v)
    with pytest.raises(TypeError, match="same dtype"):
        kattn.attention_forward(q, k.astype(np.float32), v)
    with pytest.raises(TypeError, match="float32 or float64"):
        kattn.attention_forward(q.astype(np.int64), k, v)
    with pytest.raises(ValueError, match=r"boolean \(B, T\) = \(2, 5\)"):
        kattn.attention_forward(q, k, v, key_mask=np.ones((2, 4), dtype=bool))
    _, cache = kattn.attention_forward(q, k, v)
    with pytest.raises(ValueError, match="output's shape"):
        kattn.attention_backward(np.ones((2, 3, 5)), cache)


@pytest.mark.parity
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 4, 128, 32)])
def test_matches_pytorch_sdpa(torch, rng, shape, dtype, tol):
    q, k, v, dout = qkv(rng, shape, dtype, 4)
    out, cache = kattn.attention_forward(q, k, v, causal=True)
    dq, dk, dv = kattn.attention_backward(dout, cache)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    tout.backward(torch.tensor(dout))
    for name, ours, theirs in (("out", out, tout.detach()), ("dq", dq, tq.grad), ("dk", dk, tk.grad),
                               ("dv", dv, tv.grad)):
        theirs = theirs.numpy()
        scale = max(1.0, float(np.max(np.abs(theirs))))
        assert_close(ours, theirs, rtol=tol, atol=tol * scale, name=name)


# ----------------------------------------------------------------------------------------
# inference: self_attention_packed, from the fused (B, T, 3C) projection to the merged heads


def packed_reference(x, NH, key_mask):
    """The numpy reference, composed: split q, k, v and the heads, attend, merge the heads."""
    q, k, v = (ref.split_heads(a, NH) for a in np.split(x, 3, axis=2))  # 3 x (B, NH, T, HS)
    return ref.merge_heads(ref.attention_forward(q, k, v, causal=False, key_mask=key_mask)[0])  # (B, T, C)


def packed_masks(B, T):
    """Key masks that exercise every branch: none; padding at the end of all but the first row
    (the batches of sorted sentences); and, from B = 3 on, a row padded at its start and in its
    middle and a row of padding only."""
    tail = np.ones((B, T), dtype=bool)
    for b in range(1, B):
        tail[b, T - b * T // (B + 1):] = False
    holes = tail.copy()
    if B > 2:
        holes[1, 0] = False
        holes[1, T // 2] = False
        holes[2] = False
    return [None, tail, holes]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B,T,NH,HS", [(1, 1, 1, 4), (3, 5, 2, 3), (4, 19, 3, 5), (3, 40, 12, 32)])
def test_packed_inference_attention_matches_reference(rng, dtype, B, T, NH, HS):
    x = rng.standard_normal((B, T, 3 * NH * HS)).astype(dtype)  # (B, T, 3C)
    for km in packed_masks(B, T):
        out = kattn.self_attention_packed(x, NH, km)
        expected = packed_reference(x, NH, km)
        print(f"B, T, NH, HS = {B, T, NH, HS} {np.dtype(dtype).name} mask {km is not None}: "
              f"max abs difference {np.abs(out - expected).max():.1e}")
        assert out.shape == (B, T, NH * HS) and out.dtype == dtype
        same(out, expected, dtype, "packed attention")
        if km is not None and not km.all(axis=1).all():
            empty = ~km.any(axis=1)  # sequences of padding only get 0
            assert np.all(out[empty] == 0)


def test_packed_inference_attention_is_the_same_on_one_thread(rng):
    x = rng.standard_normal((3, 37, 3 * 4 * 8)).astype(np.float32)
    km = packed_masks(3, 37)[2]
    out = kattn.self_attention_packed(x, 4, km)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        out1 = kattn.self_attention_packed(x, 4, km)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(out, out1)


def test_packed_inference_attention_errors(rng):
    x = rng.standard_normal((2, 5, 12))
    with pytest.raises(ValueError, match=r"3C = 12 must split into q, k, v of NH = 3 heads"):
        kattn.self_attention_packed(x, 3)
    with pytest.raises(ValueError, match=r"\(B, T, 3C\)"):
        kattn.self_attention_packed(x[0], 2)
    with pytest.raises(ValueError, match=r"boolean \(B, T\) = \(2, 5\)"):
        kattn.self_attention_packed(x, 2, key_mask=np.ones((2, 4), dtype=bool))


def test_packed_inference_attention_without_openblas(rng, monkeypatch):
    # where numpy's OpenBLAS is not found, the numba attention kernel of the training path runs
    x = rng.standard_normal((3, 6, 3 * 2 * 4))
    km = packed_masks(3, 6)[2]
    expected = kattn.self_attention_packed(x, 2, km)
    monkeypatch.setattr(kattn, "BLAS", None)
    same(kattn.self_attention_packed(x, 2, km), expected, np.float64, "packed attention without OpenBLAS")
