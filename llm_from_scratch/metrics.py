"""Evaluation metrics: classification (accuracy, precision, recall, F1, confusion matrix) and
extractive question answering (SQuAD's exact match and token F1).

Classification, for class c with true positives TP, false positives FP, false negatives FN:

    precision_c = TP / (TP + FP)      of the examples predicted c, the share that are c
    recall_c    = TP / (TP + FN)      of the examples that are c, the share predicted c
    F1_c        = 2 P R / (P + R)     their harmonic mean

A ratio with a zero denominator is reported as 0 (as scikit-learn's ``zero_division=0``).
"Macro" averages give every class the same weight; accuracy is the share of correct predictions.

Question answering follows the official SQuAD v1.1 evaluation script: both answers are
normalised (lower-case, punctuation removed, the articles a/an/the removed, whitespace
collapsed); exact match is equality after normalisation; token F1 counts the tokens the two
share (a multiset intersection); each prediction takes the best score over its gold answers; the
means are reported in percent.

References: Rajpurkar et al., "SQuAD: 100,000+ Questions for Machine Comprehension of Text",
EMNLP 2016, section 5 (and its ``evaluate-v1.1.py``); Manning, Raghavan & Schütze,
*Introduction to Information Retrieval*, section 8.3.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["confusion_matrix", "ClassificationReport", "classification_report", "accuracy",
           "normalize_answer", "exact_match", "token_f1", "squad_scores"]


def _labels(y_true, y_pred, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D arrays of the same length, got shapes {t.shape} and {p.shape}")
    if t.size and (t.dtype.kind not in "iu" or p.dtype.kind not in "iu"):
        raise ValueError(f"labels must be integers 0..K-1, got dtypes {t.dtype} and {p.dtype}")
    k = num_classes if num_classes is not None else (int(max(t.max(), p.max())) + 1 if t.size else 0)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k}), got values from {min(t.min(), p.min())} to {max(t.max(), p.max())}")
    return t, p, k


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class.

    >>> confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0])
    array([[1, 1, 0],
           [0, 1, 0],
           [1, 0, 2]])
    """
    t, p, k = _labels(y_true, y_pred, num_classes)
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the truth.

    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    t, p, _ = _labels(y_true, y_pred, None)
    if t.size == 0:
        raise ValueError("accuracy of an empty set of predictions is undefined")
    return float(np.mean(t == p))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)


@dataclass(frozen=True)
class ClassificationReport:
    confusion: np.ndarray      # (K, K) counts, rows true, columns predicted
    precision: np.ndarray      # (K,)
    recall: np.ndarray         # (K,)
    f1: np.ndarray             # (K,)
    support: np.ndarray        # (K,) examples of each true class
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float

    def table(self, names=None) -> str:
        """A plain-text table, one row per class, then accuracy and macro averages."""
        names = list(names) if names is not None else [str(i) for i in range(len(self.f1))]
        width = max([len(n) for n in names] + [9])
        rows = [f"{'class':<{width}}  precision  recall     f1  support"]
        for i, n in enumerate(names):
            rows.append(f"{n:<{width}}  {self.precision[i]:9.3f}  {self.recall[i]:6.3f}  {self.f1[i]:5.3f}  "
                        f"{int(self.support[i]):7d}")
        rows.append(f"{'macro avg':<{width}}  {self.macro_precision:9.3f}  {self.macro_recall:6.3f}  "
                    f"{self.macro_f1:5.3f}  {int(self.support.sum()):7d}")
        rows.append(f"{'accuracy':<{width}}  {'':9}  {'':6}  {self.accuracy:5.3f}  {int(self.support.sum()):7d}")
        return "\n".join(rows)


def classification_report(y_true, y_pred, num_classes: int | None = None) -> ClassificationReport:
    """Per-class precision, recall, F1 and support, their macro averages, and accuracy.

    Worked example (the confusion matrix of ``confusion_matrix``'s docstring): class 0 was
    predicted twice and right once, so precision 1/2; it occurs twice and was found once, recall
    1/2; F1 = 1/2. Class 2: precision 2/2, recall 2/3, F1 = 2·1·(2/3)/(1 + 2/3) = 0.8.

    >>> r = classification_report([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0])
    >>> r.precision.round(3).tolist(), r.recall.round(3).tolist(), r.f1.round(3).tolist()
    ([0.5, 0.5, 1.0], [0.5, 1.0, 0.667], [0.5, 0.667, 0.8])
    >>> round(r.macro_f1, 4), round(r.accuracy, 4)
    (0.6556, 0.6667)
    """
    m = confusion_matrix(y_true, y_pred, num_classes)
    if m.sum() == 0:
        raise ValueError("a classification report needs at least one prediction")
    tp = np.diag(m).astype(np.float64)
    predicted = m.sum(axis=0).astype(np.float64)
    support = m.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support.astype(np.float64))
    f1 = _ratio(2 * precision * recall, precision + recall)
    return ClassificationReport(m, precision, recall, f1, support, float(tp.sum() / m.sum()),
                                float(precision.mean()), float(recall.mean()), float(f1.mean()))


# ------------------------------------------------------------------------------------------------
# SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (SQuAD v1.1).

    >>> normalize_answer("The  Park!")
    'park'
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0.

    >>> exact_match("the park", "Park."), exact_match("park gate", "park")
    (1.0, 0.0)
    """
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """F1 of the normalised tokens the two answers share (counted with multiplicity).

    Worked example: "red apple tree" vs "the red apple": tokens {red, apple, tree} vs {red, apple};
    2 shared, precision 2/3, recall 2/2, F1 = 2·(2/3)·1 / (2/3 + 1) = 0.8.

    >>> token_f1("red apple tree", "the red apple")
    0.8
    """
    p = normalize_answer(prediction).split()
    g = normalize_answer(gold).split()
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(p)
    recall = same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], golds: list[list[str] | str]) -> dict[str, float]:
    """Mean exact match and token F1 in percent; each prediction takes its best gold answer.

    >>> squad_scores(["park", "the red cup"], [["the park"], ["a cup", "red cup"]])
    {'exact_match': 100.0, 'f1': 100.0}
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} sets of gold answers")
    if not predictions:
        raise ValueError("squad_scores needs at least one prediction")
    em = f1 = 0.0
    for pred, gold in zip(predictions, golds):
        answers = [gold] if isinstance(gold, str) else list(gold)
        if not answers:
            raise ValueError("every prediction needs at least one gold answer")
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(token_f1(pred, a) for a in answers)
    n = len(predictions)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
