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
