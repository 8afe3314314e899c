"""Tokenizers: characters, byte-level BPE (GPT-2) and WordPiece (BERT).

- :class:`CharTokenizer`: one token per character, the vocabulary is the characters of a text.
- :class:`ByteBPETokenizer`: GPT-2's byte-level byte-pair encoding, with pre-splitting.
- :class:`WordPieceTokenizer`: BERT's basic tokenization plus greedy longest-match WordPiece;
  :func:`train_wordpiece` learns a vocabulary.
"""

from llm_from_scratch.tokenizers.bpe import GPT2_SPLIT_PATTERN, ByteBPETokenizer
from llm_from_scratch.tokenizers.char import CharTokenizer
from llm_from_scratch.tokenizers.wordpiece import (
    SPECIAL_TOKENS,
    BertEncoding,
    WordPieceTokenizer,
    basic_tokenize,
    train_wordpiece,
)

__all__ = [
    "CharTokenizer",
    "ByteBPETokenizer",
    "GPT2_SPLIT_PATTERN",
    "WordPieceTokenizer",
    "BertEncoding",
    "SPECIAL_TOKENS",
    "basic_tokenize",
    "train_wordpiece",
]


def load_tokenizer(path):
    """Load a tokenizer saved by ``CharTokenizer.save`` or ``ByteBPETokenizer.save``, whichever it is.

    The JSON file's ``"format"`` field says which class wrote it.
    """
    import json

    try:
        with open(path, encoding="utf-8") as f:
            fmt = json.load(f).get("format")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a tokenizer file written by this package ({exc})") from None
    for cls in (CharTokenizer, ByteBPETokenizer):
        if fmt == cls.FORMAT:
            return cls.load(path)
    raise ValueError(f"{path}: unknown tokenizer format {fmt!r}; expected one written by CharTokenizer.save "
                     f"or ByteBPETokenizer.save")


__all__.append("load_tokenizer")
