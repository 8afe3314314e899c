"""Exercises for chapter 12, compute and serving: the arithmetic intensity of a matmul and the
memory of a KV cache.

``arithmetic_intensity`` is ``compute.matmul_intensity`` (the reference calls it);
``kv_cache_size`` is ``generate.kv_cache_bytes`` for a model given by its shape. Each wrapper
imports what it calls inside its body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

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
]

WRONG = {
    "arithmetic_intensity": _wrong_arithmetic_intensity,
    "kv_cache_size": _wrong_kv_cache_size,
}
