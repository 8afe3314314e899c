"""Time quantized weights against float32, side by side: the matrix-vector product, and decoding.

Two tables, every variant timed in interleaved rounds (``_bench.median_seconds``):

- the product of one row with a weight matrix (batch 1, what each linear layer does for a decoded
  token): float32 ``x @ w`` (numpy's BLAS) against ``quantize.quantized_matmul`` reading int8
  codes (one scale per output channel) and packed int4 codes (groups of 32), for shapes from
  MiniLM's feed-forward (384 x 1536) to a matrix larger than the caches (2048 x 8192);
- greedy decoding at batch 1 with the key/value cache (``generate``), a prompt of 8 tokens then
  ``--new`` tokens, for a GPT of width 768, 6 layers, vocabulary 4096 with random weights
  (``init_params``, seed 0): float32, int8 and int4, each with the tied head float32 or quantized.

Ratios above 1 mean the quantized variant is faster. At batch 1 the cost of a matrix is reading
it, so the ratio grows with the matrix's size against the caches; small matrices that fit in
them gain little. ``python -m llm_from_scratch.quantize measure`` writes the committed figures
(``book/data/quant/results.json``, with quality and sizes as well).

Run: ``python benchmarks/bench_quant.py [--repeats 5] [--threads 1] [--new 32]``. Exits with status 1
if int8 decoding of this GPT is not faster than float32.
"""

from __future__ import annotations

import sys

from _bench import add_repeats, add_threads, median_seconds, parser, pin_threads, ratio, report, set_threads


def parse_args():
    p = parser(__doc__)
    add_repeats(p, 5, "timed rounds (median reported)")
    add_threads(p, 1)
    p.add_argument("--new", type=int, default=32, help="new tokens per decoding call")
    return p.parse_args()


ARGS = parse_args()
pin_threads(ARGS.threads)  # before numpy loads: BLAS reads its thread count then

import numpy as np  # noqa: E402

from llm_from_scratch.generate import generate  # noqa: E402
from llm_from_scratch.models.gpt import GPTConfig, init_params  # noqa: E402
from llm_from_scratch.quantize import quantize_int4, quantize_int8, quantize_params, quantized_matmul  # noqa: E402
from llm_from_scratch.quantize.measure import MATVEC_SHAPES, SPEED_CONFIG  # noqa: E402


def matvec_table() -> None:
    rng = np.random.default_rng(0)
    print(f"x @ w at batch 1, {ARGS.threads} thread(s), median of {ARGS.repeats} (microseconds per product)")
    print(f"| {'C x OC':>11} | {'float32':>8} | {'int8':>8} | {'int4':>8} | {'int8 speed-up':>14} | "
          f"{'int4 speed-up':>14} |")
    print(f"|{'-' * 13}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 16}|{'-' * 16}|")
    for C, OC in MATVEC_SHAPES:
        w = rng.standard_normal((C, OC)).astype(np.float32)  # (C, OC)
        x = rng.standard_normal((1, C)).astype(np.float32)  # (1, C)
        q8, q4 = quantize_int8(w), quantize_int4(w, 32)
        reps = max(1, int(2e6 // (C * OC) * 4))  # products per timing: about a millisecond each
        t = median_seconds({"float32": lambda: [x @ w for _ in range(reps)],
                            "int8": lambda: [quantized_matmul(x, q8) for _ in range(reps)],
                            "int4": lambda: [quantized_matmul(x, q4) for _ in range(reps)]}, ARGS.repeats)
        us = {k: v[0] / reps * 1e6 for k, v in t.items()}
        print(f"| {f'{C} x {OC}':>11} | {us['float32']:8.1f} | {us['int8']:8.1f} | {us['int4']:8.1f} | "
              f"{ratio(us['float32'] / us['int8'], 14)} | {ratio(us['float32'] / us['int4'], 14)} |")


def decode_table() -> float:
    config = GPTConfig(**SPEED_CONFIG)
    params = init_params(config, seed=0)
    prompt = np.arange(8, dtype=np.int64)[None, :]  # (1, 8)
    variants = {"float32": params}
    for bits in (8, 4):
        variants[f"int{bits}"] = quantize_params(params, bits)
        variants[f"int{bits}, tied head too"] = quantize_params(params, bits, tied_head=True)
    t = median_seconds({name: (lambda p=p: generate(p, config, prompt, ARGS.new, greedy=True, kernels="numba"))
                        for name, p in variants.items()}, ARGS.repeats)
    print(f"\ngreedy decoding, batch 1, KV cache, {ARGS.new} new tokens; V={config.vocab_size} C={config.n_embd} "
          f"L={config.n_layer}, random weights, {ARGS.threads} thread(s), median of {ARGS.repeats}")
    print(f"| {'weights':<24} | {'MB':>6} | {'tokens/s':>9} | {'vs float32':>11} |")
    print(f"|{'-' * 26}|{'-' * 8}|{'-' * 11}|{'-' * 13}|")
    base = t["float32"][0]
    for name, p in variants.items():
        mb = sum(v.nbytes for v in p.values()) / 1e6
        print(f"| {name:<24} | {mb:6.1f} | {ARGS.new / t[name][0]:9.1f} | {ratio(base / t[name][0], 11)} |")
    same = {name: bool(np.array_equal(t[name][1], t["float32"][1])) for name in variants}
    print(f"same tokens as float32: {same}")
    return base / t["int8"][0]


def main() -> int:
    set_threads(ARGS.threads)
    matvec_table()
    speedup = decode_table()
    return report([] if speedup > 1 else [f"int8 decoding is {speedup:.2f}x float32, not faster"], "FAIL")


if __name__ == "__main__":
    sys.exit(main())
