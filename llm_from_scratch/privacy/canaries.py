"""Planting secrets in training text, and measuring what a trained GPT gives away about them.

A *canary* (Carlini et al. 2019) is a sentence of a fixed format with a random secret in it,
"The code of door 3 is 4815.", inserted into the training text ``repeats`` times. After training,
the model is asked about every possible secret of that format: ``candidate_bits`` scores all
10^d digit strings after the prefix by their log-perplexity in bits, ``-log2 q(secret | prefix)``,
exactly, with a tree of batched forward passes (the 10 first digits in one pass, the 100 two-digit
prefixes in the next, and so on: 1 + 10 + ... + 10^(d-1) sequences rather than 10^d). The
secret's rank among them gives its exposure (``memorization.exposure``), and greedy decoding after
the prefix shows whether the secret can simply be read out.

``story_bits`` gives each story's mean loss in bits per character, the score of the
membership-inference attack (``memorization.roc_auc`` on training against held-out stories).

    >>> canaries = make_canaries(repeats=(1, 4), digits=4, seed=0)
    >>> [(c.prefix, c.secret, c.repeats) for c in canaries]
    [('The code of door 1 is ', '8652', 1), ('The code of door 2 is ', '3000', 4)]
    >>> text = plant_canaries("A story.\\nAnother story.\\n", canaries, seed=0)
    >>> text.count("The code of door 2 is 3000.\\n"), len(text.splitlines())
    (4, 7)

References: N. Carlini, C. Liu, Ú. Erlingsson, J. Kos, D. Song, "The Secret Sharer", USENIX
Security 2019, sections 4-5 (canaries, exposure, extraction); S. Yeom et al., CSF 2018
(membership inference by the loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.gpt import gpt_logits

__all__ = ["Canary", "make_canaries", "plant_canaries", "candidate_bits", "canary_report", "story_bits"]

LN2 = float(np.log(2.0))


@dataclass(frozen=True)
class Canary:
    """A secret sentence ``prefix + secret + "."`` planted ``repeats`` times."""
    prefix: str  # "The code of door 1 is "
    secret: str  # "8511": d random digits
    repeats: int  # how many times the sentence is in the training text

    @property
    def sentence(self) -> str:
        return f"{self.prefix}{self.secret}."


def make_canaries(repeats=(1, 4, 16, 64), digits: int = 4, seed: int = 0) -> list[Canary]:
    """One canary per entry of ``repeats``, each with its own door number and a secret of
    ``digits`` random digits drawn from ``seed``."""
    if digits < 1 or any(r < 0 for r in repeats):
        raise ValueError(f"need digits >= 1 and repeats >= 0, got {digits}, {list(repeats)}")
    rng = np.random.default_rng(seed)
    return [Canary(f"The code of door {i + 1} is ", "".join(str(d) for d in rng.integers(0, 10, digits)), int(r))
            for i, r in enumerate(repeats)]


def plant_canaries(text: str, canaries: list[Canary], seed: int = 0) -> str:
    """``text`` (stories, one per line) with every canary's sentence inserted as a line of its
    own ``repeats`` times, at random places between the stories."""
    lines = text.splitlines(keepends=True)
    planted = [c.sentence + "\n" for c in canaries for _ in range(c.repeats)]
    rng = np.random.default_rng(seed)
    slots = np.sort(rng.integers(0, len(lines) + 1, len(planted)))  # after which line each one goes
    order = rng.permutation(len(planted))  # the repeats of a canary spread out, not in a block
    out, j = [], 0
    for i in range(len(lines) + 1):
        while j < len(planted) and slots[j] == i:
            out.append(planted[order[j]])
            j += 1
        if i < len(lines):
            out.append(lines[i])
    return "".join(out)


def _next_token_logprobs(params, config, idx: np.ndarray, kernels: str, batch: int = 512) -> np.ndarray:
    """log q(next token | each row of idx) in nats, (B, V), in batches of ``batch`` rows."""
    K = get_ops(kernels)
    out = []
    for a in range(0, idx.shape[0], batch):
        logits, _ = gpt_logits(params, config, idx[a:a + batch], K)  # (b, T, V)
        last = logits[:, -1].astype(np.float64)  # (b, V)
        last -= last.max(axis=1, keepdims=True)
        out.append(last - np.log(np.exp(last).sum(axis=1, keepdims=True)))
    return np.concatenate(out)


def candidate_bits(params, config, tokenizer, prefix: str, digits: int, kernels: str = "numba") -> np.ndarray:
    """``-log2 q(candidate | "\\n" + prefix)`` for every string of ``digits`` digits, indexed by
    its value (``bits[4815]`` is the score of "4815"): a tree of batched forward passes."""
    digit_ids = np.array(tokenizer.encode("0123456789"))  # (10,)
    context = np.array(tokenizer.encode("\n" + prefix))  # (P,) as after the end of a story
    if len(context) + digits - 1 > config.n_positions:
        raise ValueError(f"the prefix and {digits} digits do not fit the model's {config.n_positions} positions")
    bits = np.zeros(1)  # score of the empty prefix of each candidate, (10^k,) after depth k
    rows = context[None, :]  # (10^k, P + k) the contexts at depth k
    for _ in range(digits):
        logp = _next_token_logprobs(params, config, rows, kernels)[:, digit_ids]  # (10^k, 10)
        bits = (bits[:, None] - logp / LN2).reshape(-1)  # (10^(k+1),) candidate d1..dk d
        rows = np.concatenate([np.repeat(rows, 10, axis=0), np.tile(digit_ids, rows.shape[0])[:, None]], axis=1)
    return bits


def canary_report(params, config, tokenizer, canary: Canary, kernels: str = "numba") -> dict:
    """For one canary: its secret's score in bits, its rank among all candidates and exposure,
    and whether greedy decoding after the prefix reads the secret out."""
    from llm_from_scratch.privacy.memorization import exposure, secret_rank

    d = len(canary.secret)
    bits = candidate_bits(params, config, tokenizer, canary.prefix, d, kernels)  # (10^d,)
    s = int(canary.secret)
    others = np.delete(bits, s)
    greedy = f"{int(np.argmin(bits)):0{d}d}"  # the most likely string; digit-by-digit greedy is checked below
    rows = np.array([tokenizer.encode("\n" + canary.prefix)])
    for _ in range(d):  # greedy decoding over the whole vocabulary, one token at a time
        nxt = int(np.argmax(_next_token_logprobs(params, config, rows, kernels)[0]))
        rows = np.concatenate([rows, [[nxt]]], axis=1)
    decoded = tokenizer.decode([int(t) for t in rows[0, -d:]])
    return {"prefix": canary.prefix, "secret": canary.secret, "repeats": canary.repeats,
            "bits": float(bits[s]), "rank": secret_rank(float(bits[s]), others),
            "exposure": exposure(float(bits[s]), others, space_size=10 ** d),
            "most_likely": greedy, "greedy": decoded, "extracted": decoded == canary.secret}


def story_bits(params, config, tokenizer, stories: list[str], kernels: str = "numba") -> np.ndarray:
    """Each story's mean loss in bits per character, read from the start of a line ("\\n" +
    story, cut to the model's context): the membership-inference score (lower = more likely a
    training story)."""
    K = get_ops(kernels)
    out = np.zeros(len(stories))
    T = config.n_positions
    encoded = [np.array(tokenizer.encode("\n" + s.rstrip("\n")))[:T + 1] for s in stories]
    for length in sorted({len(e) for e in encoded}):  # batch stories of equal length together
        which = [i for i, e in enumerate(encoded) if len(e) == length]
        ids = np.stack([encoded[i] for i in which])  # (b, length)
        logits, _ = gpt_logits(params, config, ids[:, :-1], K)  # (b, length - 1, V)
        z = logits.astype(np.float64)
        z -= z.max(axis=2, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=2, keepdims=True))  # (b, length - 1, V)
        picked = np.take_along_axis(logp, ids[:, 1:, None], axis=2)[..., 0]  # (b, length - 1)
        out[which] = -picked.mean(axis=1) / LN2
    return out
