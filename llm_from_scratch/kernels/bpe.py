"""BPE training with incremental pair counts: the numba twin of ``tokenizers.bpe.train_merges``.

The plain loop (:func:`llm_from_scratch.tokenizers.bpe.train_merges`) recounts every pair of
every chunk after each merge, so its cost is (number of merges) x (size of the corpus). But a
merge of ``(a, b)`` into ``X`` changes only the chunks that contain ``a b``, and in them only
the pairs touching that spot: in ``... p a b n ...`` the pairs ``(p, a)``, ``(a, b)``, ``(b, n)``
go and ``(p, X)``, ``(X, n)`` come. This kernel keeps the counts up to date with exactly those
changes, and remembers for each pair the chunks it occurs in, so a merge visits only them.

Bookkeeping, with ``W`` unique chunks and ``P`` distinct pairs seen so far:

- ``tokens`` holds all chunks end to end; chunk ``w`` lives at ``tokens[starts[w]:starts[w] +
  lens[w]]`` and shrinks in place as it is merged.
- Each pair gets an index ``p`` (via a hash map from ``a * K + b``); ``count[p]`` is its
  weighted count and ``occ[occ_start[p]:occ_start[p] + occ_len[p]]`` the chunks it occurs in.
  A pair only ever *gains* occurrences in the merge that creates its newer token (before that
  the token did not exist; afterwards nothing new can appear next to it), so each pair's chunk
  list is written once, in one contiguous block, and never has to grow.
- The same fact makes the priority queue simple: after creation a count can only go down. The
  heap holds ``(-count, a, b, p)`` pushed once per pair; an entry whose count is stale is
  re-pushed with the current count when popped. The first popped entry that is up to date is
  the true best, because every other entry's key is at most as good as its stored count says.
  Keys are ``(-count, a, b)``, the plain loop's tie-break: most frequent, then smallest pair.

The merges are identical to the plain loop's (a test holds the two together on texts with many
ties). Left out: parallelism; the ``min_frequency`` cut-off of other trainers.

References: Sennrich et al. (arXiv 1508.07909), whose released ``learn_bpe.py`` also updates
counts incrementally from an index of where each pair occurs; Hugging Face ``tokenizers``
``models/bpe/trainer.rs`` (same idea, a lazily corrected max-heap).
"""

from __future__ import annotations

import heapq

import numba
import numpy as np
from numba import types
from numba.typed import Dict, List

__all__ = ["train_merges"]


def train_merges(word_counts: dict[bytes, int], num_merges: int) -> list[tuple[tuple[int, int], int]]:
    """Same as :func:`llm_from_scratch.tokenizers.bpe.train_merges` (the numpy/Python reference),
    computed by :func:`train_merges_kernel`.

    >>> train_merges({b"aaab": 2, b"ab": 1}, 2)
    [((97, 97), 256), ((97, 98), 257)]
    """
    if num_merges < 0:
        raise ValueError(f"expected num_merges >= 0, got {num_merges}")
    chunks = list(word_counts)
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)  # [W]
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)  # [W + 1]
    np.cumsum(lengths, out=starts[1:])
    tokens = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.int32)  # [sum of lengths]
    freqs = np.array([word_counts[c] for c in chunks], dtype=np.int64)  # [W]
    pairs = train_merges_kernel(tokens, starts, freqs, num_merges)  # [n_merges, 2]
    return [((int(a), int(b)), 256 + i) for i, (a, b) in enumerate(pairs)]


@numba.njit(cache=True)
def _group_occurrences(occ, occ_start, occ_len, new_p, new_w, p_begin, p_end):
    # Append the (pair, chunk) records of pairs p_begin..p_end-1 to ``occ``, grouped by pair
    # (a counting sort), and set each pair's block.
    n_new = p_end - p_begin
    sizes = np.zeros(n_new + 1, dtype=np.int64)  # [n_new + 1]
    for k in range(len(new_p)):
        sizes[new_p[k] - p_begin + 1] += 1
    offsets = np.cumsum(sizes)  # [n_new + 1]: block k is offsets[k]:offsets[k+1] of this batch
    base = len(occ)
    for k in range(n_new):
        occ_start.append(base + offsets[k])
        occ_len.append(offsets[k + 1] - offsets[k])
    block = np.empty(len(new_p), dtype=np.int64)  # [n_records]
    fill = offsets[:-1].copy()  # [n_new]
    for k in range(len(new_p)):
        j = new_p[k] - p_begin
        block[fill[j]] = new_w[k]
        fill[j] += 1
    for k in range(len(block)):
        occ.append(block[k])


@numba.njit(cache=True)
def _add_pair(index, pa, pb, count, last_w, new_p, new_w, K, a, b, f, w):
    # count[(a, b)] += f, giving (a, b) an index if it is new, and record that it occurs in chunk w
    key = np.int64(a) * K + b
    if key in index:
        p = index[key]
    else:
        p = np.int64(len(count))
        index[key] = p
        pa.append(a)
        pb.append(b)
        count.append(0)
        last_w.append(-1)
    count[p] += f
    if last_w[p] != w:
        last_w[p] = w
        new_p.append(p)
        new_w.append(w)


@numba.njit(cache=True)
def train_merges_kernel(tokens, starts, freqs, num_merges):
    """Merges learned from chunks stored end to end; returns an int64 array of ``(a, b)`` rows,
    row ``i`` creating id ``256 + i``. ``tokens`` is overwritten.

    ``tokens = [97, 97, 97, 98, 97, 98]`` with ``starts = [0, 4, 6]`` and ``freqs = [2, 1]`` is
    ``{b"aaab": 2, b"ab": 1}`` and gives ``[[97, 97], [97, 98]]`` for two merges.
    """
    K = np.int64(256 + num_merges)  # ids are < K, so a * K + b is a unique key for (a, b)
    W = len(freqs)
    lens = starts[1:] - starts[:-1]  # [W]
    merges = np.zeros((num_merges, 2), dtype=np.int64)  # [num_merges, 2]

    index = Dict.empty(types.int64, types.int64)  # a * K + b -> pair index p
    pa = List.empty_list(types.int64)  # p -> a
    pb = List.empty_list(types.int64)  # p -> b
    count = List.empty_list(types.int64)  # p -> weighted count
    last_w = List.empty_list(types.int64)  # p -> last chunk recorded for p (no chunk is recorded twice)
    occ = List.empty_list(types.int64)  # chunk indices, one block per pair
    occ_start = List.empty_list(types.int64)  # p -> start of its block in occ
    occ_len = List.empty_list(types.int64)  # p -> length of its block
    new_p = List.empty_list(types.int64)  # (pair, chunk) records of the current step
    new_w = List.empty_list(types.int64)

    # count the pairs of the corpus as it is
    for w in range(W):
        for i in range(starts[w], starts[w] + lens[w] - 1):
            _add_pair(index, pa, pb, count, last_w, new_p, new_w, K, tokens[i], tokens[i + 1], freqs[w], w)
    _group_occurrences(occ, occ_start, occ_len, new_p, new_w, 0, len(count))

    heap = [(-count[p], pa[p], pb[p], np.int64(p)) for p in range(len(count))]  # (-count, a, b, p)
    heapq.heapify(heap)

    n_merges = 0
    while n_merges < num_merges and len(heap) > 0:
        neg, a, b, q = heapq.heappop(heap)
        if count[q] == 0:
            continue  # merged away
        if count[q] != -neg:
            heapq.heappush(heap, (-count[q], a, b, q))  # stale: put back with its current count
            continue
        x = np.int64(256 + n_merges)
        merges[n_merges, 0] = a
        merges[n_merges, 1] = b
        n_merges += 1

        # merge (a, b) -> x in every chunk that contains it, left to right, adjusting the counts
        p_begin = len(count)
        new_p.clear()
        new_w.clear()
        for k in range(occ_start[q], occ_start[q] + occ_len[q]):
            w = occ[k]
            f = freqs[w]
            s = starts[w]
            e = s + lens[w]
            i = s  # read position
            j = s  # write position: tokens[s:j] is the merged prefix
            while i < e:
                if i + 1 < e and tokens[i] == a and tokens[i + 1] == b:
                    if j > s:  # (left, a) -> (left, x)
                        left = np.int64(tokens[j - 1])
                        count[index[left * K + a]] -= f
                        _add_pair(index, pa, pb, count, last_w, new_p, new_w, K, left, x, f, w)
                    if i + 2 < e:  # (b, right) -> (x, right)
                        right = np.int64(tokens[i + 2])
                        count[index[b * K + right]] -= f
                        _add_pair(index, pa, pb, count, last_w, new_p, new_w, K, x, right, f, w)
                    count[q] -= f
                    tokens[j] = x
                    i += 2
                else:
                    tokens[j] = tokens[i]
                    i += 1
                j += 1
            lens[w] = j - s
        _group_occurrences(occ, occ_start, occ_len, new_p, new_w, p_begin, len(count))
        for p in range(p_begin, len(count)):
            if count[p] > 0:
                heapq.heappush(heap, (-count[p], pa[p], pb[p], np.int64(p)))
    return merges[:n_merges]
