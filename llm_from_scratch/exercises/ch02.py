"""Exercises for chapter 2, from text to numbers.

Each reference solution is the package's own tokenizer code (``tokenizers.bpe.merge``,
``tokenizers.bpe.get_pair_counts`` with the tie-break of ``tokenizers.bpe.train_merges``, and
``tokenizers.wordpiece.wordpiece_tokenize``), wrapped only to give it the exercise's name and
signature, so the code the reader rebuilds is the code the tokenizers run. Each wrapper imports
what it calls inside its body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register

# ---------------------------------------------------------------------------------------------
# bpe_merge


def bpe_merge(ids, pair, new_id):
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    Occurrences do not overlap: in ``[5, 5, 5]`` the pair ``(5, 5)`` is replaced once, at the
    left. Return a new list; do not change ``ids``.

    Example: ``bpe_merge([1, 2, 3, 1, 2], (1, 2), 256)`` is ``[256, 3, 256]``.

    The reference is the package's ``llm_from_scratch.tokenizers.bpe.merge``.
    """
    from llm_from_scratch.tokenizers.bpe import merge

    return merge(ids, pair, new_id)


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


# ---------------------------------------------------------------------------------------------
# most_frequent_pair


def most_frequent_pair(words, counts):
    """The pair of adjacent tokens that BPE merges next.

    ``words[i]`` is a list of token ids that occurs ``counts[i]`` times in the training text.
    Count every adjacent pair at every position (so ``[7, 7, 7]`` holds ``(7, 7)`` twice),
    weighted by the count of its word. Return the pair with the highest total as a tuple
    ``(a, b)``; when several pairs share the highest total, return the smallest one (compare
    the tuples: ``(1, 9)`` before ``(2, 0)``). Return ``None`` if no word has two tokens.

    Example: words ``[[1, 2, 3], [3, 1, 2], [2, 3]]`` with counts ``[1, 1, 2]``: ``(1, 2)``
    totals 1 + 1 = 2, ``(2, 3)`` totals 1 + 2 = 3, ``(3, 1)`` totals 1, so the answer is
    ``(2, 3)``. With counts ``[2, 2, 1]`` the totals are 4, 3 and 2: the answer is ``(1, 2)``.

    The reference counts with the package's ``tokenizers.bpe.get_pair_counts`` and breaks
    ties as ``tokenizers.bpe.train_merges`` does.
    """
    from llm_from_scratch.tokenizers.bpe import get_pair_counts

    pair_counts = get_pair_counts(words, counts)  # (int, int) -> int
    if not pair_counts:
        return None
    return min(pair_counts, key=lambda p: (-pair_counts[p], p))  # most frequent, then smallest


def _wrong_most_frequent_pair(words, counts):
    # counts correctly, but a tie goes to the pair seen first, not to the smallest pair
    pair_counts = {}
    for ids, n in zip(words, counts):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + n
    return max(pair_counts, key=pair_counts.get) if pair_counts else None


def _random_pair_case(seed, n_words, vocab):
    def make():
        rng = np.random.default_rng(seed)
        words = [[int(t) for t in rng.integers(0, vocab, rng.integers(1, 8))] for _ in range(n_words)]
        counts = [int(c) for c in rng.integers(1, 50, n_words)]
        return (words, counts)
    return make


# ---------------------------------------------------------------------------------------------
# wordpiece_split


def wordpiece_split(word, vocab, unk="[UNK]"):
    """Split one word into WordPiece tokens, greedy longest match first.

    Take the longest prefix of the word that is in ``vocab``; continue from where it ended,
    looking up continuation pieces with a ``##`` prefix. If at some point no piece matches, the
    whole word becomes ``[unk]`` (a one-element list).

    Example: with vocab {"un", "##aff", "##able", "##a"}, "unaffable" -> ["un", "##aff", "##able"].

    The reference is the package's ``llm_from_scratch.tokenizers.wordpiece.wordpiece_tokenize``,
    which, like BERT, also gives ``[unk]`` for a word longer than 100 characters (the checks
    use shorter words).
    """
    from llm_from_scratch.tokenizers.wordpiece import wordpiece_tokenize

    return wordpiece_tokenize(word, vocab, unk_token=unk)


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


# ---------------------------------------------------------------------------------------------
# merge_saving


def merge_saving(run_lengths, counts):
    """What merging the pair ``(a, a)`` does to chunks that are runs of one byte: chunk ``i`` is
    ``run_lengths[i]`` copies of ``a`` and occurs ``counts[i]`` times. Return
    ``(pair_count, tokens_saved)``, the pair's count ``c`` as BPE ranks it and the number ``m``
    of tokens the merge removes.

    A run of ``n`` holds the pair at each of its ``n - 1`` adjacent positions, overlaps included,
    so ``c = sum counts_i (n_i - 1)``. The merge scans left to right and, after replacing a pair,
    continues after it, so it replaces positions (1, 2), (3, 4), ...: ``floor(n / 2)`` pairs,
    and ``m = sum counts_i floor(n_i / 2)``.

    Example: an indentation of 8 spaces seen 10 times and one of 3 spaces seen once:
    c = 10 * 7 + 2 = 72, m = 10 * 4 + 1 = 41.
    """
    from llm_from_scratch.tokenizers.bpe import get_pair_counts, merge

    chunks = [[97] * int(n) for n in run_lengths]          # each run as byte ids of "a"
    pair_count = get_pair_counts(chunks, list(counts)).get((97, 97), 0)
    saved = sum(int(k) * (len(ids) - len(merge(ids, (97, 97), 256)))
                for ids, k in zip(chunks, counts))
    return int(pair_count), int(saved)


def _wrong_merge_saving(run_lengths, counts):
    # a common slip: take the pair's count as the number of tokens the merge saves
    c = sum(int(k) * max(int(n) - 1, 0) for n, k in zip(run_lengths, counts))
    return c, c


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
        name="most_frequent_pair", chapter=2, title="the pair BPE merges next (counts and tie-break)",
        reference=most_frequent_pair,
        cases=(
            Case("the worked example", lambda: ([[1, 2, 3], [3, 1, 2], [2, 3]], [1, 1, 2])),
            Case("the worked example with counts [2, 2, 1]", lambda: ([[1, 2, 3], [3, 1, 2], [2, 3]], [2, 2, 1])),
            Case("a tie: the smallest pair wins, not the first seen", lambda: ([[5, 6], [1, 2], [9, 0]], [3, 3, 3])),
            Case("overlaps count: [7, 7, 7] holds (7, 7) twice", lambda: ([[7, 7, 7], [1, 2]], [1, 1])),
            Case("weighted: one word seen often beats a pair in many words",
                 lambda: ([[1, 2], [1, 2, 5], [1, 2], [9, 9, 9]], [1, 1, 1, 2])),
            Case("no word has two tokens: None", lambda: ([[1], [2], []], [4, 5, 6])),
            Case("random words over 4 ids (many ties)", _random_pair_case(0, 30, 4)),
            Case("random words over 40 ids", _random_pair_case(1, 200, 40)),
        ),
        hint="add each word's count to every adjacent pair in it, overlaps included; among the "
             "pairs with the largest total, return the smallest tuple (a, b)",
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
            Case("a different unknown token", lambda: ("zap", _VOCAB, "<unk>")),
        ),
        hint="try the longest candidate first and shorten it one character at a time; "
             "continuation pieces start with '##'",
    )),
    register(Exercise(
        name="merge_saving", chapter=2, title="a merge's count against the tokens it saves (overlaps)",
        reference=merge_saving,
        cases=(
            Case("the docstring's example: 8 spaces 10 times, 3 spaces once", lambda: ([8, 3], [10, 1])),
            Case("aaa: the pair twice, one token saved", lambda: ([3], [1])),
            Case("runs of 1 to 9", lambda: (list(range(1, 10)), [1] * 9)),
            Case("indentation of 4, 8, 12 and 16 spaces with counts", lambda: ([4, 8, 12, 16], [500, 300, 120, 40])),
            Case("odd runs seen often", lambda: ([5, 7, 2], [13, 6, 21])),
        ),
        hint="in a run of n there are n - 1 overlapping pairs, but a left-to-right merge can only "
             "use every other one: n // 2",
    )),
]

WRONG = {"bpe_merge": _wrong_bpe_merge, "most_frequent_pair": _wrong_most_frequent_pair,
         "wordpiece_split": _wrong_wordpiece_split, "merge_saving": _wrong_merge_saving}
