"""Parity of ``llm_from_scratch.ops`` with PyTorch autograd: values and gradients.

Every op is replayed in ``torch.nn.functional`` on the same inputs with the same random
upstream gradient, in float64 (agreement to ~1e-10: the two compute the same formulas) and
float32 (~1e-5: different summation orders). Dropout draws its mask from a different
generator than PyTorch, so only its convention is compared (zero or scaled by 1 / (1 - p)).
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_from_scratch import ops
from llm_from_scratch.testing import assert_close_scaled

pytestmark = pytest.mark.parity

B, T, C, V = 2, 3, 5, 7
OC = 4  # output channels of the linear layer under test
TOL = {np.float64: 1e-10, np.float32: 1e-5}
SIZES = [(B, T, C, V), (4, 16, 64, 257)]  # the uneven small case and a bigger one


def close(actual, expected, dtype, name):
    """Ours (in ``dtype``) vs PyTorch at ``TOL[dtype]`` of the values' scale."""
    assert_close_scaled(actual, expected, TOL[dtype], name, dtype=dtype)


def autograd(torch, fn, dout, **arrays):
    """Run ``fn(**tensors)`` in PyTorch and backpropagate ``dout``; floating inputs get gradients.

    Returns the output and ``{name: gradient}`` as numpy arrays.
    """
    tensors = {}
    for name, a in arrays.items():
        t = torch.from_numpy(np.array(a))
        tensors[name] = t.requires_grad_(True) if t.is_floating_point() else t
    out = fn(**tensors)
    ref = out.detach().numpy()
    out.backward(torch.from_numpy(np.asarray(dout, dtype=ref.dtype)))
    grads = {name: t.grad.numpy() for name, t in tensors.items() if t.is_floating_point()}
    return ref, grads


DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear(torch, rng, dtype, size, bias):
    B, T, C, _ = size
    x, w = rng.standard_normal((B, T, C)).astype(dtype), rng.standard_normal((C, OC)).astype(dtype)
    b = rng.standard_normal(OC).astype(dtype) if bias else None
    dout = rng.standard_normal((B, T, OC)).astype(dtype)
    out, cache = ops.linear_forward(x, w, b)
    dx, dw, db = ops.linear_backward(dout, cache)
    inputs = {"x": x, "w": w, **({"b": b} if bias else {})}
    # PyTorch's F.linear takes the (OC, C) weight: ours is its transpose (GPT-2's Conv1D layout)
    ref, grads = autograd(torch, lambda x, w, b=None: torch.nn.functional.linear(x, w.T, b), dout, **inputs)
    close(out, ref, dtype, "out")
    close(dx, grads["x"], dtype, "dx")
    close(dw, grads["w"], dtype, "dw")
    if bias:
        close(db, grads["b"], dtype, "db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_embedding(torch, rng, dtype, size):
    B, T, C, V = size
    idx, wte = rng.integers(0, V, (B, T)), rng.standard_normal((V, C)).astype(dtype)
    dout = rng.standard_normal((B, T, C)).astype(dtype)
    out, cache = ops.embedding_forward(idx, wte)
    ref, grads = autograd(torch, lambda wte, idx: torch.nn.functional.embedding(idx, wte), dout, wte=wte, idx=idx)
    close(out, ref, dtype, "out")
    close(ops.embedding_backward(dout, cache), grads["wte"], dtype, "dwte")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, torch_fn", [
    ("relu", lambda F, x: F.relu(x)),
    ("tanh", lambda F, x: F.tanh(x)),
    ("gelu", lambda F, x: F.gelu(x, approximate="none")),
    ("gelu_tanh", lambda F, x: F.gelu(x, approximate="tanh")),
    ("softmax", lambda F, x: F.softmax(x, dim=-1)),
    ("log_softmax", lambda F, x: F.log_softmax(x, dim=-1)),
])
@pytest.mark.parametrize("size", SIZES)
def test_pointwise_and_softmax(torch, rng, dtype, name, torch_fn, size):
    B, T, C, V = size
    x = (3 * rng.standard_normal((B, T, V))).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    op, kwargs = (name, {}) if name != "gelu_tanh" else ("gelu", {"approximate": "tanh"})
    out, cache = getattr(ops, f"{op}_forward")(x, **kwargs)
    dx = getattr(ops, f"{op}_backward")(dout, cache)
    ref, grads = autograd(torch, lambda x: torch_fn(torch.nn.functional, x), dout, x=x)
    close(out, ref, dtype, f"{name} out")
    close(dx, grads["x"], dtype, f"{name} dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_softmax_matches_masked_fill(torch, rng, dtype):
    """Our mask equals PyTorch's ``masked_fill(~mask, -inf)`` idiom on rows that keep an entry."""
    x = rng.standard_normal((B, T, T)).astype(dtype)
    mask = np.tril(np.ones((T, T), dtype=bool))  # causal: every row keeps at least itself
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, cache = ops.softmax_forward(x, mask=mask)
    tmask = torch.from_numpy(mask)
    ref, grads = autograd(torch, lambda x: torch.softmax(x.masked_fill(~tmask, float("-inf")), dim=-1), dout, x=x)
    close(out, ref, dtype, "masked softmax")
    close(ops.softmax_backward(dout, cache), grads["x"], dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("flat", [False, True])
def test_cross_entropy(torch, rng, dtype, label_smoothing, size, flat):
    B, T, C, V = size
    shape = (B * T,) if flat else (B, T)
    logits = (3 * rng.standard_normal(shape + (V,))).astype(dtype)
    targets = rng.integers(0, V, shape)
    targets.reshape(-1)[::4] = -100  # some ignored positions
    dloss = 1.7
    loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)
    dlogits = ops.cross_entropy_backward(dloss, cache)

    def reference(logits, targets):
        return torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100,
                                                 label_smoothing=label_smoothing)

    ref, grads = autograd(torch, reference, dloss, logits=logits, targets=targets)
    close(np.array(loss), ref, dtype, "loss")
    close(dlogits, grads["logits"], dtype, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_huge_logits(torch, dtype):
    logits = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4], [1e4, -1e4, 3.0, 2.0]], dtype=dtype)
    targets = np.array([0, 2, 1])
    loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=0.1)
    ref, grads = autograd(torch, lambda logits, targets: torch.nn.functional.cross_entropy(
        logits, targets, label_smoothing=0.1), 1.0, logits=logits, targets=targets)
    close(np.array(loss), ref, dtype, "loss")
    close(ops.cross_entropy_backward(1.0, cache), grads["logits"], dtype, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
def test_layernorm(torch, rng, dtype, size):
    B, T, C, _ = size
    x = (2 + 3 * rng.standard_normal((B, T, C))).astype(dtype)
    w, b = (1 + rng.standard_normal(C)).astype(dtype), rng.standard_normal(C).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    out, cache = ops.layernorm_forward(x, w, b)
    dx, dw, db = ops.layernorm_backward(dout, cache)
    ref, grads = autograd(torch, lambda x, w, b: torch.nn.functional.layer_norm(x, (C,), w, b, eps=1e-5),
                          dout, x=x, w=w, b=b)
    close(out, ref, dtype, "out")
    close(dx, grads["x"], dtype, "dx")
    close(dw, grads["w"], dtype, "dw")
    close(db, grads["b"], dtype, "db")


@pytest.mark.parametrize("dtype", DTYPES)
def test_residual(torch, rng, dtype):
    x, y = rng.standard_normal((B, T, C)).astype(dtype), rng.standard_normal((B, T, C)).astype(dtype)
    dout = rng.standard_normal((B, T, C)).astype(dtype)
    out, cache = ops.residual_forward(x, y)
    dx, dy = ops.residual_backward(dout, cache)
    ref, grads = autograd(torch, lambda x, y: x + y, dout, x=x, y=y)
    close(out, ref, dtype, "out")
    close(dx, grads["x"], dtype, "dx")
    close(dy, grads["y"], dtype, "dy")


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_follows_pytorch_convention(torch, rng, dtype):
    """Same convention as F.dropout: each entry is 0 or x / (1 - p), drop rate p, identity in eval."""
    x = (1 + rng.random((100, 100))).astype(dtype)  # no zeros in x
    p = 0.3
    ours, _ = ops.dropout_forward(x, p, np.random.default_rng(0))
    torch.manual_seed(0)
    theirs = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    for name, out in (("ours", ours), ("torch", theirs)):
        kept = out != 0
        close(out[kept], x[kept] / dtype(1 - p), dtype, f"{name} kept entries")
        assert abs((~kept).mean() - p) < 0.02, f"{name} drop rate {(~kept).mean()}"
    eval_theirs = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=False).numpy()
    assert np.array_equal(ops.dropout_forward(x, p, np.random.default_rng(0), train=False)[0], eval_theirs)
