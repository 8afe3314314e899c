"""Time generation with and without the key/value cache, ours and PyTorch's, side by side.

The small GPT shape (vocabulary 512, 256 positions, width 128, 4 layers, 4 heads) with random
weights (``init_params``, seed 0), batch 1, a prompt of 8 tokens, greedy decoding of 200 new
tokens. Four ways to generate the same tokens:

- ours with the cache: ``generate(..., use_cache=True)``, the prompt once, then one token per step;
- ours without: ``generate(..., use_cache=False)``, ``gpt_forward`` on the whole sequence each step;
- Hugging Face ``GPT2LMHeadModel.generate`` (PyTorch eager) on the same weights, saved with our
  ``save_pretrained``, with ``use_cache=True`` and ``use_cache=False``.

Tokens/s counts new tokens over the whole call (prompt included). Each figure is the median of
``--repeats`` calls after a warm-up, the four taking turns. numpy's BLAS, numba and PyTorch all get ``--threads``
threads. Also reported: whether the four give the same tokens.

Run: ``python benchmarks/bench_generate.py [--repeats 3] [--threads 1] [--new 200] [--kernels numpy]``.
Exits with status 1 if our cached generation is less than 4x faster than ours without the
cache. On a shared machine figures drift between runs; ratios measured side by side are steadier.
"""

from __future__ import annotations

import sys
import tempfile

from _bench import add_repeats, add_threads, median_seconds, parser, pin_threads, report, set_threads


def parse_args():
    p = parser(__doc__)
    add_repeats(p, 3, "timed calls per row (median reported)")
    add_threads(p, 1)
    p.add_argument("--new", type=int, default=200, help="new tokens per call")
    p.add_argument("--prompt", type=int, default=8, help="prompt length")
    p.add_argument("--kernels", choices=("numpy", "numba"), default="numpy", help="our ops")
    return p.parse_args()


ARGS = parse_args()
pin_threads(ARGS.threads)  # before numpy loads: BLAS reads its thread count then

import numpy as np  # noqa: E402

from llm_from_scratch.generate import generate  # noqa: E402
from llm_from_scratch.models.gpt import GPTConfig, init_params, save_pretrained  # noqa: E402

CONFIG = GPTConfig(vocab_size=512, n_positions=256, n_embd=128, n_layer=4, n_head=4)
FLOOR = 4.0  # minimum speed-up of our cached generation over ours without the cache


def main() -> int:
    import torch
    import transformers

    set_threads(ARGS.threads, torch)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if ARGS.prompt + ARGS.new > CONFIG.n_positions:
        raise SystemExit(f"prompt + new = {ARGS.prompt + ARGS.new} tokens must fit n_positions = "
                         f"{CONFIG.n_positions} (Hugging Face GPT-2 cannot go past it)")
    params = init_params(CONFIG, seed=0)
    prompt = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=(1, ARGS.prompt))  # (1, T)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(params, CONFIG, tmp)
        model = transformers.GPT2LMHeadModel.from_pretrained(tmp).eval()
    ids = torch.tensor(prompt)

    def ours(use_cache):
        return lambda: generate(params, CONFIG, prompt, ARGS.new, greedy=True, use_cache=use_cache,
                                kernels=ARGS.kernels)

    def hf(use_cache):
        def run():
            with torch.no_grad():
                return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=ARGS.new,
                                      min_new_tokens=ARGS.new, do_sample=False, pad_token_id=0,
                                      use_cache=use_cache).numpy()
        return run

    fns = {f"ours ({ARGS.kernels}), KV cache": ours(True), f"ours ({ARGS.kernels}), no cache": ours(False),
           "PyTorch (HF GPT2LMHeadModel), KV cache": hf(True), "PyTorch (HF GPT2LMHeadModel), no cache": hf(False)}
    rows = {name: (ARGS.new / seconds, out) for name, (seconds, out) in median_seconds(fns, ARGS.repeats).items()}

    names = list(rows)
    tps = [rows[n][0] for n in names]
    print(f"generation, batch 1, prompt {ARGS.prompt}, {ARGS.new} new tokens, greedy; V={CONFIG.vocab_size} "
          f"P={CONFIG.n_positions} C={CONFIG.n_embd} L={CONFIG.n_layer} NH={CONFIG.n_head}, float32, "
          f"{ARGS.threads} thread(s), median of {ARGS.repeats}")
    print(f"| {'generator':<42} | {'tokens/s':>9} | {'ms/token':>8} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 10}|")
    for name, t in zip(names, tps):
        print(f"| {name:<42} | {t:9.0f} | {1e3 / t:8.3f} |")
    ours_speedup, torch_speedup = tps[0] / tps[1], tps[2] / tps[3]
    print(f"\nKV cache speed-up: ours {ours_speedup:.1f}x, PyTorch {torch_speedup:.1f}x")
    print(f"ours / PyTorch: with cache {tps[0] / tps[2]:.2f}x, without {tps[1] / tps[3]:.2f}x")
    outs = [rows[n][1] for n in names]
    same = [bool(np.array_equal(outs[0], o)) for o in outs[1:]]
    print(f"same tokens as ours with the cache: ours without {same[0]}, PyTorch with {same[1]}, "
          f"PyTorch without {same[2]}")
    failed = [f"our KV-cache generation is {ours_speedup:.1f}x faster than without, below the {FLOOR}x floor"]
    return report(failed if ours_speedup < FLOOR else [], "FAIL")


if __name__ == "__main__":
    sys.exit(main())
