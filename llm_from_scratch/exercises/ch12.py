"""Exercises for chapter 12, compute and serving.

``arithmetic_intensity`` is the FLOPs per byte of a matmul (``compute.matmul_intensity`` is the
reference); ``kv_cache_size`` is the memory of a KV cache for a model given by its shape
(``generate.kv_cache_bytes``); ``quantize_row_int8`` is int8 absmax quantization of one row
(``quantize.quantize_int8`` is the reference); ``int4_matrix_bytes`` is a derivation whose answer
is a number: the bytes of an int4 matrix in groups with float16 scales (``QuantizedTensor.nbytes``
of ``quantize.quantize_int4`` is the reference). Each wrapper imports what it calls inside its
body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def arithmetic_intensity(M, K, N, bytes_per_number):
    """FLOPs per byte of the matrix product (M, K) @ (K, N): 2 M K N FLOPs (a multiply and an
    add per term) over the bytes of reading both operands once and writing the result once,
    (M K + K N + M N) numbers of ``bytes_per_number`` bytes.

    Example: (2, 3) @ (3, 4) in float32 is 48 FLOPs over (6 + 12 + 8) x 4 = 104 bytes: 0.4615.

    The reference is ``compute.matmul_intensity``.
    """
    from llm_from_scratch.compute import matmul_intensity

    return matmul_intensity(int(M), int(K), int(N), int(bytes_per_number))


def _wrong_arithmetic_intensity(M, K, N, bytes_per_number):
    return 2 * M * K * N / ((M * K + K * N) * bytes_per_number)  # the result's writes forgotten


def kv_cache_size(n_layer, n_head, head_dim, context, batch, bytes_per_number):
    """Bytes of the keys and values that ``batch`` sequences of ``context`` tokens keep in a
    decoder with ``n_layer`` layers of ``n_head`` heads of ``head_dim`` channels: every layer
    stores a key and a value vector per head and token.

    Example: GPT-2 small (12 layers, 12 heads of 64) with one sequence of 1,024 float32 tokens:
    2 x 4 x 12 x 12 x 64 x 1024 x 1 = 75,497,472 bytes (72 MiB).

    The reference is ``generate.kv_cache_bytes``.
    """
    from llm_from_scratch.generate import kv_cache_bytes
    from llm_from_scratch.models.gpt import GPTConfig

    config = GPTConfig(n_layer=int(n_layer), n_head=int(n_head), n_embd=int(n_head) * int(head_dim))
    return kv_cache_bytes(config, B=int(batch), T=int(context), dtype=f"f{int(bytes_per_number)}")


def _wrong_kv_cache_size(n_layer, n_head, head_dim, context, batch, bytes_per_number):
    return bytes_per_number * n_layer * n_head * head_dim * context * batch  # keys only, no values


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
        name="arithmetic_intensity", chapter=12, title="arithmetic intensity of a matmul",
        reference=arithmetic_intensity,
        cases=(
            Case("the docstring's example", lambda: (2, 3, 4, 4)),
            Case("one token through GPT-2's MLP, float32", lambda: (1, 768, 3072, 4)),
            Case("16 tokens through the same layer", lambda: (16, 768, 3072, 4)),
            Case("a square 2048 matmul, float32", lambda: (2048, 2048, 2048, 4)),
            Case("a training step's head, float16", lambda: (2048, 128, 37, 2)),
        ),
        rtol=1e-12, atol=0,
        hint="FLOPs: 2 M K N; bytes: (M K + K N + M N) times the bytes per number; divide",
    )),
    register(Exercise(
        name="kv_cache_size", chapter=12, title="memory of a KV cache",
        reference=kv_cache_size,
        cases=(
            Case("the docstring's example: GPT-2 small, 1,024 float32 tokens", lambda: (12, 12, 64, 1024, 1, 4)),
            Case("GPT-2 medium, 8 sequences of 512 tokens in float16", lambda: (24, 16, 64, 512, 8, 2)),
            Case("the book's model, 64 sequences of 128 tokens", lambda: (4, 4, 32, 128, 64, 4)),
            Case("one token of a one-layer model", lambda: (1, 2, 3, 1, 1, 8)),
        ),
        rtol=0, atol=0,
        hint="a key and a value (2) per layer, head, channel of the head, token and sequence, "
             "each bytes_per_number bytes",
    )),
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
    "arithmetic_intensity": _wrong_arithmetic_intensity,
    "kv_cache_size": _wrong_kv_cache_size,
    "quantize_row_int8": _wrong_quantize_row_int8,
    "int4_matrix_bytes": _wrong_int4_matrix_bytes,
}
