"""Checks for the numpy ops in ``llm_from_scratch.ops``: gradients, numerical stability, the
forward/backward contract (dtypes kept, inputs never mutated, fresh arrays) and input errors.

Gradients are compared with float64 central differences for a random upstream gradient on
uneven shapes (B, T, C, V = 2, 3, 5, 7), so a swapped axis or a missing term shows up.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from llm_from_scratch import ops
from llm_from_scratch.testing import assert_close, gradcheck

B, T, C, V = 2, 3, 5, 7
OC = 4  # output channels of the linear layer under test


def away_from_zero(x: np.ndarray) -> np.ndarray:
    """Move entries at least 0.1 away from 0, where ReLU has its kink."""
    return np.where(x >= 0, x + 0.1, x - 0.1)


# ----------------------------------------------------------------------------------------
# gradient checks

def check(forward, backward, inputs, wrt=None, seed=0):
    """gradcheck with tol 1e-6: raises, naming the input and the max abs / rel difference, if any
    gradient entry differs from the central difference by more than 1e-6 * max(1, max |grad|)."""
    return gradcheck(forward, backward, inputs, wrt=wrt, seed=seed, tol=1e-6)


def check_one_input(forward, backward, x, **options):
    """``check`` for an op of one array ``x``, its other arguments (``options``) held fixed."""
    _, cache = forward(x, **options)
    check(lambda x: forward(x, **options)[0], lambda dout: backward(dout, cache), {"x": x})


def test_linear_gradients(rng):
    x, w, b = rng.standard_normal((B, T, C)), rng.standard_normal((C, OC)), rng.standard_normal(OC)
    _, cache = ops.linear_forward(x, w, b)
    check(lambda x, w, b: ops.linear_forward(x, w, b)[0],
          lambda dout: ops.linear_backward(dout, cache), {"x": x, "w": w, "b": b})


def test_linear_without_bias_gradients(rng):
    x, w = rng.standard_normal((B, T, C)), rng.standard_normal((C, OC))
    _, cache = ops.linear_forward(x, w)
    dx, dw, db = ops.linear_backward(rng.standard_normal((B, T, OC)), cache)
    assert db is None
    check(lambda x, w: ops.linear_forward(x, w)[0],
          lambda dout: ops.linear_backward(dout, cache)[:2], {"x": x, "w": w})


def test_embedding_gradients(rng):
    idx = np.array([[0, 3, 3], [6, 0, 3]])  # (B, T), token 3 three times, token 0 twice
    wte = rng.standard_normal((V, C))
    _, cache = ops.embedding_forward(idx, wte)
    check(lambda wte, idx: ops.embedding_forward(idx, wte)[0],
          lambda dout: ops.embedding_backward(dout, cache), {"wte": wte, "idx": idx}, wrt=["wte"])


def test_embedding_backward_sums_repeated_tokens(rng):
    idx = np.array([[0, 3, 3], [6, 0, 3]])
    _, cache = ops.embedding_forward(idx, rng.standard_normal((V, C)))
    dout = rng.standard_normal((B, T, C))
    dwte = ops.embedding_backward(dout, cache)
    assert_close(dwte[3], dout[0, 1] + dout[0, 2] + dout[1, 2], rtol=1e-15, name="dwte[3]")
    assert_close(dwte[0], dout[0, 0] + dout[1, 1], rtol=1e-15, name="dwte[0]")
    assert not np.any(dwte[[1, 2, 4, 5]]), "unused rows must get zero gradient"


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_pointwise_gradients(rng, name):
    forward, backward = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")
    check_one_input(forward, backward, away_from_zero(rng.standard_normal((B, T, C))))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradients(rng, approximate):
    check_one_input(ops.gelu_forward, ops.gelu_backward, 2 * rng.standard_normal((B, T, C)), approximate=approximate)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradients(rng, name):
    forward, backward = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")
    check_one_input(forward, backward, rng.standard_normal((B, T, V)))


def test_masked_softmax_gradients(rng):
    x = rng.standard_normal((B, T, V))
    mask = rng.random((T, V)) < 0.6  # (T, V), broadcast over B
    mask[1] = False  # one fully masked row in every batch element
    check_one_input(ops.softmax_forward, ops.softmax_backward, x, mask=mask)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(B, T), (B * T,)])
def test_cross_entropy_gradients(rng, label_smoothing, shape):
    logits = 2 * rng.standard_normal(shape + (V,))
    targets = rng.integers(0, V, shape)
    targets.reshape(-1)[[1, 4]] = -100  # two ignored positions
    _, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)
    check(lambda logits: ops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)[0],
          lambda dloss: ops.cross_entropy_backward(dloss, cache), {"logits": logits})


def test_cross_entropy_custom_ignore_index_gradients(rng):
    logits = rng.standard_normal((B, T, V))
    targets = np.array([[1, 0, 6], [0, 0, 2]])  # 0 is the padding id here
    _, cache = ops.cross_entropy_forward(logits, targets, ignore_index=0)
    dlogits = ops.cross_entropy_backward(1.0, cache)
    assert not np.any(dlogits[targets == 0]), "rows whose target is ignore_index must get zero gradient"
    check(lambda logits: ops.cross_entropy_forward(logits, targets, ignore_index=0)[0],
          lambda dloss: ops.cross_entropy_backward(dloss, cache), {"logits": logits})


def test_layernorm_gradients(rng):
    x = rng.standard_normal((B, T, C))
    w, b = 1 + 0.5 * rng.standard_normal(C), rng.standard_normal(C)
    _, cache = ops.layernorm_forward(x, w, b)
    check(lambda x, w, b: ops.layernorm_forward(x, w, b)[0],
          lambda dout: ops.layernorm_backward(dout, cache), {"x": x, "w": w, "b": b})


def test_dropout_gradients(rng):
    x = rng.standard_normal((B, T, C))
    _, cache = ops.dropout_forward(x, 0.3, np.random.default_rng(1))
    check(lambda x: ops.dropout_forward(x, 0.3, np.random.default_rng(1))[0],
          lambda dout: ops.dropout_backward(dout, cache), {"x": x})


def test_residual_gradients(rng):
    x, y = rng.standard_normal((B, T, C)), rng.standard_normal((B, T, C))
    _, cache = ops.residual_forward(x, y)
    check(lambda x, y: ops.residual_forward(x, y)[0], lambda dout: ops.residual_backward(dout, cache),
          {"x": x, "y": y})


def test_gradcheck_catches_a_wrong_backward(rng):
    """The checks above can fail: a LayerNorm backward without the variance term is caught."""
    x = rng.standard_normal((B, T, C))
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    _, cache = ops.layernorm_forward(x, w, b)

    def wrong_backward(dout):
        x, w, mean, rstd = cache
        dnorm = dout * w
        return rstd * (dnorm - dnorm.mean(axis=-1, keepdims=True))  # forgot the rstd path

    with pytest.raises(AssertionError, match="gradient of x"):
        gradcheck(lambda x: ops.layernorm_forward(x, w, b)[0], wrong_backward, {"x": x})


# ----------------------------------------------------------------------------------------
# the forward/backward contract, for every op

def _op_cases():
    """name -> build(rng, dtype) returning (forward thunk -> (out, cache), backward, arrays of the call)."""
    def linear(rng, dt):
        x, w, b = (rng.standard_normal(s).astype(dt) for s in ((B, T, C), (C, OC), (OC,)))
        return lambda: ops.linear_forward(x, w, b), ops.linear_backward, [x, w, b]

    def embedding(rng, dt):
        idx, wte = rng.integers(0, V, (B, T)), rng.standard_normal((V, C)).astype(dt)
        return lambda: ops.embedding_forward(idx, wte), ops.embedding_backward, [idx, wte]

    def pointwise(name, **kw):
        def build(rng, dt):
            x = rng.standard_normal((B, T, C)).astype(dt)
            return (lambda: getattr(ops, f"{name}_forward")(x, **kw)), getattr(ops, f"{name}_backward"), [x]
        return build

    def softmax(rng, dt):
        x, mask = rng.standard_normal((B, T, V)).astype(dt), rng.random((T, V)) < 0.5
        return lambda: ops.softmax_forward(x, mask=mask), ops.softmax_backward, [x, mask]

    def cross_entropy(rng, dt):
        logits, targets = rng.standard_normal((B, T, V)).astype(dt), rng.integers(0, V, (B, T))
        targets[0, 0] = -100
        return (lambda: ops.cross_entropy_forward(logits, targets, label_smoothing=0.1),
                ops.cross_entropy_backward, [logits, targets])

    def layernorm(rng, dt):
        x, w, b = (rng.standard_normal(s).astype(dt) for s in ((B, T, C), (C,), (C,)))
        return lambda: ops.layernorm_forward(x, w, b), ops.layernorm_backward, [x, w, b]

    def dropout(rng, dt):
        x = rng.standard_normal((B, T, C)).astype(dt)
        return lambda: ops.dropout_forward(x, 0.5, np.random.default_rng(0)), ops.dropout_backward, [x]

    def residual(rng, dt):
        x, y = rng.standard_normal((B, T, C)).astype(dt), rng.standard_normal((B, T, C)).astype(dt)
        return lambda: ops.residual_forward(x, y), ops.residual_backward, [x, y]

    return {
        "linear": linear, "embedding": embedding, "relu": pointwise("relu"), "tanh": pointwise("tanh"),
        "gelu": pointwise("gelu"), "gelu_tanh": pointwise("gelu", approximate="tanh"),
        "softmax": softmax, "log_softmax": pointwise("log_softmax"), "cross_entropy": cross_entropy,
        "layernorm": layernorm, "dropout": dropout, "residual": residual,
    }


OP_CASES = _op_cases()


def _arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays_in(item)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(OP_CASES))
def test_forward_backward_contract(rng, name, dtype):
    """dtype in = dtype out; backward leaves dout, the cache and the inputs unchanged and returns
    fresh arrays (writing into a gradient must not change anything else)."""
    forward, backward, args = OP_CASES[name](rng, dtype)
    out, cache = forward()
    dout = np.asarray(rng.standard_normal(np.shape(out)), dtype=dtype)
    assert np.asarray(out).dtype == dtype, f"{name} forward returned {np.asarray(out).dtype} for {dtype}"
    before = [a.copy() for a in [dout, *args, *_arrays_in(cache)]]
    grads = [g for g in _arrays_in(backward(dout, cache))]
    after = [dout, *args, *_arrays_in(cache)]
    for i, (a, b) in enumerate(zip(before, after)):
        assert np.array_equal(a, b, equal_nan=True), f"{name} backward modified argument {i}"
    for g in grads:
        assert g.dtype == dtype, f"{name} backward returned {g.dtype} for {dtype}"
        for a in after:
            assert not np.shares_memory(g, a), f"{name} backward returned an array sharing memory with its inputs"


# ----------------------------------------------------------------------------------------
# numerical stability

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_huge_logits(dtype):
    logits = np.zeros((2, V), dtype=dtype)
    logits[:, 0], logits[:, 1] = 1e4, -1e4
    targets = np.array([0, 1])  # right with certainty (loss 0), wrong with certainty (loss 2e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings either
        loss, cache = ops.cross_entropy_forward(logits, targets)
        dlogits = ops.cross_entropy_backward(1.0, cache)
    assert loss == pytest.approx(1e4, rel=1e-6), loss
    assert np.all(np.isfinite(dlogits))
    assert_close(dlogits[1, :2], np.array([0.5, -0.5]), atol=1e-6, name="dlogits of the wrong row")
    assert_close(dlogits[0], np.zeros(V), atol=1e-6, name="dlogits of the right row")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_huge_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, cache = ops.softmax_forward(x)
        dx = ops.softmax_backward(np.ones_like(x), cache)
        logp, lcache = ops.log_softmax_forward(x)
        dlx = ops.log_softmax_backward(np.ones_like(x), lcache)
    assert_close(p, np.array([[0.5, 0, 0, 0.5], [0.25, 0.25, 0.25, 0.25]]), atol=1e-7, name="softmax")
    assert_close(logp[0], np.array([-np.log(2), -2e4 - np.log(2), -1e4 - np.log(2), -np.log(2)]),
                 rtol=1e-6, name="log_softmax")
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dlx))


def test_fully_masked_softmax_row_is_zero_with_zero_gradient(rng):
    x = rng.standard_normal((T, V))
    mask = np.ones((T, V), dtype=bool)
    mask[1] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p, cache = ops.softmax_forward(x, mask=mask)
        dx = ops.softmax_backward(rng.standard_normal((T, V)), cache)
    assert np.array_equal(p[1], np.zeros(V)), p[1]
    assert np.array_equal(dx[1], np.zeros(V)), dx[1]
    assert_close(p[[0, 2]], ops.softmax_forward(x[[0, 2]])[0], rtol=1e-15, name="unmasked rows")


def test_masked_softmax_equals_softmax_over_kept_entries(rng):
    x = rng.standard_normal(V)
    mask = np.array([True, False, True, True, False, True, False])
    p, _ = ops.softmax_forward(x, mask=mask)
    assert_close(p[mask], ops.softmax_forward(x[mask])[0], rtol=1e-15, name="kept entries")
    assert not np.any(p[~mask])


def test_masked_softmax_ignores_values_under_the_mask(rng):
    x = rng.standard_normal((T, V))
    mask = np.tril(np.ones((T, V), dtype=bool))
    y = np.where(mask, x, np.inf)  # even +inf under the mask changes nothing
    assert_close(ops.softmax_forward(y, mask=mask)[0], ops.softmax_forward(x, mask=mask)[0],
                 rtol=0, name="softmax with junk under the mask")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_ignored_targets_contribute_nothing(rng, label_smoothing):
    logits = rng.standard_normal((B, T, V))
    targets = rng.integers(0, V, (B, T))
    targets[0, 1] = targets[1, 2] = -100
    kept = targets != -100
    loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)
    loss_kept, cache_kept = ops.cross_entropy_forward(logits[kept], targets[kept],
                                                      label_smoothing=label_smoothing)
    assert loss == pytest.approx(loss_kept, rel=1e-14)
    dlogits = ops.cross_entropy_backward(1.0, cache)
    assert_close(dlogits[kept], ops.cross_entropy_backward(1.0, cache_kept), rtol=1e-14, name="kept rows")
    assert not np.any(dlogits[~kept])


def test_all_targets_ignored_gives_zero_loss_and_gradient(rng):
    logits = rng.standard_normal((B, T, V))
    targets = np.full((B, T), -100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=0.1)
        dlogits = ops.cross_entropy_backward(1.0, cache)
    assert loss == 0.0
    assert np.array_equal(dlogits, np.zeros_like(logits))


def test_cross_entropy_known_value():
    # logits log [1, 2, 1]: p = [1/4, 1/2, 1/4]; target 1 gives loss log 2.
    # With label smoothing 0.3 it is 0.7 log 2 + 0.3 mean(log 4, log 2, log 4) = 0.7 log 2 + 0.5 log 2.
    logits = np.log(np.array([[1.0, 2.0, 1.0]]))
    loss, _ = ops.cross_entropy_forward(logits, np.array([1]))
    assert loss == pytest.approx(np.log(2), rel=1e-14)
    loss, cache = ops.cross_entropy_forward(logits, np.array([1]), label_smoothing=0.3)
    assert loss == pytest.approx(1.2 * np.log(2), rel=1e-14)
    # (p - y): y = 0.7 * onehot + 0.1
    assert_close(ops.cross_entropy_backward(2.0, cache), 2.0 * np.array([[0.15, -0.3, 0.15]]),
                 rtol=1e-14, name="dlogits")


def test_layernorm_output_statistics(rng):
    x = 100 + 30 * rng.standard_normal((4, 64))  # far from mean 0, variance 1
    out, _ = ops.layernorm_forward(x, np.ones(64), np.zeros(64))
    assert_close(out.mean(axis=-1), np.zeros(4), atol=1e-12, name="mean")
    assert_close(out.var(axis=-1), np.ones(4), rtol=1e-6, name="variance")  # eps makes it 1 - ~1e-8


def test_layernorm_constant_row_is_finite():
    out, cache = ops.layernorm_forward(np.full((1, C), 3.0), np.ones(C), np.arange(C, dtype=float))
    dx, dw, db = ops.layernorm_backward(np.ones((1, C)), cache)
    assert_close(out, np.arange(C, dtype=float)[None], rtol=0, name="out")  # var 0: out is the bias
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))


def test_gelu_known_values():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    # x * Phi(x), with Phi(1) = 0.841344746068543 and Phi(3) = 0.998650101968370 from tables
    phi = np.array([1 - 0.998650101968370, 1 - 0.841344746068543, 0.5, 0.841344746068543, 0.998650101968370])
    expected = x * phi
    assert_close(ops.gelu_forward(x)[0], expected, rtol=1e-12, name="gelu")
    # the tanh form is within 1e-3 of the exact one on [-3, 3]
    assert_close(ops.gelu_forward(x, approximate="tanh")[0], expected, atol=1e-3, name="gelu tanh")


# ----------------------------------------------------------------------------------------
# dropout

def test_dropout_statistics_and_scaling():
    x = np.ones((200, 500))
    out, _ = ops.dropout_forward(x, 0.25, np.random.default_rng(0))
    dropped = out == 0
    assert abs(dropped.mean() - 0.25) < 0.005, dropped.mean()  # sd of the fraction is 0.0014
    assert np.all(out[~dropped] == 1 / 0.75), "survivors must be scaled by 1 / (1 - p)"
    assert abs(out.mean() - 1.0) < 0.01, out.mean()  # the expectation is unchanged


def test_dropout_is_deterministic_for_a_seed(rng):
    x = rng.standard_normal((B, T, C))
    a, _ = ops.dropout_forward(x, 0.5, np.random.default_rng(42))
    b, _ = ops.dropout_forward(x, 0.5, np.random.default_rng(42))
    c, _ = ops.dropout_forward(x, 0.5, np.random.default_rng(43))
    f, _ = ops.dropout_forward(x.astype(np.float32), 0.5, np.random.default_rng(42))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.array_equal(a == 0, f == 0), "float32 and float64 must drop the same entries for a seed"


def test_dropout_identity_cases(rng):
    x = rng.standard_normal((B, T, C))
    gen = np.random.default_rng(0)
    state = gen.bit_generator.state
    for kwargs in ({"p": 0.0}, {"p": 0.5, "train": False}):
        out, cache = ops.dropout_forward(x, rng=gen, **kwargs)
        assert np.array_equal(out, x) and not np.shares_memory(out, x)
        dout = rng.standard_normal(x.shape)
        assert np.array_equal(ops.dropout_backward(dout, cache), dout)
    assert gen.bit_generator.state == state, "the identity cases must not consume random numbers"


def test_dropout_p_one_drops_everything(rng):
    x = rng.standard_normal((B, T, C))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = ops.dropout_forward(x, 1.0, np.random.default_rng(0))
        dx = ops.dropout_backward(rng.standard_normal(x.shape), cache)
    assert not np.any(out) and not np.any(dx)


def test_dropout_backward_uses_the_forward_mask(rng):
    x = rng.standard_normal((B, T, C))
    out, cache = ops.dropout_forward(x, 0.4, np.random.default_rng(3))
    dout = rng.standard_normal(x.shape)
    dx = ops.dropout_backward(dout, cache)
    kept = out != 0
    assert_close(dx[kept], dout[kept] / 0.6, rtol=1e-15, name="dx on kept entries")
    assert not np.any(dx[~kept])


# ----------------------------------------------------------------------------------------
# errors that say what was wrong

def test_cross_entropy_target_out_of_range_message():
    logits = np.zeros((B, T, V))
    targets = np.array([[0, 1, 2], [3, 4, 9]])
    with pytest.raises(ValueError, match=re.escape(
            "expected targets in [0, 7) or ignore_index -100, got 9 at position (1, 2)")):
        ops.cross_entropy_forward(logits, targets)
    with pytest.raises(ValueError, match=re.escape("got -1 at position 1")):
        ops.cross_entropy_forward(np.zeros((3, V)), np.array([0, -1, 2]))


@pytest.mark.parametrize("call, error, message", [
    (lambda: ops.cross_entropy_forward(np.zeros((B, T, V)), np.zeros((B, T + 1), dtype=int)),
     ValueError, "targets must have shape (2, 3) to match logits (2, 3, 7), got (2, 4)"),
    (lambda: ops.cross_entropy_forward(np.zeros((B, T, V)), np.zeros((B, T))),
     TypeError, "targets must be an integer numpy array, got float64"),
    (lambda: ops.cross_entropy_forward(np.zeros((B, V)), np.zeros(B, dtype=int), label_smoothing=1.5),
     ValueError, "label_smoothing must be in [0, 1], got 1.5"),
    (lambda: ops.cross_entropy_forward(np.zeros(V), np.zeros((), dtype=int)),
     ValueError, "logits must have shape (N, V) or (B, T, V), got (7,)"),
    (lambda: ops.embedding_forward(np.array([[0, 7]]), np.zeros((V, C))),
     ValueError, "expected token ids in [0, 7), got 7 at position (0, 1)"),
    (lambda: ops.linear_forward(np.zeros((B, T, C)), np.zeros((OC, C))),
     ValueError, "so w must have shape (C, OC) = (5, OC), got (4, 5)"),
    (lambda: ops.linear_forward(np.zeros((B, C)), np.zeros((C, OC)), np.zeros(C)),
     ValueError, "linear: b must have shape (OC,) = (4,), got (5,)"),
    (lambda: ops.linear_forward(np.zeros((B, C), np.float32), np.zeros((C, OC))),
     TypeError, "dtypes differ (x is float32, w is float64"),
    (lambda: ops.linear_forward([[1.0]], np.zeros((1, 1))),
     TypeError, "x must be a float32 or float64 numpy array, got list"),
    (lambda: ops.layernorm_forward(np.zeros((B, C)), np.ones(C + 1), np.zeros(C)),
     ValueError, "layernorm: w must have shape (C,) = (5,) to match x (2, 5), got (6,)"),
    (lambda: ops.softmax_forward(np.zeros((T, V)), mask=np.ones((T, V), dtype=int)),
     TypeError, "mask must be a boolean numpy array (True = keep, False = exclude), got int64"),
    (lambda: ops.softmax_forward(np.zeros((T, V)), mask=np.ones((V, T), dtype=bool)),
     ValueError, "mask of shape (7, 3) does not broadcast to the input shape (3, 7)"),
    (lambda: ops.gelu_forward(np.zeros(3), approximate="erf"),
     ValueError, 'approximate must be "none" (exact, erf) or "tanh", got \'erf\''),
    (lambda: ops.dropout_forward(np.zeros(3), 1.5, np.random.default_rng(0)),
     ValueError, "dropout probability p must be in [0, 1], got 1.5"),
    (lambda: ops.dropout_forward(np.zeros(3), 0.5, 0),
     TypeError, "rng must be a np.random.Generator, got int; pass np.random.default_rng(seed)"),
    (lambda: ops.residual_forward(np.zeros((B, C)), np.zeros((1, C))),
     ValueError, "residual: x (2, 5) and y (1, 5) must have the same shape"),
    (lambda: ops.cross_entropy_backward(np.ones(2), ops.cross_entropy_forward(np.zeros((1, V)),
                                                                              np.zeros(1, int))[1]),
     ValueError, "dloss must be a scalar (the loss is a mean), got shape (2,)"),
])
def test_bad_input_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()
