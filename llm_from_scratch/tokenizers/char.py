"""Character-level tokenizer: one token per Unicode code point.

The simplest tokenizer there is. The vocabulary is the sorted set of characters of a training
text; a character's id is its position in that sorted list. Encoding is a dictionary lookup per
character and decoding is the reverse, so ``decode(encode(s)) == s`` for any ``s`` built from
the vocabulary.

Left out: an unknown-character token. A character outside the vocabulary is an error (naming
the character and where it is) rather than being silently replaced, because the texts this
tokenizer is meant for (StoryWorld, a small book) are known in full when the vocabulary is
built. Normalisation (NFC and friends) is left out too: ``"é"`` and ``"e\\u0301"`` are
different strings and get different tokens.

References: Karpathy, "The Unreasonable Effectiveness of Recurrent Neural Networks" (2015) and
nanoGPT ``data/shakespeare_char/prepare.py``, which use the same sorted-characters vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

from llm_from_scratch.tokenizers.base import Tokenizer

__all__ = ["CharTokenizer"]


class CharTokenizer(Tokenizer):
    """Map each character to an integer id and back.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.chars                   # sorted unique characters: the id of each is its index
    ['e', 'h', 'l', 'o']
    >>> tok.encode("hole")
    [1, 3, 2, 0]
    >>> tok.decode([1, 0, 2, 2, 3])
    'hello'
    """

    FORMAT = "llm_from_scratch.CharTokenizer"
    JSON_OPTIONS = {"ensure_ascii": False, "indent": 1}

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        for i, ch in enumerate(chars):
            if not isinstance(ch, str) or len(ch) != 1:
                raise ValueError(f"expected a vocabulary of single characters, got {ch!r} at index {i}")
        self.chars = chars  # id -> character
        self.stoi = {ch: i for i, ch in enumerate(chars)}  # str -> int
        if len(self.stoi) != len(chars):
            dupes = sorted({ch for ch in chars if chars.count(ch) > 1})
            raise ValueError(f"expected each character once in the vocabulary, got duplicates {dupes!r}")

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of ``text``: its unique characters, sorted by code point.

        >>> CharTokenizer.from_text("banana").chars
        ['a', 'b', 'n']
        """
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``, one per character.

        >>> CharTokenizer("abc").encode("cab")
        [2, 0, 1]
        """
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            position = next(i for i, ch in enumerate(text) if ch not in self.stoi)
            ch = text[position]
            raise ValueError(
                f"character {ch!r} (U+{ord(ch):04X}) at position {position} is not in the vocabulary "
                f"of {self.vocab_size} characters; build the tokenizer from a text that contains it"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The string whose characters have these ids.

        >>> CharTokenizer("abc").decode([2, 0, 1])
        'cab'
        """
        return "".join(self.chars[i] for i in self.check_ids(ids))

    # saving and loading: ``save`` and ``load`` of ``Tokenizer``, a JSON file with the characters in id order

    def _fields(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def _from_fields(cls, data: dict, path) -> CharTokenizer:
        if not isinstance(data.get("chars"), list):
            raise ValueError(f"{path}: expected \"chars\" to be a list of characters")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
