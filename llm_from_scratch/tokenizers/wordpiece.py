"""WordPiece, BERT's tokenizer: text -> words -> longest-matching vocabulary pieces.

Tokenizing runs in two stages, as in BERT's ``tokenization.py`` and, to the character, in
Hugging Face's slow ``BertTokenizer`` (which adds one NFC step):

1. *Basic tokenization* (:func:`basic_tokenize`) cuts text into words. It drops NUL, U+FFFD
   and control, format and private-use characters (categories Cc, Cf, Co) and turns every
   whitespace character into a space; puts spaces around CJK ideographs (so each becomes a word
   of its own); NFC-normalises (as Hugging Face's ``BasicTokenizer`` does); lower-cases and
   strips accents (NFD, then drop the combining marks, category Mn) when ``do_lower_case``; and
   splits off every punctuation character as a word of its own. Punctuation is ASCII 33-47,
   58-64, 91-96 and 123-126 (so ``$``, ``^`` and the backtick count) or any Unicode category P*.
2. *WordPiece* (:func:`wordpiece_tokenize`) cuts each word, greedily from the left, into the
   longest piece in the vocabulary; pieces after the first carry the prefix ``##``. If some
   position has no matching piece, or the word has more than 100 characters, the whole word
   becomes ``[UNK]``.

Special tokens written in the text (``"[MASK]"``, exact case) are kept whole, as Hugging Face
does. The vocabulary file is BERT's ``vocab.txt``: one token per line, id = line number.

Training (:func:`train_wordpiece`) follows the procedure of the Hugging Face course: start from
the special tokens and the characters (``c`` for a word's first character, ``##c`` for the
others), then repeatedly merge the adjacent pair with the highest score
``count(ab) / (count(a) * count(b))``: frequent together, rare apart. Ties go to the smallest
pair ``(a, b)``. (The ``tokenizers`` library's ``WordPieceTrainer`` uses plain BPE frequency
instead; Google never released its trainer.)

Lower-casing goes one character at a time, as in Hugging Face's fast (Rust) tokenizer, so a
word-final capital sigma becomes "σ"; Python's ``str.lower``, which its slow ``BertTokenizer``
uses, gives the final form "ς" there (``"ΣΑΣ"``: ids of σ, ##α, ##σ here and in the fast one).

Differences from Hugging Face. From its slow ``BertTokenizer``: that final sigma, and
private-use characters (category Co), which it keeps (as [UNK]) and its fast one, like this
module, drops. From its fast one: it treats U+2B820..U+2B91F as letters (its CJK list starts that
range at U+2B920, BERT's and ours at U+2B820); its Unicode tables are older than Python's
(14.0), so a character assigned since (U+061D, U+10F84, ...) is unassigned there and a mark or
punctuation here; it does not NFC-normalise, which shows only without lower-casing
(``"e\u0301"`` vs ``"é"``), takes an empty second text for no second text, and truncates odd
overflows the other way round.

Left out: the batch API, offsets, ``stride``, returning overflowing tokens, and a test of the
``tokenize_chinese_chars=False`` option.

References: Schuster & Nakajima, "Japanese and Korean Voice Search" (ICASSP 2012), the origin
of WordPiece; Wu et al., "Google's Neural Machine Translation System" (arXiv 1609.08144),
section 4.1; Devlin et al., "BERT" (arXiv 1810.04805), section 3 and google-research/bert
``tokenization.py``; Hugging Face course, chapter 6, "WordPiece tokenization".
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from llm_from_scratch.fileio import atomic_write
from llm_from_scratch.tokenizers.base import check_ids

__all__ = [
    "SPECIAL_TOKENS",
    "BertEncoding",
    "WordPieceTokenizer",
    "basic_tokenize",
    "train_wordpiece",
    "wordpiece_tokenize",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ------------------------------------------------------------------------------------------------
# basic tokenization


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    # control (Cc), format (Cf) and private-use (Co) characters, as Hugging Face's fast
    # tokenizer drops them (BERT's tokenization.py drops only Cc and Cf); unassigned code points
    # (Cn) stay and become [UNK] like any unknown character
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Co")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True  # every non-alphanumeric ASCII character, Unicode punctuation or not
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    # The CJK Unified Ideographs blocks and their extensions (not Hangul, Hiragana or Katakana,
    # whose words are separated by spaces anyway)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def _split_on_punctuation(word: str) -> list[str]:
    pieces = []  # each punctuation character alone; the runs between them whole
    start_new = True
    for ch in word:
        if _is_punctuation(ch):
            pieces.append(ch)
            start_new = True
        else:
            if start_new:
                pieces.append("")
                start_new = False
            pieces[-1] += ch
    return pieces


def basic_tokenize(text: str, do_lower_case: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> list[str]:
    """Cut text into words and punctuation, as BERT's ``BasicTokenizer`` does.

    ``strip_accents=None`` means "strip them if lower-casing", as in the original BERT.

    >>> basic_tokenize("Héllo, WORLD!  naïve 東京")
    ['hello', ',', 'world', '!', 'naive', '東', '京']
    >>> basic_tokenize("Héllo, WORLD!", do_lower_case=False)
    ['Héllo', ',', 'WORLD', '!']
    """
    chars = []
    for ch in text:
        if ch == "\x00" or ch == "\ufffd" or _is_control(ch):
            continue
        if _is_whitespace(ch):
            chars.append(" ")
        elif tokenize_chinese_chars and _is_cjk(ord(ch)):
            chars.append(f" {ch} ")
        else:
            chars.append(ch)
    text = unicodedata.normalize("NFC", "".join(chars))
    words = []
    for word in text.split():
        if do_lower_case:
            # one character at a time, as the fast (Rust) tokenizer does: str.lower() would turn
            # a word-final capital sigma into the final form "ς", the Rust lower-casing gives "σ"
            word = "".join(ch.lower() for ch in word)
        if strip_accents or (strip_accents is None and do_lower_case):
            word = _strip_accents(word)
        words.extend(_split_on_punctuation(word))
    return [w for w in words if w]  # stripping accents can leave nothing of a word made of marks


# ------------------------------------------------------------------------------------------------
# WordPiece


def wordpiece_tokenize(word: str, vocab, unk_token: str = "[UNK]", max_chars: int = 100) -> list[str]:
    """Greedy longest-match-first split of one word into vocabulary pieces.

    At each position take the longest piece in ``vocab`` (prefixed ``##`` after the first);
    if there is none, the whole word is ``unk_token``.

    >>> vocab = {"un", "##aff", "##able", "##a", "##ff"}
    >>> wordpiece_tokenize("unaffable", vocab)
    ['un', '##aff', '##able']
    >>> wordpiece_tokenize("unaffablez", vocab)  # no piece starts with "z"
    ['[UNK]']
    """
    if len(word) > max_chars:
        return [unk_token]
    pieces = []
    start = 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]
        pieces.append(piece)
        start = end
    return pieces


@dataclass
class BertEncoding:
    """The model inputs for one sequence or one pair of sequences.

    ``[CLS] my dog [SEP] it barks [SEP]`` has ``token_type_ids`` ``[0, 0, 0, 0, 1, 1, 1]`` and,
    padded to 9, ``attention_mask`` ``[1, 1, 1, 1, 1, 1, 1, 0, 0]``.
    """

    input_ids: list[int] = field(default_factory=list)
    token_type_ids: list[int] = field(default_factory=list)  # 0 for the first sequence, 1 for the second
    attention_mask: list[int] = field(default_factory=list)  # 1 for real tokens, 0 for padding

    def __getitem__(self, key: str) -> list[int]:  # enc["input_ids"], as with Hugging Face
        return getattr(self, key)


class WordPieceTokenizer:
    """BERT's tokenizer, from a vocabulary (``list`` of tokens in id order, or ``token -> id``).

    >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    ...                           "the", "dog", "bark", "##s", "!"])
    >>> tok.tokenize("The dog barks!")
    ['the', 'dog', 'bark', '##s', '!']
    >>> enc = tok.encode("The dog barks!", "dogs", max_length=11, padding="max_length")
    >>> enc.input_ids
    [2, 5, 6, 7, 8, 9, 3, 6, 8, 3, 0]
    >>> enc.token_type_ids
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    >>> enc.attention_mask
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    >>> tok.decode(enc.input_ids, skip_special_tokens=True)
    'the dog barks! dogs'
    """

    def __init__(self, vocab: list[str] | dict[str, int], do_lower_case: bool = True,
                 strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 unk_token: str = "[UNK]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 cls_token: str = "[CLS]", mask_token: str = "[MASK]", max_input_chars_per_word: int = 100):
        if isinstance(vocab, dict):
            ids = sorted(vocab.values())
            if ids != list(range(len(vocab))):
                raise ValueError(f"expected the vocabulary ids to be 0, 1, ..., {len(vocab) - 1} with no gaps "
                                 f"or repeats; got {len(set(ids))} distinct ids from {ids[0]} to {ids[-1]}")
            vocab = sorted(vocab, key=vocab.get)
        self.id_to_token = list(vocab)  # id -> token
        self.vocab = {}  # token -> id
        for i, token in enumerate(self.id_to_token):
            if token in self.vocab:
                raise ValueError(f"expected each token once in the vocabulary, but {token!r} has ids "
                                 f"{self.vocab[token]} and {i}")
            self.vocab[token] = i
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        specials = (pad_token, unk_token, cls_token, sep_token, mask_token)
        for token in specials:
            if token not in self.vocab:
                raise ValueError(f"expected the special token {token!r} in the vocabulary; "
                                 f"BERT needs all of {list(specials)}")
        self.special_tokens = specials
        # split text on special tokens, longest first, so "[MASK]" in a sentence stays whole
        alternatives = "|".join(re.escape(t) for t in sorted(specials, key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})")

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, **kwargs) -> WordPieceTokenizer:
        """Read BERT's ``vocab.txt``: one token per line, the id of a token is its line number."""
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f]
        if not tokens:
            raise ValueError(f"{path}: expected one token per line, but the file is empty")
        return cls(tokens, **kwargs)

    def save_vocab(self, path: str | os.PathLike) -> None:
        """Write ``vocab.txt``: one token per line, in id order (atomically, ``fileio.atomic_write``)."""
        for token in self.id_to_token:
            if "\n" in token:
                raise ValueError(f"token {token!r} contains a newline and cannot be written one per line")
        atomic_write(path, "".join(token + "\n" for token in self.id_to_token))

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    def tokenize(self, text: str) -> list[str]:
        """Basic tokenization, then WordPiece on every word; special tokens in the text stay whole."""
        tokens = []
        for part in self._special_re.split(text):
            if part in self.special_tokens:
                tokens.append(part)
                continue
            for word in basic_tokenize(part, self.do_lower_case, self.strip_accents, self.tokenize_chinese_chars):
                tokens.extend(wordpiece_tokenize(word, self.vocab, self.unk_token, self.max_input_chars_per_word))
        return tokens

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens; a token not in the vocabulary gets the id of ``[UNK]``."""
        unk = self.vocab[self.unk_token]
        return [self.vocab.get(token, unk) for token in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token[i] for i in check_ids(ids, self.vocab_size)]

    def encode(self, text: str, text_pair: str | None = None, max_length: int | None = None,
               padding: bool | str = False) -> BertEncoding:
        """``[CLS] text [SEP]`` or ``[CLS] text [SEP] text_pair [SEP]`` as ids, with segment ids
        and attention mask.

        ``max_length`` truncates to that many ids in all (special tokens included) the way
        Hugging Face's ``BertTokenizer`` does with ``truncation=True``: from the end, and for a
        pair, always from the longer sequence (the second when they are the same length).
        ``padding="max_length"`` then pads with ``[PAD]`` (attention mask 0) up to ``max_length``.
        """
        if padding not in (False, "max_length", "do_not_pad"):
            raise ValueError(f"expected padding False or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        ids_a = self.convert_tokens_to_ids(self.tokenize(text))
        ids_b = self.convert_tokens_to_ids(self.tokenize(text_pair)) if text_pair is not None else None
        if max_length is not None:
            n_special = 2 if ids_b is None else 3
            budget = max_length - n_special
            if budget < 0:
                raise ValueError(f"max_length={max_length} leaves no room for the {n_special} special tokens")
            if ids_b is None:
                ids_a = ids_a[:budget]
            elif len(ids_a) + len(ids_b) > budget:
                # Removing one token at a time from the longer sequence (the second when tied)
                # leaves the first with: all of it if it is short, else what the second leaves
                # free, but never less than half the budget (rounded up).
                n_a = min(len(ids_a), max(budget - len(ids_b), (budget + 1) // 2))
                ids_a, ids_b = ids_a[:n_a], ids_b[:budget - n_a]
        cls_id, sep_id = self.vocab[self.cls_token], self.vocab[self.sep_token]
        input_ids = [cls_id] + ids_a + [sep_id]
        token_type_ids = [0] * len(input_ids)
        if ids_b is not None:
            input_ids += ids_b + [sep_id]
            token_type_ids += [1] * (len(ids_b) + 1)
        attention_mask = [1] * len(input_ids)
        if padding == "max_length":
            n_pad = max_length - len(input_ids)
            input_ids += [self.vocab[self.pad_token]] * n_pad
            token_type_ids += [0] * n_pad
            attention_mask += [0] * n_pad
        return BertEncoding(input_ids, token_type_ids, attention_mask)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = True) -> str:
        """Tokens joined by spaces with ``##`` continuations glued on; then (as Hugging Face's
        slow tokenizer does by default) `` .``, `` ,``, `` ' `` and the like lose their space.
        Lower-casing and stripped accents cannot be undone.

        >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##able", "!"])
        >>> tok.decode([2, 5, 6, 7, 3])
        '[CLS] unable! [SEP]'
        """
        tokens = self.convert_ids_to_tokens(ids)
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self.special_tokens]
        text = " ".join(tokens).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                  (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case})"


# ------------------------------------------------------------------------------------------------
# training


def _pair_scores(splits: dict[str, list[str]], word_counts: Counter) -> dict[tuple[str, str], float]:
    piece_counts = Counter()  # str -> int
    pair_counts = Counter()  # (str, str) -> int
    for word, pieces in splits.items():
        n = word_counts[word]
        for piece in pieces:
            piece_counts[piece] += n
        for pair in zip(pieces, pieces[1:]):
            pair_counts[pair] += n
    return {(a, b): n / (piece_counts[a] * piece_counts[b]) for (a, b), n in pair_counts.items()}


def train_wordpiece(texts: str | Iterable[str], vocab_size: int, do_lower_case: bool = True,
                    strip_accents: bool | None = None, tokenize_chinese_chars: bool = True) -> WordPieceTokenizer:
    """Learn a WordPiece vocabulary of (at most, once the alphabet is in) ``vocab_size`` tokens.

    The vocabulary starts as the special tokens, then every character as a word start (``c``)
    and as a continuation (``##c``) in sorted order. Each step merges the adjacent pair with the
    highest ``count(ab) / (count(a) * count(b))`` (ties: smallest pair) and adds the merged
    piece. Stops at ``vocab_size`` or when every word is one piece; the alphabet is always kept
    whole, even if it alone is larger than ``vocab_size``.

    In ``"hug hug hugs pun"`` the words are ``h ##u ##g`` (twice), ``h ##u ##g ##s`` and
    ``p ##u ##n``. ``(##g, ##s)`` scores 1 / (3 * 1) = 1/3; every other pair scores 1/4 (for
    ``(h, ##u)``: 3 / (3 * 4)), so ``##gs`` comes first. Then all five pairs score 1/4 and the
    smallest, ``(##u, ##g)``, gives ``##ug``:

    >>> tok = train_wordpiece("hug hug hugs pun", vocab_size=13)
    >>> tok.id_to_token[5:]  # after the 5 special tokens: the alphabet, then the merges
    ['##g', '##n', '##s', '##u', 'h', 'p', '##gs', '##ug']
    """
    if isinstance(texts, str):
        texts = [texts]
    word_counts = Counter()  # str -> int
    for text in texts:
        word_counts.update(basic_tokenize(text, do_lower_case, strip_accents, tokenize_chinese_chars))
    splits = {w: [w[0]] + ["##" + c for c in w[1:]] for w in word_counts}  # str -> list[str]
    alphabet = sorted({piece for pieces in splits.values() for piece in pieces})
    vocab = list(SPECIAL_TOKENS) + [p for p in alphabet if p not in SPECIAL_TOKENS]
    known = set(vocab)
    while len(vocab) < vocab_size:
        scores = _pair_scores(splits, word_counts)
        if not scores:
            break
        a, b = min(scores, key=lambda p: (-scores[p], p))  # highest score, then smallest pair
        new = a + b[2:]  # b is never a word start, so it always begins with "##"
        for word, pieces in splits.items():
            i = 0
            while i < len(pieces) - 1:
                if pieces[i] == a and pieces[i + 1] == b:
                    pieces[i:i + 2] = [new]
                i += 1
        if new not in known:  # two different pairs can spell the same piece
            vocab.append(new)
            known.add(new)
    return WordPieceTokenizer(vocab, do_lower_case=do_lower_case, strip_accents=strip_accents,
                              tokenize_chinese_chars=tokenize_chinese_chars)
