"""The measurements of the data-and-privacy chapter, as functions that return JSON records.

Four experiments on StoryWorld, each small enough for a laptop CPU and seeded end to end:

- ``canaries``: secrets planted 1, 4, 16 and 64 times in the training stories; after ordinary
  training, each one's exposure (exact, ranked against all 10^4 candidates) and whether greedy
  decoding reads it out.
- ``membership``: a GPT trained for many passes over a few hundred stories; the loss-threshold
  attack's AUC (training against held-out stories) as training goes on and as the model grows.
- ``duplication``: stories repeated 1 to 32 times in the training text; how often the first
  characters of a story make greedy decoding reproduce the rest of it (after Kandpal et al. 2022).
- ``dpsgd``: the same stories and canaries trained with DP-SGD at several noise levels, each
  with its (epsilon, delta) from the accountant, its validation bits per character, its canaries'
  exposure and its membership AUC: the privacy-utility trade-off.

``run(name, **settings)`` runs one of them; ``llm-scratch privacy --out DIR`` runs them all and
writes one JSON-lines file per experiment, which the chapter loads. The unit of privacy in
``dpsgd`` is one document: a story, or one planted copy of a canary sentence.

Reference: N. Kandpal, E. Wallace, C. Raffel, "Deduplicating Training Data Mitigates Privacy
Risks in Language Models", ICML 2022 (duplication and extraction).
"""

from __future__ import annotations

import math
import time

import numpy as np

from llm_from_scratch.data import StoryWorld
from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.gpt import GPTConfig, gpt_logits, init_params
from llm_from_scratch.optim import AdamW, warmup_cosine
from llm_from_scratch.privacy.accountant import epsilon
from llm_from_scratch.privacy.canaries import canary_report, make_canaries, plant_canaries, story_bits
from llm_from_scratch.privacy.dpsgd import dp_sgd_gradient, per_example_grads
from llm_from_scratch.privacy.memorization import roc_auc
from llm_from_scratch.tokenizers import CharTokenizer

__all__ = ["EXPERIMENTS", "run", "train_dp", "encode_documents"]

DIGITS = "0123456789"


def _stories(n_train: int, n_val: int, seed: int) -> tuple[list[str], list[str]]:
    world = StoryWorld()
    return ([s.text for s in world.stories("train", n_train, seed=seed)],
            [s.text for s in world.stories("val", n_val, seed=seed + 1)])


def _tokenizer(*texts: str) -> CharTokenizer:
    return CharTokenizer.from_text("".join(texts) + DIGITS)  # every digit, so every candidate secret encodes


def _train(train_text: str, val_text: str, tok, n_layer: int, n_embd: int, steps: int, seed: int,
           block_size: int = 128, lr: float = 3e-3):
    """An ordinary (non-private) training run of the chapter-8 GPT; returns ``(params, config)``."""
    from llm_from_scratch.pretrain import pretrain_gpt
    from llm_from_scratch.train import TrainConfig

    tc = TrainConfig(steps=steps, batch_size=16, block_size=block_size, lr=lr, warmup_steps=min(50, steps // 10),
                     eval_every=0, seed=seed)
    run = pretrain_gpt(None, corpus=(train_text, val_text), tokenizer=tok, n_layer=n_layer, n_head=4, n_embd=n_embd,
                       train_config=tc, seed=seed, progress=False)
    return run.params, run.config


def _mean_bits(params, config, tok, stories: list[str]) -> float:
    """Bits per character over whole stories (each read from a line start, cut to the context)."""
    per_story = story_bits(params, config, tok, stories)
    lengths = np.array([min(len(s.rstrip("\n")), config.n_positions) for s in stories])  # characters predicted
    return float((per_story * lengths).sum() / lengths.sum())


def canaries(repeats=(1, 4, 16, 64), seeds=(0, 1, 2), n_stories: int = 1000, steps: int = 800, n_layer: int = 2,
             n_embd: int = 64) -> list[dict]:
    """Secrets planted ``repeats`` times in ``n_stories`` training stories; one record per canary
    and seed (each seed: other stories, other secrets, another initialisation)."""
    records = []
    for seed in seeds:
        train, val = _stories(n_stories, 200, seed)
        planted = make_canaries(repeats, 4, seed=seed)
        text = plant_canaries("".join(train), planted, seed=seed)
        tok = _tokenizer(text, "".join(val))
        start = time.perf_counter()
        params, config = _train(text, "".join(val), tok, n_layer, n_embd, steps, seed)
        for c in planted:
            records.append({"experiment": "canaries", "seed": seed, "n_stories": n_stories, "steps": steps,
                            "n_layer": n_layer, "n_embd": n_embd, **canary_report(params, config, tok, c),
                            "seconds": round(time.perf_counter() - start, 1)})
    return records


def membership(n_train: int = 300, n_val: int = 300, steps=(250, 500, 1000, 2000), sizes=(32, 64, 128),
               size_steps: int = 1000, seed: int = 0) -> list[dict]:
    """The loss-threshold attack on ``n_train`` training stories against ``n_val`` held-out ones:
    AUC as training goes on (at width 64), and as the model grows (at ``size_steps`` steps)."""
    train, val = _stories(n_train, n_val, seed)
    tok = _tokenizer(*train, *val)
    by_steps = [(64, s) for s in steps]  # (width, steps): the training-length series, then the sizes
    settings = by_steps + [(c, size_steps) for c in sizes if (c, size_steps) not in by_steps]
    records = []
    for n_embd, n_steps in settings:
        params, config = _train("".join(train), "".join(val), tok, 2, n_embd, n_steps, seed)
        members, others = story_bits(params, config, tok, train), story_bits(params, config, tok, val)
        records.append({"experiment": "membership", "seed": seed, "n_train": n_train, "n_val": n_val,
                        "n_embd": n_embd, "steps": n_steps, "passes": round(n_steps * 16 * 128 / len("".join(train)), 2),
                        "auc": roc_auc(-members, -others), "member_bits": float(members.mean()),
                        "nonmember_bits": float(others.mean()),
                        "member_scores": [round(float(x), 5) for x in members],
                        "nonmember_scores": [round(float(x), 5) for x in others]})
    return records


def _extracted(params, config, tok, story: str, prompt_chars: int, new_chars: int) -> bool:
    """Does greedy decoding from the story's first ``prompt_chars`` characters reproduce its next
    ``new_chars`` exactly?"""
    from llm_from_scratch.generate import generate

    text = "\n" + story.rstrip("\n")
    idx = np.array([tok.encode(text[:prompt_chars + 1])])
    out = generate(params, config, idx, new_chars, greedy=True, kernels="numba")
    return tok.decode([int(t) for t in out[0, idx.shape[1]:]]) == text[prompt_chars + 1:prompt_chars + 1 + new_chars]


def duplication(counts=(1, 2, 4, 8, 16, 32), per_count: int = 10, n_stories: int = 1000, steps: int = 1500,
                prompt_chars: int = 32, new_chars: int = 48, seed: int = 0) -> list[dict]:
    """``per_count`` stories repeated k times for each k in ``counts`` (among ``n_stories`` unique
    training stories): the share that greedy decoding reproduces, against unseen stories (k = 0)."""
    world = StoryWorld()
    long_enough = [s.text for s in world.stories("train", n_stories + 400, seed=seed)
                   if len(s.text) > prompt_chars + new_chars + 2]
    base, dup_pool = long_enough[:n_stories], long_enough[n_stories:]
    unseen = [s.text for s in world.stories("val", 200, seed=seed + 1) if len(s.text) > prompt_chars + new_chars + 2]
    groups = {k: dup_pool[i * per_count:(i + 1) * per_count] for i, k in enumerate(counts)}
    docs = base + [s for k, group in groups.items() for s in group for _ in range(k)]
    rng = np.random.default_rng(seed)
    text = "".join(docs[i] for i in rng.permutation(len(docs)))
    tok = _tokenizer(text, *unseen)
    params, config = _train(text, "".join(unseen), tok, 2, 64, steps, seed)
    records = []
    for k, group in [(0, unseen[:per_count])] + list(groups.items()):
        hits = [_extracted(params, config, tok, s, prompt_chars, new_chars) for s in group]
        records.append({"experiment": "duplication", "seed": seed, "copies": k, "stories": len(group),
                        "extracted": int(sum(hits)), "rate": float(np.mean(hits)), "steps": steps,
                        "prompt_chars": prompt_chars, "new_chars": new_chars})
    return records


def encode_documents(tok, docs: list[str], T: int) -> tuple[np.ndarray, np.ndarray]:
    """One training example per document: ``"\\n" + doc`` cut to T + 1 tokens; ``(idx, targets)``
    (N, T), padded with id 0 and target -100."""
    idx = np.zeros((len(docs), T), dtype=np.int64)  # (N, T)
    targets = np.full((len(docs), T), -100, dtype=np.int64)  # (N, T)
    for i, doc in enumerate(docs):
        ids = tok.encode("\n" + doc.rstrip("\n"))[:T + 1]
        idx[i, :len(ids) - 1] = ids[:-1]
        targets[i, :len(ids) - 1] = ids[1:]
    return idx, targets


def train_dp(params: dict, config: GPTConfig, idx: np.ndarray, targets: np.ndarray, steps: int,
             sample_rate: float, noise_multiplier: float, max_norm: float, lr: float, seed: int) -> list[float]:
    """DP-SGD on the examples ``(idx, targets)``: every step samples each example with probability
    ``sample_rate`` (Poisson sampling, as the accountant assumes), takes their per-example
    gradients, clips, adds noise and steps AdamW (noise 0 and ``max_norm`` inf: plain training on
    the same batches). Trains ``params`` in place; returns the noisy-free mean loss of each batch."""
    rng = np.random.default_rng(seed)
    opt = AdamW(lr, weight_decay=0.0)
    N = idx.shape[0]
    expected = sample_rate * N
    losses = []
    K = get_ops("numpy")
    for step in range(steps):
        chosen = np.flatnonzero(rng.random(N) < sample_rate)  # Poisson sampling
        if chosen.size == 0:  # nobody sampled: the step releases noise alone
            per = {name: np.zeros((1,) + p.shape, p.dtype) for name, p in params.items()}
        else:
            width = int((targets[chosen] != -100).sum(axis=1).max())  # trim the common padding
            x, y = idx[chosen, :width], targets[chosen, :width]
            per = per_example_grads(params, config, x, y)
            logits, _ = gpt_logits(params, config, x, K)
            losses.append(float(K.cross_entropy_forward(logits, y)[0]))
        grads, _ = dp_sgd_gradient(per, max_norm, noise_multiplier, expected, rng)
        opt.lr = warmup_cosine(step, lr, min(20, steps // 10), steps)
        opt.step(params, grads)
    return losses


def dpsgd(noise_multipliers=(0.0, 0.5, 1.0, 2.0), max_norm: float = 1.0, n_stories: int = 600, steps: int = 400,
          sample_rate: float = 0.05, repeats=(1, 4, 16, 64), lr: float = 3e-3, n_embd: int = 48, delta: float = 1e-5,
          seed: int = 0) -> list[dict]:
    """The privacy-utility trade-off: DP-SGD at each noise multiplier (0: the same training without
    clipping or noise), on stories plus planted canaries, one example per document."""
    train, val = _stories(n_stories, 300, seed)
    planted = make_canaries(repeats, 4, seed=seed)
    docs = train + [c.sentence + "\n" for c in planted for _ in range(c.repeats)]
    tok = _tokenizer(*docs, *val)
    T = 256
    config = GPTConfig(vocab_size=tok.vocab_size, n_positions=T, n_embd=n_embd, n_layer=2, n_head=4)
    idx, targets = encode_documents(tok, docs, T)
    members = train[:300]
    records = []
    for sigma in noise_multipliers:
        params = init_params(config, seed=seed)
        start = time.perf_counter()
        private = sigma > 0
        losses = train_dp(params, config, idx, targets, steps, sample_rate, sigma, max_norm if private else math.inf,
                          lr, seed)
        eps = epsilon(sigma, sample_rate, steps, delta) if private else math.inf
        reports = [canary_report(params, config, tok, c) for c in planted]
        m, o = story_bits(params, config, tok, members), story_bits(params, config, tok, val)
        records.append({"experiment": "dpsgd", "seed": seed, "noise_multiplier": sigma,
                        "max_norm": max_norm if private else None, "sample_rate": sample_rate, "steps": steps,
                        "documents": len(docs), "delta": delta, "epsilon": eps,
                        "val_bits": _mean_bits(params, config, tok, val), "train_loss_last": losses[-1],
                        "auc": roc_auc(-m, -o), "canaries": reports,
                        "seconds": round(time.perf_counter() - start, 1)})
    return records


EXPERIMENTS = {"canaries": canaries, "membership": membership, "duplication": duplication, "dpsgd": dpsgd}


def run(name: str, **settings) -> list[dict]:
    """Run the experiment ``name`` (a key of ``EXPERIMENTS``) with its defaults or ``settings``."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; expected one of {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name](**settings)
