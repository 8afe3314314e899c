"""Weight-only quantization: int8 per output channel, int4 in groups of 32, and back to float.

A weight matrix ``W`` of a linear layer maps C input features to OC outputs. Quantization
stores each output channel's weights as small integers and one float scale:

    int8, per output channel:  s_o = max_c |W[o, c]| / 127         q[o, c] = round(W[o, c] / s_o)  in [-127, 127]
    int4, per group of g:      s_og = max_{c in group} |W[o, c]| / 7  q[o, c] = round(W[o, c] / s_og) in [-7, 7]
    dequantized:               W~[o, c] = s * q[o, c]                 |W - W~| <= s / 2 for every weight

Only the weights are quantized; activations stay float32, and the matrix product
``quantized_matmul`` multiplies float inputs by the integers, applying each channel's (or
group's) scale once to its partial sum (``llm_from_scratch.quantize.matmul``).

Which axis is the output. The package's linear op ``ops.linear_forward`` computes ``x @ w`` with
``w`` of shape (C, OC): GPT-2's ``Conv1D`` layout (``c_attn``, ``c_proj``, ``c_fc``), so there the
output channels are the *columns*. BERT's ``nn.Linear`` weights are stored (OC, C) and
multiplied as ``x @ w.T``, so there they are the *rows*. ``quantize_int8(w, out_axis=1)`` (the
default, the linear op's layout) or ``out_axis=0`` (``nn.Linear``, and the tied GPT head
``wte`` (V, C), whose rows are the head's outputs) says which. Whatever the float layout, the
integers are stored in the linear op's (C, OC) layout, ``data`` (C, OC) for int8: a row of
``data`` holds one input feature's weights for every output channel, contiguous, which is what
the matmul kernel streams through (``quantize.matmul``). The ``QuantizedTensor`` keeps the
original ``shape`` and ``out_axis``, and ``dequantize`` returns the original layout. ``qt.T`` is the transposed view, as for a numpy array: the same integers, the
shape reversed, ``out_axis`` flipped. ``quantized_matmul(x, qt)`` computes ``x @ W`` and so
wants ``out_axis == 1``; BERT's ``dense_forward`` passes ``w.T`` and gets exactly that.

Why int4 uses [-7, 7] and not [-8, 7]. A symmetric range keeps zero exact and the scale
``max|w| / 7`` maps the largest weight of a group exactly onto +-7, so nothing is ever clipped;
the 16th code (-8) goes unused, which costs log2(16/15) = 0.09 bits per weight of resolution.
llama.cpp's Q4_0 uses all 16 codes by giving the scale the sign of the largest-magnitude weight
(it lands on -8) at the price of clipping opposite-sign weights above 7/8 of it.

Int4 packing: two 4-bit codes per byte, stored as ``q + 8`` (1..15) so that a byte's nibbles
are unsigned. The two codes of a byte belong to the same output channel and the same group of
g input features: within each group, byte j holds weight j in its low nibble and weight
j + g/2 in its high nibble, as llama.cpp's Q4_0 does. ``data`` is (C // 2, OC) uint8, its row
k g/2 + j holding weights k g + j and k g + g/2 + j of group k for every output channel;
``scales`` is (G, OC), G = C // g, one row per group. The int4 scales are rounded to float16 when they are made (and saved as float16:
4 + 16/g = 4.5 bits per weight at g = 32, Q4_0's figure); the int8 scales, one per output
channel, stay float32.

Left out: activation quantization (W8A8, SmoothQuant), error-compensating methods (GPTQ's
second-order updates, AWQ's activation-aware scales), outlier columns kept in float16
(LLM.int8's mixed decomposition), zero points (asymmetric ranges), k-quants' super-blocks.

References:

- T. Dettmers, M. Lewis, Y. Belkada, L. Zettlemoyer, "LLM.int8(): 8-bit Matrix Multiplication
  for Transformers at Scale", NeurIPS 2022, arXiv 2208.07339, section 2 (absmax quantization,
  vector-wise: one scale per row of the weight).
- E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh, "GPTQ", ICLR 2023, arXiv 2210.17323
  (group-wise 4-bit weights, group size 128).
- G. Gerganov et al., llama.cpp, ``ggml-quants.c``: ``quantize_row_q4_0_ref`` (blocks of 32, a
  float16 scale each, the nibble order used here).
- A. Gholami et al., "A Survey of Quantization Methods for Efficient Neural Network
  Inference", 2021, arXiv 2103.13630, section 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Dimension letters, the same in every shape comment of this package:
#   N  rows of the input (batch x positions)   C  input features     OC output channels
#   g  group size (int4)                       G  groups per output channel, C // g

__all__ = ["QuantizedTensor", "BITS", "quantize_int8", "quantize_int4", "quantize", "dequantize",
           "dequantize_rows", "concatenate"]

BITS = (4, 8)  # the supported widths
INT8_MAX = 127  # int8 codes are in [-127, 127]: symmetric, -128 unused
INT4_MAX = 7  # int4 codes are in [-7, 7]: symmetric, -8 unused (see the module docstring)


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """A weight matrix stored as integers and scales (see the module docstring).

    >>> qt = quantize_int8(np.array([[1.0, -2.0], [0.5, 0.25]], dtype=np.float32), out_axis=0)
    >>> qt.bits, qt.shape, qt.data.tolist(), (qt.scales * 127).tolist()  # data is (C, OC)
    (8, (2, 2), [[64, 127], [-127, 64]], [2.0, 0.5])
    >>> qt.T.shape, qt.T.out_axis, qt.T.data is qt.data
    ((2, 2), 1, True)
    """

    bits: int  # 8 or 4
    shape: tuple  # the float matrix's shape, in its own layout: (C, OC) if out_axis == 1, (OC, C) if 0
    data: np.ndarray  # int8 (C, OC), or uint8 (C // 2, OC) with two 4-bit codes per byte
    scales: np.ndarray  # float32: (OC,) for int8, (C // g, OC) for int4 (values exact in float16)
    group_size: int | None  # g for int4; None for int8 (one scale per output channel)
    out_axis: int = 1  # the axis of ``shape`` that holds the output channels

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self) -> np.dtype:
        """The dtype it stands for in a matrix product: float32."""
        return np.dtype(np.float32)

    @property
    def T(self) -> "QuantizedTensor":
        """The transpose: the same integers and scales, the shape reversed, ``out_axis`` flipped."""
        return QuantizedTensor(self.bits, self.shape[::-1], self.data, self.scales, self.group_size, 1 - self.out_axis)

    @property
    def in_features(self) -> int:
        return self.shape[1 - self.out_axis]

    @property
    def out_features(self) -> int:
        return self.shape[self.out_axis]

    @property
    def nbytes(self) -> int:
        """Bytes of the integers and scales as saved (int4 scales as float16)."""
        scale_bytes = 2 if self.bits == 4 else 4
        return self.data.nbytes + self.scales.size * scale_bytes

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a QuantizedTensor is never turned into a float array behind your back (that would undo "
                        "the memory saving); call dequantize(qt) for the float matrix, or quantized_matmul(x, qt)")

    def __array_function__(self, func, types, args, kwargs):
        # BERT's layer_forward stacks the query, key and value weights with np.concatenate: along
        # the output axis that is exact (each output channel keeps its own integers and scales)
        if func is np.concatenate:
            return concatenate(*args, **kwargs)
        return NotImplemented

    def __repr__(self) -> str:
        g = "" if self.group_size is None else f", group_size={self.group_size}"
        return f"QuantizedTensor(int{self.bits}, shape={self.shape}, out_axis={self.out_axis}{g})"


def _check_matrix(w, out_axis) -> np.ndarray:
    if isinstance(w, QuantizedTensor):
        raise TypeError(f"w is already quantized ({w!r}); dequantize(w) gives its float matrix")
    if not isinstance(w, np.ndarray) or not np.issubdtype(w.dtype, np.floating) or w.ndim != 2:
        got = f"{w.dtype} array of shape {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
        raise TypeError(f"expected a 2-D float numpy array (a weight matrix), got a {got}")
    if out_axis not in (0, 1) or isinstance(out_axis, bool):
        raise ValueError(f"out_axis must be 1 (w is (C, OC), as ops.linear_forward takes it) or 0 (w is (OC, C), "
                         f"nn.Linear's layout), got {out_axis!r}")
    if not np.all(np.isfinite(w)):
        raise ValueError("w holds inf or nan; quantization needs finite weights")
    return np.ascontiguousarray(w if out_axis == 0 else w.T, dtype=np.float32)  # (OC, C)


def quantize_int8(w: np.ndarray, out_axis: int = 1) -> QuantizedTensor:
    """int8 absmax quantization, one scale per output channel: ``s = max|w_o| / 127``,
    ``q = round(w_o / s)``. A channel of zeros gets scale 0 and codes 0.

    ``out_axis`` is the axis of ``w`` holding the output channels: 1 for the (C, OC) layout of
    ``ops.linear_forward`` and GPT-2's ``Conv1D``, 0 for ``nn.Linear``'s (OC, C).

    Example: the row [0.5, -1.0, 0.25] has absmax 1.0, so s = 1/127 and the codes are
    round(63.5) = 64 (half to even gives 64), -127 and round(31.75) = 32.

    >>> qt = quantize_int8(np.array([[0.5, -1.0, 0.25]]), out_axis=0)
    >>> qt.data.T, qt.scales * 127  # data is (C, OC)
    (array([[  64, -127,   32]], dtype=int8), array([1.], dtype=float32))
    >>> dequantize(qt).round(4)
    array([[ 0.5039, -1.    ,  0.252 ]], dtype=float32)
    """
    rows = _check_matrix(w, out_axis)  # (OC, C)
    absmax = np.abs(rows).max(axis=1)  # (OC,)
    scales = (absmax / INT8_MAX).astype(np.float32)  # (OC,)
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)  # (OC,) zero rows: codes 0, whatever the scale
    q = np.clip(np.rint(rows / safe[:, None]), -INT8_MAX, INT8_MAX).astype(np.int8)  # (OC, C)
    return QuantizedTensor(8, tuple(w.shape), np.ascontiguousarray(q.T), scales, None, out_axis)  # data (C, OC)


def quantize_int4(w: np.ndarray, group_size: int = 32, out_axis: int = 1) -> QuantizedTensor:
    """int4 absmax quantization in groups of ``group_size`` input features per output channel:
    ``s = max|w_group| / 7`` rounded to float16, ``q = round(w / s)`` in [-7, 7], two codes per
    byte (see the module docstring for the nibble order). ``group_size`` must be even and divide
    the input dimension C.

    Example: one output channel, one group of 4 weights. The absmax is 0.7, so s = 0.1 (0.0999755859375
    after rounding to float16) and the codes are 7, -3, 0, 1; stored as code + 8 = 15, 5, 8, 9,
    byte j holding weights j and j + 2: (15 | 8 << 4) = 143 and (5 | 9 << 4) = 149.

    >>> qt = quantize_int4(np.array([[0.7, -0.3, 0.02, 0.1]]), group_size=4, out_axis=0)
    >>> qt.data.T, float(qt.scales[0, 0])  # data is (C // 2, OC)
    (array([[143, 149]], dtype=uint8), 0.0999755859375)
    >>> dequantize(qt).round(3)
    array([[ 0.7, -0.3,  0. ,  0.1]], dtype=float32)
    """
    rows = _check_matrix(w, out_axis)  # (OC, C)
    OC, C = rows.shape
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)) or group_size < 2 \
            or group_size % 2:
        raise ValueError(f"group_size must be an even integer >= 2 (two 4-bit codes share a byte), got {group_size!r}")
    if C % group_size:
        raise ValueError(f"group_size = {group_size} does not divide the input dimension C = {C} of this "
                         f"{tuple(w.shape)} weight (out_axis = {out_axis}); pick a divisor of {C}, e.g. "
                         f"{_divisor_hint(C)}")
    G, half = C // group_size, group_size // 2
    groups = rows.reshape(OC, G, group_size)  # (OC, G, g)
    absmax = np.abs(groups).max(axis=2)  # (OC, G)
    scales = (absmax / INT4_MAX).astype(np.float16).astype(np.float32)  # (OC, G), exact in float16
    if np.isinf(scales).any():
        raise ValueError(f"a weight of magnitude {absmax.max():.3g} overflows the float16 scale (max 65504 * 7)")
    safe = np.where(scales > 0, scales, 1.0).astype(np.float32)  # (OC, G)
    q = np.clip(np.rint(groups / safe[:, :, None]), -INT4_MAX, INT4_MAX)  # (OC, G, g)
    q = np.where(scales[:, :, None] > 0, q, 0)  # a group underflowing float16 keeps codes 0
    codes = (q + 8).astype(np.uint8)  # (OC, G, g) in 1..15
    packed = codes[:, :, :half] | (codes[:, :, half:] << 4)  # (OC, G, g/2): weight j low, j + g/2 high
    data = np.ascontiguousarray(packed.reshape(OC, C // 2).T)  # (C // 2, OC)
    return QuantizedTensor(4, tuple(w.shape), data, np.ascontiguousarray(scales.T), int(group_size), out_axis)


def _divisor_hint(C: int) -> str:
    even = [d for d in (128, 64, 32, 16, 8, 4, 2) if C % d == 0]
    return str(even[0]) if even else f"none: C = {C} is odd, so int4 cannot pack it; use int8"


def quantize(w: np.ndarray, bits: int, group_size: int = 32, out_axis: int = 1) -> QuantizedTensor:
    """``quantize_int8(w, out_axis)`` for ``bits`` 8, ``quantize_int4(w, group_size, out_axis)`` for 4."""
    if bits == 8:
        return quantize_int8(w, out_axis)
    if bits == 4:
        return quantize_int4(w, group_size, out_axis)
    raise ValueError(f"bits must be 8 or 4, got {bits!r}")


def _codes(qt: QuantizedTensor, channels=slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """The codes of output ``channels``, one row per channel, as float32 (R, C) (4-bit bytes
    unpacked), and their scales, (R,) for int8 or (R, G) for int4."""
    data = qt.data[:, channels].T  # (R, C) int8 or (R, C/2) uint8
    scales = qt.scales[channels] if qt.bits == 8 else qt.scales[:, channels].T  # (R,) or (R, G)
    return _unpack(qt, data), scales


def _unpack(qt: QuantizedTensor, data: np.ndarray) -> np.ndarray:
    if qt.bits == 8:
        return data.astype(np.float32)  # (R, C)
    R, half = data.shape[0], qt.group_size // 2
    grouped = data.reshape(R, -1, half)  # (R, G, g/2)
    low = (grouped & 0x0F).astype(np.float32) - 8  # (R, G, g/2): weights 0 .. g/2 - 1 of each group
    high = (grouped >> 4).astype(np.float32) - 8  # (R, G, g/2): weights g/2 .. g - 1
    return np.concatenate([low, high], axis=2).reshape(R, -1)  # (R, C)


def _check_qt(qt) -> None:
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"expected a QuantizedTensor (from quantize_int8 or quantize_int4), got {type(qt).__name__}")


def dequantize(qt: QuantizedTensor) -> np.ndarray:
    """The float32 matrix the codes stand for, ``s * q``, in the original layout and shape.

    >>> w = np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)  # (C, OC)
    >>> for qt in (quantize_int8(w), quantize_int4(w, 32)):
    ...     err = np.abs(dequantize(qt) - w)
    ...     print(qt.bits, dequantize(qt).shape, bool(np.all(err <= qt.scales.max() / 2 + 1e-7)))
    8 (64, 6) True
    4 (64, 6) True
    """
    _check_qt(qt)
    q, scales = _codes(qt)  # (OC, C), (OC,) or (OC, G)
    if qt.bits == 8:
        w = q * scales[:, None]  # (OC, C)
    else:
        OC, C = q.shape
        w = (q.reshape(OC, -1, qt.group_size) * scales[:, :, None]).reshape(OC, C)  # (OC, G, g) -> (OC, C)
    return w if qt.out_axis == 0 else np.ascontiguousarray(w.T)  # the original layout


def dequantize_rows(qt: QuantizedTensor, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of a quantized table stored (V, C) with ``out_axis == 0`` (the tied GPT
    embedding ``wte``): ``dequantize(qt)[idx]`` without dequantizing the other rows. The shape
    is ``idx.shape + (C,)``, as an embedding lookup's."""
    _check_qt(qt)
    if qt.out_axis != 0:
        raise ValueError(f"dequantize_rows reads output channels as rows; this {qt!r} stores them on axis 1 "
                         "(look up rows of qt.T instead)")
    flat = np.asarray(idx).reshape(-1)  # (M,)
    q, scales = _codes(qt, flat)  # (M, C), (M,) or (M, G)
    if qt.bits == 8:
        w = q * scales[:, None]  # (M, C)
    else:
        M, C = q.shape
        w = (q.reshape(M, -1, qt.group_size) * scales[:, :, None]).reshape(M, C)  # (M, C)
    return w.reshape(np.shape(idx) + (w.shape[1],))  # (..., C)


def concatenate(tensors, axis: int = 0, **kwargs) -> QuantizedTensor:
    """Stack quantized matrices along their output axis (what ``np.concatenate`` does with
    them): exact, since every output channel keeps its own codes and scales. Concatenating along
    the input axis would mix groups and scales, and is refused."""
    tensors = list(tensors)
    if kwargs.get("out") is not None or kwargs.get("dtype") is not None:
        raise TypeError("np.concatenate of QuantizedTensors takes no out= or dtype=")
    if not tensors or not all(isinstance(t, QuantizedTensor) for t in tensors):
        raise TypeError("np.concatenate cannot mix QuantizedTensors and float arrays; quantize them all, or "
                        "dequantize them all")
    first = tensors[0]
    axis = axis % 2 if isinstance(axis, (int, np.integer)) else axis
    same = all((t.bits, t.group_size, t.out_axis, t.in_features) ==
               (first.bits, first.group_size, first.out_axis, first.in_features) for t in tensors)
    if axis != first.out_axis or not same:
        raise ValueError("QuantizedTensors concatenate only along their output axis, with equal bits, group size, "
                         f"out_axis and input dimension; got axis = {axis} for {[repr(t) for t in tensors]}")
    OC = sum(t.out_features for t in tensors)
    shape = (OC, first.in_features) if first.out_axis == 0 else (first.in_features, OC)
    return QuantizedTensor(first.bits, shape, np.concatenate([t.data for t in tensors], axis=1),
                           np.concatenate([t.scales for t in tensors], axis=-1), first.group_size, first.out_axis)
