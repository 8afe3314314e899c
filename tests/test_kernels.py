"""The numba twins in ``llm_from_scratch.kernels.ops`` give the numpy reference's results.

Each twin is run beside its reference in float32 and float64 on several shapes (one row, odd
sizes, sizes that are not multiples of the SIMD width) and compared output by output,
gradient by gradient. float32 tolerances are a few ulps (fastmath reorders sums); float64
ones are ~1e-12. Caches are interchangeable, so a twin's backward is also run on the
reference's cache.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from numba import njit

from llm_from_scratch import ops
from llm_from_scratch.kernels import ops as kops
from llm_from_scratch.testing import assert_close_scaled

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 7), (3, 5), (2, 3, 33), (37, 130)]  # (..., C) or (..., V)
TOL = {np.float32: 1e-6, np.float64: 1e-12}


def same(actual, expected, dtype, name):
    """Twin vs reference, same dtype, at ``TOL[dtype]`` of the values' scale."""
    assert_close_scaled(actual, expected, TOL[dtype], name)


def data(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_twin(rng, shape, dtype):
    C = shape[-1]
    x, dout = data(rng, shape, dtype, 3.0) + dtype(2), data(rng, shape, dtype)
    w, b = data(rng, C, dtype) + dtype(1), data(rng, C, dtype)
    out, cache = ops.layernorm_forward(x, w, b)
    kout, kcache = kops.layernorm_forward(x, w, b)
    same(kout, out, dtype, "out")
    for name, k, r in zip(("mean", "rstd"), kcache[2:], cache[2:]):
        assert k.shape == r.shape
        same(k, r, dtype, name)
    for grads in (kops.layernorm_backward(dout, kcache), kops.layernorm_backward(dout, cache)):
        for name, k, r in zip(("dx", "dw", "db"), grads, ops.layernorm_backward(dout, cache)):
            same(k, r, dtype, name)


# (x shape, OC): one row, one output, odd sizes, more rows than threads and fewer
LINEAR_SHAPES = [((1, 7), 1), ((3, 5), 4), ((2, 3, 33), 17), ((37, 130), 3), ((64, 16), 96)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, OC", LINEAR_SHAPES)
@pytest.mark.parametrize("layout", ["w", "w.T", "no bias"])
def test_linear_twin(rng, shape, OC, dtype, layout):
    # "w.T": the weight is a transposed view, as the tied head's wte.T (V, C) -> (C, V)
    x, dout = data(rng, shape, dtype), data(rng, shape[:-1] + (OC,), dtype)
    w = data(rng, (shape[-1], OC), dtype) if layout != "w.T" else data(rng, (OC, shape[-1]), dtype).T
    b = None if layout == "no bias" else data(rng, OC, dtype)
    out, cache = ops.linear_forward(x, w, b)
    kout, kcache = kops.linear_forward(x, w, b)
    assert kout.shape == out.shape
    same(kout, out, dtype, "out")
    expected = ops.linear_backward(dout, cache)
    for c in (kcache, cache):
        grads = kops.linear_backward(dout, c)
        for name, k, r in zip(("dx", "dw", "db"), grads, expected):
            if r is None:
                assert k is None, name
                continue
            assert k.shape == r.shape, name
            same(k, r, dtype, name)


def test_linear_twin_threads_and_blas(rng, monkeypatch):
    # the same numbers on one numba thread and on several, OpenBLAS's own thread count left as
    # it was, and the numpy reference's results where numpy's OpenBLAS is not found
    import numba

    x, w, b = data(rng, (50, 24), np.float32), data(rng, (24, 40), np.float32), data(rng, 40, np.float32)
    dout = data(rng, (50, 40), np.float32)
    threads = numba.get_num_threads()
    results = []
    for n in sorted({1, threads}):
        numba.set_num_threads(n)
        try:
            out, cache = kops.linear_forward(x, w, b)
            results.append((out, *kops.linear_backward(dout, cache)))
        finally:
            numba.set_num_threads(threads)
    for a, r in zip(results[0], results[-1]):
        same(a, r, np.float32, "1 thread vs all")
    if kops.BLAS is not None:
        before = kops.BLAS.get_num_threads()
        kops.linear_backward(dout, kops.linear_forward(x, w, b)[1])
        assert kops.BLAS.get_num_threads() == before
    monkeypatch.setattr(kops, "BLAS", None)
    out, cache = kops.linear_forward(x, w, b)
    ref_out, ref_cache = ops.linear_forward(x, w, b)
    assert np.array_equal(out, ref_out)
    for k, r in zip(kops.linear_backward(dout, cache), ops.linear_backward(dout, ref_cache)):
        assert np.array_equal(k, r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_softmax_twin(rng, shape, dtype):
    x, dout = data(rng, shape, dtype, 3.0), data(rng, shape, dtype)
    out, cache = ops.softmax_forward(x)
    kout, kcache = kops.softmax_forward(x)
    same(kout, out, dtype, "softmax")
    same(kops.softmax_backward(dout, kcache), ops.softmax_backward(dout, cache), dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_masked_softmax_twin(rng, shape, dtype):
    x, dout = data(rng, shape, dtype, 3.0), data(rng, shape, dtype)
    mask = rng.random(shape[-2:]) < 0.5  # broadcast over the leading dimensions
    mask[0] = False  # a fully masked row
    out, cache = ops.softmax_forward(x, mask=mask)
    kout, kcache = kops.softmax_forward(x, mask=mask)
    same(kout, out, dtype, "masked softmax")
    assert not np.any(kout[..., 0, :]), "a fully masked row must be all zeros"
    same(kops.softmax_backward(dout, kcache), ops.softmax_backward(dout, cache), dtype, "dx")


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 7), (3, 5), (2, 3, 33), (37, 130)])
def test_cross_entropy_twin(rng, shape, dtype, label_smoothing):
    logits = data(rng, shape, dtype, 3.0)
    targets = rng.integers(0, shape[-1], shape[:-1])
    if targets.size > 1:
        targets.reshape(-1)[::3] = -100
    loss, cache = ops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)
    kloss, kcache = kops.cross_entropy_forward(logits, targets, label_smoothing=label_smoothing)
    assert type(kloss) is type(loss) is dtype, (type(kloss), type(loss))
    same(np.array(kloss), np.array(loss), dtype, "loss")
    same(kcache[2], cache[2], dtype, "xmax")
    same(kcache[3], cache[3], dtype, "logsum")
    for c in (kcache, cache):
        same(kops.cross_entropy_backward(0.7, c), ops.cross_entropy_backward(0.7, cache), dtype, "dlogits")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_twin(rng, shape, dtype, approximate):
    x, dout = data(rng, shape, dtype, 3.0), data(rng, shape, dtype)
    out, cache = ops.gelu_forward(x, approximate=approximate)
    kout, kcache = kops.gelu_forward(x, approximate=approximate)
    same(kout, out, dtype, "gelu")
    same(kops.gelu_backward(dout, kcache), ops.gelu_backward(dout, cache), dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, V", [((1,), 1), ((3,), 7), ((2, 3), 7), ((4, 65), 50)])
def test_embedding_backward_twin_is_bit_identical(rng, shape, V, dtype):
    idx = rng.integers(0, V, shape)  # repeated ids: the scatter-add must accumulate
    _, cache = ops.embedding_forward(idx, data(rng, (V, 9), dtype))
    dout = data(rng, shape + (9,), dtype)
    kd, rd = kops.embedding_backward(dout, cache), ops.embedding_backward(dout, cache)
    assert kd.dtype == rd.dtype == dtype
    assert np.array_equal(kd, rd), f"max abs diff {np.max(np.abs(kd - rd))}"


def test_twins_accept_non_contiguous_inputs(rng):
    x = rng.standard_normal((6, 10))[:, ::2]  # (6, 5), strided
    w, b = rng.standard_normal(5), rng.standard_normal(5)
    same(kops.layernorm_forward(x, w, b)[0], ops.layernorm_forward(x, w, b)[0], np.float64, "layernorm")
    same(kops.softmax_forward(x)[0], ops.softmax_forward(x)[0], np.float64, "softmax")
    same(kops.gelu_forward(x.T, "tanh")[0], ops.gelu_forward(x.T, "tanh")[0], np.float64, "gelu")


def test_twins_do_not_mutate_and_return_fresh_arrays(rng):
    x, dout = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 6)).astype(np.float32)
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    calls = {
        "layernorm": (lambda: kops.layernorm_forward(x, w, b), kops.layernorm_backward),
        "softmax": (lambda: kops.softmax_forward(x), kops.softmax_backward),
        "gelu": (lambda: kops.gelu_forward(x, "tanh"), kops.gelu_backward),
        "linear": (lambda: kops.linear_forward(x, np.outer(w, b), b), kops.linear_backward),
    }
    for name, (forward, backward) in calls.items():
        out, cache = forward()
        before = [a.copy() for a in (x, w, b, dout, out)]
        grads = backward(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for a, c in zip(before, (x, w, b, dout, out)):
            assert np.array_equal(a, c), f"{name} backward changed an input"
        for g in grads:
            assert not any(np.shares_memory(g, a) for a in (x, w, b, dout, out)), name


# ----------------------------------------------------------------------------------------
# stability and errors, as for the reference

@pytest.mark.parametrize("dtype", DTYPES)
def test_twins_huge_and_infinite_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4], [0.0, -np.inf, 1.0, -np.inf]], dtype=dtype)
    p, cache = kops.softmax_forward(x)
    same(p, ops.softmax_forward(x)[0], dtype, "softmax")
    assert np.all(np.isfinite(kops.softmax_backward(np.ones_like(x), cache)))
    targets = np.array([0, 1, 2])  # losses log 2, log 4 and -log(e / (1 + e)) = log(1 + 1/e)
    expected = (np.log(2) + np.log(4) + np.log1p(np.exp(-1))) / 3
    loss, cache = kops.cross_entropy_forward(x, targets)
    assert loss == pytest.approx(expected, rel=1e-6), loss
    assert loss == pytest.approx(ops.cross_entropy_forward(x, targets)[0], rel=1e-6)
    dlogits = kops.cross_entropy_backward(1.0, cache)
    same(dlogits, ops.cross_entropy_backward(1.0, cache), dtype, "dlogits")
    assert np.all(np.isfinite(dlogits)) and dlogits[2, 1] == 0 and dlogits[2, 3] == 0
    # a target whose logit is -inf has infinite loss, as in PyTorch
    assert np.isinf(kops.cross_entropy_forward(x, np.array([0, 1, 3]))[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_twin_cross_entropy_ignored_targets(rng, dtype):
    logits = data(rng, (2, 3, 7), dtype)
    targets = np.array([[1, -100, 2], [-100, 0, 6]])
    kept = targets != -100
    loss, cache = kops.cross_entropy_forward(logits, targets)
    loss_kept, _ = ops.cross_entropy_forward(logits[kept], targets[kept])
    same(np.array(loss), np.array(loss_kept), dtype, "loss")
    assert not np.any(kops.cross_entropy_backward(1.0, cache)[~kept])
    loss, cache = kops.cross_entropy_forward(logits, np.full((2, 3), -100))
    assert loss == 0.0 and not np.any(kops.cross_entropy_backward(1.0, cache))


def test_twins_raise_the_reference_errors():
    with pytest.raises(ValueError, match=re.escape(
            "expected targets in [0, 7) or ignore_index -100, got 9 at position (1, 2)")):
        kops.cross_entropy_forward(np.zeros((2, 3, 7)), np.array([[0, 1, 2], [3, 4, 9]]))
    with pytest.raises(ValueError, match=re.escape("layernorm: b must have shape (C,) = (5,)")):
        kops.layernorm_forward(np.zeros((2, 5)), np.ones(5), np.zeros(4))
    with pytest.raises(ValueError, match="does not broadcast"):
        kops.softmax_forward(np.zeros((3, 7)), mask=np.ones((7, 3), dtype=bool))
    with pytest.raises(ValueError, match="approximate must be"):
        kops.gelu_forward(np.zeros(3), approximate="erf")
    with pytest.raises(ValueError, match=re.escape("so w must have shape (C, OC) = (5, OC), got (4, 3)")):
        kops.linear_forward(np.zeros((2, 5)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=re.escape("linear: b must have shape (OC,) = (3,), got (2,)")):
        kops.linear_forward(np.zeros((2, 5)), np.zeros((5, 3)), np.zeros(2))
    with pytest.raises(TypeError, match="dtypes differ"):
        kops.linear_forward(np.zeros((2, 5)), np.zeros((5, 3), dtype=np.float32))


def test_twin_module_is_a_drop_in_replacement():
    for name in ops.__all__:
        assert name in kops.__all__ and callable(getattr(kops, name)), name


# ----------------------------------------------------------------------------------------
# the vectorisable exp behind the float32 kernels

@njit  # not cached: a cached test kernel would not notice a change to vexp in another file
def _vexp_all(x, out):
    for i in range(x.size):
        out[i] = kops.vexp(x[i])


def test_vexp_float32_accuracy():
    x = np.concatenate([np.linspace(-104, 89, 200_001), np.linspace(-1, 1, 10_001)]).astype(np.float32)
    out = np.empty_like(x)
    _vexp_all(x, out)
    exact = np.exp(x.astype(np.float64))  # (n,) float64
    normal = (exact > np.finfo(np.float32).tiny) & (exact < np.finfo(np.float32).max)
    rel = np.abs(out[normal] - exact[normal]) / exact[normal]
    assert rel.max() < 2e-7, f"max relative error {rel.max():.3g} at x = {x[normal][np.argmax(rel)]}"
    subnormal = exact <= np.finfo(np.float32).tiny
    assert np.max(np.abs(out[subnormal] - exact[subnormal])) < 2e-45  # within one subnormal step
    assert np.all(np.isinf(out[exact >= np.finfo(np.float32).max]))


def test_vexp_special_values():
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -1e4, 1e4], dtype=np.float32)
    out = np.empty_like(x)
    _vexp_all(x, out)
    assert out[0] == 0 and np.isinf(out[1]) and np.isnan(out[2]) and out[3] == 1 and out[4] == 0
    assert np.isinf(out[5])
    x64 = np.array([-745.0, -1.0, 0.5, 700.0])
    out64 = np.empty_like(x64)
    _vexp_all(x64, out64)
    assert np.array_equal(out64, np.exp(x64)), "float64 must be math.exp exactly"


# ----------------------------------------------------------------------------------------
# the vectorisable erf behind the float32 exact GELU

@njit  # not cached, as above
def _verf_all(x, out):
    for i in range(x.size):
        out[i] = kops.verf(x[i])


@njit  # not cached, as above
def _verf_worst_ulps(bits):
    # For the float32 values with these bit patterns: the largest |verf(x) - erf(x)| in ulps of
    # erf(x) (erf in float64 by math.erf, libm's; an ulp is the float32 spacing in erf(x)'s
    # binade, or the smallest subnormal), and the x where it is largest. NaN inputs must give NaN.
    worst, worst_x = 0.0, np.float32(0.0)
    for i in range(bits.size):
        x = bits[i:i + 1].view(np.float32)[0]
        y = kops.verf(x)
        if x != x:
            if y == y:
                return np.inf, x
            continue
        exact = math.erf(np.float64(x))
        _, e = math.frexp(exact)  # exact = m 2^e with 0.5 <= |m| < 1
        ulp = math.ldexp(1.0, max(e - 24, -149))
        err = abs(np.float64(y) - exact) / ulp
        if err > worst:
            worst, worst_x = err, x
    return worst, worst_x


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


VERF_MAX_ULPS = 1.5  # measured over every float32: 1.09 with fused multiply-adds (this machine)


@pytest.mark.parametrize("region", ["every 4099th bit pattern", "[-6, 6] in steps of 3e-6",
                                    "every float32 in [0.875, 1.125]", "every float32 in [3.5, 4.5]"])
def test_verf_float32_accuracy(region):
    # erf is odd and verf is exactly odd, but both signs are checked anyway
    if region.startswith("every 4099th"):  # the whole float32 range: 1.05 million patterns, NaNs and infs included
        bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    elif region.startswith("[-6, 6]"):
        bits = _bits(np.linspace(-6, 6, 4_000_001))
    else:  # around the switch between the two pieces, and around the clamp where erf rounds to 1
        lo, hi = (0.875, 1.125) if "0.875" in region else (3.5, 4.5)
        positive = np.arange(_bits(np.array([lo]))[0], _bits(np.array([hi]))[0], dtype=np.uint32)
        bits = np.concatenate([positive, positive | np.uint32(0x80000000)])
    worst, x = _verf_worst_ulps(bits)
    assert worst <= VERF_MAX_ULPS, (f"verf off by {worst:.3f} ulps at x = {x!r} (float32 bits "
                                    f"{_bits(np.array([x]))[0]:#010x}): got {_verf_one(x)!r}, math.erf "
                                    f"gives {math.erf(float(x))!r}; allowed {VERF_MAX_ULPS} ulps")


def _verf_one(x):
    out = np.empty(1, dtype=np.float32)
    _verf_all(np.array([x], dtype=np.float32), out)
    return out[0]


def test_verf_special_values():
    tiny = np.finfo(np.float32).smallest_subnormal
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny, 1e-40, -3e-39, 1e-20, 100.0, -1e30],
                 dtype=np.float32)
    out = np.empty_like(x)
    _verf_all(x, out)
    expected = np.array([math.erf(v) for v in x.astype(np.float64)]).astype(np.float32)  # correctly rounded
    assert out.dtype == np.float32
    assert np.array_equal(out, expected, equal_nan=True), f"got {out}, expected {expected}"
    number = ~np.isnan(x)
    assert np.array_equal(np.signbit(out[number]), np.signbit(expected[number])), "the sign of zero must be kept"
    x64 = np.array([-np.inf, -3.0, -0.0, 1e-300, 0.5, 6.0, np.nan])
    out64 = np.empty_like(x64)
    _verf_all(x64, out64)
    assert np.array_equal(out64, [math.erf(v) for v in x64], equal_nan=True), "float64 must be math.erf exactly"


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_erf_twin_on_a_dense_grid(dtype):
    # every region of the erf, tails included, against the reference (erf in float64 for both dtypes)
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0]]).astype(dtype)
    dout = np.cos(np.arange(x.size)).astype(dtype)
    out, cache = ops.gelu_forward(x)
    kout, kcache = kops.gelu_forward(x)
    same(kout, out, dtype, "gelu")
    same(kops.gelu_backward(dout, kcache), ops.gelu_backward(dout, cache), dtype, "dx")


# ----------------------------------------------------------------------------------------
# kernels.fused: a dense layer and the elementwise work after it, against the numpy composition

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, OC", [((1, 7), 5), ((3, 5), 33), ((2, 3, 33), 16), ((37, 130), 21)])
@pytest.mark.parametrize("layout", ["C", "torch"])  # w (C, OC), or the transpose of an (OC, C) nn.Linear weight
def test_fused_linear_gelu_matches_reference(rng, shape, OC, dtype, layout):
    from llm_from_scratch.kernels import fused
    x = data(rng, shape, dtype)
    w = data(rng, (shape[-1], OC), dtype) if layout == "C" else data(rng, (OC, shape[-1]), dtype).T
    b = data(rng, (OC,), dtype)
    out = fused.linear_gelu_forward(x, w, b)
    expected = fused.linear_gelu_reference(x, w, b)
    print(f"linear + GELU {shape} -> {OC} {np.dtype(dtype).name}: max abs difference "
          f"{np.abs(out - expected).max():.1e}")
    assert out.shape == shape[:-1] + (OC,) and out.dtype == dtype
    same(out, expected, dtype, "linear + gelu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, OC", [((1, 7), 5), ((3, 5), 33), ((2, 3, 33), 16), ((37, 130), 21)])
@pytest.mark.parametrize("layout", ["C", "torch"])
def test_fused_linear_residual_layernorm_matches_reference(rng, shape, OC, dtype, layout):
    from llm_from_scratch.kernels import fused
    x = data(rng, shape, dtype)
    w = data(rng, (shape[-1], OC), dtype) if layout == "C" else data(rng, (OC, shape[-1]), dtype).T
    b, ln_w, ln_b = data(rng, (OC,), dtype), data(rng, (OC,), dtype), data(rng, (OC,), dtype)
    residual = data(rng, shape[:-1] + (OC,), dtype, 3.0) + 5.0  # an offset for the mean to remove
    out = fused.linear_residual_layernorm_forward(x, w, b, residual, ln_w, ln_b, 1e-12)
    expected = fused.linear_residual_layernorm_reference(x, w, b, residual, ln_w, ln_b, 1e-12)
    print(f"linear + residual + LayerNorm {shape} -> {OC} {np.dtype(dtype).name}: max abs difference "
          f"{np.abs(out - expected).max():.1e}")
    assert out.shape == residual.shape and out.dtype == dtype
    same(out, expected, dtype, "linear + residual + layernorm")


def test_fused_kernels_on_one_thread_and_their_input_checks(rng):
    import numba

    from llm_from_scratch.kernels import fused
    x, w, b = data(rng, (45, 24), np.float32), data(rng, (24, 40), np.float32), data(rng, (40,), np.float32)
    r, ln_w, ln_b = data(rng, (45, 40), np.float32), data(rng, (40,), np.float32), data(rng, (40,), np.float32)
    outs = (fused.linear_gelu_forward(x, w, b), fused.linear_residual_layernorm_forward(x, w, b, r, ln_w, ln_b))
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:  # (OpenBLAS's rounding may depend on how many rows one call gets, as for linear_forward)
        outs1 = (fused.linear_gelu_forward(x, w, b), fused.linear_residual_layernorm_forward(x, w, b, r, ln_w, ln_b))
    finally:
        numba.set_num_threads(before)
    for a, a1 in zip(outs, outs1):
        same(a, a1, np.float32, "1 thread vs all")
    with pytest.raises(ValueError, match=r"w must have shape \(C, OC\) = \(24, OC\)"):
        fused.linear_gelu_forward(x, w.T, b)
    with pytest.raises(ValueError, match=r"residual of the output's shape \(45, 40\)"):
        fused.linear_residual_layernorm_forward(x, w, b, r[:, :39], ln_w, ln_b)


def test_fused_kernels_without_openblas_are_the_references(rng, monkeypatch):
    from llm_from_scratch.kernels import fused
    x, w, b = data(rng, (5, 4), np.float64), data(rng, (4, 3), np.float64), data(rng, (3,), np.float64)
    r, ln_w, ln_b = data(rng, (5, 3), np.float64), data(rng, (3,), np.float64), data(rng, (3,), np.float64)
    monkeypatch.setattr(fused, "BLAS", None)
    assert np.array_equal(fused.linear_gelu_forward(x, w, b), fused.linear_gelu_reference(x, w, b))
    assert np.array_equal(fused.linear_residual_layernorm_forward(x, w, b, r, ln_w, ln_b),
                          fused.linear_residual_layernorm_reference(x, w, b, r, ln_w, ln_b))
