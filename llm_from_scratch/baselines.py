"""Baselines that later chapters compare against, recomputed by a command and committed small.

Chapter 3 trains an MLP language model on StoryWorld characters and scores it on the validation
text; chapter 8 measures its GPT against that number. Training the MLP takes about a minute, more
than chapter 8 can spend on a number it only quotes, so ``llm-scratch baseline mlp`` runs chapter
3's training with chapter 3's settings and writes the result as one small JSON file
(``book/data/baselines/mlp_storyworld.json``), which chapter 8 loads. The record carries every
setting, the validation curve and the final score, so that a test can re-run the first few
hundred steps and compare them with the committed curve (:func:`mlp_baseline` with
``stop_after``).

What is left out: the n-gram baselines (they fit in under a second, so chapters refit them).

Reference: Bengio et al. (2003), "A Neural Probabilistic Language Model", JMLR 3 (the model);
chapter 3 of the book (the settings).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from llm_from_scratch.fileio import atomic_write

LN2 = math.log(2.0)   # nats per bit

# chapter 3's settings: data, model and training (book/03_neural_networks.ipynb)
MLP_SETTINGS = {
    "data": "storyworld", "train_chars": 2_000_000, "val_chars": 200_000, "data_seed": 0,
    "tokenizer": "char", "context": 32, "n_embd": 12, "n_hidden": 384, "init_seed": 0,
    "steps": 3000, "batch_size": 512, "lr": 3e-3, "weight_decay": 0.01, "warmup": 100,
    "clip": 1.0, "eval_every": 300, "eval_chars": 25_000, "seed": 0,
}


def mlp_baseline(stop_after: int | None = None, settings: dict | None = None) -> dict:
    """Train chapter 3's MLP language model and score it on StoryWorld's validation characters.

    Returns a JSON-ready record: ``settings``, ``n_params``, ``val_curve`` (``[step, bits per
    character on the first eval_chars validation characters]`` every ``eval_every`` steps),
    ``val_bpc`` (bits per character on every validation character from position ``context`` on,
    the number chapter 3 reports; only for a complete run), ``seconds`` and ``machine``.
    ``stop_after`` trains only the first steps of the same schedule, which give the first points
    of the same curve: a cheap check of a committed record.

    >>> record = mlp_baseline(stop_after=2, settings={"train_chars": 20_000, "val_chars": 2_000,
    ...                       "steps": 10, "warmup": 2, "eval_every": 2,
    ...                       "eval_chars": 1_000})
    >>> [step for step, _ in record["val_curve"]], record["val_bpc"] is None
    ([2], True)
    """
    from llm_from_scratch.data import StoryWorld
    from llm_from_scratch.models.mlp import MLPConfig, evaluate, init_params, train_mlp
    from llm_from_scratch.tokenizers import CharTokenizer

    s = dict(MLP_SETTINGS, **(settings or {}))
    unknown = set(s) - set(MLP_SETTINGS)
    if unknown:
        raise ValueError(f"unknown MLP baseline settings {sorted(unknown)}; expected some of {sorted(MLP_SETTINGS)}")
    world = StoryWorld()
    train_text = world.corpus("train", n_chars=s["train_chars"], seed=s["data_seed"])
    val_text = world.corpus("val", n_chars=s["val_chars"], seed=s["data_seed"])
    tok = CharTokenizer.from_text(train_text)
    train_ids = np.array(tok.encode(train_text), dtype=np.int64)   # (N_train,)
    val_ids = np.array(tok.encode(val_text), dtype=np.int64)       # (N_val,)
    config = MLPConfig(vocab_size=tok.vocab_size, context=s["context"], n_embd=s["n_embd"],
                       n_hidden=s["n_hidden"])
    params = init_params(config, seed=s["init_seed"])
    start = time.perf_counter()
    history = train_mlp(params, config, train_ids, val_ids[:s["eval_chars"]], steps=s["steps"],
                        batch_size=s["batch_size"], lr=s["lr"], weight_decay=s["weight_decay"],
                        warmup=s["warmup"], eval_every=s["eval_every"], clip=s["clip"], seed=s["seed"],
                        progress=False, stop_after=stop_after)
    complete = stop_after is None or stop_after == s["steps"]
    val_bpc = evaluate(params, val_ids, config.context) / LN2 if complete else None
    return {
        "settings": s,
        "vocab_size": tok.vocab_size,
        "n_params": int(sum(p.size for p in params.values())),
        "steps_trained": len(history["step"]),
        "val_curve": [[int(step), float(loss / LN2)] for step, loss in zip(history["val_step"], history["val_loss"])],
        "val_bpc": None if val_bpc is None else float(val_bpc),
        "val_targets": int(len(val_ids) - config.context),
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }


def write_mlp_baseline(path) -> dict:
    """Run :func:`mlp_baseline` on one thread (so every sum is added in the same order) and write
    its record to ``path`` as JSON, atomically."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        record = mlp_baseline()
    atomic_write(Path(path), json.dumps(record, indent=1) + "\n")
    return record


def read_baseline(path) -> dict:
    """A committed baseline record, checked for the fields chapters read.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "b.json"
    >>> _ = path.write_text('{"val_bpc": 0.4}')
    >>> try:
    ...     read_baseline(path)
    ... except ValueError as exc:
    ...     print(str(exc).split(" has ")[1])
    no 'settings'; expected a record written by llm-scratch baseline mlp
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no baseline record at {path}; write it with: llm-scratch baseline mlp --out {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    for field in ("settings", "val_curve", "val_bpc"):
        if field not in record:
            raise ValueError(f"{path} has no {field!r}; expected a record written by llm-scratch baseline mlp")
    return record
