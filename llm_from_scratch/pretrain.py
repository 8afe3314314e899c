"""Pretrain a GPT on a corpus end to end: text, tokenizer, model, training loop, checkpoints.

This is the glue behind ``llm-scratch train`` and chapter 8: it picks the text (StoryWorld, the
Python standard library, or a file of the reader's), trains a character or byte-level BPE
tokenizer on the training part, builds a ``GPTConfig``, and runs ``llm_from_scratch.train.train``
with ``gpt_forward`` / ``gpt_backward``. Each checkpoint folder is also a Hugging Face GPT-2
checkpoint (``config.json`` + ``model.safetensors``) with the tokenizer beside it
(``tokenizer.json``), so ``load_run`` — and ``transformers`` — can read it back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_from_scratch.data import StoryWorld
from llm_from_scratch.data.realtext import load_text_file, python_stdlib_text
from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.models.gpt import GPTConfig, from_pretrained, gpt_backward, gpt_forward, init_params, save_pretrained
from llm_from_scratch.tokenizers import ByteBPETokenizer, CharTokenizer, load_tokenizer
from llm_from_scratch.train import TrainConfig, TrainResult, latest_checkpoint, train

__all__ = ["load_corpus", "build_tokenizer", "Run", "pretrain_gpt", "load_run", "bits_per_char"]


def load_corpus(data: str = "storyworld", n_chars: int = 1_000_000, seed: int = 0,
                val_fraction: float = 0.1) -> tuple[str, str]:
    """``(train_text, val_text)`` for ``data`` = "storyworld", "stdlib" or a path to a UTF-8 file.

    StoryWorld's validation text comes from its own split (no story is in both); the other two
    are cut at ``1 - val_fraction`` of the text.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if data == "storyworld":
        world = StoryWorld()
        return (world.corpus("train", n_chars=n_chars, seed=seed),
                world.corpus("val", n_chars=max(1, int(n_chars * val_fraction)), seed=seed))
    if data == "stdlib":
        text = python_stdlib_text(max_bytes=int(n_chars * (1 + val_fraction)))
    else:
        path = Path(data)
        if not path.is_file():
            raise FileNotFoundError(f"--data must be 'storyworld', 'stdlib' or a path to a text file; "
                                    f"{data!r} is neither")
        text = load_text_file(path)
    cut = int(len(text) * (1 - val_fraction))
    if cut < 2 or len(text) - cut < 2:
        raise ValueError(f"the text from {data!r} has only {len(text)} characters: too short to split into "
                         f"training and validation parts")
    return text[:cut], text[cut:]


def build_tokenizer(kind: str, train_text: str, vocab_size: int = 512):
    """A character tokenizer of the training text, or a byte-level BPE trained on it (numba)."""
    if kind == "char":
        return CharTokenizer.from_text(train_text)
    if kind == "bpe":
        if vocab_size < 257:
            raise ValueError(f"a byte-level BPE vocabulary needs more than the 256 bytes, got vocab_size={vocab_size}")
        return ByteBPETokenizer().train(train_text, vocab_size, impl="numba")
    raise ValueError(f"unknown tokenizer {kind!r}; expected 'char' or 'bpe'")


def _encode(tokenizer, text: str) -> np.ndarray:
    if isinstance(tokenizer, CharTokenizer):
        # characters of the validation text unseen in training would have no id: refuse clearly
        unknown = sorted(set(text) - set(tokenizer.chars))
        if unknown:
            raise ValueError(f"the text has characters the tokenizer has never seen: {unknown[:10]}; "
                             f"use --tokenizer bpe, which covers every byte")
    return np.asarray(tokenizer.encode(text), dtype=np.int64)


@dataclass
class Run:
    params: dict
    config: GPTConfig
    tokenizer: object
    result: TrainResult | None
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    chars_per_token: float   # of the validation text: converts nats per token into bits per character


def pretrain_gpt(out_dir=None, data: str = "storyworld", n_chars: int = 1_000_000, tokenizer="char",
                 vocab_size: int = 512, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 train_config: TrainConfig | None = None, kernels: str = "numba", seed: int = 0,
                 resume: bool = False, progress: bool = True, stop_after: int | None = None,
                 corpus: tuple[str, str] | None = None) -> Run:
    """Train a GPT from scratch on ``data``; see the module docstring. Returns a ``Run``.

    ``corpus``, if given, is the ``(train_text, val_text)`` to use instead of ``load_corpus``'s
    (for instance StoryWorld text with planted secrets, in ``llm_from_scratch.privacy``);
    ``tokenizer`` is "char", "bpe", or a tokenizer object to use as it is."""
    tc = train_config or TrainConfig()
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file: the output of a run is a folder (metrics, checkpoints, tokenizer); "
                         f"choose another path")
    train_text, val_text = corpus if corpus is not None else load_corpus(data, n_chars, seed)
    ckpt = latest_checkpoint(out) if resume and out is not None else None
    loaded = ckpt is not None and (ckpt / "tokenizer.json").exists()
    if loaded:  # the checkpoint's own copy: complete, whatever a kill did to out/tokenizer.json
        tok = load_tokenizer(ckpt / "tokenizer.json")
    elif isinstance(tokenizer, str):
        tok = build_tokenizer(tokenizer, train_text, vocab_size)
    else:  # a tokenizer made by the caller (say, characters that the training text may lack)
        tok, tokenizer = tokenizer, type(tokenizer).__name__
    train_tokens, val_tokens = _encode(tok, train_text), _encode(tok, val_text)
    V = tok.vocab_size
    config = GPTConfig(vocab_size=V, n_positions=tc.block_size, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    if out is not None and not loaded:  # a resumed run leaves them as they are
        out.mkdir(parents=True, exist_ok=True)
        tok.save(out / "tokenizer.json")
        atomic_write(out / "run.json", json.dumps({"data": data, "n_chars": n_chars, "tokenizer": tokenizer,
                                                   "seed": seed, "kernels": kernels}, indent=1))
    params = init_params(config, seed=seed)

    def loss_and_grads(p, x, y):
        _, loss, cache = gpt_forward(p, config, x, y, kernels=kernels)
        return loss, gpt_backward(cache)

    def loss_fn(p, x, y):
        return gpt_forward(p, config, x, y, kernels=kernels)[1]

    def save_model(p, directory):
        save_pretrained(p, config, directory)
        tok.save(Path(directory) / "tokenizer.json")

    result = train(loss_and_grads, loss_fn, params, train_tokens, val_tokens, tc, out_dir=out, resume=resume,
                   save_model=save_model, progress=progress, stop_after=stop_after)
    return Run(params, config, tok, result, train_tokens, val_tokens, len(val_text) / max(len(val_tokens), 1))


def load_run(path) -> tuple[dict, GPTConfig, object]:
    """``(params, config, tokenizer)`` from a run folder (its latest checkpoint) or a checkpoint folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    ckpt = path if (path / "config.json").exists() else latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(f"{path} holds no checkpoint: expected config.json + model.safetensors, "
                                f"or a run folder with a 'latest' checkpoint")
    params, config = from_pretrained(ckpt)
    tok_path = ckpt / "tokenizer.json"
    if not tok_path.exists():
        raise FileNotFoundError(f"{ckpt} has no tokenizer.json: it was not written by llm-scratch train")
    return params, config, load_tokenizer(tok_path)


def bits_per_char(nats_per_token: float, chars_per_token: float) -> float:
    """Convert a loss in nats per token into bits per character."""
    return nats_per_token / chars_per_token / math.log(2)
