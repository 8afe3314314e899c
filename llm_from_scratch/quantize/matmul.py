"""The matrix product with quantized weights: ``x @ W`` reading int8 or packed int4 directly.

``quantized_matmul(x, qt)`` computes what ``x @ dequantize(qt)`` computes (its numpy reference,
``quantized_matmul_reference``) without ever building the float matrix. The codes are stored
(C, OC), a row per input feature (``quantize.core``); the kernel walks them row by row and, for
each code, turns it into a float in a register, multiplies it by the input and adds it to the
output channel's running sum, applying each channel's scale once at the end (int8) or each
group's scale once per group (int4):

    out[n, o] = s_o * sum_c x[n, c] q[c, o]                           int8
    out[n, o] = sum_k s_ko * sum_{c in group k} x[n, c] q[c, o]          int4

They differ from the reference only in where the multiplication by s happens, so the two agree
to float32 rounding. The innermost loop runs over output channels, contiguous in memory, so the
compiler vectorises it (a loop that sums a group of 32 products instead is too short to
vectorise, and ran 30 times slower). At batch 1 each row of codes is read in one contiguous
sweep over all output channels; with many rows of ``x`` the channels go in blocks of 256 whose
sums stay in L1, and a block of 8 rows shares each code read from memory. The kernels run on one
thread: at batch 1 the work is reading the weights, which a second core on the same memory
barely speeds up (splitting the blocks of channels over ``prange`` would do it). A 4-bit byte is unpacked in float arithmetic (``high = floor(b / 16)``,
``low = b - 16 high``), which vectorises where numba's integer ``&`` and ``>>`` (done in 64 bits)
do not. At batch 1 (one decoded token) the product is a matrix-vector product whose cost is
reading the weights, which is what quantization shrinks: 1 byte a weight for int8, half a byte
for int4, against 4 for float32.

Left out: integer dot products (``vpdpbusd``: they need int8 activations), and the cache
blocking of a real GEMM, so a long prompt's prefill (many rows of ``x``) runs slower than
float32 BLAS.

References: llama.cpp ``ggml-cpu/quants.c``, ``ggml_vec_dot_q4_0_q8_0`` (a dot product per block
of 32, its scale applied once); T. Dettmers et al., LLM.int8(), arXiv 2208.07339, section 3.
"""

from __future__ import annotations

import numba
import numpy as np

from llm_from_scratch.quantize.core import QuantizedTensor, dequantize

# Dimension letters: N rows of x, C input features, OC output channels, g group size, G = C // g

__all__ = ["quantized_matmul", "quantized_matmul_reference"]


_COLS = 256  # output channels per block when x has many rows: the block's sums stay in L1
_ROWS = 8  # rows of x per block: each code read from memory serves this many rows


@numba.njit(cache=True, fastmath=True)
def _matmul_int8(x, q, scales, cols, out):  # pragma: no cover - compiled
    # x (N, C) float32, q (C, OC) int8, scales (OC,) float32 -> out (N, OC)
    N, C = x.shape
    OC = q.shape[1]
    for o0 in range(0, OC, cols):  # a block of output channels
        o1 = min(OC, o0 + cols)
        W = o1 - o0
        acc = np.empty((_ROWS, W), dtype=np.float32)  # (rows, cols) partial sums
        for n0 in range(0, N, _ROWS):  # a block of rows of x
            n1 = min(N, n0 + _ROWS)
            acc[:] = 0.0
            for c in range(C):
                q_row = q[c, o0:o1]  # (W,) input feature c's weight for each output channel
                for n in range(n0, n1):
                    xc = x[n, c]
                    a = acc[n - n0]  # (W,)
                    for i in range(W):  # contiguous: the compiler vectorises this loop
                        a[i] += xc * np.float32(q_row[i])  # the code becomes a float in a register
            for n in range(n0, n1):
                for i in range(W):
                    out[n, o0 + i] = acc[n - n0, i] * scales[o0 + i]  # one scale per output channel, once


@numba.njit(cache=True, fastmath=True)
def _matmul_int4(x, packed, scales, group_size, cols, out):  # pragma: no cover - compiled
    # x (N, C) float32, packed (C/2, OC) uint8, scales (G, OC) float32 -> out (N, OC)
    N, C = x.shape
    G, OC = scales.shape
    half = group_size // 2
    for o0 in range(0, OC, cols):
        o1 = min(OC, o0 + cols)
        W = o1 - o0
        acc = np.empty((_ROWS, W), dtype=np.float32)  # sums over all groups
        part = np.empty((_ROWS, W), dtype=np.float32)  # sums within the current group
        for n0 in range(0, N, _ROWS):
            n1 = min(N, n0 + _ROWS)
            acc[:] = 0.0
            for k in range(G):
                part[:] = 0.0
                for j in range(half):  # byte row k g/2 + j: weights k g + j (low nibble), k g + g/2 + j (high)
                    p_row = packed[k * half + j, o0:o1]  # (W,)
                    for n in range(n0, n1):
                        x_low = x[n, k * group_size + j]
                        x_high = x[n, k * group_size + half + j]
                        a = part[n - n0]  # (W,)
                        for i in range(W):
                            byte = np.float32(p_row[i])  # 0..255, exact in float32
                            high = np.floor(byte * np.float32(0.0625))  # byte >> 4, in float arithmetic
                            low = byte - np.float32(16.0) * high  # byte & 15
                            a[i] += x_low * (low - np.float32(8.0)) + x_high * (high - np.float32(8.0))
                for n in range(n0, n1):
                    for i in range(W):
                        acc[n - n0, i] += part[n - n0, i] * scales[k, o0 + i]  # the group's scale, once
            for n in range(n0, n1):
                for i in range(W):
                    out[n, o0 + i] = acc[n - n0, i]


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
    expected = (C if qt.bits == 8 else C // 2, qt.out_features)
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
    # one block of rows (decoding): all output channels at once, so each row of codes is read
    # from memory in one contiguous sweep; more rows: blocks of _COLS channels, sums kept in L1
    cols = qt.out_features if x2.shape[0] <= _ROWS else _COLS
    if qt.bits == 8:
        _matmul_int8(x2, qt.data, qt.scales, cols, out)
    else:
        _matmul_int4(x2, qt.data, qt.scales, qt.group_size, cols, out)
    return out.reshape(x.shape[:-1] + (qt.out_features,))  # (..., OC)


def quantized_matmul_reference(x: np.ndarray, qt: QuantizedTensor) -> np.ndarray:
    """The numpy reference of ``quantized_matmul``: dequantize the whole matrix, then multiply."""
    x, _ = _check(x, qt)
    return x @ dequantize(qt)  # (..., C) @ (C, OC) -> (..., OC)
