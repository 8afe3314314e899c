"""Exercises for chapter 12, compute: quantized weights.

``quantize_row_int8`` is int8 absmax quantization of one row (``quantize.quantize_int8`` is the
reference); ``int4_matrix_bytes`` is a derivation whose answer is a number: the bytes of an int4
matrix in groups with float16 scales (``QuantizedTensor.nbytes`` of ``quantize.quantize_int4``
is the reference). Each wrapper imports what it calls inside its body, so its source, copied
into a file on its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def quantize_row_int8(row):
    """int8 absmax quantization of a 1-D float ``row``: the scale ``s = max|row| / 127`` and the
    codes ``q = round(row / s)`` as int8 (round half to even, as ``np.rint``). Return
    ``(q, s)``; a row of zeros has scale 0 and codes 0.

    Example: [0.5, -1.0, 0.25] has max |x| = 1, so s = 1/127 = 0.007874, and the codes are
    round(63.5) = 64 (half to even), -127 and round(31.75) = 32.

    The reference is ``llm_from_scratch.quantize.quantize_int8`` on the row as a 1-row matrix.
    """
    from llm_from_scratch.quantize import quantize_int8

    qt = quantize_int8(np.asarray(row, dtype=np.float32)[None, :], out_axis=0)  # one output channel
    return qt.data[:, 0].copy(), float(qt.scales[0])


def _wrong_quantize_row_int8(row):
    row = np.asarray(row, dtype=np.float32)
    s = float(np.abs(row).max() / 128)  # 128 steps: the largest weight would need code 128, which int8 lacks
    q = np.rint(row / s) if s > 0 else np.zeros_like(row)
    return np.clip(q, -128, 127).astype(np.int8), s


def int4_matrix_bytes(m, n, group_size):
    """Bytes of an (m, n) weight matrix (m output channels, n input features) in int4: two codes
    per byte, plus one float16 scale (2 bytes) per group of ``group_size`` input features of
    each output channel. ``group_size`` divides n.

    Example: a (768, 3072) matrix in groups of 32: 768 x 3072 / 2 bytes of codes and
    768 x 96 scales of 2 bytes: 1,179,648 + 147,456 = 1,327,104 bytes, 4.5 bits per weight.

    The reference quantizes such a matrix and counts its bytes (``QuantizedTensor.nbytes``).
    """
    from llm_from_scratch.quantize import quantize_int4

    qt = quantize_int4(np.ones((int(m), int(n)), dtype=np.float32), int(group_size), out_axis=0)
    return int(qt.nbytes)


def _wrong_int4_matrix_bytes(m, n, group_size):
    return m * n // 2 + (m * n // group_size) * 4  # float32 scales, not float16


def _row(seed, n, scale=1.0):
    def make():
        return (scale * np.random.default_rng(seed).standard_normal(n).astype(np.float32),)
    return make


EXERCISES = [
    register(Exercise(
        name="quantize_row_int8", chapter=12, title="int8 absmax quantization of a row",
        reference=quantize_row_int8,
        cases=(
            Case("the docstring's example", lambda: (np.array([0.5, -1.0, 0.25], dtype=np.float32),)),
            Case("64 weights of a trained layer's size", _row(0, 64, 0.02)),
            Case("a row whose largest weight is negative", lambda: (np.array([0.1, -3.0, 2.0, 0.0], dtype=np.float32),)),
            Case("a row of zeros", lambda: (np.zeros(5, dtype=np.float32),)),
            Case("300 weights", _row(1, 300, 5.0)),
        ),
        rtol=1e-6, atol=1e-12,
        hint="s = max(|row|) / 127 (0 for a row of zeros); q = np.rint(row / s) as np.int8 (codes 0 when s = 0); "
             "return (q, s)",
    )),
    register(Exercise(
        name="int4_matrix_bytes", chapter=12, title="the bytes of an int4 matrix with float16 group scales",
        reference=int4_matrix_bytes,
        cases=(
            Case("the docstring's example: (768, 3072) in groups of 32", lambda: (768, 3072, 32)),
            Case("(384, 1536) in groups of 64", lambda: (384, 1536, 64)),
            Case("(10, 128) in groups of 128", lambda: (10, 128, 128)),
            Case("(3, 8) in groups of 2", lambda: (3, 8, 2)),
        ),
        rtol=0, atol=0,
        hint="m n / 2 bytes of codes, and m (n / group_size) scales of 2 bytes each",
    )),
]

WRONG = {
    "quantize_row_int8": _wrong_quantize_row_int8,
    "int4_matrix_bytes": _wrong_int4_matrix_bytes,
}
