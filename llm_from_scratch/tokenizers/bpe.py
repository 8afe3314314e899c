"""Byte-level byte-pair encoding (BPE), in the manner of GPT-2.

Start from the 256 possible bytes, so that every string has an encoding (its UTF-8 bytes) and
nothing is ever unknown. Training then repeats one step: find the most frequent pair of adjacent
tokens and *merge* it into a new token, with id 256, 257, ... in order. Encoding replays the
merges on new text; decoding concatenates the tokens' bytes.

Pre-splitting. As in GPT-2, the text is first cut into chunks by a regular expression (a
letter run with an optional leading space, a digit run, a punctuation run, whitespace) and
merges never cross a chunk boundary, so " dog", " dog." and " dog!" share the token " dog"
instead of the vocabulary filling up with "dog." and "dog!". Training only needs each unique
chunk once, with its count: ``{" the": 2107, " of": 1264, ...}``.

GPT-2's pattern uses the Unicode classes ``\\p{L}`` (letters) and ``\\p{N}`` (numbers), which
the standard-library ``re`` lacks. :data:`GPT2_SPLIT_PATTERN` approximates them: a letter is
``[^\\W\\d_]`` (a word character that is neither a decimal digit nor ``_``) and a number is
``\\d`` (a decimal digit, category Nd). The two differ from GPT-2 on (1) numeric characters
outside Nd, such as ``²``, ``½`` or ``Ⅻ``, which count as letters here; (2) the separators
U+001C..U+001F, which Python's ``\\s`` calls whitespace and GPT-2's does not. On everything else
the chunks are GPT-2's (a test checks this against Hugging Face's ``ByteLevel`` pre-tokenizer).
The alternatives cover every character, so the chunks always join back to the text.

Tie-break. When several pairs share the highest count, the pair that is smallest as a tuple
``(a, b)`` wins: training picks ``min(counts, key=lambda p: (-counts[p], p))``. Counting is
over every adjacent position, so ``"aaa"`` holds the pair ``(a, a)`` twice, while merging goes
left to right and turns ``"aaa"`` into ``[aa, a]`` (as in minbpe). The numba twin in
:mod:`llm_from_scratch.kernels.bpe` follows the same rules and gives identical merges.

Left out: special tokens (``<|endoftext|>``) and loading OpenAI's released merges. Tokens stay
``bytes``; GPT-2's files spell them with a printable stand-in per byte (``"Ġ"`` for a space),
which :func:`gpt2_bytes_to_unicode` gives, for reading such files.

References: Sennrich, Haddow & Birch, "Neural Machine Translation of Rare Words with Subword
Units" (ACL 2016, arXiv 1508.07909), section 3.2 and Algorithm 1; Radford et al., "Language
Models are Unsupervised Multitask Learners" (GPT-2, 2019), section 2.2; Karpathy's minbpe
(``minbpe/base.py``, ``minbpe/regex.py``).
"""

from __future__ import annotations

import re
from collections import Counter

from llm_from_scratch.tokenizers.base import Tokenizer

__all__ = ["ByteBPETokenizer", "GPT2_SPLIT_PATTERN", "get_pair_counts", "gpt2_bytes_to_unicode", "merge",
           "train_merges"]

# GPT-2's pre-split pattern, written for the standard-library ``re`` (see the module docstring):
#   's 't 'm 'd 'll 've 're | ' '? letters | ' '? digits | ' '? other symbols | spaces not
#   followed by a non-space (so a run of spaces leaves its last one to the next word) | spaces
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""

_CACHE_LIMIT = 200_000  # chunk encodings kept by ``encode`` before the cache is cleared


def get_pair_counts(words: list[list[int]], counts: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair occurs, where ``words[i]`` occurs ``counts[i]`` times.

    >>> get_pair_counts([[1, 2, 3], [1, 2]], [10, 5])
    {(1, 2): 15, (2, 3): 10}
    """
    pair_counts = {}  # (int, int) -> int
    for ids, n in zip(words, counts):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + n
    return pair_counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([7, 7, 7], (7, 7), 8)  # the first two merge; the third has no partner left
    [8, 7]
    """
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_merges(word_counts: dict[bytes, int], num_merges: int) -> list[tuple[tuple[int, int], int]]:
    """Learn up to ``num_merges`` BPE merges from chunks (as UTF-8 bytes) and their counts.

    The plain loop: count every adjacent pair (weighted by how often its chunk occurs), merge the
    most frequent one everywhere, repeat. Ties go to the smallest pair ``(a, b)``. Stops early if
    no pair is left (every chunk has become a single token).

    ``b"aaab"`` seen twice and ``b"ab"`` once (a = 97, b = 98): (97, 97) occurs 2 + 2 = 4 times,
    (97, 98) 2 + 1 = 3 times, so (97, 97) becomes 256; the chunks are then [256, 97, 98] and
    [97, 98], where (97, 98) is most frequent (3) and becomes 257.

    >>> train_merges({b"aaab": 2, b"ab": 1}, 2)
    [((97, 97), 256), ((97, 98), 257)]
    """
    words = [list(chunk) for chunk in word_counts]  # the chunks as lists of byte values
    counts = list(word_counts.values())
    merges = []  # ((int, int), int)
    for new_id in range(256, 256 + num_merges):
        pair_counts = get_pair_counts(words, counts)
        if not pair_counts:
            break
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))  # most frequent, then smallest
        words = [merge(ids, best, new_id) for ids in words]
        merges.append((best, new_id))
    return merges


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, as used in its (and Hugging Face's) vocab files.

    Printable bytes stand for themselves; the other 68 (controls, space, ...) map in order to
    U+0100, U+0101, ...; so the space, byte 32, is ``"Ġ"`` (U+0120). From GPT-2's ``encoder.py``.

    >>> table = gpt2_bytes_to_unicode()
    >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}  # int -> str
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


class ByteBPETokenizer(Tokenizer):
    """Byte-level BPE with GPT-2-style pre-splitting.

    Worked example (no pre-split, so the text is one chunk): in ``"aaabdaaabac"`` the pair
    ``aa`` is the most frequent (4 times, counting overlaps), so it becomes 256; then ``(256, a)``
    and ``ab`` tie at 2 and the smaller pair, ``(97, 98)``, becomes 257; and so on.

    >>> tok = ByteBPETokenizer(pattern=None).train("aaabdaaabac", vocab_size=259)
    >>> tok.merges
    [((97, 97), 256), ((97, 98), 257), ((256, 257), 258)]
    >>> tok.encode("aaabdaaabac")  # [aaab, d, aaab, a, c]
    [258, 100, 258, 97, 99]
    >>> tok.pieces("aaabdaaabac")
    ['aaab', 'd', 'aaab', 'a', 'c']
    >>> tok.decode([258, 100])
    'aaabd'
    """

    FORMAT = "llm_from_scratch.ByteBPETokenizer"

    def __init__(self, merges: list[tuple[tuple[int, int], int]] | None = None,
                 pattern: str | None = GPT2_SPLIT_PATTERN):
        self.pattern = pattern
        self._compiled = re.compile(pattern) if pattern is not None else None
        self._set_merges(merges or [])

    def _set_merges(self, merges: list[tuple[tuple[int, int], int]]) -> None:
        vocab = {i: bytes([i]) for i in range(256)}  # int -> bytes
        ranks = {}  # (int, int) -> int: the id a pair merges into (lower id = earlier merge)
        for position, ((a, b), new_id) in enumerate(merges):
            if new_id != 256 + position:
                raise ValueError(f"expected merge {position} to create id {256 + position}, got {new_id}")
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {position} joins ({a}, {b}), but only ids in [0, {new_id}) "
                                 f"exist before it")
            vocab[new_id] = vocab[a] + vocab[b]
            ranks[(a, b)] = new_id
        self.merges = [((int(a), int(b)), int(i)) for (a, b), i in merges]  # ((int, int), int)
        self.vocab = vocab
        self._ranks = ranks
        self._cache = {}  # str -> list[int]: encodings of chunks already seen

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    # ----------------------------------------------------------------------------------------
    # training

    def split(self, text: str) -> list[str]:
        """Cut ``text`` into the chunks that merges may not cross (the whole text if no pattern).

        >>> ByteBPETokenizer().split("Hello world's  2024 cats!!")
        ['Hello', ' world', "'s", ' ', ' 2024', ' cats', '!!']
        """
        if self._compiled is None:
            return [text] if text else []
        return self._compiled.findall(text)

    def train(self, text: str, vocab_size: int, impl: str = "python") -> ByteBPETokenizer:
        """Learn ``vocab_size - 256`` merges from ``text``; replaces any earlier merges.

        ``impl="python"`` runs :func:`train_merges`, the loop the book teaches; ``impl="numba"``
        runs its twin :func:`llm_from_scratch.kernels.bpe.train_merges`, which gives the same
        merges much faster. Returns ``self``, so ``ByteBPETokenizer().train(text, 512)`` works.
        """
        if vocab_size < 256:
            raise ValueError(f"expected vocab_size >= 256 (the byte alphabet), got {vocab_size}")
        if impl == "python":
            trainer = train_merges
        elif impl == "numba":
            from llm_from_scratch.kernels.bpe import train_merges as trainer
        else:
            raise ValueError(f"expected impl 'python' or 'numba', got {impl!r}")
        chunk_counts = Counter(self.split(text))  # str -> int
        word_counts = {chunk.encode("utf-8"): n for chunk, n in chunk_counts.items()}  # bytes -> int
        self._set_merges(trainer(word_counts, vocab_size - 256))
        return self

    # ----------------------------------------------------------------------------------------
    # encoding and decoding

    def _encode_chunk(self, data: bytes) -> list[int]:
        ids = list(data)
        while len(ids) >= 2:
            # the adjacent pair that was merged earliest in training is merged first
            pair = min(zip(ids, ids[1:]), key=lambda p: self._ranks.get(p, float("inf")))
            if pair not in self._ranks:
                break  # nothing left to merge
            ids = merge(ids, pair, self._ranks[pair])
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: UTF-8 bytes, merged within each chunk in training order.

        >>> ByteBPETokenizer().encode("hi")  # no merges yet: just the bytes
        [104, 105]
        """
        ids = []
        cache = self._cache
        for chunk in self.split(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                try:
                    data = chunk.encode("utf-8")
                except UnicodeEncodeError as exc:
                    bad = exc.object[exc.start]
                    raise ValueError(f"text contains a lone surrogate U+{ord(bad):04X}, which UTF-8 cannot "
                                     f"encode; expected a valid Unicode string") from None
                chunk_ids = self._encode_chunk(data)
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[chunk] = chunk_ids
            ids.extend(chunk_ids)
        return ids

    def _token_bytes(self, ids) -> list[bytes]:
        return [self.vocab[i] for i in self.check_ids(ids)]

    def decode(self, ids) -> str:
        """The text of a list of ids; bytes that are not valid UTF-8 become U+FFFD.

        >>> tok = ByteBPETokenizer()
        >>> tok.decode([104, 105])
        'hi'
        >>> tok.decode([0xE2, 0x82])  # two of the three bytes of "€": not valid UTF-8 on its own
        '�'
        """
        return b"".join(self._token_bytes(ids)).decode("utf-8", errors="replace")

    def pieces(self, text: str) -> list[str]:
        """How ``text`` splits into tokens, one string per token. A token that is not valid
        UTF-8 by itself (part of a multi-byte character) shows its bytes as ``\\xNN``.

        >>> ByteBPETokenizer().pieces("€")  # one character, three byte tokens
        ['\\\\xe2', '\\\\x82', '\\\\xac']
        """
        return [b.decode("utf-8", errors="backslashreplace") for b in self._token_bytes(self.encode(text))]

    # ----------------------------------------------------------------------------------------
    # saving and loading (JSON; never pickle, so a file cannot run code when loaded)

    # ``save`` and ``load`` are ``Tokenizer``'s: a JSON file with the pattern and the merges in order

    def _fields(self) -> dict:
        return {"pattern": self.pattern, "merges": [[a, b] for (a, b), _ in self.merges]}  # merge i creates 256 + i

    @classmethod
    def _from_fields(cls, data: dict, path) -> ByteBPETokenizer:
        pattern, raw = data.get("pattern"), data.get("merges")
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(f"{path}: expected \"pattern\" to be a string or null, got {pattern!r}")
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected \"merges\" to be a list of [a, b] pairs")
        merges = []
        for position, pair in enumerate(raw):
            if not (isinstance(pair, list) and len(pair) == 2 and all(type(x) is int for x in pair)):
                raise ValueError(f"{path}: expected merge {position} to be a pair of ints [a, b], got {pair!r}")
            merges.append(((pair[0], pair[1]), 256 + position))
        try:
            return cls(merges, pattern=pattern)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        split = "GPT-2 pattern" if self.pattern == GPT2_SPLIT_PATTERN else repr(self.pattern)
        return f"ByteBPETokenizer(vocab_size={self.vocab_size}, split={split})"
