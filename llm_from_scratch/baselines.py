"""Baselines that later chapters compare against, recomputed by a command and committed small.

Chapter 3 trains an MLP language model on StoryWorld characters and scores it on the validation
text; chapter 8 measures its GPT against that number. Training the MLP takes about a minute, more
than chapter 8 can spend on a number it only quotes, so ``llm-scratch baseline mlp`` runs chapter
3's training with chapter 3's settings and writes the result as one small JSON file
(``book/data/baselines/mlp_storyworld.json``), which chapter 8 loads. The record carries every
setting, the validation curve and the final score, so that a test can re-run the first few
hundred steps and compare them with the committed curve (:func:`mlp_baseline` with
``stop_after``).

Chapter 8 asks what size of GPT a minute of one core buys, and answers with trials that take five
minutes together: ``llm-scratch baseline gpt-trials`` trains each shape in ``GPT_TRIAL_SHAPES``
for the steps that fit the budget on the machine that runs it and writes one record
(``book/data/baselines/gpt_trials.json``) with each trial's loss curve, seconds and score.

What is left out: the n-gram baselines (they fit in under a second, so chapters refit them).

Reference: Bengio et al. (2003), "A Neural Probabilistic Language Model", JMLR 3 (the model);
chapter 3 of the book (the settings).
"""

from __future__ import annotations

import contextlib
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


def _merged(defaults: dict, overrides: dict | None, what: str) -> dict:
    """``defaults`` updated by ``overrides``, refusing a key that ``defaults`` lacks."""
    merged = dict(defaults, **(overrides or {}))
    unknown = set(merged) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {what} settings {sorted(unknown)}; expected some of {sorted(defaults)}")
    return merged


def _machine() -> str:
    return f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


@contextlib.contextmanager
def one_thread():
    """BLAS and numba on one thread each, as the chapters train, so every sum is added in the same
    order; numba's thread count is restored afterwards."""
    import numba
    from threadpoolctl import threadpool_limits

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(threads)


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

    s = _merged(MLP_SETTINGS, settings, "MLP baseline")
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
        "machine": _machine(),
    }


def write_mlp_baseline(path) -> dict:
    """Run :func:`mlp_baseline` on one thread (so every sum is added in the same order) and write
    its record to ``path`` as JSON, atomically."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        record = mlp_baseline()
    atomic_write(Path(path), json.dumps(record, indent=1) + "\n")
    return record


def read_baseline(path, kind: str = "mlp") -> dict:
    """A committed baseline record of ``kind`` ("mlp" or "gpt-trials", as ``llm-scratch baseline``
    names them), checked for the fields chapters read.

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
    fields = {"mlp": ("settings", "val_curve", "val_bpc"), "gpt-trials": ("settings", "trials", "machine")}
    if kind not in fields:
        raise ValueError(f"kind must be one of {sorted(fields)}, got {kind!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no baseline record at {path}; write it with: llm-scratch baseline {kind} --out {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    for field in fields[kind]:
        if field not in record:
            raise ValueError(f"{path} has no {field!r}; expected a record written by llm-scratch baseline {kind}")
    return record


# Chapter 8's question, "what size of GPT does a minute of one core buy?", as trials: each shape
# trains for the steps that fit the budget on the machine that runs them, with chapter 8's recipe
# (book/08_pretraining.ipynb), and is scored on the same validation characters.
GPT_TRIAL_SETTINGS = {
    "data": "storyworld", "n_chars": 2_000_000, "data_seed": 0, "tokenizer": "char", "n_head": 4,
    "lr": 6e-3, "min_lr": 6e-4, "warmup_steps": 100, "seed": 0, "kernels": "numba",
    "budget_seconds": 60.0, "score_chars": 50_000, "loss_every": 10,
}
GPT_TRIAL_SHAPES = [   # (n_layer, n_embd, batch_size, block_size); the third is chapter 8's model
    (4, 128, 4, 256),
    (4, 64, 4, 256),
    (2, 64, 4, 256),
    (2, 64, 8, 256),
    (2, 64, 8, 128),
]


def _trial_config(shape, steps: int, s: dict):
    from llm_from_scratch.train import TrainConfig

    _, _, batch_size, block_size = shape
    return TrainConfig(steps=steps, batch_size=batch_size, block_size=block_size, lr=s["lr"],
                       min_lr=s["min_lr"], warmup_steps=min(s["warmup_steps"], steps // 10),
                       eval_every=0, checkpoint_every=0, seed=s["seed"])


def _trial_run(shape, steps: int, s: dict, corpus, stop_after: int | None = None):
    from llm_from_scratch.pretrain import pretrain_gpt

    n_layer, n_embd, _, _ = shape
    return pretrain_gpt(None, data=s["data"], n_chars=s["n_chars"], tokenizer=s["tokenizer"], n_layer=n_layer,
                        n_head=s["n_head"], n_embd=n_embd, train_config=_trial_config(shape, steps, s),
                        kernels=s["kernels"], seed=s["seed"], progress=False, stop_after=stop_after,
                        corpus=corpus)


def gpt_trial(shape, steps: int | None = None, stop_after: int | None = None, settings: dict | None = None,
              corpus=None) -> dict:
    """Train one GPT shape ``(n_layer, n_embd, batch_size, block_size)`` with chapter 8's recipe
    and score it; a JSON-ready record.

    ``steps=None`` sizes the run to the budget: 20 timed steps (after 5 that compile the kernels)
    give the seconds per step, and the run takes ``budget_seconds`` of them, rounded down to a
    multiple of 10. The record holds the training loss every ``loss_every`` steps
    (``loss_curve``), the seconds the steps took, and ``val_bpc``: bits per character on the
    first ``score_chars`` validation characters, each scored once with up to T characters of
    context (windows every T/2). ``stop_after`` trains only the first steps of the same
    schedule and scores nothing: a cheap check of a committed record.

    >>> r = gpt_trial((1, 16, 2, 32), steps=20, settings={"n_chars": 20_000, "score_chars": 500,
    ...                                                   "loss_every": 5})
    >>> r["steps"], [step for step, _ in r["loss_curve"]], 0 < r["val_bpc"] < 8
    (20, [5, 10, 15, 20], True)
    """
    from llm_from_scratch.evaluate import token_logprobs
    from llm_from_scratch.models.gpt import num_params
    from llm_from_scratch.pretrain import load_corpus

    s = _merged(GPT_TRIAL_SETTINGS, settings, "GPT trial")
    shape = tuple(int(v) for v in shape)
    corpus = corpus or load_corpus(s["data"], s["n_chars"], s["data_seed"])
    step_seconds = None
    if steps is None:
        _trial_run(shape, 1000, s, corpus, stop_after=5)   # compiles the kernels for this shape
        timed = _trial_run(shape, 1000, s, corpus, stop_after=20)
        step_seconds = timed.result.seconds / 20
        steps = max(10, int(s["budget_seconds"] / step_seconds) // 10 * 10)
    run = _trial_run(shape, steps, s, corpus, stop_after=stop_after)
    losses = run.result.history["loss"]
    every = s["loss_every"]
    record = {
        "shape": {"n_layer": shape[0], "n_embd": shape[1], "batch_size": shape[2], "block_size": shape[3]},
        "n_params": int(num_params(run.config)),
        "steps": int(steps),
        "steps_trained": len(losses),
        "loss_curve": [[i + 1, float(losses[i])] for i in range(every - 1, len(losses), every)],
        "seconds": round(run.result.seconds, 2),
        "step_seconds_timed": step_seconds,
        "val_bpc": None,
    }
    if len(losses) == steps:
        T = run.config.n_positions
        ids = run.val_tokens[:s["score_chars"]]
        logp = token_logprobs(run.params, run.config, ids, stride=T // 2, kernels=s["kernels"])
        record["val_bpc"] = float(-logp.mean() / LN2 / run.chars_per_token)
    return record


def gpt_trials(settings: dict | None = None, shapes=None) -> dict:
    """:func:`gpt_trial` for every shape in ``GPT_TRIAL_SHAPES``, on one thread (BLAS and numba),
    as chapter 8 trains; one JSON-ready record with the settings and the machine."""
    from llm_from_scratch.pretrain import load_corpus

    s = _merged(GPT_TRIAL_SETTINGS, settings, "GPT trial")
    corpus = load_corpus(s["data"], s["n_chars"], s["data_seed"])
    with one_thread():
        trials = [gpt_trial(shape, settings=s, corpus=corpus) for shape in (shapes or GPT_TRIAL_SHAPES)]
    return {"settings": s, "trials": trials, "machine": _machine()}


def write_gpt_trials(path) -> dict:
    """Run :func:`gpt_trials` and write its record to ``path`` as JSON, atomically."""
    record = gpt_trials()
    atomic_write(Path(path), json.dumps(record, indent=1) + "\n")
    return record
