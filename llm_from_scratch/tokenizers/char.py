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

import json
import os
from collections.abc import Iterable

__all__ = ["CharTokenizer"]

_FORMAT = "llm_from_scratch.CharTokenizer"
_VERSION = 1


class CharTokenizer:
    """Map each character to an integer id and back.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.chars                   # sorted unique characters: the id of each is its index
    ['e', 'h', 'l', 'o']
    >>> tok.encode("hole")
    [1, 3, 2, 0]
    >>> tok.decode([1, 0, 2, 2, 3])
    'hello'
    """

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
        out = []
        for position, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"expected token ids in [0, {self.vocab_size}), got {i} at position {position}")
            out.append(self.chars[i])
        return "".join(out)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (a list of characters in id order)."""
        data = {"format": _FORMAT, "version": _VERSION, "chars": self.chars}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: expected a JSON file written by CharTokenizer.save, "
                                 f"but it is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path}: expected a JSON object with \"format\": {_FORMAT!r}; "
                             f"this is not a file written by CharTokenizer.save")
        if data.get("version") != _VERSION:
            raise ValueError(f"{path}: expected version {_VERSION}, got {data.get('version')!r}")
        if not isinstance(data.get("chars"), list):
            raise ValueError(f"{path}: expected \"chars\" to be a list of characters")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
