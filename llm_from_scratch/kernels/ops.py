"""Numba twins of the hot ops in ``llm_from_scratch.ops``.

Each function here has the same name, signature, cache layout and results (to float
rounding) as its plain numpy reference in ``llm_from_scratch.ops``, which is the version the
book teaches and the one to read first. A cache made by either module can be passed to
either backward. The ops without a twin are re-exported unchanged, so this module is a
drop-in replacement: ``from llm_from_scratch.kernels import ops``.

Twins: ``linear_forward/backward`` (numpy's own OpenBLAS gemm, run on numba's threads),
``layernorm_forward/backward``, ``softmax_forward/backward``, ``cross_entropy_forward/backward``
(a fused log-softmax + loss that never writes the (N, V) probabilities in the forward pass),
``gelu_forward/backward`` and ``embedding_backward``.

How they are fast:

- every kernel sees a contiguous ``(N, C)`` array (leading dimensions flattened into rows)
  and splits the rows among numba's threads with ``prange``;
- all of them run on numba's one pool of threads, matrix products included: the linear twins
  call OpenBLAS single-threaded from each numba thread rather than letting numpy wake
  OpenBLAS's own pool (two pools spin-waiting on the same cores slow each other down, see the
  linear section);
- fastmath lets LLVM reorder the sums along a row, so they vectorise. We enable every
  fastmath flag except "no NaNs" and "no infinities" (masked logits are often -inf, and those
  two flags would let the compiler assume they cannot be), and loops without a sum also go
  without reassociation, which can undo a careful order of operations;
- each kernel fuses the several passes numpy makes over memory into one or two;
- ``exp`` is ``vexp`` below, a range reduction and a polynomial that LLVM vectorises; numba's
  own ``math.exp`` is a scalar libm call (there is no SVML here), ~4x slower per element;
- ``erf`` in float32 is ``verf``, built the same way from ``vexp`` and two polynomials; the exact
  GELU twins ran ~20x slower on numba's scalar ``math.erf``;
- a row maximum keeps eight independent running maxima, so it is not one long chain of
  dependent compares;
- the tanh-form GELU is computed as ``x * sigmoid(2u)``, which equals
  ``0.5 x (1 + tanh(u))``: numba has no vectorised ``tanh``, and one ``exp`` in a fused
  loop beats numpy's chain of eight ufunc passes (it also avoids the cancellation in
  ``1 + tanh(u)`` for very negative x);
- the embedding backward is a plain sequential loop of row additions, which is what
  ``np.add.at`` should be but is not (it is ~60x slower). Sequential order also makes the
  result bit-identical to the numpy reference.

Reductions inside a row (means, sums of exponentials, the LayerNorm ``dw``/``db`` partials)
are accumulated in float64 even for float32 inputs; outputs keep the input dtype. Kernels are
compiled once per dtype and cached on disk (``cache=True``), so the first call of a new
session costs a file read, not a compile.

Left out: a fused attention kernel (its own module), multi-threaded embedding backward
(per-thread tables would cost V*C memory each for a few microseconds of gain), float16, a
matrix product of our own (OpenBLAS's runs at ~90% of this machine's peak on these shapes), and
copy kernels for splitting and merging attention heads (measured: numpy's strided copies were
twice as fast as a numba loop).

Reference: A. Karpathy, llm.c ``dev/cuda`` (a naive reference beside each fast kernel, and a
test holding them together); numba documentation, "Automatic parallelization with @jit".
"""

from __future__ import annotations

import ctypes
import math

import numba
import numpy as np
from llvmlite import binding as llvm
from numba import njit, prange, types
from numba.extending import overload

from llm_from_scratch import ops as _reference
from llm_from_scratch.ops import (  # noqa: F401  (re-exported: ops without a numba twin)
    GELU_A,
    GELU_K,
    _check_cross_entropy,
    _check_float,
    _check_gelu,
    _check_layernorm,
    _check_mask,
    _check_same_dtype,
    dropout_backward,
    dropout_forward,
    embedding_forward,
    log_softmax_backward,
    log_softmax_forward,
    relu_backward,
    relu_forward,
    residual_backward,
    residual_forward,
    tanh_backward,
    tanh_forward,
)

__all__ = [
    "linear_forward", "linear_backward",
    "embedding_forward", "embedding_backward",
    "relu_forward", "relu_backward",
    "tanh_forward", "tanh_backward",
    "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "layernorm_forward", "layernorm_backward",
    "dropout_forward", "dropout_backward",
    "residual_forward", "residual_backward",
]

# Dimension letters, the same in every shape comment of this file (as in llm_from_scratch.ops):
#   C  channels (features)     V  vocabulary size, or the size of the axis a softmax normalises
#   N  rows: the product of all leading dimensions, B*T for a (B, T, C) tensor
#   P  row chunks of the LayerNorm backward, each with its own dw/db partial sums
#   "..." stands for any leading dimensions, e.g. (B, T).

# fastmath without "nnan" and "ninf": reductions may be reordered, -inf and NaN stay meaningful
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
# Loops without a reduction vectorise without "reassoc", and are safer without it: it lets
# LLVM rewrite (x - xmax) - logsum as x - (xmax + logsum), which in float32 rounds logsum to
# ~1e-3 when the logits are near 1e4.
FASTMATH_ELEMENTWISE = {"nsz", "arcp", "contract", "afn"}

# The LayerNorm backward sums dw and db over rows in this many chunks, in parallel. A fixed
# number (not the thread count) keeps the result the same on every machine.
LAYERNORM_CHUNKS = 8


# ----------------------------------------------------------------------------------------
# a vectorisable exp

# exp(x) = 2^k * exp(r) with k = round(x / ln 2) and |r| <= ln(2) / 2. ln 2 is split in two
# (Cody-Waite) so that x - k ln 2 is exact to float32 precision; exp(r) is Cephes' degree-5
# minimax polynomial (S. L. Moshier, Cephes Math Library, expf.c); 2^k is built by writing
# k + 127 into the exponent bits of a float32. It is split as 2^k1 * 2^k2 so that results
# down in the subnormal range (x near -104) come out right instead of flushing to 0.
_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.4426950408889634), _F(0.693359375), _F(-2.12194440e-4)
_EXP_P = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
          _F(1.6666665459e-1), _F(5.0000001201e-1))
_EXP_LO, _EXP_HI, _ONE, _HALF = _F(-104.0), _F(88.8), _F(1.0), _F(0.5)


def vexp(x):
    """``exp(x)`` for a scalar, inside numba kernels.

    numba compiles ``math.exp`` to a call into libm, which LLVM cannot vectorise (numba has no
    SVML vector library here), so a loop of ``math.exp`` runs one element at a time, ~5x
    slower than numpy's SIMD ``np.exp``. For float32 this function is instead a short chain of
    multiply-adds and a bit cast that LLVM turns into SIMD code; its relative error is below
    1e-7 (numpy's float32 exp: 2e-7). float64 uses ``math.exp``. Outside numba it is math.exp.

    >>> vexp(0.0)
    1.0
    """
    return math.exp(x)


@overload(vexp, jit_options={"fastmath": False})  # no reassociation: it would undo Cody-Waite
def _vexp_overload(x):
    if not (isinstance(x, types.Float) and x.bitwidth == 32):
        return lambda x: math.exp(x)

    def vexp_float32(x):
        x = min(max(x, _EXP_LO), _EXP_HI)  # below -104 exp is 0 in float32, above 88.8 inf
        k = np.floor(x * _LOG2E + _HALF)  # round(x / ln 2)
        r = x - k * _LN2_HI - k * _LN2_LO  # |r| <= ln(2) / 2
        p = ((((_EXP_P[0] * r + _EXP_P[1]) * r + _EXP_P[2]) * r + _EXP_P[3]) * r + _EXP_P[4]) * r + _EXP_P[5]
        p = p * r * r + r + _ONE  # exp(r)
        k1 = np.int32(k) >> 1
        k2 = np.int32(k) - k1
        two_k1 = np.int32((k1 + 127) << 23).view(np.float32)  # 2^k1 from its exponent bits
        two_k2 = np.int32((k2 + 127) << 23).view(np.float32)  # 2^k2
        return p * two_k1 * two_k2

    return vexp_float32


# erf for float32 in two pieces, as in vectorised libraries (ARM optimized-routines erff,
# N. Juffa's erff): a polynomial where erf is near-linear and the exponential of a polynomial
# where it approaches 1. Both pieces are computed for every element and one is picked, which
# costs less than a branch once LLVM runs 16 lanes at a time.
#   |x| <= 1:      erf(x) = x + x P(x^2), P of degree 6 (the Taylor series' 2/sqrt(pi) - 1 first)
#   1 < |x| < 4:   erf(x) = 1 - exp(Q(|x|)), Q of degree 7 fitting log(erfc(t)) on [1, 4]
#   |x| >= 4:      erf(x) = 1 (erfc(4) = 1.5e-8 is below half a float32 ulp of 1), as |x| = 4
# The coefficients are minimax fits (Lawson's iteratively reweighted least squares on a dense
# grid, error weighted relative to erf), rounded to float32 one at a time from the lowest
# degree with the rest refitted after each rounding. Fitting error: 0.02 and 0.0004 of 2^-24
# relative; what is left after float32 evaluation is rounding (the test measures it).
_ERF_SMALL = (_F(0.128379166), _F(-0.37612626), _F(0.112835787), _F(-0.0268533472), _F(0.0051871622),
              _F(-0.00079978531), _F(7.80690316e-05))
_ERFC_LOG = (_F(0.000188467282), _F(-1.12958026), _F(-0.63321656), _F(-0.108421899), _F(0.0252102222),
             _F(-0.00420525344), _F(0.000441470504), _F(-2.16979024e-05))
_ERF_CUT, _ERF_HI = _F(1.0), _F(4.0)


def verf(x):
    """``erf(x)`` for a scalar, inside numba kernels.

    As with ``exp`` (see ``vexp``), numba compiles ``math.erf`` to a scalar libm call that LLVM
    cannot vectorise. For float32 this function is instead two short polynomials, a ``vexp``
    and a select, all of which LLVM turns into SIMD code. Its largest error over every float32
    input is about one ulp (measured in tests/test_kernels.py against ``math.erf`` in float64).
    float64 keeps ``math.erf``: a float64-accurate form needs polynomials of twice the degree
    and a more careful exp, for kernels (float64 twins held to 1e-12 of the reference) whose
    speed nothing depends on. Outside numba it is ``math.erf``.

    >>> round(verf(1.0), 6)
    0.842701
    """
    return math.erf(x)


@overload(verf, jit_options={"fastmath": {"contract"}})  # fused multiply-adds, no reordering
def _verf_overload(x):
    if not (isinstance(x, types.Float) and x.bitwidth == 32):
        return lambda x: math.erf(x)

    def verf_float32(x):
        a = abs(x)
        s = x * x
        p = _ERF_SMALL[6]
        p = p * s + _ERF_SMALL[5]
        p = p * s + _ERF_SMALL[4]
        p = p * s + _ERF_SMALL[3]
        p = p * s + _ERF_SMALL[2]
        p = p * s + _ERF_SMALL[1]
        p = p * s + _ERF_SMALL[0]
        small = x + x * p  # |x| <= 1
        t = _ERF_HI if a > _ERF_HI else a  # NaN stays NaN
        q = _ERFC_LOG[7]
        q = q * t + _ERFC_LOG[6]
        q = q * t + _ERFC_LOG[5]
        q = q * t + _ERFC_LOG[4]
        q = q * t + _ERFC_LOG[3]
        q = q * t + _ERFC_LOG[2]
        q = q * t + _ERFC_LOG[1]
        q = q * t + _ERFC_LOG[0]  # log(erfc(t))
        big = _ONE - vexp(q)  # erf(|x|) for |x| > 1
        big = big if x >= 0 else -big
        return small if a <= _ERF_CUT else big

    return verf_float32


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as a contiguous ``(N, last)`` array (a view when ``a`` is already contiguous)."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


# ----------------------------------------------------------------------------------------
# linear: numpy's own BLAS, called from numba's threads

# numpy's matmul runs OpenBLAS on OpenBLAS's own threads, and numba's kernels run on numba's
# (OpenMP) threads: two pools of threads on the same cores, each spin-waiting for a while
# after its job ends, which is just when the other pool needs the cores. On a busy two-core
# machine a (2048, 128) @ (128, 384) product ran at 17-25 GFLOP/s on OpenBLAS's two threads
# and at 106-128 on one. So the twins call the same OpenBLAS gemm, single-threaded, from
# inside numba kernels: each numba thread multiplies its own block of rows (or of columns),
# and every parallel part of a training step runs on the one pool. Measured side by side on
# the GPTs of benchmarks/bench_gpt_train.py with two threads, a training step ran 2-15x faster
# than with numpy's matmul between the numba kernels (the same speed on one thread).
#
# The gemm is looked up in the library numpy itself links (numpy's wheels ship OpenBLAS with
# 64-bit integers, its symbols ending in "64_") and handed to LLVM under a name of our own, so
# that the kernels calling it can be cached on disk. Where it is not found (a numpy built on
# another BLAS), linear_forward/backward are the numpy reference's.

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values


class _OpenBLAS:
    """numpy's OpenBLAS: the addresses of its sgemm and dgemm, and its thread-count controls."""

    def __init__(self, lib, prefix: str, suffix: str):
        self.sgemm = ctypes.cast(getattr(lib, f"{prefix}cblas_sgemm{suffix}"), ctypes.c_void_p).value
        self.dgemm = ctypes.cast(getattr(lib, f"{prefix}cblas_dgemm{suffix}"), ctypes.c_void_p).value
        self.set_num_threads = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}")
        self.set_num_threads.argtypes, self.set_num_threads.restype = [ctypes.c_int], None
        self.get_num_threads = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
        self.get_num_threads.argtypes, self.get_num_threads.restype = [], ctypes.c_int

    @classmethod
    def find(cls):
        """The OpenBLAS numpy links, or None."""
        try:
            try:
                from numpy._core import _multiarray_umath
            except ImportError:  # numpy 1.x
                from numpy.core import _multiarray_umath
            lib = ctypes.CDLL(_multiarray_umath.__file__)  # lookups also search the libraries it links
        except (ImportError, OSError):
            return None
        for prefix in ("scipy_", ""):  # numpy >= 2.0 wheels, then numpy 1.x ones
            try:
                return cls(lib, prefix, "64_")
            except AttributeError:
                continue
        return None

    def run_single_threaded(self, kernel, *args):
        """``kernel(*args)`` with OpenBLAS held to one thread per call, so that its own pool stays
        idle. The setting is process-wide: a numpy product started meanwhile from another Python
        thread would also run on one thread."""
        threads = self.get_num_threads()
        if threads == 1:
            return kernel(*args)
        self.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            self.set_num_threads(threads)


BLAS = _OpenBLAS.find()  # None: linear_forward/backward below are the numpy reference's

# cblas_?gemm(order, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)
_GEMM_ARGS = {t: (types.int32, types.int32, types.int32, types.int64, types.int64, types.int64, t,
                  types.voidptr, types.int64, types.voidptr, types.int64, t, types.voidptr, types.int64)
              for t in (types.float32, types.float64)}
_SGEMM = types.ExternalFunction("llm_from_scratch_cblas_sgemm", types.void(*_GEMM_ARGS[types.float32]))
_DGEMM = types.ExternalFunction("llm_from_scratch_cblas_dgemm", types.void(*_GEMM_ARGS[types.float64]))
if BLAS is not None:
    llvm.add_symbol("llm_from_scratch_cblas_sgemm", BLAS.sgemm)
    llvm.add_symbol("llm_from_scratch_cblas_dgemm", BLAS.dgemm)


def _gemm(trans_a, trans_b, M, N, K, a, lda, b, ldb, c, ldc, zero):
    """In numba kernels, ``c = op(a) @ op(b)`` for row-major (M, K), (K, N), (M, N) matrices at
    the addresses ``a``, ``b``, ``c`` with leading dimensions ``lda``, ``ldb``, ``ldc``; ``zero``
    (0.0 as float32 or float64) picks sgemm or dgemm. It runs on the calling thread."""
    raise NotImplementedError("_gemm is only callable inside numba kernels")


@overload(_gemm)
def _gemm_overload(trans_a, trans_b, M, N, K, a, lda, b, ldb, c, ldc, zero):
    gemm = _SGEMM if zero == types.float32 else _DGEMM

    def impl(trans_a, trans_b, M, N, K, a, lda, b, ldb, c, ldc, zero):
        gemm(_ROW_MAJOR, trans_a, trans_b, M, N, K, zero + 1, a, lda, b, ldb, zero, c, ldc)

    return impl


@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _linear_forward_rows(x, w, trans_w, b, has_bias, out, P):
    # out = x @ W + b, where W is w (C, OC), or w^T for a w of shape (OC, C) when trans_w:
    # the rows of x in P blocks, one gemm per block, each on its own thread, bias added after
    N, C = x.shape
    OC = out.shape[1]
    zero = out.dtype.type(0.0)
    size = out.itemsize
    op_w = _TRANS if trans_w else _NO_TRANS
    for p in prange(P):
        r0, r1 = p * N // P, (p + 1) * N // P
        _gemm(_NO_TRANS, op_w, r1 - r0, OC, C, x.ctypes.data + r0 * C * size, C, w.ctypes.data, w.shape[1],
              out.ctypes.data + r0 * OC * size, OC, zero)
        if has_bias:
            for i in range(r0, r1):
                for j in range(OC):
                    out[i, j] += b[j]


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _linear_backward_blocks(dout, x, w, trans_w, dx, dw, db, has_bias, P_rows, P_cols):
    # in the forward pass this was: out = x @ W + b, so now
    #   dx = dout @ W^T   the rows of dout in P_rows blocks, as in the forward pass
    #   dW = x^T @ dout   the columns of dout (output channels) in P_cols blocks, stored as
    #                     dw = dW, or as dw = dW^T (OC, C) when trans_w (the layout of w)
    #   db = the sum of the rows of dout: each block's channels, in float64, beside its dW
    N, C = x.shape
    OC = dout.shape[1]
    zero = dx.dtype.type(0.0)
    size = dx.itemsize
    op_w = _NO_TRANS if trans_w else _TRANS  # op(w) is W^T
    for p in prange(P_rows):
        r0, r1 = p * N // P_rows, (p + 1) * N // P_rows
        _gemm(_NO_TRANS, op_w, r1 - r0, C, OC, dout.ctypes.data + r0 * OC * size, OC, w.ctypes.data, w.shape[1],
              dx.ctypes.data + r0 * C * size, C, zero)
    for p in prange(P_cols):
        o0, o1 = p * OC // P_cols, (p + 1) * OC // P_cols
        if trans_w:  # dw[o0:o1] = dout[:, o0:o1]^T @ x, rows o0..o1 of the (OC, C) gradient
            _gemm(_TRANS, _NO_TRANS, o1 - o0, C, N, dout.ctypes.data + o0 * size, OC, x.ctypes.data, C,
                  dw.ctypes.data + o0 * C * size, C, zero)
        else:  # dw[:, o0:o1] = x^T @ dout[:, o0:o1], columns o0..o1 of the (C, OC) gradient
            _gemm(_TRANS, _NO_TRANS, C, o1 - o0, N, x.ctypes.data, C, dout.ctypes.data + o0 * size, OC,
                  dw.ctypes.data + o0 * size, OC, zero)
        if has_bias:
            for i in range(N):
                for j in range(o0, o1):
                    db[j] += dout[i, j]


def _check_linear(x, w, b) -> None:
    # the checks of the reference's linear_forward, with the same messages
    _check_float("x", x)
    _check_float("w", w)
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[0]:
        C = x.shape[-1] if x.ndim else "C"
        raise ValueError(f"linear: x {x.shape} has C = {C} features on its last axis, so w must have "
                         f"shape (C, OC) = ({C}, OC), got {w.shape} (PyTorch's nn.Linear stores (OC, C): "
                         "pass its weight.T)")
    if b is not None:
        _check_float("b", b)
        if b.shape != (w.shape[1],):
            raise ValueError(f"linear: b must have shape (OC,) = ({w.shape[1]},), got {b.shape}")
    _check_same_dtype(x=x, w=w, b=b)


def _gemm_operand(w: np.ndarray):
    """``(matrix, transposed)``: ``w`` itself when C-contiguous, else its transpose when that is
    (then ``transposed`` is True, as for the tied head's ``wte.T``), else a C-contiguous copy."""
    if w.flags.c_contiguous:
        return w, False
    if w.flags.f_contiguous:
        return w.T, True
    return np.ascontiguousarray(w), False


def _blocks(n: int) -> int:
    """How many blocks to split ``n`` rows or columns into: one per numba thread."""
    return max(1, min(numba.get_num_threads(), n))


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None):
    """Numba twin of ``llm_from_scratch.ops.linear_forward`` (same cache ``(x, w, has_bias)``):
    ``out = x @ w + b`` by numpy's OpenBLAS gemm, one call per numba thread on a block of rows.

    >>> out, cache = linear_forward(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[10.0], [1.0]]), np.array([0.5]))
    >>> out
    array([[12.5],
           [34.5]])
    """
    _check_linear(x, w, b)
    if BLAS is None or x.size == 0 or w.size == 0:  # (empty arrays: BLAS wants leading dimensions >= 1)
        return _reference.linear_forward(x, w, b)
    C, OC = w.shape
    x2 = _rows(x)  # (N, C)
    w_mat, trans_w = _gemm_operand(w)  # (C, OC), or (OC, C) with trans_w
    out = np.empty((x2.shape[0], OC), dtype=x.dtype)  # (N, OC)
    bias = np.empty(0, dtype=x.dtype) if b is None else b  # (OC,), or unused
    BLAS.run_single_threaded(_linear_forward_rows, x2, w_mat, trans_w, bias, b is not None, out,
                             _blocks(x2.shape[0]))
    return out.reshape(x.shape[:-1] + (OC,)), (x, w, b is not None)


def linear_backward(dout: np.ndarray, cache):
    """Numba twin of ``llm_from_scratch.ops.linear_backward``: returns ``(dx, dw, db)``.

    ``dw`` has the memory layout of ``w``: for a transposed view such as the tied head's
    ``wte.T`` it is the transpose of a C-contiguous ``(OC, C)`` array, so ``dw.T`` is free.

    >>> _, cache = linear_forward(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[10.0], [1.0]]), np.array([0.5]))
    >>> dx, dw, db = linear_backward(np.array([[1.0], [-1.0]]), cache)
    >>> dx, dw, db
    (array([[ 10.,   1.],
           [-10.,  -1.]]), array([[-2.],
           [-2.]]), array([0.]))
    """
    x, w, has_bias = cache
    if BLAS is None or x.size == 0 or w.size == 0:
        return _reference.linear_backward(dout, cache)
    C, OC = w.shape
    x2 = _rows(x)  # (N, C)
    dout2 = _rows(dout).astype(x.dtype, copy=False)  # (N, OC)
    w_mat, trans_w = _gemm_operand(w)  # (C, OC), or (OC, C) with trans_w
    N = x2.shape[0]
    dx = np.empty((N, C), dtype=x.dtype)  # (N, C)
    dw = np.empty(w_mat.shape, dtype=x.dtype)  # (C, OC), or (OC, C) with trans_w
    db = np.zeros(OC)  # (OC,) float64 sums
    BLAS.run_single_threaded(_linear_backward_blocks, dout2, x2, w_mat, trans_w, dx, dw, db, has_bias,
                             _blocks(N), _blocks(OC))
    return dx.reshape(x.shape), dw.T if trans_w else dw, db.astype(x.dtype) if has_bias else None


# ----------------------------------------------------------------------------------------
# LayerNorm

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _layernorm_forward_rows(x, w, b, eps, out, mean, rstd):
    N, C = x.shape
    for i in prange(N):
        m = 0.0
        for c in range(C):
            m += x[i, c]
        m /= C
        v = 0.0
        for c in range(C):
            d = x[i, c] - m
            v += d * d
        s = 1.0 / math.sqrt(v / C + eps)
        for c in range(C):
            out[i, c] = (x[i, c] - m) * s * w[c] + b[c]
        mean[i] = m
        rstd[i] = s


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _layernorm_backward_rows(dout, x, w, mean, rstd, dx, dw_parts, db_parts):
    # in the forward pass this was: out[i, c] = (x[i, c] - m) * s * w[c] + b[c], so now
    # dx = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) with dnorm = dout * w
    N, C = x.shape
    P = dw_parts.shape[0]
    for p in prange(P):
        for i in range(p * N // P, (p + 1) * N // P):
            m = mean[i]
            s = rstd[i]
            dnorm_mean = 0.0
            dnorm_norm_mean = 0.0
            for c in range(C):
                norm = (x[i, c] - m) * s
                dnorm = dout[i, c] * w[c]
                dnorm_mean += dnorm
                dnorm_norm_mean += dnorm * norm
                db_parts[p, c] += dout[i, c]
                dw_parts[p, c] += dout[i, c] * norm
            dnorm_mean /= C
            dnorm_norm_mean /= C
            for c in range(C):
                norm = (x[i, c] - m) * s
                dx[i, c] = s * (dout[i, c] * w[c] - dnorm_mean - norm * dnorm_norm_mean)


def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5):
    """Numba twin of ``llm_from_scratch.ops.layernorm_forward`` (same cache ``(x, w, mean, rstd)``).

    >>> out, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.array([2.0, 1.0]), np.array([0.0, 10.0]))
    >>> out.round(4)
    array([[-2., 11.]])
    """
    _check_layernorm(x, w, b)
    x2 = _rows(x)  # (N, C)
    N = x2.shape[0]
    out = np.empty_like(x2)  # (N, C)
    mean = np.empty(N, dtype=x.dtype)  # (N,)
    rstd = np.empty(N, dtype=x.dtype)  # (N,)
    _layernorm_forward_rows(x2, np.ascontiguousarray(w), np.ascontiguousarray(b), float(eps), out, mean, rstd)
    lead = x.shape[:-1] + (1,)
    return out.reshape(x.shape), (x, w, mean.reshape(lead), rstd.reshape(lead))


def layernorm_backward(dout: np.ndarray, cache):
    """Numba twin of ``llm_from_scratch.ops.layernorm_backward``: returns ``(dx, dw, db)``.

    >>> _, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.array([2.0, 1.0]), np.array([0.0, 10.0]))
    >>> dx, dw, db = layernorm_backward(np.array([[1.0, 1.0]]), cache)
    >>> dw.round(4), db
    (array([-1.,  1.]), array([1., 1.]))
    """
    x, w, mean, rstd = cache
    C = x.shape[-1]
    x2 = _rows(x)  # (N, C)
    dout2 = _rows(dout)  # (N, C)
    N = x2.shape[0]
    P = min(LAYERNORM_CHUNKS, N)
    dx = np.empty_like(x2)  # (N, C)
    dw_parts = np.zeros((P, C))  # (P, C) float64 partial sums
    db_parts = np.zeros((P, C))  # (P, C) float64 partial sums
    _layernorm_backward_rows(dout2, x2, np.ascontiguousarray(w), np.ascontiguousarray(mean).reshape(-1),
                             np.ascontiguousarray(rstd).reshape(-1), dx, dw_parts, db_parts)
    dw = dw_parts.sum(axis=0).astype(x.dtype)  # (C,)
    db = db_parts.sum(axis=0).astype(x.dtype)  # (C,)
    return dx.reshape(x.shape), dw, db


# ----------------------------------------------------------------------------------------
# softmax

@njit(fastmath=FASTMATH, cache=True)
def _row_max(x, i):
    # Eight independent running maxima. A single running max is a chain of dependent compares
    # that LLVM does not vectorise (~0.45 ns per element here); eight chains run side by side
    # (~0.13 ns per element, faster than numpy's x.max(axis=-1)).
    V = x.shape[1]
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = x[i, 0]
    j = 0
    while j + 8 <= V:
        m0 = max(m0, x[i, j])
        m1 = max(m1, x[i, j + 1])
        m2 = max(m2, x[i, j + 2])
        m3 = max(m3, x[i, j + 3])
        m4 = max(m4, x[i, j + 4])
        m5 = max(m5, x[i, j + 5])
        m6 = max(m6, x[i, j + 6])
        m7 = max(m7, x[i, j + 7])
        j += 8
    for j in range(j, V):
        m0 = max(m0, x[i, j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _softmax_rows(x, out):
    N, V = x.shape
    for i in prange(N):
        xmax = _row_max(x, i)
        s = 0.0
        for j in range(V):
            e = vexp(x[i, j] - xmax)
            out[i, j] = e
            s += e
        inv = x.dtype.type(1.0 / s)  # in x's dtype, so the loop below stays float32 for float32
        for j in range(V):
            out[i, j] *= inv


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _masked_softmax_rows(x, mask, out):
    N, V = x.shape
    for i in prange(N):
        kept = False
        xmax = x[i, 0]
        for j in range(V):
            if mask[i, j] and (not kept or x[i, j] > xmax):
                xmax = x[i, j]
                kept = True
        if not kept:  # every entry excluded: zeros, not NaN
            for j in range(V):
                out[i, j] = 0.0
            continue
        s = 0.0
        for j in range(V):
            e = vexp(x[i, j] - xmax) if mask[i, j] else 0.0
            out[i, j] = e
            s += e
        inv = x.dtype.type(1.0 / s)
        for j in range(V):
            out[i, j] *= inv


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _softmax_backward_rows(dout, p, dx):
    # in the forward pass this was: out[i, j] = exp(x[i, j] - xmax) / s, so now
    N, V = p.shape
    for i in prange(N):
        dot = 0.0
        for j in range(V):
            dot += dout[i, j] * p[i, j]
        dot = p.dtype.type(dot)
        for j in range(V):
            dx[i, j] = p[i, j] * (dout[i, j] - dot)


def softmax_forward(x: np.ndarray, mask: np.ndarray | None = None):
    """Numba twin of ``llm_from_scratch.ops.softmax_forward`` (same mask rule, cache ``out``).

    A mask is broadcast to ``x.shape`` and copied (one byte per entry) before the kernel runs.

    >>> out, cache = softmax_forward(np.log(np.array([[1.0, 3.0], [2.0, 2.0]])))
    >>> out.round(12)
    array([[0.25, 0.75],
           [0.5 , 0.5 ]])
    """
    _check_float("x", x)
    x2 = _rows(x)  # (N, V)
    out = np.empty_like(x2)  # (N, V)
    if mask is None:
        _softmax_rows(x2, out)
    else:
        mask2 = _rows(_check_mask(mask, x.shape))  # (N, V)
        _masked_softmax_rows(x2, mask2, out)
    out = out.reshape(x.shape)  # (..., V)
    return out, out


def softmax_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Numba twin of ``llm_from_scratch.ops.softmax_backward``: ``dx = p * (dout - sum(dout * p))``.

    >>> _, cache = softmax_forward(np.log(np.array([[1.0, 3.0]])))
    >>> softmax_backward(np.array([[1.0, 0.0]]), cache).round(12)
    array([[ 0.1875, -0.1875]])
    """
    p = cache
    p2 = _rows(p)  # (N, V)
    dx = np.empty_like(p2)  # (N, V)
    _softmax_backward_rows(_rows(dout), p2, dx)
    return dx.reshape(p.shape)


# ----------------------------------------------------------------------------------------
# cross-entropy (fused log-softmax + loss)

@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _cross_entropy_rows(x, xmax, logsum, xmean):
    N, V = x.shape
    for i in prange(N):
        m = _row_max(x, i)
        s = 0.0
        total = 0.0
        for j in range(V):
            s += vexp(x[i, j] - m)
            total += x[i, j]
        xmax[i] = m
        logsum[i] = math.log(s)  # lse - xmax
        xmean[i] = total / V


@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _cross_entropy_backward_rows(x, t, ignore_index, eps, xmax, logsum, scale, dx):
    # in the forward pass this was: loss = mean over counted rows of -sum_j y_ij log p_ij, so now
    # dx = (p - y) * dloss / n, with p recomputed as exp((x - xmax) - logsum)
    N, V = x.shape
    eps_v = x.dtype.type(eps / V)  # scalars in x's dtype keep the loop in float32 for float32
    on_target = x.dtype.type(1.0 - eps)
    scale = x.dtype.type(scale)
    for i in prange(N):
        if t[i] == ignore_index:
            for j in range(V):
                dx[i, j] = 0.0
            continue
        m = xmax[i]
        ls = logsum[i]
        for j in range(V):
            dx[i, j] = (vexp((x[i, j] - m) - ls) - eps_v) * scale
        dx[i, t[i]] = (vexp((x[i, t[i]] - m) - ls) - eps_v - on_target) * scale


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100,
                          label_smoothing: float = 0.0):
    """Numba twin of ``llm_from_scratch.ops.cross_entropy_forward`` (same cache).

    One pass per row finds the max, a second sums the exponentials and the logits; the (N, V)
    probabilities are never written (backward recomputes them from the cached per-row ``xmax``
    and ``logsum``). The per-row losses, O(N) work, are then computed as in the reference.

    >>> loss, cache = cross_entropy_forward(np.zeros((2, 4)), np.array([1, -100]))
    >>> round(float(loss), 6)  # log 4
    1.386294
    """
    _check_cross_entropy(logits, targets, ignore_index, label_smoothing)
    x = _rows(logits)  # (N, V)
    t = np.ascontiguousarray(targets).reshape(-1).astype(np.int64, copy=False)  # (N,)
    N = x.shape[0]
    xmax = np.empty(N, dtype=x.dtype)  # (N,)
    logsum = np.empty(N, dtype=x.dtype)  # (N,)
    xmean = np.empty(N, dtype=x.dtype)  # (N,)
    _cross_entropy_rows(x, xmax, logsum, xmean)
    # the (N,)-sized rest, in numpy and in the reference's order of operations
    valid = t != ignore_index  # (N,)
    nll = logsum - (x[np.arange(N), np.where(valid, t, 0)] - xmax)  # (N,) lse - x[t_i]
    per_row = nll  # (N,)
    if label_smoothing > 0:
        per_row = (1 - label_smoothing) * nll + label_smoothing * (logsum - (xmean - xmax))  # (N,)
    n = int(valid.sum())
    loss = x.dtype.type(per_row[valid].sum() / n if n else 0.0)
    return loss, (logits, targets, xmax, logsum, ignore_index, label_smoothing)


def cross_entropy_backward(dloss, cache) -> np.ndarray:
    """Numba twin of ``llm_from_scratch.ops.cross_entropy_backward``: ``dloss * (p - y) / n``.

    >>> _, cache = cross_entropy_forward(np.zeros((2, 4)), np.array([1, -100]))
    >>> cross_entropy_backward(1.0, cache)
    array([[ 0.25, -0.75,  0.25,  0.25],
           [ 0.  ,  0.  ,  0.  ,  0.  ]])
    """
    logits, targets, xmax, logsum, ignore_index, eps = cache
    if np.ndim(dloss) != 0:
        raise ValueError(f"dloss must be a scalar (the loss is a mean), got shape {np.shape(dloss)}")
    x = _rows(logits)  # (N, V)
    t = np.ascontiguousarray(targets).reshape(-1).astype(np.int64, copy=False)  # (N,)
    n = max(int(np.count_nonzero(t != ignore_index)), 1)
    dx = np.empty_like(x)  # (N, V)
    _cross_entropy_backward_rows(x, t, int(ignore_index), float(eps), np.ascontiguousarray(xmax).reshape(-1),
                                 np.ascontiguousarray(logsum).reshape(-1), float(dloss) / n, dx)
    return dx.reshape(logits.shape)


# ----------------------------------------------------------------------------------------
# GELU

@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _gelu_tanh_forward(x, out, k2, a):
    # 0.5 * x * (1 + tanh(u)) == x * sigmoid(2u), with 2u = k2 * (x + a x^3) and k2 = 2 sqrt(2/pi)
    one = x.dtype.type(1.0)
    for i in prange(x.size):
        v = x[i]
        out[i] = v / (one + vexp(-k2 * (v + a * v * v * v)))


@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _gelu_tanh_backward(dout, x, dx, k2, a):
    # in the forward pass this was: out = x * s with s = sigmoid(2u), so now
    # d/dx [x s] = s + x * s (1 - s) * 2 du/dx, where 2 du/dx = k2 (1 + 3 a x^2)
    one = x.dtype.type(1.0)
    three = x.dtype.type(3.0)
    for i in prange(x.size):
        v = x[i]
        s = one / (one + vexp(-k2 * (v + a * v * v * v)))
        dx[i] = dout[i] * (s + v * s * (one - s) * k2 * (one + three * a * v * v))


@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _gelu_erf_forward(x, out):
    # out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); constants in x's dtype keep float32 in float32
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    rsqrt2 = x.dtype.type(0.7071067811865476)  # 1/sqrt(2)
    for i in prange(x.size):
        v = x[i]
        out[i] = v * half * (one + verf(v * rsqrt2))


@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _gelu_erf_backward(dout, x, dx):
    # in the forward pass this was: out = x * Phi(x), so now dx = dout * (Phi(x) + x phi(x))
    half, one = x.dtype.type(0.5), x.dtype.type(1.0)
    rsqrt2 = x.dtype.type(0.7071067811865476)  # 1/sqrt(2)
    rsqrt2pi = x.dtype.type(0.3989422804014327)  # 1/sqrt(2 pi)
    for i in prange(x.size):
        v = x[i]
        cdf = half * (one + verf(v * rsqrt2))  # Phi(x)
        pdf = vexp(-half * v * v) * rsqrt2pi  # phi(x)
        dx[i] = dout[i] * (cdf + v * pdf)


def gelu_forward(x: np.ndarray, approximate: str = "none"):
    """Numba twin of ``llm_from_scratch.ops.gelu_forward`` (same cache ``(x, approximate)``).

    >>> gelu_forward(np.array([0.0, 1.0, -1.0]))[0].round(4)
    array([ 0.    ,  0.8413, -0.1587])
    >>> gelu_forward(np.array([0.0, 1.0, -1.0]), approximate="tanh")[0].round(4)
    array([ 0.    ,  0.8412, -0.1588])
    """
    _check_gelu(x, approximate)
    x1 = np.ascontiguousarray(x).reshape(-1)  # (N*C,)
    out = np.empty_like(x1)  # (N*C,)
    if approximate == "tanh":
        _gelu_tanh_forward(x1, out, x.dtype.type(2 * GELU_K), x.dtype.type(GELU_A))
    else:
        _gelu_erf_forward(x1, out)
    return out.reshape(x.shape), (x, approximate)


def gelu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Numba twin of ``llm_from_scratch.ops.gelu_backward``.

    >>> _, cache = gelu_forward(np.array([0.0, 1.0, -1.0]))
    >>> gelu_backward(np.array([1.0, 1.0, 1.0]), cache).round(4)  # Phi(x) + x phi(x)
    array([ 0.5   ,  1.0833, -0.0833])
    """
    x, approximate = cache
    x1 = np.ascontiguousarray(x).reshape(-1)  # (N*C,)
    dout1 = np.ascontiguousarray(dout).reshape(-1)  # (N*C,)
    dx = np.empty_like(x1)  # (N*C,)
    if approximate == "tanh":
        _gelu_tanh_backward(dout1, x1, dx, x.dtype.type(2 * GELU_K), x.dtype.type(GELU_A))
    else:
        _gelu_erf_backward(dout1, x1, dx)
    return dx.reshape(x.shape)


# ----------------------------------------------------------------------------------------
# embedding backward

@njit(cache=True)
def _embedding_scatter_add(idx, dout, dwte):
    # in the forward pass this was: out[i] = wte[idx[i]], so now each dout row is added to its table row
    N, C = dout.shape
    for i in range(N):
        row = idx[i]
        for c in range(C):
            dwte[row, c] += dout[i, c]


def embedding_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Numba twin of ``llm_from_scratch.ops.embedding_backward`` (the cache of ``embedding_forward``).

    Rows are added in order, as ``np.add.at`` does, so the result is bit-identical.

    >>> _, cache = embedding_forward(np.array([[2, 0, 2]]), np.zeros((3, 2)))
    >>> embedding_backward(np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]]), cache)
    array([[2., 2.],
           [0., 0.],
           [4., 4.]])
    """
    idx, V = cache
    dout2 = _rows(dout)  # (N, C)
    dwte = np.zeros((V, dout2.shape[1]), dtype=dout.dtype)  # (V, C)
    _embedding_scatter_add(np.ascontiguousarray(idx).reshape(-1), dout2, dwte)
    return dwte
