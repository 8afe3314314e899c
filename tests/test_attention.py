import numpy as np
import pytest

from llm_from_scratch.attention import (attention_backward, attention_forward, causal_mask, merge_heads,
                                        mha_backward, mha_forward, split_heads)
from llm_from_scratch.testing import assert_close, gradcheck


def _qkv(rng, B=2, NH=3, T=5, HS=4, dtype=np.float64):
    return [rng.standard_normal((B, NH, T, HS)).astype(dtype) for _ in range(3)]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_attention_gradcheck(causal, padded):
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng)
    key_mask = np.array([[True] * 5, [True, True, True, False, False]]) if padded else None
    cache = {}

    def fwd(q, k, v):
        out, cache["c"] = attention_forward(q, k, v, causal=causal, key_mask=key_mask)
        return out

    fwd(q, k, v)
    gradcheck(fwd, lambda d: attention_backward(d, cache["c"]), {"q": q, "k": k, "v": v})


def test_length_one_sequence_and_fully_masked_rows():
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, T=1)
    out, _ = attention_forward(q, k, v)
    assert_close(out, v)  # a single key gets all the weight
    q, k, v = _qkv(rng, B=1, T=3)
    # non-causal, every key of the batch is padding: output and gradients are 0, not NaN
    out, cache = attention_forward(q, k, v, causal=False, key_mask=np.zeros((1, 3), dtype=bool))
    assert np.all(out == 0)
    assert all(np.all(g == 0) for g in attention_backward(np.ones_like(out), cache))


def test_causal_output_ignores_the_future():
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, T=6)
    out, _ = attention_forward(q, k, v)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 4:] += 10.0
    v2[:, :, 4:] -= 3.0
    out2, _ = attention_forward(q, k2, v2)
    assert_close(out2[:, :, :4], out[:, :, :4], rtol=1e-12)
    assert np.abs(out2[:, :, 4:] - out[:, :, 4:]).max() > 0.1


def test_split_merge_heads_round_trip():
    x = np.arange(2 * 3 * 8, dtype=np.float64).reshape(2, 3, 8)
    h = split_heads(x, 4)
    assert h.shape == (2, 4, 3, 2)
    assert_close(h[1, 2, 0], x[1, 0, 4:6])
    assert_close(merge_heads(h), x)
    with pytest.raises(ValueError, match="divide evenly"):
        split_heads(x, 3)


def test_mha_gradcheck():
    rng = np.random.default_rng(3)
    B, T, C, NH = 2, 4, 6, 2
    x = rng.standard_normal((B, T, C))
    p = {"w_attn": rng.standard_normal((C, 3 * C)) * 0.5, "b_attn": rng.standard_normal(3 * C) * 0.1,
         "w_proj": rng.standard_normal((C, C)) * 0.5, "b_proj": rng.standard_normal(C) * 0.1}
    cache = {}

    def fwd(x, w_attn, b_attn, w_proj, b_proj):
        out, cache["c"] = mha_forward(x, w_attn, b_attn, w_proj, b_proj, NH)
        return out

    fwd(x, **p)
    gradcheck(fwd, lambda d: mha_backward(d, cache["c"])[:5], {"x": x, **p})  # [5] is dmemory, None here


def _mha_params(rng, C):
    return {"w_attn": rng.standard_normal((C, 3 * C)) * 0.5, "b_attn": rng.standard_normal(3 * C) * 0.1,
            "w_proj": rng.standard_normal((C, C)) * 0.5, "b_proj": rng.standard_normal(C) * 0.1}


def test_cross_attention_gradcheck_reaches_queries_and_memory():
    """Queries from x (T = 3), keys and values from a padded memory (S = 5): gradients flow to
    both sequences and to every weight."""
    rng = np.random.default_rng(5)
    B, T, S, C, NH = 2, 3, 5, 6, 3
    x, memory = rng.standard_normal((B, T, C)), rng.standard_normal((B, S, C))
    key_mask = np.array([[True] * 5, [True, True, True, False, False]])
    p = _mha_params(rng, C)
    cache = {}

    def fwd(x, memory, w_attn, b_attn, w_proj, b_proj):
        out, cache["c"] = mha_forward(x, w_attn, b_attn, w_proj, b_proj, NH, causal=False, key_mask=key_mask,
                                      memory=memory)
        return out

    fwd(x, memory, **p)

    def bwd(d):
        g = mha_backward(d, cache["c"])
        return g.dx, g.dmemory, g.dw_attn, g.db_attn, g.dw_proj, g.db_proj

    gradcheck(fwd, bwd, {"x": x, "memory": memory, **p})
    # padded memory positions change nothing and get no gradient
    g = mha_backward(rng.standard_normal((B, T, C)), cache["c"])
    assert np.all(g.dmemory[1, 3:] == 0), f"max abs dmemory at padding: {np.abs(g.dmemory[1, 3:]).max()}"


def test_attention_dropout_gradcheck_and_expectation():
    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng, T=4)
    cache = {}

    def fwd(q, k, v):  # the same seed every call: the same dropout mask
        out, cache["c"] = attention_forward(q, k, v, causal=False, dropout=0.3, rng=np.random.default_rng(1))
        return out

    fwd(q, k, v)
    gradcheck(fwd, lambda d: attention_backward(d, cache["c"]), {"q": q, "k": k, "v": v})
    assert cache["c"].drop is not None and (cache["c"].drop == 0).any()
    with pytest.raises(ValueError, match="rng"):
        attention_forward(q, k, v, dropout=0.1)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_kv_cache_decoding_equals_full_causal_attention(kernels):
    """Prefill three tokens, then add two one at a time: the outputs equal causal attention
    over all five at once."""
    from llm_from_scratch.kernels.backend import get_ops
    rng = np.random.default_rng(7)
    B, T, C, NH = 2, 5, 8, 2
    x = rng.standard_normal((B, T, C))
    p = _mha_params(rng, C)
    K = get_ops(kernels)
    full, _ = mha_forward(x, **p, NH=NH, ops=K)
    kv = np.zeros((2, B, NH, 8, C // NH))  # room for 8 positions
    parts = [mha_forward(x[:, :3], **p, NH=NH, ops=K, kv_cache=kv, start=0)[0]]
    parts += [mha_forward(x[:, t:t + 1], **p, NH=NH, ops=K, kv_cache=kv, start=t)[0] for t in (3, 4)]
    assert_close(np.concatenate(parts, axis=1), full, rtol=1e-12, atol=1e-12, name="cached vs full")


@pytest.mark.parity
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
def test_attention_matches_pytorch(torch, dtype, tol):
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, B=2, NH=2, T=7, HS=8, dtype=dtype)
    key_mask = np.ones((2, 7), dtype=bool)
    key_mask[1, 5:] = False
    dout = rng.standard_normal(q.shape).astype(dtype)
    out, cache = attention_forward(q, k, v, causal=True, key_mask=key_mask)
    dq, dk, dv = attention_backward(dout, cache)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    mask = torch.tensor(causal_mask(7)[None, None] & key_mask[:, None, None, :])
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
    tout.backward(torch.tensor(dout))
    assert_close(out, tout.detach().numpy(), rtol=tol, atol=tol, name="attention output")
    for ours, theirs, name in ((dq, tq, "dq"), (dk, tk, "dk"), (dv, tv, "dv")):
        assert_close(ours, theirs.grad.numpy(), rtol=tol, atol=tol, name=name)
