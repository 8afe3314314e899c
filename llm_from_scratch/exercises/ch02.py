"""Exercises for chapter 2, from text to numbers."""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def bpe_merge(ids, pair, new_id):
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Occurrences do not overlap: in ``[5, 5, 5]`` the pair ``(5, 5)`` is replaced once, at the
    left. Return a new list; do not change ``ids``.

    Example: ``bpe_merge([1, 2, 3, 1, 2], (1, 2), 256)`` is ``[256, 3, 256]``.
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


def _wrong_bpe_merge(ids, pair, new_id):
    # forgets to skip the second element of a merged pair, so overlapping pairs merge twice
    out = []
    for i in range(len(ids)):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
        elif not (i > 0 and (ids[i - 1], ids[i]) == tuple(pair)):
            out.append(ids[i])
    return out


def _random_merge_case(seed, n, vocab):
    def make():
        rng = np.random.default_rng(seed)
        ids = [int(i) for i in rng.integers(0, vocab, n)]
        return (ids, (ids[3], ids[4]), 300)
    return make


def _does_not_mutate(fn):
    ids = [1, 2, 1, 2]
    fn(ids, (1, 2), 9)
    return "" if ids == [1, 2, 1, 2] else f"the input list was changed to {ids}"


def wordpiece_split(word, vocab, unk="[UNK]"):
    """Split one word into WordPiece tokens, greedy longest match first.

    Take the longest prefix of the word that is in ``vocab``; continue from where it ended,
    looking up continuation pieces with a ``##`` prefix. If at some point no piece matches, the
    whole word becomes ``[unk]`` (a one-element list).

    Example: with vocab {"un", "##aff", "##able", "##a"}, "unaffable" -> ["un", "##aff", "##able"].
    """
    pieces = []
    start = 0
    while start < len(word):
        end = len(word)
        piece = None
        while end > start:
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                piece = candidate
                break
            end -= 1
        if piece is None:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


def _wrong_wordpiece_split(word, vocab, unk="[UNK]"):
    # shortest match first: finds a split, but not BERT's
    pieces, start = [], 0
    while start < len(word):
        for end in range(start + 1, len(word) + 1):
            candidate = word[start:end] if start == 0 else "##" + word[start:end]
            if candidate in vocab:
                pieces.append(candidate)
                start = end
                break
        else:
            return [unk]
    return pieces


_VOCAB = {"un", "##aff", "##able", "##a", "a", "##f", "##b", "##l", "##e", "play", "##ing", "##in", "##g",
          "p", "##l", "##ay", "##s"}

EXERCISES = [
    register(Exercise(
        name="bpe_merge", chapter=2, title="one BPE merge step",
        reference=bpe_merge,
        cases=(
            Case("the worked example", lambda: ([1, 2, 3, 1, 2], (1, 2), 256)),
            Case("overlapping pair (5, 5) in [5, 5, 5]", lambda: ([5, 5, 5], (5, 5), 7)),
            Case("no occurrence", lambda: ([1, 3, 1, 3], (3, 3), 9)),
            Case("empty and single-element lists", lambda: ([], (1, 2), 3)),
            Case("pair at the very end", lambda: ([4, 1, 2], (1, 2), 3)),
            Case("random ids over a small alphabet", _random_merge_case(0, 200, 3)),
        ),
        extra_checks=(("does not change its input", _does_not_mutate),),
        hint="after merging a pair, skip both of its elements (advance by 2)",
    )),
    register(Exercise(
        name="wordpiece_split", chapter=2, title="WordPiece greedy longest-match-first",
        reference=wordpiece_split,
        cases=(
            Case("unaffable", lambda: ("unaffable", _VOCAB)),
            Case("playing (longest match beats ##in + ##g)", lambda: ("playing", _VOCAB)),
            Case("plays", lambda: ("plays", _VOCAB)),
            Case("no piece for 'z' makes the whole word [UNK]", lambda: ("playz", _VOCAB)),
            Case("a single character", lambda: ("a", _VOCAB)),
        ),
        hint="try the longest candidate first and shorten it one character at a time; "
             "continuation pieces start with '##'",
    )),
]

WRONG = {"bpe_merge": _wrong_bpe_merge, "wordpiece_split": _wrong_wordpiece_split}
