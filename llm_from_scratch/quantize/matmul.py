"""The matrix product with quantized weights: ``x @ W`` reading int8 or packed int4 directly.

``quantized_matmul(x, qt)`` computes what ``x @ dequantize(qt)`` computes (its numpy reference,
``quantized_matmul_reference``) without ever building the float matrix. For each output
channel o the numba kernel reads the channel's codes, turns each into a float in a register as
it multiplies, and applies the scale once per channel (int8) or once per group (int4):

    out[n, o] = s_o * sum_c x[n, c] q[o, c]                           int8
    out[n, o] = sum_k s_ok * sum_{c in group k} x[n, c] q[o, c]          int4

The two differ from the reference only in where the multiplication by s happens, so they agree
to float32 rounding (a few ulps of the sum). Output channels are split over numba's threads
(``prange``); each thread walks its channels' codes in memory order, the (OC, C) storage of
``QuantizedTensor``. At batch 1 (one decoded token) this is a matrix-vector product whose cost
is reading the weights, which is what quantization shrinks: 1 byte a weight for int8, half a
byte for int4, against 4 for float32.

Left out: integer dot products (``vpdpbusd``: it needs int8 activations), blocking over the
rows of ``x`` for large batches (prefill of long prompts runs slower than float32 BLAS).

References: llama.cpp ``ggml-cpu/quants.c``, ``ggml_vec_dot_q4_0_q8_0`` (a dot product per block
of 32, its scale applied once); T. Dettmers et al., LLM.int8(), arXiv 2208.07339, section 3.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from llm_from_scratch.quantize.core import QuantizedTensor, dequantize

# Dimension letters: N rows of x, C input features, OC output channels, g group size, G = C // g

__all__ = ["quantized_matmul", "quantized_matmul_reference"]


@numba.njit(cache=True, fastmath=True, parallel=True)
def _matmul_int8(x, q, scales, out):  # pragma: no cover - compiled
    # x (N, C) float32, q (OC, C) int8, scales (OC,) float32 -> out (N, OC)
    N, C = x.shape
    OC = q.shape[0]
    for o in prange(OC):
        s = scales[o]
        for n in range(N):
            acc = np.float32(0.0)
            for c in range(C):
                acc += x[n, c] * np.float32(q[o, c])  # the code becomes a float in a register
            out[n, o] = acc * s


@numba.njit(cache=True, fastmath=True, parallel=True)
def _matmul_int4(x, packed, scales, group_size, out):  # pragma: no cover - compiled
    # x (N, C) float32, packed (OC, C/2) uint8, scales (OC, G) float32 -> out (N, OC)
    N, C = x.shape
    OC, G = scales.shape
    half = group_size // 2
    for o in prange(OC):
        for n in range(N):
            acc = np.float32(0.0)
            for k in range(G):
                c0 = k * group_size  # the group's first input feature
                b0 = k * half  # and its first byte
                part = np.float32(0.0)
                for j in range(half):  # byte j: weight j (low nibble) and weight j + g/2 (high)
                    byte = np.int32(packed[o, b0 + j])
                    lo = np.float32((byte & 15) - 8)
                    hi = np.float32((byte >> 4) - 8)
                    part += x[n, c0 + j] * lo + x[n, c0 + half + j] * hi
                acc += part * scales[o, k]
            out[n, o] = acc


def _check(x, qt) -> tuple[np.ndarray, int]:
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"qt must be a QuantizedTensor (from quantize_int8 or quantize_int4), got "
                        f"{type(qt).__name__}")
    if qt.out_axis != 1:
        raise ValueError(f"quantized_matmul computes x @ W with W of shape (C, OC); this {qt!r} holds an "
                         f"(OC, C) matrix (nn.Linear's layout): multiply by qt.T, as x @ w.T")
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"x must be a float32 numpy array (activations stay float32), got {got}")
    C = qt.in_features
    if x.ndim == 0 or x.shape[-1] != C:
        raise ValueError(f"x {x.shape} must have the weight's C = {C} input features on its last axis "
                         f"(the weight is {qt.shape})")
    expected = (qt.out_features, C if qt.bits == 8 else C // 2)
    dtype = np.int8 if qt.bits == 8 else np.uint8
    if qt.bits not in (4, 8) or qt.data.dtype != dtype or qt.data.shape != expected:
        raise ValueError(f"{qt!r} is inconsistent: its data should be {np.dtype(dtype)} {expected}, got "
                         f"{qt.data.dtype} {qt.data.shape}")
    return x, C


def quantized_matmul(x: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """``x @ W`` for float32 ``x`` (..., C) and a quantized ``W`` (C, OC), by a numba kernel that
    reads the int8 or packed int4 codes directly; returns float32 (..., OC). Agrees with
    ``quantized_matmul_reference`` to float32 rounding.

    >>> from llm_from_scratch.quantize.core import quantize_int8, quantize_int4
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((64, 5)).astype(np.float32)  # (C, OC)
    >>> x = rng.standard_normal((3, 64)).astype(np.float32)  # (N, C)
    >>> for qt in (quantize_int8(w), quantize_int4(w, 32)):
    ...     out = quantized_matmul(x, qt)
    ...     print(out.shape, bool(np.allclose(out, quantized_matmul_reference(x, qt), atol=1e-4)))
    (3, 5) True
    (3, 5) True
    """
    x, C = _check(x, qt)
    x2 = np.ascontiguousarray(x.reshape(-1, C))  # (N, C)
    out = np.empty((x2.shape[0], qt.out_features), dtype=np.float32)  # (N, OC)
    if qt.bits == 8:
        _matmul_int8(x2, qt.data, qt.scales, out)
    else:
        _matmul_int4(x2, qt.data, qt.scales, qt.group_size, out)
    return out.reshape(x.shape[:-1] + (qt.out_features,))  # (..., OC)


def quantized_matmul_reference(x: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """The numpy reference of ``quantized_matmul``: dequantize the whole matrix, then multiply."""
    x, _ = _check(x, qt)
    return x @ dequantize(qt)  # (..., C) @ (C, OC) -> (..., OC)
