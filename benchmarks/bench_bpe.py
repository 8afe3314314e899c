"""BPE training speed: the plain Python loop, its numba twin, and Hugging Face ``tokenizers``.

    python benchmarks/bench_bpe.py            # 5 MB of the standard library's source; ~2 minutes
    python benchmarks/bench_bpe.py --quick    # 1 MB; ~30 seconds

All three train a byte-level BPE with GPT-2's pre-split to vocabularies of 1,024 and 4,096.
The plain loop recounts every pair after every merge, so it would take many minutes on the full
input: it runs on a smaller prefix of the same text, where the other two run as well, and the
ratios come from that shared input. Times are wall-clock seconds of one run each, measured side
by side in one process (absolute numbers drift on a shared machine; ratios less so).

What is timed:

- ``train()`` is the whole call: pre-split with ``re``, count the unique chunks, learn merges.
  The ``split`` column is the pre-split and count alone, so ``train - split`` is the merge loop.
- numba: the one-off compile (or the load from numba's cache) happens before timing.
- Hugging Face: ``BpeTrainer(vocab_size, min_frequency=2, no special tokens)`` with the
  ``ByteLevel`` pre-tokenizer (the same GPT-2 pattern, with real ``\\p{L}``/``\\p{N}``) and the
  256 bytes as initial alphabet, fed one standard-library file at a time, on ``--hf-threads``
  threads (default 1, like the numba kernel). Its tie-break differs from ours and its chunks
  can differ at file boundaries, so its merges need not be identical: the notes give the share
  of our tokens that are also in its vocabulary. It is warmed up once before timing too.
"""

from __future__ import annotations

import os
from collections import Counter

from _bench import parser, print_header, ratio, timed

from llm_from_scratch.data import python_stdlib_text
from llm_from_scratch.tokenizers import ByteBPETokenizer
from llm_from_scratch.tokenizers.bpe import gpt2_bytes_to_unicode


def time_ours(text: str, vocab_size: int, impl: str) -> tuple[float, ByteBPETokenizer]:
    return timed(lambda: ByteBPETokenizer().train(text, vocab_size, impl=impl))


def time_split(text: str) -> float:
    return timed(lambda: Counter(ByteBPETokenizer().split(text)))[0]


def time_hf(text: str, vocab_size: int) -> tuple[float, set[bytes]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    files = ["# ==== file: " + part for part in text.split("# ==== file: ") if part]  # one item per file
    elapsed, _ = timed(lambda: hf.train_from_iterator(files, trainer=trainer))
    byte_of = {ch: b for b, ch in gpt2_bytes_to_unicode().items()}
    vocab = {bytes(byte_of[c] for c in token) for token in hf.get_vocab()}
    return elapsed, vocab


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="1 MB instead of 5 MB, plain loop on 250 KB")
    p.add_argument("--hf-threads", type=int, default=1, help="threads for Hugging Face tokenizers")
    args = p.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.hf_threads)  # read when tokenizers starts its pool

    full_bytes, plain_bytes = (1_000_000, 250_000) if args.quick else (5_000_000, 1_000_000)
    texts = {n: python_stdlib_text(max_bytes=n) for n in (full_bytes, plain_bytes)}
    ByteBPETokenizer().train("warm up the numba kernel", 300, impl="numba")  # compile / cache load
    time_hf("# ==== file: warm up the thread pool\n", 300)

    print(f"BPE training on the Python standard library's source ({full_bytes / 1e6:g} MB; the plain loop "
          f"on the first {plain_bytes / 1e6:g} MB, where all three run for the ratios).")
    print(f"numba: 1 thread, compile excluded. Hugging Face tokenizers: {args.hf_threads} thread(s).\n")
    header = (f"{'input':>7} {'vocab':>6} {'impl':>13} {'train() s':>10} {'split s':>8} "
              f"{'plain/this':>11} {'this/HF':>8}  notes")
    print_header(header)
    for vocab_size in (1024, 4096):
        for n_bytes in (plain_bytes, full_bytes):
            text = texts[n_bytes]
            split = time_split(text)
            results = {}
            if n_bytes == plain_bytes:
                results["plain Python"], plain_tok = time_ours(text, vocab_size, "python")
            results["numba"], numba_tok = time_ours(text, vocab_size, "numba")
            results["HF tokenizers"], hf_vocab = time_hf(text, vocab_size)
            ours = set(numba_tok.vocab.values())
            for impl, seconds in results.items():
                vs_plain = ratio(results["plain Python"] / seconds, 11, 1) if "plain Python" in results else " " * 11
                notes = f"vocab {len(ours)}"
                if impl == "numba" and "plain Python" in results:
                    same = numba_tok.merges == plain_tok.merges
                    notes += ", merges identical to plain" if same else ", MERGES DIFFER FROM PLAIN"
                if impl == "HF tokenizers":
                    notes = f"vocab {len(hf_vocab)}, {len(ours & hf_vocab) / len(ours):.1%} of ours"
                split_col = f"{split:8.2f}" if impl != "HF tokenizers" else f"{'':>8}"
                print(f"{n_bytes / 1e6:5.2f}MB {vocab_size:>6} {impl:>13} {seconds:10.2f} {split_col} "
                      f"{vs_plain} {ratio(seconds / results['HF tokenizers'], 8)}  {notes}")
        print()


if __name__ == "__main__":
    main()
