"""Exercises for chapter 1, language models and the question of limits."""

from __future__ import annotations

import math

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def bigram_perplexity(train_ids, test_ids, vocab_size, alpha=1.0):
    """Perplexity of an add-alpha bigram model on a test sequence.

    Count every adjacent pair (a, b) in ``train_ids``; the model's probability of ``b`` after
    ``a`` is ``(count(a, b) + alpha) / (count(a) + alpha * vocab_size)`` where ``count(a)`` is the
    number of pairs that start with ``a``. Return ``exp`` of the mean negative log-probability of
    the ``len(test_ids) - 1`` transitions in ``test_ids``.

    Example: train [0, 1, 0, 1], vocab 2, alpha 1: counts (0,1)=2, (1,0)=1, so
    p(1|0) = 3/4 and p(0|1) = 2/3. On test [0, 1, 0] the perplexity is
    exp(-(log 3/4 + log 2/3) / 2) = sqrt(2) = 1.414...
    """
    counts = np.zeros((vocab_size, vocab_size))
    np.add.at(counts, (np.asarray(train_ids[:-1]), np.asarray(train_ids[1:])), 1.0)
    probs = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * vocab_size)
    test = np.asarray(test_ids)
    nll = -np.log(probs[test[:-1], test[1:]])
    return float(np.exp(nll.mean()))


def _bigram_case(seed, n_train, n_test, vocab, alpha):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.integers(0, vocab, n_train), rng.integers(0, vocab, n_test), vocab, alpha)
    return make


def _wrong_bigram_perplexity(train_ids, test_ids, vocab_size, alpha=1.0):
    # a common slip: normalise by the total number of pairs, not by the pairs that start with a
    counts = np.zeros((vocab_size, vocab_size))
    np.add.at(counts, (np.asarray(train_ids[:-1]), np.asarray(train_ids[1:])), 1.0)
    probs = (counts + alpha) / (counts.sum() + alpha * vocab_size)
    test = np.asarray(test_ids)
    return float(np.exp(-np.log(probs[test[:-1], test[1:]]).mean()))


def entropy_bits(p):
    """Entropy in bits of a discrete distribution ``p`` (a 1-D array summing to 1).

    Outcomes with probability 0 contribute nothing (the limit of -p log p as p -> 0 is 0).

    Example: a fair coin has 1 bit; ``[0.5, 0.25, 0.25]`` has 0.5*1 + 2*0.25*2 = 1.5 bits.
    """
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def _wrong_entropy_bits(p):
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())  # nats, not bits


def _entropy_case(seed, n, zeros):
    def make():
        rng = np.random.default_rng(seed)
        p = rng.random(n)
        p[:zeros] = 0.0
        return (p / p.sum(),)
    return make


def entropy_rate(logprobs, lengths):
    """Entropy rate of a source of independent stories, in bits per character, with its
    standard error: ``(bits_per_char, se)``.

    ``logprobs[i]`` is the natural-log probability of story ``i`` under the source and
    ``lengths[i]`` its number of characters. With ``a = -logprobs`` (nats per story) and
    ``b = lengths``, the rate is a ratio of means, ``H = mean(a) / mean(b)``, converted to bits
    (divide by ln 2). Its standard error by the delta method is
    ``sd(a - H b) / (sqrt(n) mean(b))``, with the sample standard deviation (``ddof=1``), also
    in bits. It is *not* the mean of the per-story rates ``a / b``: a long story holds more
    characters, so it must weigh more.

    Example: two stories of 3 bits each (``logprobs = [-3 ln 2, -3 ln 2]``) with 1 and 5
    characters: H = 6 bits / 6 characters = 1.0 bit per character (the mean of the per-story
    rates, (3 + 0.6) / 2 = 1.8, is wrong). In bits, a - H b = [2, -2], whose standard deviation
    is 2 sqrt(2), so se = 2 sqrt(2) / (sqrt(2) * 3) = 0.667. Result: ``(1.0, 0.6667)``.
    """
    a = -np.asarray(logprobs, dtype=np.float64)    # (n,) nats per story
    b = np.asarray(lengths, dtype=np.float64)      # (n,) characters per story
    h = a.mean() / b.mean()                        # nats per character
    se = (a - h * b).std(ddof=1) / (math.sqrt(a.size) * b.mean())
    return float(h / math.log(2)), float(se / math.log(2))


def _wrong_entropy_rate(logprobs, lengths):
    # a common slip: average the per-story rates, so a short story counts as much as a long one
    rates = -np.asarray(logprobs, dtype=np.float64) / np.asarray(lengths, dtype=np.float64)
    return (float(rates.mean() / math.log(2)),
            float(rates.std(ddof=1) / math.sqrt(rates.size) / math.log(2)))


def _rate_case(seed, n):
    def make():
        rng = np.random.default_rng(seed)
        lengths = rng.integers(20, 400, n)
        logprobs = -lengths * rng.uniform(0.1, 0.4) - rng.gamma(2.0, 5.0, n)
        return (logprobs, lengths)
    return make


def _tiny_storyworld_case(seed, n):
    def make():
        from llm_from_scratch.data import StoryWorld, StoryWorldConfig
        stories = StoryWorld(StoryWorldConfig.tiny()).sample(n, seed=seed)
        return ([s.logprob for s in stories], [len(s.text) for s in stories])
    return make


def smoothing_cost_bits(k, vocab_size, eps):
    """The KL divergence, in bits, from a source that picks uniformly among ``k`` of
    ``vocab_size`` characters to a model that mixes the truth with the uniform distribution:
    ``q = (1 - eps) p + eps / vocab_size``. It is the excess loss, per character, that smoothing
    costs where the truth is known exactly.

    Each of the ``k`` possible characters has ``p = 1/k`` and
    ``q = (1 - eps)/k + eps/vocab_size``, the others have ``p = 0`` and add nothing, so
    ``KL(p || q) = sum_k (1/k) log2((1/k) / q) = -log2(1 - eps + eps k / vocab_size)``.

    Example: a certain character (k = 1) among 37, eps = 0.1:
    -log2(0.9 + 0.1/37) = 0.1477 bits; with k = 37 (the truth is uniform) the cost is 0.
    """
    p = np.zeros(vocab_size)                        # (V,) the source
    p[:k] = 1.0 / k
    q = (1.0 - eps) * p + eps / vocab_size          # (V,) the smoothed model
    support = p > 0                                 # 0 log 0 = 0
    return float(np.sum(p[support] * np.log2(p[support] / q[support])))


def _wrong_smoothing_cost_bits(k, vocab_size, eps):
    # a common slip: count only the mass taken away, forgetting the eps k / V that the uniform
    # part gives back to the k possible characters
    return -math.log2(1.0 - eps)


EXERCISES = [
    register(Exercise(
        name="bigram_perplexity", chapter=1, title="perplexity of an add-alpha bigram model",
        reference=bigram_perplexity,
        cases=(
            Case("the worked example in the docstring", lambda: ([0, 1, 0, 1], [0, 1, 0], 2, 1.0)),
            Case("random ids, vocab 5, alpha 1", _bigram_case(0, 200, 50, 5, 1.0)),
            Case("random ids, vocab 12, alpha 0.1 (unseen pairs)", _bigram_case(1, 60, 40, 12, 0.1)),
            Case("test ids longer than train ids", _bigram_case(2, 10, 300, 3, 0.5)),
        ),
        hint="p(b|a) divides by the number of pairs that start with a (a row sum), plus alpha * vocab_size",
    )),
    register(Exercise(
        name="entropy_bits", chapter=1, title="entropy of a distribution in bits",
        reference=entropy_bits,
        cases=(
            Case("a fair coin", lambda: (np.array([0.5, 0.5]),)),
            Case("[0.5, 0.25, 0.25]", lambda: (np.array([0.5, 0.25, 0.25]),)),
            Case("a certain outcome (0 log 0 = 0)", lambda: (np.array([0.0, 1.0, 0.0]),)),
            Case("random distribution over 30 outcomes with zeros", _entropy_case(3, 30, 5)),
        ),
        hint="use log base 2, and skip zero probabilities",
    )),
    register(Exercise(
        name="entropy_rate", chapter=1, title="entropy rate per character from story log-probabilities",
        reference=entropy_rate,
        cases=(
            Case("the worked example in the docstring",
                 lambda: ([-3 * math.log(2), -3 * math.log(2)], [1, 5])),
            Case("stories of very different lengths", _rate_case(4, 50)),
            Case("many stories", _rate_case(5, 2000)),
            Case("500 stories of the tiny StoryWorld", _tiny_storyworld_case(6, 500)),
        ),
        hint="divide the mean of -logprobs by the mean of the lengths (a ratio of means), then "
             "convert nats to bits; the standard error uses sd(a - H b) with ddof=1",
    )),
    register(Exercise(
        name="smoothing_cost_bits", chapter=1, title="what smoothing costs where the truth is sure (a KL)",
        reference=smoothing_cost_bits,
        cases=(
            Case("the docstring's example: a certain character among 37, eps = 0.1", lambda: (1, 37, 0.1)),
            Case("two equally likely characters among 37, eps = 0.01", lambda: (2, 37, 0.01)),
            Case("six of 37, eps = 0.5", lambda: (6, 37, 0.5)),
            Case("one of 50,257 tokens, eps = 0.001", lambda: (1, 50_257, 0.001)),
        ),
        rtol=1e-10, atol=1e-12,
        hint="q gives each of the k possible characters (1 - eps)/k + eps/V; the KL sums "
             "(1/k) log2((1/k) / q) over those k characters only",
    )),
]

WRONG = {"bigram_perplexity": _wrong_bigram_perplexity, "entropy_bits": _wrong_entropy_bits,
         "entropy_rate": _wrong_entropy_rate, "smoothing_cost_bits": _wrong_smoothing_cost_bits}
