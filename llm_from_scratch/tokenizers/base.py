"""What the tokenizers share: checking token ids, and saving to / loading from JSON.

``check_ids`` turns token ids into ints and refuses one outside ``[0, vocab_size)``, naming it
and its position; every ``decode`` goes through it. ``Tokenizer`` is the base of the tokenizers
saved as one JSON file (characters, byte-level BPE): ``save`` writes
``{"format": FORMAT, "version": VERSION, **fields}`` atomically, and ``load`` checks the format
and version before a subclass rebuilds itself from its fields. WordPiece keeps BERT's
``vocab.txt`` instead, and uses ``check_ids`` alone.

A subclass sets ``FORMAT`` (the string that tells ``load_tokenizer`` which class wrote a file),
``JSON_OPTIONS`` (how ``json.dumps`` lays the file out) and implements ``_fields`` and
``_from_fields``:

>>> import json
>>> class Letters(Tokenizer):
...     FORMAT = "example.Letters"
...     def __init__(self, letters): self.letters = letters
...     vocab_size = property(lambda self: len(self.letters))
...     def _fields(self): return {"letters": self.letters}
...     @classmethod
...     def _from_fields(cls, data, path): return cls(data["letters"])
>>> Letters("ab").to_json()
'{"format": "example.Letters", "version": 1, "letters": "ab"}'
>>> Letters("ab").check_ids([1, 0])
[1, 0]
>>> Letters("ab").check_ids([0, 2])
Traceback (most recent call last):
...
ValueError: expected token ids in [0, 2), got 2 at position 1

Never pickle: a JSON file cannot run code when it is loaded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from llm_from_scratch.fileio import atomic_write

__all__ = ["Tokenizer", "check_ids"]


def check_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """``ids`` as a list of ints, after checking each is in ``[0, vocab_size)``.

    >>> check_ids([3, 0], vocab_size=4)
    [3, 0]
    """
    out = []
    for position, i in enumerate(ids):
        i = int(i)
        if not 0 <= i < vocab_size:
            raise ValueError(f"expected token ids in [0, {vocab_size}), got {i} at position {position}")
        out.append(i)
    return out


class Tokenizer:
    """Base of the tokenizers saved as one JSON file; see the module docstring."""

    FORMAT: str  # the file's "format" field, e.g. "llm_from_scratch.CharTokenizer"
    VERSION = 1  # the file's "version" field; load refuses any other
    JSON_OPTIONS: dict = {}  # keyword arguments of json.dumps: the file's layout

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def check_ids(self, ids: Iterable[int]) -> list[int]:
        """``check_ids(ids, self.vocab_size)``."""
        return check_ids(ids, self.vocab_size)

    def _fields(self) -> dict:
        """What the file holds besides its format and version."""
        raise NotImplementedError

    @classmethod
    def _from_fields(cls, data: dict, path) -> Tokenizer:
        """Rebuild a tokenizer from a file's fields; ``ValueError`` naming ``path`` if they are wrong."""
        raise NotImplementedError

    def to_json(self) -> str:
        """The text ``save`` writes."""
        return json.dumps({"format": self.FORMAT, "version": self.VERSION, **self._fields()}, **self.JSON_OPTIONS)

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON, atomically (``fileio.atomic_write``)."""
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`; a malformed file raises ``ValueError``."""
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: expected a JSON file written by {cls.__name__}.save, "
                                 f"but it is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"{path}: expected a JSON object with \"format\": {cls.FORMAT!r}; "
                             f"this is not a file written by {cls.__name__}.save")
        if data.get("version") != cls.VERSION:
            raise ValueError(f"{path}: expected version {cls.VERSION}, got {data.get('version')!r}")
        return cls._from_fields(data, path)
