"""What quantization costs and buys, measured: the figures of ``book/data/quant/results.json``.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python -m llm_from_scratch.quantize measure --out book/data/quant/results.json

For two models, each in float32, int8 and int4 (groups of 32):

- the chapter-8 GPT (``book/data/quant/gpt_story``: 2 layers, C = 64, character tokens, trained
  by ``llm-scratch train`` at chapter 8's settings): bytes of ``model.safetensors``, validation
  bits per character on StoryWorld's validation text (every non-overlapping window of
  ``n_positions`` characters), greedy decoding speed at batch 1 with the key/value cache
  (tokens/s), each also with the tied head ``wte`` quantized;
- a wider GPT for decoding speed alone (``SPEED_CONFIG``: C = 768 as GPT-2 small, 6 layers,
  V = 4096, random weights from ``init_params``, 180 MB in float32), where reading the weights,
  not Python, is the cost of a token: tokens/s at batch 1, every variant;
- all-MiniLM-L6-v2 (found by ``llm_from_scratch.checkpoints``): bytes, the cosine similarity of
  each sentence embedding to the float32 one over ``SENTENCES`` (mean and min), and sentences/s
  encoded one at a time, each also with the word embedding table quantized;
- the matrix-vector product alone (batch 1), float32 ``x @ w`` against ``quantized_matmul``, for
  a few shapes from MiniLM (384 x 1536) to larger than the caches (2048 x 8192).

Speeds are medians of interleaved rounds (every variant timed once per round, as
``benchmarks/_bench.py`` does), so a busy spell on a shared machine hits all variants alike:
quote the ratios. ``load_results`` reads the file back (for the book); its keys are documented
in ``book/data/quant/README.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.quantize.checkpoint import save_quantized
from llm_from_scratch.quantize.core import quantize_int4, quantize_int8
from llm_from_scratch.quantize.matmul import quantized_matmul
from llm_from_scratch.quantize.models import is_quantized, quantize_params, quantized_ops

__all__ = ["GPT_CHECKPOINT", "VAL_CHARS", "SENTENCES", "VARIANTS", "MINILM_VARIANTS", "SPEED_CONFIG", "gpt_val_bpc", "minilm_embeddings",
           "median_seconds", "measure", "load_results", "main"]

REPO = Path(__file__).resolve().parents[2]
GPT_CHECKPOINT = REPO / "book" / "data" / "quant" / "gpt_story"
VAL_CHARS = 200_000  # chapter 8's validation text: StoryWorld().corpus("val", 200_000, seed=0)
FORMAT = 1
# name -> bits (None: float32) and the extra option: GPT's tied head, BERT's word embeddings
VARIANTS = {"float32": (None, False), "int8": (8, False), "int4": (4, False),
            "int8_tied_head": (8, True), "int4_tied_head": (4, True)}
MINILM_VARIANTS = {"float32": (None, False), "int8": (8, False), "int4": (4, False),
                   "int8_word_embeddings": (8, True), "int4_word_embeddings": (4, True)}
MATVEC_SHAPES = ((384, 1536), (1536, 384), (768, 3072), (2048, 8192))  # (C, OC)
SPEED_CONFIG = dict(vocab_size=4096, n_positions=256, n_embd=768, n_layer=6, n_head=12)  # GPTConfig fields

SENTENCES = [
    "Mia was in the park. She found a red ball.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The quick brown fox jumps over the lazy dog!",
    "Quantization stores each weight in fewer bits.",
    "The stock market fell sharply after the announcement.",
    "How do I reset my password?",
    "She plays the violin in an orchestra every weekend.",
    "The recipe needs two eggs, flour and a pinch of salt.",
    "Rain is expected in the north of the country tomorrow.",
    "GPT-2 and BERT (2018) are transformers; e.g. 110M parameters.",
    "Children are playing football on the beach.",
    "The patient was given antibiotics for the infection.",
    "A cat sleeps on the warm windowsill.",
    "The train to Paris leaves at half past nine.",
    "Don't stop believin' -- hold on to that feelin'",
]


def _storyworld_sentences(n: int) -> list[str]:
    from llm_from_scratch.data.storyworld import StoryWorld

    out = []
    for story in StoryWorld().stories("val", 64, seed=1):
        out.extend(s.strip() + "." for s in story.text.split(".") if s.strip())
    return out[:n]


def sentence_set() -> list[str]:
    """``SENTENCES`` (16 written ones) and the first 48 sentences of StoryWorld validation stories (seed 1)."""
    return SENTENCES + _storyworld_sentences(48)


# ----------------------------------------------------------------------------------------
# quality


def _logits(params, config, idx):
    from llm_from_scratch.kernels.backend import get_ops
    from llm_from_scratch.models.gpt import gpt_logits

    ops = quantized_ops("numba") if is_quantized(params) else get_ops("numba")
    return gpt_logits(params, config, idx, ops)[0]  # (B, T, V)


def gpt_val_bpc(params, config, ids: np.ndarray, chars_per_token: float = 1.0, windows: int | None = None,
                batch: int = 16) -> float:
    """Mean cross-entropy, in bits per character, over the non-overlapping windows of
    ``n_positions`` tokens of ``ids`` (the first ``windows`` of them, or all), each token
    predicting the next; float32 or quantized ``params``."""
    from llm_from_scratch import ops

    T = config.n_positions
    n = (len(ids) - 1) // T if windows is None else windows
    if n < 1 or n * T + 1 > len(ids):
        raise ValueError(f"{len(ids)} tokens do not hold {n} windows of {T} + 1")
    total = 0.0
    for b0 in range(0, n, batch):
        starts = np.arange(b0, min(n, b0 + batch)) * T  # (B,)
        idx = ids[starts[:, None] + np.arange(T)]  # (B, T)
        targets = ids[starts[:, None] + np.arange(1, T + 1)]  # (B, T)
        logits = _logits(params, config, idx).astype(np.float64)  # (B, T, V)
        loss, _ = ops.cross_entropy_forward(logits, targets)
        total += float(loss) * len(starts)
    return total / n / chars_per_token / math.log(2)


def minilm_embeddings(params, config, tokenizer, options, sentences) -> np.ndarray:
    """Sentence embeddings (N, C) as sentence-transformers makes them (``encode_sentences``)."""
    from llm_from_scratch.models.bert.embeddings import encode_sentences

    return encode_sentences(params, config, tokenizer, sentences, kernels="numba", **options)


# ----------------------------------------------------------------------------------------
# timing


def median_seconds(fns: dict, rounds: int) -> dict[str, float]:
    """Each function called once to warm up, then ``rounds`` interleaved rounds; the median of each."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _file_bytes(directory: Path) -> int:
    return (directory / "model.safetensors").stat().st_size


# ----------------------------------------------------------------------------------------
# the measurements


def _gpt_section(rounds: int, new_tokens: int, log) -> dict:
    from llm_from_scratch.data.storyworld import StoryWorld
    from llm_from_scratch.generate import generate
    from llm_from_scratch.models.gpt import save_pretrained
    from llm_from_scratch.pretrain import load_run

    params, config, tok = load_run(GPT_CHECKPOINT)
    val_text = StoryWorld().corpus("val", n_chars=VAL_CHARS, seed=0)
    ids = np.asarray(tok.encode(val_text), dtype=np.int64)
    cpt = len(val_text) / len(ids)
    prompt = np.asarray([tok.encode("mia was")], dtype=np.int64)
    variants = {name: params if bits is None else quantize_params(params, bits, tied_head=tied)
                for name, (bits, tied) in VARIANTS.items()}
    out = {"checkpoint": str(GPT_CHECKPOINT.relative_to(REPO)), "config": config.to_dict(),
           "val_chars": len(val_text), "windows": (len(ids) - 1) // config.n_positions,
           "prompt": "mia was", "new_tokens": new_tokens, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, p in variants.items():
            folder = Path(tmp) / name
            save_pretrained(p, config, folder) if name == "float32" else save_quantized(p, config, folder)
            t0 = time.perf_counter()
            bpc = gpt_val_bpc(p, config, ids, cpt)
            check = gpt_val_bpc(p, config, ids, cpt, windows=8)
            text = generate(p, config, prompt, new_tokens, greedy=True, kernels="numba")
            out["variants"][name] = {"bytes": _file_bytes(folder), "val_bpc": bpc, "check_bpc_8_windows": check,
                                     "greedy_text": tok.decode([int(t) for t in text[0]])}
            log(f"gpt {name}: {_file_bytes(folder):,} bytes, val bpc {bpc:.4f} ({time.perf_counter() - t0:.1f} s)")
    fns = {name: (lambda p=p: generate(p, config, prompt, new_tokens, greedy=True, kernels="numba"))
           for name, p in variants.items()}
    seconds = median_seconds(fns, rounds)
    base = out["variants"]["float32"]
    for name, v in out["variants"].items():
        v["decode_tokens_per_s"] = new_tokens / seconds[name]
        v["size_ratio"] = base["bytes"] / v["bytes"]
        v["speedup"] = seconds["float32"] / seconds[name]
        v["bpc_change"] = v["val_bpc"] - base["val_bpc"]
        v["same_greedy_text"] = v["greedy_text"] == base["greedy_text"]
        log(f"gpt {name}: {v['decode_tokens_per_s']:,.0f} tokens/s ({v['speedup']:.2f}x float32)")
    return out


def _gpt_speed_section(rounds: int, new_tokens: int, log) -> dict:
    from llm_from_scratch.generate import generate
    from llm_from_scratch.models.gpt import GPTConfig, init_params, num_params

    config = GPTConfig(**SPEED_CONFIG)
    params = init_params(config, seed=0)
    prompt = np.arange(8, dtype=np.int64)[None, :]  # (1, 8)
    variants = {name: params if bits is None else quantize_params(params, bits, tied_head=tied)
                for name, (bits, tied) in VARIANTS.items()}
    fns = {name: (lambda p=p: generate(p, config, prompt, new_tokens, greedy=True, kernels="numba"))
           for name, p in variants.items()}
    seconds = median_seconds(fns, rounds)
    out = {"config": config.to_dict(), "params": num_params(config), "new_tokens": new_tokens, "variants": {}}
    for name, p in variants.items():
        out["variants"][name] = {"weight_bytes": sum(v.nbytes for v in p.values()),
                                 "decode_tokens_per_s": new_tokens / seconds[name],
                                 "speedup": seconds["float32"] / seconds[name]}
        log(f"gpt_speed {name}: {new_tokens / seconds[name]:.1f} tokens/s "
            f"({seconds['float32'] / seconds[name]:.2f}x float32)")
    return out


def _minilm_section(rounds: int, log) -> dict:
    from llm_from_scratch.checkpoints import checkpoint_dir
    from llm_from_scratch.models import bert

    folder = checkpoint_dir()
    params, config = bert.from_pretrained(folder)
    tok, options = bert.load_wordpiece(folder), bert.read_sentence_options(folder)
    sentences = sentence_set()
    ref = minilm_embeddings(params, config, tok, options, sentences)  # (S, C)
    out = {"checkpoint": "all-MiniLM-L6-v2", "sentences": len(sentences), "variants": {}}
    variants = {name: params if bits is None else quantize_params(params, bits, word_embeddings=words)
                for name, (bits, words) in MINILM_VARIANTS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, p in variants.items():
            folder_out = Path(tmp) / name
            bert.save_pretrained(p, config, folder_out) if name == "float32" else save_quantized(p, config, folder_out)
            emb = ref if name == "float32" else minilm_embeddings(p, config, tok, options, sentences)
            cos = (emb.astype(np.float64) * ref).sum(axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
            out["variants"][name] = {"bytes": _file_bytes(folder_out), "cosine_mean": float(cos.mean()),
                                     "cosine_min": float(cos.min()), "cosine": [float(c) for c in cos]}
            log(f"minilm {name}: {_file_bytes(folder_out):,} bytes, cosine mean {cos.mean():.5f} min {cos.min():.5f}")
    timed = SENTENCES[:8]
    fns = {name: (lambda p=p: [minilm_embeddings(p, config, tok, options, [s]) for s in timed])
           for name, p in variants.items()}
    seconds = median_seconds(fns, rounds)
    base = out["variants"]["float32"]
    for name, v in out["variants"].items():
        v["sentences_per_s"] = len(timed) / seconds[name]
        v["size_ratio"] = base["bytes"] / v["bytes"]
        v["speedup"] = seconds["float32"] / seconds[name]
        log(f"minilm {name}: {v['sentences_per_s']:.1f} sentences/s ({v['speedup']:.2f}x float32)")
    return out


def _matvec_section(rounds: int, log) -> list:
    rng = np.random.default_rng(0)
    rows = []
    for C, OC in MATVEC_SHAPES:
        w = rng.standard_normal((C, OC)).astype(np.float32)  # (C, OC)
        x = rng.standard_normal((1, C)).astype(np.float32)  # (1, C)
        q8, q4 = quantize_int8(w), quantize_int4(w, 32)
        reps = max(1, int(2e6 // (C * OC) * 4))  # calls per timing, so that one timing is about a millisecond
        fns = {"float32": lambda: [x @ w for _ in range(reps)],
               "int8": lambda: [quantized_matmul(x, q8) for _ in range(reps)],
               "int4": lambda: [quantized_matmul(x, q4) for _ in range(reps)]}
        s = median_seconds(fns, rounds)
        row = {"C": C, "OC": OC, "float32_bytes": w.nbytes, "int8_bytes": q8.nbytes, "int4_bytes": q4.nbytes,
               **{f"{k}_us": s[k] / reps * 1e6 for k in fns},
               "int8_speedup": s["float32"] / s["int8"], "int4_speedup": s["float32"] / s["int4"]}
        rows.append(row)
        log(f"matvec {C}x{OC}: float32 {row['float32_us']:.1f} us, int8 {row['int8_us']:.1f} us "
            f"({row['int8_speedup']:.2f}x), int4 {row['int4_us']:.1f} us ({row['int4_speedup']:.2f}x)")
    return rows


def _machine() -> dict:
    import numba

    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "processor": _cpu_name(), "cores": os.cpu_count(), "numba_threads": numba.get_num_threads(),
            "thread_environment": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                                  "NUMBA_NUM_THREADS")},
            "date": time.strftime("%Y-%m-%d", time.gmtime())}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(rounds: int = 7, new_tokens: int = 200, log=print) -> dict:
    """All the measurements of the module docstring, as the dict written to ``results.json``."""
    return {"format": FORMAT, "command": "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 "
                                         "python -m llm_from_scratch.quantize measure --out book/data/quant/results.json",
            "machine": _machine(), "rounds": rounds,
            "gpt": _gpt_section(rounds, new_tokens, log), "gpt_speed": _gpt_speed_section(rounds, 32, log),
            "minilm": _minilm_section(rounds, log),
            "matvec": _matvec_section(rounds, log)}


_REQUIRED = {"gpt": ("variants", "config", "windows"), "gpt_speed": ("variants", "config"),
             "minilm": ("variants", "sentences"), "matvec": ()}


def load_results(path) -> dict:
    """Read a ``results.json`` written by ``measure``, checking that it has the sections and
    variants the book reads (see ``book/data/quant/README.md`` for every key)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such results file; make it with: python -m llm_from_scratch.quantize "
                                "measure --out FILE") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path}: expected a quantization results file of format {FORMAT}")
    for section, keys in _REQUIRED.items():
        if section not in d or any(k not in d[section] for k in keys):
            raise ValueError(f"{path}: section {section!r} is missing or lacks one of {keys}")
    for section, names in (("gpt", VARIANTS), ("gpt_speed", VARIANTS), ("minilm", MINILM_VARIANTS)):
        missing = [n for n in names if n not in d[section]["variants"]]
        if missing:
            raise ValueError(f"{path}: {section} variants {missing} are missing")
    return d


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_from_scratch.quantize",
                                     description="measure size, speed and quality of quantized models")
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="write the measurements of book/data/quant/results.json")
    m.add_argument("--out", required=True, help="the JSON file to write")
    m.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median reported)")
    m.add_argument("--new-tokens", type=int, default=200, help="tokens decoded per timed generation")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.new_tokens < 1:
        parser.error("--rounds and --new-tokens must be at least 1")
    results = measure(args.rounds, args.new_tokens)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0
