"""BLEU and chrF: hand-worked values, the published test vectors, and parity with sacreBLEU 2.6.0.

sacreBLEU is a test-only reference (requirements-reference.txt); the parity tests skip on a
reader's machine without it and fail in CI.
"""

import numpy as np
import pytest

from llm_from_scratch.metrics import (bleu_from_statistics, bleu_statistics, corpus_bleu, corpus_chrf,
                                      sentence_bleu, sentence_chrf, tokenize_13a)
from tests.conftest import reference

# sacreBLEU's README example: 3 hypotheses, 2 reference streams
README_SYS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
README_REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
               ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]


def test_published_vectors():
    # /work/shared/reference/facts.md "BLEU": sacreBLEU 2.6.0's numbers
    s = bleu_from_statistics([9, 7, 5, 3], [10, 8, 6, 4], 11, 11)
    assert s.score == pytest.approx(83.75922397, abs=1e-8)
    assert corpus_bleu(README_SYS, README_REFS).score == pytest.approx(48.530827, abs=1e-6)
    assert corpus_bleu(README_SYS, README_REFS, tokenize="none").score == pytest.approx(49.1919566, abs=1e-7)
    raw = corpus_bleu(["this is a fest"], [["this is a test"]], smooth_method="floor", smooth_value=0.01,
                      tokenize="none", effective_order=True)
    # the vector is a fraction (sacreBLEU's own test divides by 100); the score is in percent
    assert raw.score / 100 == pytest.approx(0.223606797749979, abs=1e-15)
    assert corpus_chrf(README_SYS, README_REFS) == pytest.approx(59.727518, abs=1e-6)
    assert corpus_chrf(README_SYS, README_REFS, word_order=2) == pytest.approx(59.153104, abs=1e-6)
    hyp, refs = "the cat sat on the mat", ["the cat is on the mat"]
    assert sentence_bleu(hyp, refs).score == pytest.approx(37.991784, abs=1e-6)
    assert sentence_chrf(hyp, refs) == pytest.approx(64.577942, abs=1e-6)


def test_bleu_by_hand():
    # "the cat sat on the mat" vs "the cat is on the mat": matches [5, 3, 1, 0] of [6, 5, 4, 3]
    s = sentence_bleu("the cat sat on the mat", ["the cat is on the mat"])
    assert s.counts == [5, 3, 1, 0] and s.totals == [6, 5, 4, 3] and s.bp == 1.0
    # "exp" smoothing: the first zero precision (n = 4) becomes 1 / (2 · 3)
    expected = 100 * np.exp(np.mean(np.log([5 / 6, 3 / 5, 1 / 4, 1 / 6])))
    print("sentence BLEU abs diff", abs(s.score - expected))
    assert abs(s.score - expected) < 1e-12
    # brevity penalty: 3 words against 4
    assert corpus_bleu(["a b c"], [["a b c d"]], effective_order=True).bp == pytest.approx(np.exp(1 - 4 / 3))
    # the closest reference length, the shorter one on a tie
    assert bleu_statistics("a b c", ["a b", "a b c d"])[1] == 2
    # clipping: "the" x4 against one "the"
    assert bleu_statistics("the the the the", ["the cat"])[2] == 1


def test_13a_tokenizer():
    line = "Hello, world! It's 3.5 km (e-mail &amp; co)."
    assert tokenize_13a(line) == "Hello , world ! It's 3.5 km ( e-mail & co ) ."
    assert tokenize_13a("1990-2000: $1,000.50") == "1990 - 2000 : $ 1,000.50"
    assert tokenize_13a("a<skipped>b  c-\nd") == "ab cd"


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="2 sentences but there are 1 hypotheses"):
        corpus_bleu(["a"], [["a", "b"]])
    with pytest.raises(ValueError, match="is a string"):
        corpus_bleu(["a"], ["a"])
    with pytest.raises(ValueError, match="unknown smooth_method 'foo'"):
        corpus_bleu(["a"], [["a"]], smooth_method="foo")
    with pytest.raises(ValueError, match="unknown BLEU tokenizer 'intl'"):
        corpus_bleu(["a"], [["a"]], tokenize="intl")
    with pytest.raises(ValueError, match="hypothesis 0 has no reference"):
        corpus_chrf(["a"], [[None]])


# ------------------------------------------------------------------------------------------------
# parity with sacreBLEU on random sentences

_WORDS = ["the", "The", "cat", "dog", "sat", "on", "mat", "a", "man", "bit", "it", "was", "not", "3.5",
          "1,000", "e-mail", "it's", "1990-2000", "(hi)", "'quoted'", "&amp;", "x.", "y,", "Über", "naïve",
          "日本語", "café", "—", "$5", "?", "!", ".", ",", "z-", "&lt;tag&gt;", "don't", "can't"]


def _sentence(rng, max_len=14):
    words = list(rng.choice(_WORDS, size=int(rng.integers(0, max_len))))
    seps = rng.choice([" ", " ", " ", "  ", "\t"], size=max(len(words) - 1, 0))
    out = words[0] if words else ""
    for sep, w in zip(seps, words[1:]):
        out += sep + w
    return out + (" " if rng.random() < 0.1 else "")


def _corpus(seed, n=300):
    rng = np.random.default_rng(seed)
    hyps, refs1, refs2 = [], [], []
    for _ in range(n):
        ref = _sentence(rng)
        words = ref.split()
        # the hypothesis: the reference with some words dropped, replaced or shuffled
        hyp = [w if rng.random() < 0.7 else str(rng.choice(_WORDS)) for w in words if rng.random() < 0.9]
        if rng.random() < 0.2:
            rng.shuffle(hyp)
        hyps.append(" ".join(hyp))
        refs1.append(ref)
        refs2.append(_sentence(rng) if rng.random() < 0.7 else None)
    return hyps, [refs1, refs2]


@pytest.mark.parity
def test_bleu_and_chrf_match_sacrebleu():
    sacrebleu = reference("sacrebleu")
    hyps, refs = _corpus(0)
    diffs = {}
    # corpus scores, every smoothing method and both tokenizers
    methods = [("exp", None), ("floor", None), ("floor", 0.01), ("add-k", None), ("add-k", 2), ("none", None)]
    for method, value in methods:
        for tok in ["13a", "none"] if method in ("exp", "floor") else ["13a"]:
            for eff in [False, True]:
                ours = corpus_bleu(hyps, refs, method, value, tok, effective_order=eff)
                theirs = sacrebleu.corpus_bleu(hyps, refs, smooth_method=method, smooth_value=value, tokenize=tok,
                                               use_effective_order=eff, force=True)
                assert ours.counts == theirs.counts and ours.totals == theirs.totals
                assert (ours.sys_len, ours.ref_len) == (theirs.sys_len, theirs.ref_len)
                diffs[f"corpus {method}[{value}] {tok} eff={eff}"] = abs(ours.score - theirs.score)
    assert corpus_bleu(hyps, refs, lowercase=True).score == pytest.approx(
        sacrebleu.corpus_bleu(hyps, refs, lowercase=True, force=True).score, abs=1e-9)
    for word_order in [0, 2]:
        ours = corpus_chrf(hyps, refs, word_order=word_order)
        theirs = sacrebleu.corpus_chrf(hyps, refs, word_order=word_order).score
        diffs[f"corpus chrF word_order={word_order}"] = abs(ours - theirs)
    # sentence scores, every sentence
    # (what sacrebleu.sentence_bleu / sentence_chrf build on each call, built once)
    bleu, chrf = sacrebleu.BLEU(effective_order=True), sacrebleu.CHRF()
    chrfpp = sacrebleu.CHRF(word_order=2)
    sent = {"sentence BLEU": 0.0, "sentence chrF": 0.0, "sentence chrF++": 0.0}
    for i, hyp in enumerate(hyps):
        r = [s[i] for s in refs if s[i] is not None]
        sent["sentence BLEU"] = max(sent["sentence BLEU"], abs(
            sentence_bleu(hyp, r).score - bleu.sentence_score(hyp, r).score))
        sent["sentence chrF"] = max(sent["sentence chrF"], abs(
            sentence_chrf(hyp, r) - chrf.sentence_score(hyp, r).score))
        sent["sentence chrF++"] = max(sent["sentence chrF++"], abs(
            sentence_chrf(hyp, r, word_order=2) - chrfpp.sentence_score(hyp, r).score))
    diffs.update(sent)
    for name, d in diffs.items():
        print(f"{name:40s} max abs diff {d:.3g}")
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-9, f"{worst}: max abs diff {diffs[worst]}"


@pytest.mark.parity
def test_13a_tokenizer_matches_sacrebleu_on_random_text():
    sacrebleu = reference("sacrebleu")
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    tok = Tokenizer13a()
    rng = np.random.default_rng(1)
    alphabet = list("ab1 9.,-'\"&;<>()[]{}$%#@!?/\\|~^_`*+=:\n\t") + ["&amp;", "&quot;", "<skipped>", "é", "日"]
    lines = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 30)))) for _ in range(500)]
    bad = [line for line in lines if tokenize_13a(line) != tok(line)]
    print(f"13a tokenizer: {len(lines) - len(bad)} / {len(lines)} random lines identical")
    assert not bad, f"first mismatch: {bad[0]!r}"
    assert sacrebleu.__version__ == "2.6.0"
