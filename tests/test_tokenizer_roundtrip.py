"""Round trips on random Unicode, and WordPiece against Hugging Face's BertTokenizerFast.

Random strings draw from every plane (surrogates excluded): ASCII, Latin with accents,
combining marks, CJK, emoji with ZWJ and variation selectors, control characters, private use,
noncharacters, and the empty string. ``python -m tests.test_tokenizer_roundtrip`` prints the
counts for 10,000 strings (and 2,000 for WordPiece).
"""

from __future__ import annotations

import functools
import sys
import time
import unicodedata

import numpy as np
import pytest

from llm_from_scratch.tokenizers import ByteBPETokenizer, CharTokenizer, WordPieceTokenizer

# (lo, hi) code point ranges, inclusive, and how often each is drawn
_RANGES = [
    ((0x20, 0x7E), 30),            # printable ASCII
    ((0x00, 0x1F), 3),             # C0 controls (tab, newline, NUL, ...)
    ((0x7F, 0x9F), 2),             # DEL and C1 controls
    ((0xA0, 0x24F), 8),            # Latin-1 and Latin Extended (accents, NBSP)
    ((0x300, 0x36F), 6),           # combining diacritical marks
    ((0x370, 0x52F), 4),           # Greek, Cyrillic
    ((0x590, 0x6FF), 3),           # Hebrew, Arabic (right to left)
    ((0x900, 0xDFF), 3),           # Indic scripts (vowel signs, viramas)
    ((0x1100, 0x11FF), 2),         # Hangul jamo
    ((0x2000, 0x206F), 4),         # general punctuation, zero-width spaces and joiners
    ((0x3000, 0x30FF), 3),         # CJK punctuation, Hiragana, Katakana
    ((0x4E00, 0x9FFF), 6),         # CJK unified ideographs
    ((0xAC00, 0xD7A3), 2),         # Hangul syllables
    ((0xE000, 0xF8FF), 1),         # private use
    ((0xFE00, 0xFE0F), 2),         # variation selectors
    ((0xFFF0, 0xFFFF), 1),         # specials, U+FFFD, noncharacters
    ((0x1F300, 0x1FAFF), 6),       # emoji
    ((0x10000, 0x1FFFF), 3),       # the rest of plane 1
    ((0x20000, 0x3FFFF), 2),       # planes 2-3 (CJK extensions)
    ((0xE0000, 0xE01EF), 1),       # plane 14: tags, variation selectors supplement
    ((0xF0000, 0x10FFFF), 1),      # planes 15-16: private use
]
_WEIGHTS = np.array([w for _, w in _RANGES], dtype=np.float64) / sum(w for _, w in _RANGES)


def random_string(rng: np.random.Generator, max_len: int = 40) -> str:
    n = int(rng.integers(0, max_len + 1)) if rng.random() > 0.02 else 0   # some empty strings
    out = []
    for r in rng.choice(len(_RANGES), size=n, p=_WEIGHTS):
        lo, hi = _RANGES[r][0]
        cp = int(rng.integers(lo, hi + 1))
        out.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0xFFFD))
    if rng.random() < 0.05:
        out.append("\u200d".join(["\U0001F468", "\U0001F469", "\U0001F467"]))  # a ZWJ family
    return "".join(out)


def random_strings(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [""] + [random_string(rng) for _ in range(n - 1)]


def bpe_round_trips(strings: list[str], tok: ByteBPETokenizer) -> list[str]:
    """The strings that do not survive encode -> decode (should be none)."""
    return [s for s in strings if tok.decode(tok.encode(s)) != s]


@functools.lru_cache(maxsize=None)
def _trained_bpe(seed: int = 0, merges: int = 200) -> ByteBPETokenizer:
    # trained on random Unicode itself, so merges join bytes of multi-byte characters
    text = "".join(random_strings(300, seed + 100)) + " the cat sat on the mat. 東京 naïve café 🙂" * 20
    return ByteBPETokenizer().train(text, vocab_size=256 + merges, impl="numba")


def char_round_trips(strings: list[str], alphabet: str) -> tuple[int, int, list[str]]:
    """Round-trip the strings restricted to ``alphabet``; every out-of-alphabet string must give
    a ValueError naming the character. Returns (round trips ok, clear errors, failures)."""
    tok = CharTokenizer.from_text(alphabet)
    inside = set(alphabet)
    ok = errors = 0
    failures = []
    for s in strings:
        kept = "".join(ch for ch in s if ch in inside)
        if tok.decode(tok.encode(kept)) == kept:
            ok += 1
        else:
            failures.append(kept)
        if kept != s:
            bad = next(ch for ch in s if ch not in inside)
            try:
                tok.encode(s)
                failures.append(s)
            except ValueError as exc:
                if f"U+{ord(bad):04X}" in str(exc):
                    errors += 1
                else:
                    failures.append(s)
    return ok, errors, failures


def test_bpe_round_trips_random_unicode():
    strings = random_strings(2000, seed=1)
    for name, tok in [("untrained", ByteBPETokenizer()), ("no pre-split", ByteBPETokenizer(pattern=None)),
                      ("trained", _trained_bpe())]:
        bad = bpe_round_trips(strings, tok)
        print(f"byte BPE ({name}): {len(strings) - len(bad)} / {len(strings)} round trips")
        assert not bad, f"{name}: {len(bad)} strings changed, first {bad[0]!r}"
    assert any(i >= 256 for s in strings for i in _trained_bpe().encode(s)), "the trained merges never fire"


def test_bpe_refuses_lone_surrogates():
    with pytest.raises(ValueError, match="lone surrogate U\\+D800"):
        ByteBPETokenizer().encode("a\ud800b")


def test_char_round_trips_and_clear_errors_outside_its_alphabet():
    strings = random_strings(2000, seed=2)
    alphabet = "".join(sorted(set("".join(strings[:1000]))))   # the first half's characters
    ok, errors, failures = char_round_trips(strings, alphabet)
    print(f"char: {ok} / {len(strings)} round trips, {errors} clear out-of-alphabet errors")
    assert not failures, f"{len(failures)} failures, first {failures[0]!r}"
    assert errors > 100, "too few strings leave the alphabet to test the error"


# ------------------------------------------------------------------------------------------------
# WordPiece against Hugging Face

_PIECES = ["the", "The", "dog", "running", "unaffable", "Héllo", "naïve", "café", "ÉCOLE", "straße", "İstanbul",
           "東京", "日本語", "한국어", "Привет", "مرحبا", "שלום", "नमस्ते", "ไทย", "🙂",
           "\U0001F468\u200d\U0001F469\u200d\U0001F467", "[MASK]", "[CLS]",
           "[unk]", "don't", "e-mail", "3.14", "1,000", "$5", "(a)", "«quote»", "—", "…", "!?", "##", "a##b",
           "\u0301", "e\u0301", "ﬁ", "Ⅻ", "½", "x" * 120, "Ǆ", "ß", "ΣΑΣ", "\ufffd", "\x00", "\x7f", "\u200b",
           "\ufeff", "\u00ad", "ℌ", "𝒳", "Ａｂｃ", "ｶﾀｶﾅ", "\U00020000", "\U0002A700"]
_SPACES = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", "\x0b", "\x0c", "\u2028",
           "\x85", "\u1680", "\u202f", ""]


def _older_unicode(ch: str) -> bool:
    # assigned in Unicode 3.2, or unassigned still: both sides' character tables agree on these.
    # Python 3.11 reads Unicode 14.0; the Rust tokenizer's tables are older, so a character added
    # since (U+061D, U+10F84, ...) can be a mark or punctuation for us and unassigned for it.
    return unicodedata.ucd_3_2_0.category(ch) != "Cn" or unicodedata.category(ch) == "Cn"


def mixed_strings(n: int, seed: int, all_unicode: bool = False) -> list[str]:
    """Random sentences of words, scripts, punctuation and whitespace variants, plus raw Unicode
    (only characters that Unicode 3.2 already had, unless ``all_unicode``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 4 == 3:
            s = random_string(rng, 30)
            out.append(s if all_unicode else "".join(filter(_older_unicode, s)))
            continue
        words = [_PIECES[j] for j in rng.integers(0, len(_PIECES), size=int(rng.integers(0, 12)))]
        spaces = [_SPACES[j] for j in rng.integers(0, len(_SPACES), size=len(words) + 1)]
        out.append("".join(s + w for s, w in zip(spaces, words + [""])))
    return out


def minilm_tokenizers(transformers):
    from llm_from_scratch.checkpoints import checkpoint_dir, is_installed
    if not is_installed():
        pytest.skip("the all-MiniLM-L6-v2 checkpoint package is not installed")
    path = checkpoint_dir()
    ours = WordPieceTokenizer.from_vocab_file(path / "vocab.txt")
    try:  # transformers >= 5 builds the fast tokenizer from a vocab dict (vocab_file= is ignored)
        from transformers.models.bert.tokenization_bert import load_vocab
        theirs = transformers.BertTokenizerFast(vocab=load_vocab(str(path / "vocab.txt")), do_lower_case=True)
    except ImportError:  # transformers 4
        theirs = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    assert theirs.vocab_size == ours.vocab_size, "the fast tokenizer did not load the vocabulary"
    return ours, theirs


def _in_cjk_gap(s: str) -> bool:
    # U+2B820..U+2B91F: CJK for BERT (and us), ordinary letters for the Rust tokenizer, whose range
    # starts at U+2B920 (see the wordpiece module docstring); a difference of theirs, not ours
    return any(0x2B820 <= ord(ch) <= 0x2B91F for ch in s)


def wordpiece_mismatches(strings, ours, theirs) -> list[tuple[str, list[int], list[int]]]:
    """(string, our ids, their ids) wherever the ids differ, known Rust CJK-range cases left out."""
    out = []
    for s in strings:
        if _in_cjk_gap(s):
            continue
        a = ours.encode(s).input_ids
        b = theirs(s)["input_ids"]
        if a != b:
            out.append((s, a, b))
    return out


@pytest.mark.parity
def test_wordpiece_matches_bert_tokenizer_fast(transformers):
    # ids identical on 2,000 strings; see _older_unicode and _in_cjk_gap for what is left out
    ours, theirs = minilm_tokenizers(transformers)
    strings = mixed_strings(2000, seed=3)
    bad = wordpiece_mismatches(strings, ours, theirs)
    gap = sum(map(_in_cjk_gap, strings))
    print(f"WordPiece: {len(strings) - gap - len(bad)} / {len(strings) - gap} identical id sequences "
          f"({gap} strings with U+2B820..U+2B91F left out)")
    assert gap < 20
    assert not bad, (f"{len(bad)} mismatches; first {bad[0][0]!r}: ours {bad[0][1]} vs "
                     f"theirs {bad[0][2]}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    strings = random_strings(n, seed=0)
    t0 = time.perf_counter()
    for name, tok in [("untrained", ByteBPETokenizer()), ("no pre-split", ByteBPETokenizer(pattern=None)),
                      ("trained, 200 merges", _trained_bpe())]:
        bad = bpe_round_trips(strings, tok)
        print(f"| byte BPE, {name} | {n - len(bad)} / {n} | {bad[:2]!r} |")
    alphabet = "".join(sorted(set("".join(strings[: n // 2]))))
    ok, errors, failures = char_round_trips(strings, alphabet)
    print(f"| char ({len(alphabet)} characters) | {ok} / {n} round trips | {errors} clear errors | "
          f"{len(failures)} failures |")
    import transformers
    ours, theirs = minilm_tokenizers(transformers)
    for all_unicode in [False, True]:
        wp = mixed_strings(2000, seed=0, all_unicode=all_unicode)
        gap = sum(map(_in_cjk_gap, wp))
        bad = wordpiece_mismatches(wp, ours, theirs)
        newer = sum(not all(map(_older_unicode, s)) for s, _, _ in bad)
        print(f"| WordPiece vs BertTokenizerFast, {'all of Unicode 14' if all_unicode else 'Unicode 3.2'} | "
              f"{len(wp) - gap - len(bad)} / {len(wp) - gap} identical | {gap} with U+2B820..U+2B91F left out "
              f"| {len(bad)} mismatches, {newer} with characters newer than Unicode 3.2 |")
    for s, a, b in bad[:20]:
        print(repr(s), "\n  ours  ", ours.convert_ids_to_tokens(a), "\n  theirs", ours.convert_ids_to_tokens(b))
    print(f"{time.perf_counter() - t0:.1f} s")
