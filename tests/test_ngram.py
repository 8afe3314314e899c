import math

import numpy as np
import pytest

from llm_from_scratch.models.ngram import NGramModel
from llm_from_scratch.testing import assert_close


TABLE = np.random.default_rng(1234).dirichlet(np.full(5, 0.3), size=(5, 5))


def _markov_text(rng, n, V=5):
    """A stream from a fixed random order-2 Markov chain, so higher orders have something to find."""
    table = TABLE
    out = [0, 1]
    for _ in range(n - 2):
        out.append(int(rng.choice(V, p=table[out[-2], out[-1]])))
    return np.array(out)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distributions_sum_to_one_and_match_token_logprobs(order):
    rng = np.random.default_rng(order)
    train = _markov_text(rng, 3000)
    test = _markov_text(np.random.default_rng(99), 200)
    m = NGramModel(order, 5).fit(train)
    lp = m.token_logprobs(test)
    for t in range(len(test)):
        ctx = test[max(0, t - order + 1):t]
        p = m.next_distribution(ctx)
        assert abs(p.sum() - 1.0) < 1e-12 and np.all(p > 0)
        assert abs(math.log(p[test[t]]) - lp[t]) < 1e-12, t


def test_unseen_context_and_unseen_token_get_probability():
    m = NGramModel(3, 4).fit(np.array([0, 1, 2, 0, 1, 2, 0, 1, 2]))
    p = m.next_distribution([3, 3])  # a context never seen backs off to the unigram level
    assert abs(p.sum() - 1) < 1e-12 and p[3] > 0
    assert m.next_distribution([0, 1])[2] > 0.8


def test_higher_order_finds_the_second_order_chain():
    rng = np.random.default_rng(0)
    train = _markov_text(rng, 30000)
    val = _markov_text(rng, 5000)
    ce = [NGramModel(k, 5).fit(train).cross_entropy(val) for k in (1, 2, 3, 4)]
    assert ce[0] > ce[1] > ce[2]           # each order up to the true one helps
    assert abs(ce[3] - ce[2]) < 0.02       # beyond it, little changes


def test_unigram_model_matches_smoothed_frequencies():
    m = NGramModel(1, 3).fit(np.array([0, 0, 0, 1]))
    # counts (3, 1, 0); n1 = 1, n2 = 0 -> D clipped to 0.95; 2 types, total 4
    D = 0.95
    expected = np.array([3 - D, 1 - D, 0.0]) / 4 + D * 2 / 4 / 3
    assert_close(m.next_distribution([]), expected, rtol=1e-12)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 3\), got 7 at position 2"):
        NGramModel(2, 3).fit(np.array([0, 1, 7, 1]))
    with pytest.raises(ValueError, match="64-bit"):
        NGramModel(20, 1000)
    with pytest.raises(RuntimeError, match="fit"):
        NGramModel(2, 3).cross_entropy(np.array([0, 1]))


def test_sequences_shorter_than_the_order():
    m = NGramModel(4, 3).fit(np.array([0, 1, 2] * 20))
    lp = m.token_logprobs(np.array([0, 1]))
    assert lp.shape == (2,) and np.all(np.isfinite(lp))
    assert abs(lp[1] - np.log(m.next_distribution([0])[1])) < 1e-12
