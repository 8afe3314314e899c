"""Metrics against hand-worked examples."""

import numpy as np
import pytest

from llm_from_scratch.metrics import (accuracy, classification_report, confusion_matrix, exact_match,
                                      normalize_answer, squad_scores, token_f1)


def test_binary_precision_recall_f1_by_hand():
    # 10 examples: TP = 3, FP = 1, FN = 2, TN = 4
    y_true = [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    r = classification_report(y_true, y_pred)
    assert r.confusion.tolist() == [[4, 1], [2, 3]]
    assert r.precision[1] == pytest.approx(3 / 4) and r.recall[1] == pytest.approx(3 / 5)
    assert r.f1[1] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert r.precision[0] == pytest.approx(4 / 6) and r.recall[0] == pytest.approx(4 / 5)
    assert r.accuracy == pytest.approx(0.7)
    assert r.macro_f1 == pytest.approx((2 * 0.75 * 0.6 / 1.35 + 2 * (4 / 6) * 0.8 / (4 / 6 + 0.8)) / 2)
    assert list(r.support) == [5, 5]


def test_a_class_never_predicted_scores_zero_not_nan():
    r = classification_report([0, 1, 2, 2], [0, 1, 1, 1], num_classes=4)
    assert r.precision.tolist() == [1.0, 1 / 3, 0.0, 0.0] and r.recall.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert np.all(np.isfinite(r.f1)) and r.f1[2] == 0.0
    assert "macro avg" in r.table(["a", "b", "c", "d"])


def test_confusion_matrix_and_errors():
    assert confusion_matrix([2, 0], [2, 1], num_classes=3).tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        confusion_matrix([0, 5], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="integers"):
        confusion_matrix([0.5], [1.0])


def test_squad_normalisation_and_scores():
    assert normalize_answer("  An apple,  THE tree. ") == "apple tree"
    assert exact_match("Apple!", "an apple") == 1.0
    assert token_f1("Mia", "Tom") == 0.0
    assert token_f1("the red red cup", "red cup") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    s = squad_scores(["park", "kitchen", "red"], [["the park"], ["garden"], ["red apple", "apple"]])
    assert s["exact_match"] == pytest.approx(100 / 3)
    assert s["f1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    with pytest.raises(ValueError, match="2 predictions but 1"):
        squad_scores(["a", "b"], [["a"]])
