"""Measuring a trained model: the log-probability of every token of a long text, and how far a
generated story stays possible.

``token_logprobs`` scores each token of a text longer than the model's context with a sliding
window: a window of T tokens every ``stride`` tokens (and a last one flush with the end), each
scoring only the targets that the windows before it have not scored. With ``stride = T`` the
windows do not overlap and the first targets of each window see almost no context; with a
smaller stride every target after the first window has at least ``T - stride`` tokens of context,
at ``T / stride`` times the cost. (Hugging Face's "Perplexity of fixed-length models" guide
describes the same strided evaluation.)

``chars_before_first_mistake`` asks StoryWorld, which knows exactly which texts it can write,
how long a prefix of a generated story is still the beginning of some story.

Left out: batching over several texts, and models other than the GPT.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch import ops

__all__ = ["token_logprobs", "chars_before_first_mistake"]


def token_logprobs(params: dict[str, np.ndarray], config, ids, stride: int, batch_size: int = 32,
                   kernels: str = "numba") -> np.ndarray:
    """``log q(ids[j] | the up to T tokens before it)`` for j = 1 .. len(ids) - 1, each once, in nats.

    T is the model's context (``config.n_positions``, or ``len(ids) - 1`` for a shorter text).
    Windows start every ``stride`` tokens, ``batch_size`` windows to a forward pass. Returns a
    float64 array of ``len(ids) - 1`` values; ``-mean`` of it is the loss per token.

    With T = 4 and stride 2 over 8 tokens, the windows start at 0, 2 and 3 (the last one flush
    with the end): the first scores targets 1-4, the second 5-6, the third 7.

    >>> from llm_from_scratch.models.gpt import GPTConfig, init_params
    >>> config = GPTConfig(vocab_size=5, n_positions=4, n_embd=8, n_layer=1, n_head=2)
    >>> params = init_params(config, seed=0)
    >>> logp = token_logprobs(params, config, np.array([0, 1, 2, 3, 4, 0, 1, 2]), stride=2, kernels="numpy")
    >>> logp.shape, bool(np.all(np.abs(logp + np.log(5)) < 0.1))   # an untrained model: about log(1/V)
    ((7,), True)
    """
    from llm_from_scratch.models.gpt import gpt_forward

    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or len(ids) < 2:
        raise ValueError(f"expected a 1-D array of at least 2 token ids, got shape {ids.shape} of {ids.dtype}")
    T = min(config.n_positions, len(ids) - 1)
    if not 1 <= stride <= T:
        raise ValueError(f"stride must be in [1, {T}] (the context length), got {stride}: a larger stride "
                         f"would skip targets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    starts = list(range(0, len(ids) - T, stride))
    if starts[-1] + T < len(ids) - 1:
        starts.append(len(ids) - 1 - T)  # a last window flush with the end
    out = np.full(len(ids) - 1, np.nan)  # out[j - 1] is for target ids[j]
    done = 0  # targets ids[1 .. done] are scored
    for i in range(0, len(starts), batch_size):
        s = np.array(starts[i:i + batch_size])  # (b,)
        x = ids[s[:, None] + np.arange(T)]  # (b, T)
        target = ids[s[:, None] + np.arange(1, T + 1)]  # (b, T)
        logits, _, _ = gpt_forward(params, config, x, kernels=kernels)  # (b, T, V)
        logp, _ = ops.log_softmax_forward(logits.astype(np.float64))  # (b, T, V)
        chosen = np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]  # (b, T)
        for row, start in enumerate(s):
            first = max(done, start) - start  # the window's first unscored position
            out[start + first:start + T] = chosen[row, first:]
            done = start + T
    assert not np.isnan(out).any(), "a target was left unscored"
    return out


def chars_before_first_mistake(world, story: str) -> int:
    """The length of the longest prefix of ``story`` that some story of ``world`` (a
    ``StoryWorld``) starts with: ``len(story)`` if the whole text is possible.

    A story ends at its newline, so a final newline counts only if the whole story is one the
    world can write; an unfinished story (no newline yet) that is possible so far counts in full.
    Being possible is inherited by shorter prefixes, so a binary search over prefix lengths
    needs about log2(len(story)) calls to ``world.next_char_distribution``.

    >>> from llm_from_scratch.data import StoryWorld
    >>> world = StoryWorld()
    >>> story = world.sample(1, seed=0)[0].text
    >>> chars_before_first_mistake(world, story) == len(story)
    True
    >>> chars_before_first_mistake(world, story[:10] + "@" + story[11:])   # "@" cannot be written
    10
    """
    if "\n" in story[:-1]:
        raise ValueError(f"expected one story, with a newline only at its end; got a newline at position "
                         f"{story.index(chr(10))} of {len(story)} characters")
    if np.isfinite(world.logprob(story)):
        return len(story)

    def possible(n: int) -> bool:
        try:
            world.next_char_distribution(story[:n])
            return True
        except ValueError:
            return False

    n_max = len(story) - 1 if story.endswith("\n") else len(story)  # the final newline was not right
    lo, hi = 0, n_max + 1  # the empty prefix is possible; find the longest possible one up to n_max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if possible(mid) else (lo, mid)
    return lo
