"""Fused inference kernels: a dense layer and the elementwise work after it, in one pass.

A forward pass that keeps no cache (inference) needs only a layer's output, not its
intermediate arrays, so the bias, the activation or the residual sum and LayerNorm that follow
a product can be applied to each row of the product's output as soon as it exists, instead of
in separate passes over memory, each allocating its own array. Each kernel here has its plain
numpy reference beside it (``*_reference``, composed of ``llm_from_scratch.ops``), and
tests/test_kernels.py holds the two together:

    linear_gelu_forward(x, w, b)                       = gelu(x @ w + b)            exact erf GELU
    linear_residual_layernorm_forward(x, w, b, r, ...) = layernorm(r + x @ w + b)   post-LN residual

``w`` is a (C, OC) matrix, or the transpose of PyTorch's (OC, C) ``nn.Linear`` weight (``w.T``
is a view: the gemm reads it transposed). The products are OpenBLAS's gemm called from numba's
threads, as in ``kernels.ops.linear_forward``: each thread takes a block of rows, multiplies it
and then finishes it (bias, GELU or residual and LayerNorm). Measured on MiniLM's shapes (3072
rows, 384 <-> 1536 channels, one thread, side by side): one pass instead of two or three made
the feed-forward product + GELU and the product + residual + LayerNorm 4-6% faster. Smaller
blocks (64 to 256 rows, so that a block's output would still be in the core's cache for the
epilogue) were 0-12% slower than the separate ops: OpenBLAS packs the whole weight matrix again
for every block. A fused q, k, v product writing three weights' products side by side into one
output, without concatenating them first, was also slower (three narrow products instead of
one wide one), so the encoder concatenates.

Left out: backward passes (these are for inference; training keeps the separate ops and their
caches), and the tanh GELU (BERT's is the erf one; the tanh form has its own twin in
``kernels.ops``).

References: the epilogue fusion of cuBLASLt / CUTLASS ("GEMM with epilogue") and oneDNN
post-ops, done here on a CPU with numba; A. Karpathy, llm.c ``dev/cuda`` for the pattern of a
naive reference beside each fast kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from llm_from_scratch import ops as _reference
from llm_from_scratch.kernels.ops import (_NO_TRANS, _TRANS, BLAS, FASTMATH, FASTMATH_ELEMENTWISE, _blocks,
                                          _check_linear, _gemm, _gemm_operand, _rows, verf)

__all__ = ["linear_gelu_forward", "linear_gelu_reference", "linear_residual_layernorm_forward",
           "linear_residual_layernorm_reference"]

# Dimension letters: N rows (the leading dimensions flattened), C input channels, OC output
# channels; "..." any leading dimensions.


# ----------------------------------------------------------------------------------------
# numpy references


def linear_gelu_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``gelu(x @ w + b)`` with the exact (erf) GELU, by the numpy ops.

    >>> linear_gelu_reference(np.array([[1.0, -1.0]]), np.eye(2), np.zeros(2)).round(4)
    array([[ 0.8413, -0.1587]])
    """
    out, _ = _reference.linear_forward(x, w, b)  # (..., OC)
    return _reference.gelu_forward(out)[0]  # (..., OC)


def linear_residual_layernorm_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, residual: np.ndarray,
                                        ln_w: np.ndarray, ln_b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``layernorm(residual + x @ w + b)``, BERT's post-LN residual block, by the numpy ops.

    >>> linear_residual_layernorm_reference(np.array([[1.0, 0.0]]), np.eye(2), np.zeros(2),
    ...     np.array([[0.0, 2.0]]), np.ones(2), np.zeros(2)).round(4)  # layernorm([1, 2])
    array([[-1.,  1.]])
    """
    out, _ = _reference.linear_forward(x, w, b)  # (..., OC)
    return _reference.layernorm_forward(residual + out, ln_w, ln_b, eps)[0]  # (..., OC)


# ----------------------------------------------------------------------------------------
# kernels

@njit(fastmath=FASTMATH_ELEMENTWISE, parallel=True, cache=True)
def _linear_gelu_rows(x, w, trans_w, b, out, R):
    # out = gelu(x @ W + b), block by block of R rows: the product, then bias and GELU in place
    # (the GELU as in kernels.ops._gelu_erf_forward)
    N, C = x.shape
    OC = out.shape[1]
    zero = out.dtype.type(0.0)
    half, one = out.dtype.type(0.5), out.dtype.type(1.0)
    rsqrt2 = out.dtype.type(0.7071067811865476)  # 1/sqrt(2)
    size = out.itemsize
    op_w = _TRANS if trans_w else _NO_TRANS
    for blk in prange((N + R - 1) // R):
        r0, r1 = blk * R, min((blk + 1) * R, N)
        _gemm(_NO_TRANS, op_w, r1 - r0, OC, C, x.ctypes.data + r0 * C * size, C, w.ctypes.data, w.shape[1],
              out.ctypes.data + r0 * OC * size, OC, zero)
        for i in range(r0, r1):
            for j in range(OC):
                v = out[i, j] + b[j]
                out[i, j] = v * half * (one + verf(v * rsqrt2))


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def _linear_residual_layernorm_rows(x, w, trans_w, b, residual, ln_w, ln_b, eps, out, R):
    # out = layernorm(residual + x @ W + b), block by block of R rows; LayerNorm as in
    # kernels.ops._layernorm_forward_rows (means and variances summed in float64)
    N, C = x.shape
    OC = out.shape[1]
    zero = out.dtype.type(0.0)
    size = out.itemsize
    op_w = _TRANS if trans_w else _NO_TRANS
    for blk in prange((N + R - 1) // R):
        r0, r1 = blk * R, min((blk + 1) * R, N)
        _gemm(_NO_TRANS, op_w, r1 - r0, OC, C, x.ctypes.data + r0 * C * size, C, w.ctypes.data, w.shape[1],
              out.ctypes.data + r0 * OC * size, OC, zero)
        for i in range(r0, r1):
            m = 0.0
            for c in range(OC):
                s = out[i, c] + b[c] + residual[i, c]
                out[i, c] = s
                m += s
            m /= OC
            v = 0.0
            for c in range(OC):
                d = out[i, c] - m
                v += d * d
            rstd = 1.0 / math.sqrt(v / OC + eps)
            for c in range(OC):
                out[i, c] = (out[i, c] - m) * rstd * ln_w[c] + ln_b[c]


# ----------------------------------------------------------------------------------------
# the functions


def _block_rows(N: int) -> int:
    """Rows per block: one block per numba thread."""
    return max(1, -(-N // _blocks(N)))


def linear_gelu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``gelu(x @ w + b)`` (exact erf GELU) of ``x`` (..., C), ``w`` (C, OC), ``b`` (OC,): the
    feed-forward network's first half, without the pre-activation array. Same result, to float
    rounding, as ``linear_gelu_reference``.

    >>> linear_gelu_forward(np.array([[1.0, -1.0]]), np.eye(2), np.zeros(2)).round(4)
    array([[ 0.8413, -0.1587]])
    """
    _check_linear(x, w, b)
    if b is None:
        raise ValueError("linear_gelu_forward: b is required (pass np.zeros(OC) for none)")
    if BLAS is None or x.size == 0 or w.size == 0:
        return linear_gelu_reference(x, w, b)
    x2 = _rows(x)  # (N, C)
    w_mat, trans_w = _gemm_operand(w)  # (C, OC), or (OC, C) with trans_w
    OC = w.shape[1]
    out = np.empty((x2.shape[0], OC), dtype=x.dtype)  # (N, OC)
    BLAS.run_single_threaded(_linear_gelu_rows, x2, w_mat, trans_w, b, out, _block_rows(x2.shape[0]))
    return out.reshape(x.shape[:-1] + (OC,))


def linear_residual_layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, residual: np.ndarray,
                                      ln_w: np.ndarray, ln_b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """``layernorm(residual + x @ w + b)`` of ``x`` (..., C), ``w`` (C, OC), ``b`` (OC,),
    ``residual`` (..., OC) and the LayerNorm's ``ln_w``, ``ln_b`` (OC,): a post-LN residual
    block's end, without the sum array. Same result, to float rounding, as
    ``linear_residual_layernorm_reference``.

    >>> linear_residual_layernorm_forward(np.array([[1.0, 0.0]]), np.eye(2), np.zeros(2),
    ...     np.array([[0.0, 2.0]]), np.ones(2), np.zeros(2)).round(4)
    array([[-1.,  1.]])
    """
    _check_linear(x, w, b)
    OC = w.shape[1]
    if b is None or not isinstance(residual, np.ndarray) or residual.shape != x.shape[:-1] + (OC,):
        got = residual.shape if isinstance(residual, np.ndarray) else type(residual).__name__
        raise ValueError(f"linear_residual_layernorm_forward: needs a bias b (OC,) and a residual of the output's "
                         f"shape {x.shape[:-1] + (OC,)}, got b {None if b is None else b.shape} and residual {got}")
    _reference._check_layernorm(residual, ln_w, ln_b)
    _reference._check_same_dtype(x=x, residual=residual)
    if BLAS is None or x.size == 0 or w.size == 0:
        return linear_residual_layernorm_reference(x, w, b, residual, ln_w, ln_b, eps)
    x2 = _rows(x)  # (N, C)
    w_mat, trans_w = _gemm_operand(w)  # (C, OC), or (OC, C) with trans_w
    out = np.empty((x2.shape[0], OC), dtype=x.dtype)  # (N, OC)
    BLAS.run_single_threaded(_linear_residual_layernorm_rows, x2, w_mat, trans_w, b, _rows(residual),
                             np.ascontiguousarray(ln_w), np.ascontiguousarray(ln_b), float(eps), out,
                             _block_rows(x2.shape[0]))
    return out.reshape(x.shape[:-1] + (OC,))
