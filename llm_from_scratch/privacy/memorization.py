"""What a trained model gives away about its training data: exposure of planted secrets, and
membership inference measured by the ROC curve and its AUC.

Exposure (Carlini et al. 2019, "The Secret Sharer", section 4). Plant a secret such as "my PIN is
4 8 1 5 9 2" in the training text; after training, score candidate secrets ``r`` of the same
format (the other PINs) by their log-perplexity under the model, ``P(r) = -sum_i log2 p(x_i |
x_<i)`` over the secret's tokens. The secret's *rank* is one more than the number of references
the model finds at least as likely, and with ``|R|`` the size of the space of candidates,

    exposure = log2 |R| - log2 rank,

from about 0 (the secret is no more likely than a random candidate) up to log2 |R| (it is the
model's first choice, and asking the model for its most likely completion extracts it).

    >>> exposure(3.5, [float(r) for r in range(1, 17)])   # 3 of 16 references are better: rank 4
    2.0

Membership inference (Yeom et al. 2018): a model's loss is lower on its training examples than on
unseen ones, so "the loss is below t" is a test for "this example was in the training data". Every
threshold gives a true-positive rate (members caught) and a false-positive rate (non-members
accused); the ROC curve is all of them, and its area (AUC) is the probability that a random member
scores as more likely a member than a random non-member (Mann-Whitney; ties count 1/2). 0.5 means
the losses give nothing away.

    >>> round(roc_auc(member_scores=[0.9, 0.8, 0.3], nonmember_scores=[0.7, 0.2]), 4)   # 5 of 6 pairs
    0.8333

Left out: the exposure estimate by fitting a skew-normal to sampled candidates (for spaces too
large to rank exhaustively), and attacks stronger than the loss threshold (reference models,
LiRA).

References:

- N. Carlini, C. Liu, Ú. Erlingsson, J. Kos, D. Song, "The Secret Sharer: Evaluating and
  Testing Unintended Memorization in Neural Networks", USENIX Security 2019, section 4.
- S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy Risk in Machine Learning: Analyzing the
  Connection to Overfitting", CSF 2018 (the loss-threshold attack).
- T. Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["secret_rank", "exposure", "roc_curve", "roc_auc"]


def secret_rank(secret_score: float, reference_scores: Sequence[float]) -> int:
    """The secret's rank: 1 + how many ``reference_scores`` (log-perplexities of other candidates,
    lower = more likely) are at most ``secret_score``.

    >>> secret_rank(2.0, [2.0, 1.0, 5.0])
    3
    """
    scores = _check_scores("reference_scores", reference_scores)
    return 1 + int(np.sum(scores <= secret_score))


def exposure(secret_score: float, reference_scores: Sequence[float], space_size: int | None = None) -> float:
    """``log2 |R| - log2 rank`` (see the module docstring). ``space_size`` is |R|, the number of
    possible secrets; by default the number of references (as when they are a sample standing for
    the space). Ranking exhaustively, pass every other candidate and their count plus one."""
    size = len(reference_scores) if space_size is None else space_size
    rank = secret_rank(secret_score, reference_scores)
    if size < 1 or rank > size + 1:
        raise ValueError(f"space_size {size} is smaller than the number of candidates ranked")
    return math.log2(size) - math.log2(rank)


def _check_scores(name: str, scores) -> np.ndarray:
    """``scores`` as a float64 array, refused unless 1-D, non-empty and finite."""
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite numbers, got shape {a.shape}")
    return a


def roc_curve(member_scores: Sequence[float], nonmember_scores: Sequence[float]
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(false_positive_rate, true_positive_rate)`` of the test "score >= t" for every threshold
    t, from (0, 0) to (1, 1). Higher scores must mean "more likely a member" (pass minus the loss).

    >>> fpr, tpr = roc_curve([0.9, 0.8, 0.3], [0.7, 0.2])
    >>> fpr.tolist(), [round(float(t), 3) for t in tpr]
    ([0.0, 0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.333, 0.667, 0.667, 1.0, 1.0])
    """
    pos, neg = _check_scores("member_scores", member_scores), _check_scores("nonmember_scores", nonmember_scores)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]  # high to low
    tpr = np.concatenate([[0.0], (pos[None, :] >= thresholds[:, None]).mean(axis=1)])  # (n_thresholds + 1,)
    fpr = np.concatenate([[0.0], (neg[None, :] >= thresholds[:, None]).mean(axis=1)])  # (n_thresholds + 1,)
    return fpr, tpr


def roc_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """Area under the ROC curve: the probability that a random member outscores a random
    non-member, ties counted 1/2 (the Mann-Whitney U statistic over the number of pairs).

    >>> roc_auc([1.0, 1.0], [1.0, 0.0])   # (1/2 + 1 + 1/2 + 1) / 4
    0.75
    """
    pos, neg = _check_scores("member_scores", member_scores), _check_scores("nonmember_scores", nonmember_scores)
    # the rank-sum form of U: average ranks handle ties
    both = np.concatenate([pos, neg])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size)
    sorted_scores = both[order]
    i = 0
    while i < both.size:  # average rank over each run of equal scores
        j = i
        while j + 1 < both.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))
