"""``evaluate.token_logprobs`` against one forward pass per target, ``chars_before_first_mistake``
against a scan of every prefix, and ``show.show_char``."""

from __future__ import annotations

import numpy as np
import pytest

from llm_from_scratch import ops
from llm_from_scratch.data import StoryWorld
from llm_from_scratch.evaluate import chars_before_first_mistake, token_logprobs
from llm_from_scratch.models.gpt import GPTConfig, gpt_forward, init_params
from llm_from_scratch.show import show_char
from llm_from_scratch.testing import assert_close

CONFIG = GPTConfig(vocab_size=7, n_positions=5, n_embd=8, n_layer=1, n_head=2)


def _scored_alone(params, ids, j, context_start):
    """log q(ids[j] | ids[context_start:j]) from a forward pass over exactly that context."""
    logits, _, _ = gpt_forward(params, CONFIG, ids[None, context_start:j], kernels="numpy")  # (1, n, V)
    logp, _ = ops.log_softmax_forward(logits[0, -1].astype(np.float64))  # (V,)
    return logp[ids[j]]


@pytest.fixture(scope="module")
def params():
    return init_params(CONFIG, seed=1)


@pytest.mark.parametrize("n", [2, 5, 6, 13, 23])
def test_stride_one_gives_every_target_the_full_context(params, n):
    ids = np.random.default_rng(n).integers(0, CONFIG.vocab_size, size=n)
    T = min(CONFIG.n_positions, n - 1)
    got = token_logprobs(params, CONFIG, ids, stride=1, batch_size=3, kernels="numpy")
    expected = [_scored_alone(params, ids, j, max(0, j - T)) for j in range(1, n)]
    assert_close(got, np.array(expected), rtol=1e-5, atol=1e-6, name=f"log-probs, {n} tokens")


def test_windows_without_overlap_reproduce_the_mean_loss(params):
    T = CONFIG.n_positions
    ids = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=4 * T + 1)
    got = token_logprobs(params, CONFIG, ids, stride=T, kernels="numpy")  # windows at 0, T, 2T, 3T
    context = [((j - 1) // T) * T for j in range(1, len(ids))]  # each target sees its window's start onwards
    expected = [_scored_alone(params, ids, j, s) for j, s in zip(range(1, len(ids)), context)]
    assert_close(got, np.array(expected), rtol=1e-5, atol=1e-6, name="log-probs")
    x, y = ids[:-1].reshape(4, T), ids[1:].reshape(4, T)
    _, loss, _ = gpt_forward(params, CONFIG, x, y, kernels="numpy")
    assert abs(-got.mean() - float(loss)) < 1e-5, f"{-got.mean()} vs the model's loss {float(loss)}"


def test_a_last_window_flush_with_the_end_and_numba_agree(params):
    ids = np.random.default_rng(3).integers(0, CONFIG.vocab_size, size=12)  # windows at 0, 2, 4, 6
    a = token_logprobs(params, CONFIG, ids, stride=2, batch_size=2, kernels="numpy")
    b = token_logprobs(params, CONFIG, ids, stride=2, batch_size=32, kernels="numba")
    assert a.shape == (11,) and np.all(np.isfinite(a))
    assert_close(b, a, rtol=1e-5, atol=1e-6, name="numba vs numpy")
    # the last window (start 6) scores only target 11, with the 5 tokens before it as context
    assert_close(a[10], _scored_alone(params, ids, 11, 6), rtol=1e-5, atol=1e-6, name="last target")


@pytest.mark.parametrize("ids, stride, message", [
    (np.array([3]), 1, "at least 2 token ids"),
    (np.array([[1, 2, 3]]), 1, "1-D array"),
    (np.array([0.5, 1.0]), 1, "1-D array"),
    (np.arange(20) % 7, 6, r"stride must be in \[1, 5\]"),
    (np.arange(20) % 7, 0, r"stride must be in \[1, 5\]"),
])
def test_token_logprobs_refuses_bad_input(params, ids, stride, message):
    with pytest.raises(ValueError, match=message):
        token_logprobs(params, CONFIG, ids, stride=stride, kernels="numpy")


# ----------------------------------------------------------------------------------------
# chars_before_first_mistake


@pytest.fixture(scope="module")
def world():
    return StoryWorld()


def _scan(world, story):
    """The slow definition: try every prefix length (a final newline only with the whole story)."""
    if np.isfinite(world.logprob(story)):
        return len(story)
    best = 0
    for n in range(1, (len(story) - 1 if story.endswith("\n") else len(story)) + 1):
        try:
            world.next_char_distribution(story[:n])
        except ValueError:
            break
        best = n
    return best


def test_chars_before_first_mistake_matches_a_scan(world):
    stories = [s.text for s in world.sample(3, seed=4)]
    rng = np.random.default_rng(0)
    cases = list(stories)
    for story in stories:
        k = int(rng.integers(1, len(story) - 1))
        cases += [story[:k] + "#" + story[k + 1:],  # an impossible character at k
                  story[:k],  # unfinished, possible so far: all of it counts
                  story[:k] + "\n",  # ended too early: the newline is the mistake
                  story[:-2] + "Q\n"]  # a wrong last character
    for case in cases:
        assert chars_before_first_mistake(world, case) == _scan(world, case), repr(case)
    story = stories[0]
    assert chars_before_first_mistake(world, story) == len(story)
    assert chars_before_first_mistake(world, story[:7]) == 7
    assert chars_before_first_mistake(world, story[:7] + "\n") == 7
    assert chars_before_first_mistake(world, story[:7] + "#" + story[8:]) == 7
    assert chars_before_first_mistake(world, "") == 0


def test_chars_before_first_mistake_takes_one_story(world):
    with pytest.raises(ValueError, match="newline only at its end; got a newline at position 2"):
        chars_before_first_mistake(world, "ab\ncd\n")


def test_show_char():
    assert [show_char(c) for c in "a \n\t"] == ["a", "\u2423", "\u23ce", "\t"]
