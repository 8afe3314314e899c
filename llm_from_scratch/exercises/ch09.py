"""Exercises for chapter 9, BERT.

Two references are the package's own code, wrapped only to give them the exercise's name and a
simple signature: ``mask_positions`` is ``data.bert.mask_tokens`` and ``squad_f1`` is
``metrics.token_f1``. ``precision_recall`` reads per-class precision and recall off a confusion
matrix, as ``metrics.classification_report`` does. ``changed_fraction`` is a derivation whose
answer is a number: the expected share of the input tokens that BERT's 80/10/10 recipe changes,
checked against ``mask_tokens`` run on a large batch. Each wrapper imports what it calls inside
its body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

import math

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register

# ---------------------------------------------------------------------------------------------
# mask_positions


def mask_positions(ids, special_ids, mask_id, vocab_size, seed):
    """BERT's masking recipe on one batch of token ids, with masks drawn from ``seed``.

    ``ids`` is a (B, T) integer array in which 0 is padding. In each row choose
    ``max(1, round(0.15 * n_real))`` positions (``n_real`` counts the non-padding tokens),
    never a token whose id is in ``special_ids`` ([CLS], [SEP], [PAD]). With
    ``rng = np.random.default_rng(seed)``, for each row in order: ``rng.permutation`` of the
    candidate positions (ascending) and take the first n; then ``r = rng.random(n)``: positions
    with ``r < 0.8`` become ``mask_id``, with ``0.8 <= r < 0.9`` a random id
    ``rng.integers(0, vocab_size, count)``, the rest stay. Return ``(masked_ids, labels)``,
    labels holding the original id at chosen positions and -100 elsewhere.

    Example: a row ``[2, 10, 11, 12, 13, 14, 15, 16, 3, 0]`` has 9 real tokens, so
    round(1.35) = 1 position among the seven ids 10..16 is chosen; [CLS] = 2 and [SEP] = 3 never are.

    The reference is the package's ``llm_from_scratch.data.bert.mask_tokens``.
    """
    from llm_from_scratch.data.bert import mask_tokens

    ids = np.asarray(ids)
    return mask_tokens(ids, (ids != 0).astype(np.int64), special_ids, mask_id, vocab_size,
                       np.random.default_rng(seed))


def _wrong_mask_positions(ids, special_ids, mask_id, vocab_size, seed):
    # forgets to exclude [CLS] and [SEP]: only padding is protected
    from llm_from_scratch.data.bert import mask_tokens

    ids = np.asarray(ids)
    return mask_tokens(ids, (ids != 0).astype(np.int64), {0}, mask_id, vocab_size, np.random.default_rng(seed))


def _mask_case(seed, B, T, vocab):
    def make():
        rng = np.random.default_rng(seed)
        ids = rng.integers(5, vocab, (B, T))
        ids[:, 0] = 2
        for b in range(B):
            n = int(rng.integers(4, T + 1))
            ids[b, n - 1] = 3
            ids[b, n:] = 0
        return (ids, {0, 2, 3}, 4, vocab, seed)
    return make


def _never_special(fn):
    ids = np.array([[2, 10, 11, 3, 0, 0]] * 200)
    masked, labels = fn(ids, {0, 2, 3}, 4, 20, 7)
    bad = int(((labels != -100) & np.isin(ids, [0, 2, 3])).sum())
    return "" if bad == 0 else f"{bad} special or padding positions were chosen for prediction"


# ---------------------------------------------------------------------------------------------
# precision_recall


def precision_recall(confusion):
    """Per-class precision and recall from a (K, K) confusion matrix.

    ``confusion[i, j]`` counts examples of true class ``i`` predicted as class ``j`` (rows are
    the truth, columns the predictions). Precision of class k: of the examples predicted k, the
    fraction that are k, ``confusion[k, k] / confusion[:, k].sum()``. Recall of class k: of the
    examples that are k, the fraction predicted k, ``confusion[k, k] / confusion[k, :].sum()``.
    A ratio with denominator 0 is 0. Return ``(precision, recall)``, two float arrays of length K.

    Example: ``[[1, 1, 0], [0, 1, 0], [1, 0, 2]]``: class 0 was predicted twice (column 0) and
    right once, precision 1/2; it occurs twice (row 0) and was found once, recall 1/2. Class 2:
    precision 2/2, recall 2/3.

    The reference is how the package's ``metrics.classification_report`` computes them.
    """
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(m)                           # (K,)
    predicted = m.sum(axis=0)                 # (K,) column sums
    actual = m.sum(axis=1)                    # (K,) row sums
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    return precision, recall


def _wrong_precision_recall(confusion):
    # divides by row sums for precision and column sums for recall: the two are swapped
    p, r = precision_recall(confusion)
    return r, p


def _confusion_case(seed, K, n):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.integers(0, n, (K, K)),)
    return make


def _agrees_with_report(fn):
    from llm_from_scratch.metrics import classification_report

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 300)
    yhat = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    r = classification_report(y, yhat, 4)
    p, rec = fn(r.confusion)
    diff = max(np.abs(np.asarray(p) - r.precision).max(), np.abs(np.asarray(rec) - r.recall).max())
    return "" if diff < 1e-9 else f"differs from metrics.classification_report by {diff:.3g}"


# ---------------------------------------------------------------------------------------------
# squad_f1


def squad_f1(prediction, gold):
    """SQuAD's token F1 between a predicted answer and a gold answer.

    First normalise both strings: lower-case, remove punctuation, remove the words a, an and
    the, collapse whitespace. Split into tokens; count the tokens they share (with
    multiplicity: ``Counter(p) & Counter(g)``). No shared token gives 0.0; otherwise precision =
    shared / len(p), recall = shared / len(g), F1 = 2PR / (P + R).

    Example: "red apple tree" vs "the red apple": {red, apple, tree} vs {red, apple}, 2 shared,
    P = 2/3, R = 1, F1 = 0.8. "The Park." vs "park" gives 1.0.

    The reference is the package's ``llm_from_scratch.metrics.token_f1``.
    """
    from llm_from_scratch.metrics import token_f1

    return token_f1(prediction, gold)


def _wrong_squad_f1(prediction, gold):
    # skips the normalisation: case, punctuation and articles all count against the prediction
    from collections import Counter

    p, g = prediction.split(), gold.split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------
# changed_fraction (a derivation)


def changed_fraction(mask_prob, vocab_size):
    """The expected fraction of the input tokens whose id BERT's masking recipe changes.

    A fraction ``mask_prob`` of the tokens is chosen. Of the chosen, 80% become ``[MASK]`` (a
    change: ``[MASK]`` is never an input token), 10% get an id drawn uniformly from all
    ``vocab_size`` ids (a change unless the draw hits the original, which it does with
    probability 1/V), and 10% stay. So

        changed = p * (0.8 + 0.1 * (1 - 1/V)),

    and the model sees the original token at a chosen position with probability
    0.1 + 0.1/V, not 0.1.

    Example: p = 0.15, V = 10: 0.15 * (0.8 + 0.1 * 0.9) = 0.15 * 0.89 = 0.1335. With V = 185,
    as in chapter 9, 0.15 * (0.8 + 0.1 * 184/185) = 0.134919.
    """
    if not 0 < mask_prob < 1 or vocab_size < 2:
        raise ValueError(f"need 0 < mask_prob < 1 and vocab_size >= 2, got {mask_prob} and {vocab_size}")
    p_mask, p_random = 0.8, 0.1
    return mask_prob * (p_mask + p_random * (1 - 1 / vocab_size))


def _wrong_changed_fraction(mask_prob, vocab_size):
    # counts every random replacement as a change: forgets that the draw can give the original back
    return mask_prob * 0.9


def _simulated_changed(fn):
    # mask_tokens on 4,000 rows [CLS] = 0, 52 ordinary tokens in [2, V), [SEP] = 1, no padding: the
    # rate applies to the 54 real tokens, so round(0.15 * 54) = 8 of the 52 are chosen in each row
    from llm_from_scratch.data.bert import mask_tokens

    rng = np.random.default_rng(0)
    V, B, n = 8, 4000, 52
    ids = np.concatenate([np.full((B, 1), 0), rng.integers(2, V, (B, n)), np.full((B, 1), 1)], axis=1)
    masked, _ = mask_tokens(ids, np.ones_like(ids), {0, 1}, V, V + 1, rng)   # [MASK] = V; random ids in [0, V]
    p = round(0.15 * (n + 2)) / n                                            # the rate actually applied
    measured = float(np.mean(masked[:, 1:-1] != ids[:, 1:-1]))
    expected = float(fn(p, V + 1))
    se = math.sqrt(expected * (1 - expected) / (B * n))
    return "" if abs(measured - expected) < 4 * se else (
        f"mask_tokens changed {measured:.4f} of the tokens, your formula gives {expected:.4f} "
        f"(standard error {se:.4f})")


EXERCISES = [
    register(Exercise(
        name="mask_positions", chapter=9, title="BERT's 15% / 80-10-10 masking",
        reference=mask_positions,
        cases=(
            Case("the worked example", lambda: (np.array([[2, 10, 11, 12, 13, 14, 15, 16, 3, 0]]), {0, 2, 3}, 4,
                                                20, 0)),
            Case("a batch of 4 padded rows, seed 1", _mask_case(1, 4, 24, 50)),
            Case("a batch of 8 padded rows, seed 2", _mask_case(2, 8, 40, 100)),
            Case("short rows: at least one position each", _mask_case(3, 6, 6, 30)),
        ),
        extra_checks=(("never chooses [CLS], [SEP] or padding", _never_special),),
        hint="candidates are the real tokens that are not special; draw the permutation, then r, row by row",
    )),
    register(Exercise(
        name="precision_recall", chapter=9, title="precision and recall from a confusion matrix",
        reference=precision_recall,
        cases=(
            Case("the worked example", lambda: (np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]]),)),
            Case("a random 4-class matrix, seed 0", _confusion_case(0, 4, 20)),
            Case("a random 6-class matrix, seed 1", _confusion_case(1, 6, 9)),
            Case("a class never predicted (an all-zero column)",
                 lambda: (np.array([[3, 0, 1], [2, 0, 0], [0, 0, 5]]),)),
        ),
        extra_checks=(("agrees with metrics.classification_report", _agrees_with_report),),
        hint="precision divides by what was predicted (a column), recall by what is true (a row)",
    )),
    register(Exercise(
        name="squad_f1", chapter=9, title="SQuAD token F1",
        reference=squad_f1,
        cases=(
            Case("the worked example", lambda: ("red apple tree", "the red apple")),
            Case("case, punctuation and an article", lambda: ("The Park.", "park")),
            Case("no shared token", lambda: ("school", "forest")),
            Case("repeated tokens count with multiplicity", lambda: ("ball ball red", "red ball")),
            Case("capitalised name with a full stop", lambda: ("Lily.", "Lily")),
        ),
        hint="normalise both strings first (lower, punctuation, a/an/the, whitespace), then count shared tokens",
    )),
    register(Exercise(
        name="changed_fraction", chapter=9, title="how many input tokens BERT's masking changes (a derivation)",
        reference=changed_fraction,
        cases=(
            Case("the worked example: p = 0.15, V = 10", lambda: (0.15, 10)),
            Case("chapter 9's vocabulary, V = 185", lambda: (0.15, 185)),
            Case("BERT-base's vocabulary, V = 30,522", lambda: (0.15, 30522)),
            Case("a 40% masking rate, V = 300", lambda: (0.4, 300)),
            Case("a two-token vocabulary", lambda: (0.5, 2)),
        ),
        extra_checks=(("agrees with mask_tokens on a large batch", _simulated_changed),),
        hint="split the chosen tokens into the three cases; a uniform random id equals the original 1 time in V",
    )),
]

WRONG = {"mask_positions": _wrong_mask_positions, "precision_recall": _wrong_precision_recall,
         "squad_f1": _wrong_squad_f1, "changed_fraction": _wrong_changed_fraction}
