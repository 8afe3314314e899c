"""Evaluation metrics: classification (accuracy, precision, recall, F1, confusion matrix),
extractive question answering (SQuAD's exact match and token F1), and machine-translation
overlap scores (BLEU and chrF / chrF++, computed as sacreBLEU 2.x computes them).

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

BLEU counts, for n = 1..4, the hypothesis n-grams that also occur in a reference (each n-gram's
count clipped to its largest count in any one reference), summed over the corpus: p_n =
matches_n / totals_n. With c the hypothesis length and r the sum of the reference lengths closest
to each hypothesis,

    BLEU = BP · exp(¼ Σ log p_n),     BP = 1 if c >= r else exp(1 - r/c)

reported in percent. Words come from sacreBLEU's default "13a" tokenizer (mteval-v13a.pl's
rules); a zero p_n is smoothed ("exp": the k-th zero precision becomes 1/(2^k · totals_n)).
chrF is the F-beta score (beta = 2, recall weighted twice) of character n-grams n = 1..6 with
whitespace removed, precision and recall averaged over the n-gram orders first; chrF++ adds word
uni- and bigrams. Left out: sacreBLEU's other tokenizers (zh, intl, ja-mecab, spm, ...) and
bootstrap confidence intervals.

References: Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine Translation",
ACL 2002, section 2; Chen & Cherry, "A Systematic Comparison of Smoothing Techniques for
Sentence-Level BLEU", WMT 2014 (smoothing methods 1-3); Post, "A Call for Clarity in Reporting
BLEU Scores", WMT 2018 (sacreBLEU); Popović, "chrF: character n-gram F-score for automatic MT
evaluation", WMT 2015, and "chrF++: words helping character n-grams", WMT 2017;
Rajpurkar et al., "SQuAD: 100,000+ Questions for Machine Comprehension of Text",
EMNLP 2016, section 5 (and its ``evaluate-v1.1.py``); Manning, Raghavan & Schütze,
*Introduction to Information Retrieval*, section 8.3.
"""

from __future__ import annotations

import functools
import math
import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["confusion_matrix", "ClassificationReport", "classification_report", "accuracy",
           "normalize_answer", "exact_match", "token_f1", "squad_scores",
           "tokenize_13a", "BLEUScore", "bleu_statistics", "bleu_from_statistics", "corpus_bleu",
           "sentence_bleu", "chrf_statistics", "chrf_from_statistics", "corpus_chrf", "sentence_chrf"]


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


# ------------------------------------------------------------------------------------------------
# BLEU

_13A_RULES = [
    # the ASCII symbols { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ / stand alone
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    # a period or comma splits off unless it has a digit on the side that is tested
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    # a dash after a digit splits off ("1990-2000" -> "1990 - 2000")
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


@functools.lru_cache(maxsize=2 ** 16)  # a corpus is often scored many times (as sacreBLEU caches)
def tokenize_13a(line: str) -> str:
    """sacreBLEU's default "13a" tokenizer (mteval-v13a.pl's rules), tokens joined by one space.

    The line loses "<skipped>" and end-of-line hyphens, the four XML entities &quot; &amp; &lt; &gt;
    become their characters, then ASCII punctuation is split off; a period or comma stays inside
    a number ("3.5", "1,000"), and the apostrophe and the hyphen between letters stay in the word.

    >>> tokenize_13a("Hello, world! It's 3.5 km (e-mail &amp; co).")
    "Hello , world ! It's 3.5 km ( e-mail & co ) ."
    """
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


_BLEU_SMOOTH_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}
_BLEU_TOKENIZERS = {"13a": tokenize_13a, "none": lambda line: line}


def _word_ngrams(words: list[str], max_order: int) -> Counter:
    # Counter of every n-gram, n = 1..max_order, as tuples of words
    return Counter(tuple(words[i:i + n]) for n in range(1, max_order + 1)
                   for i in range(len(words) - n + 1))


def _bleu_tokenizer(tokenize: str):
    if tokenize not in _BLEU_TOKENIZERS:
        raise ValueError(f"unknown BLEU tokenizer {tokenize!r}; expected one of {sorted(_BLEU_TOKENIZERS)}")
    return _BLEU_TOKENIZERS[tokenize]


def _reference_sets(hypotheses, references) -> list[list[str]]:
    # references: one stream per reference set, references[k][i] = k-th reference of sentence i
    # (None or a missing stream entry means "no k-th reference for this sentence").
    # Returns, for each hypothesis i, the list of its references.
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("hypotheses must be a list of strings and references a list of reference "
                         "streams (lists of strings), got a bare string")
    if not references:
        raise ValueError("need at least one reference stream")
    for k, stream in enumerate(references):
        if isinstance(stream, str):
            raise ValueError(f"reference stream {k} is a string; expected a list of {len(hypotheses)} strings "
                             f"(wrap a single reference set as [refs])")
        if len(stream) != len(hypotheses):
            raise ValueError(f"reference stream {k} has {len(stream)} sentences but there are "
                             f"{len(hypotheses)} hypotheses")
    sets = [[s[i] for s in references if s[i] is not None] for i in range(len(hypotheses))]
    for i, h in enumerate(hypotheses):
        if not isinstance(h, str):
            raise ValueError(f"hypothesis {i} is {type(h).__name__}, expected a string")
        if not sets[i]:
            raise ValueError(f"hypothesis {i} has no reference")
    return sets


@dataclass(frozen=True)
class BLEUScore:
    score: float               # BLEU in percent
    counts: list               # matched n-grams, n = 1..max_order (after add-k, as sacreBLEU)
    totals: list               # hypothesis n-grams, n = 1..max_order
    precisions: list           # p_n in percent (smoothed)
    bp: float                  # brevity penalty
    sys_len: int               # hypothesis words in the corpus
    ref_len: int               # closest-reference words in the corpus


def bleu_statistics(hypothesis: str, references: list[str], tokenize: str = "13a",
                    lowercase: bool = False, max_order: int = 4) -> list[int]:
    """Sufficient statistics of one sentence: [hyp_len, ref_len, matches_1..N, totals_1..N].

    Each hypothesis n-gram counts as a match at most as often as it occurs in one reference (the
    max over references). ref_len is the reference length closest to the hypothesis length,
    the shorter on a tie.

    Worked example: "the the cat" against "the cat": unigrams the×2, cat; "the" occurs once in the
    reference so 2 of 3 unigrams match; bigrams "the the", "the cat": 1 of 2 matches; one trigram,
    no match.

    >>> bleu_statistics("the the cat", ["the cat"])
    [3, 2, 2, 1, 0, 0, 3, 2, 1, 0]
    """
    tok = _bleu_tokenizer(tokenize)

    def prep(s: str) -> list[str]:
        s = s.lower() if lowercase else s
        return tok(s.rstrip()).split()

    ref_ngrams: Counter = Counter()
    ref_lens = []
    for ref in references:
        words = prep(ref)
        ref_lens.append(len(words))
        for ngram, count in _word_ngrams(words, max_order).items():
            ref_ngrams[ngram] = max(ref_ngrams[ngram], count)
    words = prep(hypothesis)
    hyp_len = len(words)
    ref_len = min(ref_lens, key=lambda r: (abs(hyp_len - r), r))
    matches = [0] * max_order
    totals = [0] * max_order
    for ngram, count in _word_ngrams(words, max_order).items():
        totals[len(ngram) - 1] += count
        matches[len(ngram) - 1] += min(count, ref_ngrams.get(ngram, 0))
    return [hyp_len, ref_len] + matches + totals


def bleu_from_statistics(matches, totals, sys_len: int, ref_len: int, smooth_method: str = "none",
                         smooth_value: float | None = None, effective_order: bool = False) -> BLEUScore:
    """BLEU in percent from corpus statistics, with sacreBLEU's smoothing methods.

    - "none": a zero precision makes the score 0 (its log is floored at -9999999999).
    - "floor" (Chen & Cherry method 1): a zero match count becomes ``smooth_value`` (default 0.1).
    - "add-k" (method 2): add ``smooth_value`` (default 1) to matches and totals for n >= 2.
    - "exp" (method 3, mteval's NIST smoothing): the k-th zero precision becomes 1 / (2^k totals_n).

    With ``effective_order`` the mean runs only over the orders that have any hypothesis n-gram
    (sentence BLEU uses it, so a 3-word sentence is not zero for having no 4-gram). If nothing
    matches at all the score is 0.

    Worked example: matches [9, 7, 5, 3] of totals [10, 8, 6, 4], equal lengths (BP = 1):
    BLEU = 100 · (9/10 · 7/8 · 5/6 · 3/4)^(1/4) = 100 · 0.4921875^(1/4) = 83.759...

    >>> round(bleu_from_statistics([9, 7, 5, 3], [10, 8, 6, 4], 11, 11).score, 8)
    83.75922397
    """
    if smooth_method not in _BLEU_SMOOTH_DEFAULTS:
        raise ValueError(f"unknown smooth_method {smooth_method!r}; expected one of {list(_BLEU_SMOOTH_DEFAULTS)}")
    if len(matches) != len(totals) or not len(matches):
        raise ValueError(f"matches and totals must have the same non-zero length, got {len(matches)} and {len(totals)}")
    if smooth_value is None:
        smooth_value = _BLEU_SMOOTH_DEFAULTS[smooth_method]
    matches, totals = list(matches), list(totals)
    max_order = len(matches)
    bp = 1.0
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * max_order
    if not any(matches):
        return BLEUScore(0.0, matches, totals, precisions, bp, sys_len, ref_len)
    halvings = 1.0                 # "exp": 2^k for the k-th zero precision
    order = max_order              # orders in the geometric mean
    for n in range(max_order):
        if smooth_method == "add-k" and n > 0:
            matches[n] += smooth_value
            totals[n] += smooth_value
        if totals[n] == 0:
            break                  # no n-grams of this length (or longer): precisions stay 0
        if effective_order:
            order = n + 1
        if matches[n] == 0:
            if smooth_method == "exp":
                halvings *= 2
                precisions[n] = 100.0 / (halvings * totals[n])
            elif smooth_method == "floor":
                precisions[n] = 100.0 * smooth_value / totals[n]
        else:
            precisions[n] = 100.0 * matches[n] / totals[n]
    logs = [math.log(p) if p != 0.0 else -9999999999 for p in precisions[:order]]
    score = bp * math.exp(sum(logs) / order)
    return BLEUScore(score, matches, totals, precisions, bp, sys_len, ref_len)


def corpus_bleu(hypotheses: list[str], references: list[list[str]], smooth_method: str = "exp",
                smooth_value: float | None = None, tokenize: str = "13a", lowercase: bool = False,
                effective_order: bool = False, max_order: int = 4) -> BLEUScore:
    """Corpus BLEU in percent, as ``sacrebleu.corpus_bleu`` (statistics summed over sentences).

    ``references`` is a list of reference *streams*: ``references[k][i]`` is the k-th reference
    of sentence i (None where a sentence has fewer references), as in sacreBLEU.

    Worked example: one sentence, "the cat sat" against "the cat sat down": matches [3, 2, 1, 0]
    of totals [3, 2, 1, 0]; the 4-gram total is 0 so the 4th precision stays 0 and BLEU is 0
    without effective order; the brevity penalty is exp(1 - 4/3) = 0.7165.

    >>> s = corpus_bleu(["the cat sat"], [["the cat sat down"]])
    >>> s.score, round(s.bp, 4), s.counts, s.totals
    (0.0, 0.7165, [3, 2, 1, 0], [3, 2, 1, 0])
    >>> round(corpus_bleu(["the cat sat"], [["the cat sat down"]], effective_order=True).score, 4)
    71.6531
    """
    sets = _reference_sets(hypotheses, references)
    _bleu_tokenizer(tokenize)
    stats = [0] * (2 + 2 * max_order)
    for hyp, refs in zip(hypotheses, sets):
        for j, v in enumerate(bleu_statistics(hyp, refs, tokenize, lowercase, max_order)):
            stats[j] += v
    return bleu_from_statistics(stats[2:2 + max_order], stats[2 + max_order:], stats[0], stats[1],
                                smooth_method, smooth_value, effective_order)


def sentence_bleu(hypothesis: str, references: list[str], smooth_method: str = "exp",
                  smooth_value: float | None = None, tokenize: str = "13a", lowercase: bool = False,
                  effective_order: bool = True) -> BLEUScore:
    """BLEU of one sentence against its references (a list of strings), effective order on.

    >>> round(sentence_bleu("the cat sat on the mat", ["the cat is on the mat"]).score, 6)
    37.991784
    """
    if not isinstance(hypothesis, str) or isinstance(references, str):
        raise ValueError("sentence_bleu takes one hypothesis string and a list of reference strings")
    return corpus_bleu([hypothesis], [[r] for r in references], smooth_method, smooth_value,
                       tokenize, lowercase, effective_order)


# ------------------------------------------------------------------------------------------------
# chrF and chrF++

_CHRF_PUNCT = set(string.punctuation)


def _chrf_words(sentence: str) -> list[str]:
    # chrF++'s word split: one leading or trailing punctuation mark becomes its own token
    # (the last character is tried first, so "(hi)" gives "(hi" and ")")
    words = []
    for w in sentence.split():
        if len(w) > 1 and w[-1] in _CHRF_PUNCT:
            words += [w[:-1], w[-1]]
        elif len(w) > 1 and w[0] in _CHRF_PUNCT:
            words += [w[0], w[1:]]
        else:
            words.append(w)
    return words


def _chrf_ngrams(sentence: str, char_order: int, word_order: int) -> list[Counter]:
    # [char 1-grams, ..., char N-grams, word 1-grams, ..., word M-grams]
    chars = "".join(sentence.split())
    out = [Counter(chars[i:i + n] for i in range(len(chars) - n + 1)) for n in range(1, char_order + 1)]
    if word_order:
        words = _chrf_words(sentence)
        out += [Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
                for n in range(1, word_order + 1)]
    return out


def chrf_from_statistics(stats, beta: float = 2) -> float:
    """chrF in percent from [hyp_n, ref_n, match_n] triples, one per n-gram order.

    Precision and recall are averaged over the orders where both the hypothesis and the
    reference have n-grams, then combined: F = (1 + beta²) P R / (beta² P + R).

    Worked example, one order: 3 of 4 hypothesis n-grams match among 6 reference n-grams,
    P = 0.75, R = 0.5, F2 = 5 · 0.375 / (3 + 0.5) = 0.5357.

    >>> round(chrf_from_statistics([4, 6, 3]), 2)
    53.57
    """
    if len(stats) % 3 or not len(stats):
        raise ValueError(f"chrF statistics come in [hyp, ref, match] triples, got {len(stats)} numbers")
    factor = beta ** 2
    precision = recall = 0.0
    orders = 0
    for i in range(0, len(stats), 3):
        n_hyp, n_ref, n_match = stats[i:i + 3]
        if n_hyp > 0 and n_ref > 0:
            precision += n_match / n_hyp
            recall += n_match / n_ref
            orders += 1
    if orders == 0:
        return 0.0
    precision /= orders
    recall /= orders
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def chrf_statistics(hypothesis: str, references: list[str], char_order: int = 6, word_order: int = 0,
                    beta: float = 2, lowercase: bool = False) -> list[int]:
    """[hyp_n, ref_n, match_n] for every order, against the reference with the best chrF.

    A hypothesis n-gram matches at most as often as it occurs in the reference; when the
    reference has no n-gram of an order, that order's hypothesis count is reported as 0.

    >>> chrf_statistics("ab c", ["abc"], char_order=2)
    [3, 3, 3, 2, 2, 2]
    """
    if lowercase:
        hypothesis, references = hypothesis.lower(), [r.lower() for r in references]
    hyp = _chrf_ngrams(hypothesis, char_order, word_order)
    best, best_f = [], -1.0
    for ref_sentence in references:
        ref = _chrf_ngrams(ref_sentence.lower() if lowercase else ref_sentence, char_order, word_order)
        stats = []
        for h, r in zip(hyp, ref):
            n_ref = sum(r.values())
            n_match = sum(min(c, r[g]) for g, c in h.items() if g in r)
            stats += [sum(h.values()) if r else 0, n_ref, n_match]
        f = chrf_from_statistics(stats, beta)
        if f > best_f:
            best, best_f = stats, f
    return best


def corpus_chrf(hypotheses: list[str], references: list[list[str]], char_order: int = 6,
                word_order: int = 0, beta: float = 2, lowercase: bool = False) -> float:
    """Corpus chrF (``word_order=2``: chrF++) in percent, as ``sacrebleu.corpus_chrf``.

    Statistics are summed over sentences before the F-score; ``references`` is a list of
    reference streams as in :func:`corpus_bleu`.

    >>> round(corpus_chrf(["the cat sat on the mat"], [["the cat is on the mat"]]), 6)
    64.577942
    """
    sets = _reference_sets(hypotheses, references)
    total = [0] * (3 * (char_order + word_order))
    for hyp, refs in zip(hypotheses, sets):
        for j, v in enumerate(chrf_statistics(hyp, refs, char_order, word_order, beta, lowercase)):
            total[j] += v
    return chrf_from_statistics(total, beta)


def sentence_chrf(hypothesis: str, references: list[str], char_order: int = 6, word_order: int = 0,
                  beta: float = 2, lowercase: bool = False) -> float:
    """chrF of one sentence against its references (a list of strings).

    >>> round(sentence_chrf("the cat sat on the mat", ["the cat is on the mat"]), 6)
    64.577942
    """
    if not isinstance(hypothesis, str) or isinstance(references, str):
        raise ValueError("sentence_chrf takes one hypothesis string and a list of reference strings")
    return corpus_chrf([hypothesis], [[r] for r in references], char_order, word_order, beta, lowercase)
