"""Exercises for chapter 10, applications: translation with an encoder-decoder.

``cross_attention_dmemory`` is the backward pass of cross-attention with respect to the encoder's
output (``attention.attention_forward``/``attention_backward`` are the reference);
``clipped_precision`` is BLEU's clipped n-gram precision of one sentence
(``metrics.bleu_statistics``); ``beam_step`` is one step of beam search (as
``seq2seq.beam_search`` does it); ``cross_kv_saved_macs`` is a derivation whose answer is a
formula: the multiply-adds that computing the cross-attention keys and values once saves.
Each wrapper imports what it calls inside its body, so its source, copied into a file on its
own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def cross_attention_dmemory(q, memory, dout):
    """One head of cross-attention without projections: queries ``q`` (T, d) from the decoder,
    keys and values both equal to the encoder's output ``memory`` (S, d):

        out = softmax(q @ memory^T / sqrt(d)) @ memory          (T, d)

    Given ``dout`` (T, d), return ``dmemory`` (S, d). ``memory`` is used twice (as keys and as
    values), so its gradient is the sum of the two paths: dmemory = dk + dv.

    Example: with T = 1 and all scores equal (q = 0), out is the mean of the S rows; the value
    path gives every row dout / S and the key path nothing (q = 0), so dmemory = dout / S per row.

    The reference is the package's ``attention_forward``/``attention_backward`` (non-causal).
    """
    from llm_from_scratch.attention import attention_backward, attention_forward

    q4 = np.asarray(q, dtype=np.float64)[None, None]  # (1, 1, T, d)
    m4 = np.asarray(memory, dtype=np.float64)[None, None]  # (1, 1, S, d)
    _, cache = attention_forward(q4, m4, m4, causal=False)
    _, dk, dv = attention_backward(np.asarray(dout, dtype=np.float64)[None, None], cache)
    return (dk + dv)[0, 0]  # (S, d)


def _wrong_cross_attention_dmemory(q, memory, dout):
    q, m, dout = (np.asarray(a, dtype=np.float64) for a in (q, memory, dout))
    att = q @ m.T / np.sqrt(q.shape[1])  # (T, S)
    p = np.exp(att - att.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return p.T @ dout  # the value path only: the keys' gradient is forgotten


def clipped_precision(hypothesis, references, n):
    """BLEU's clipped n-gram precision of one sentence, as a pair ``(matches, total)``: each
    n-gram of the hypothesis (words split on spaces) counts as a match at most as many times as
    it occurs in the reference that has it most often; ``total`` is the number of hypothesis
    n-grams.

    Example: "the the the" against "the cat": 3 unigrams, "the" occurs once in the reference, so
    (1, 3), not (3, 3).

    The reference is the package's ``metrics.bleu_statistics`` (tokenize "none").
    """
    from llm_from_scratch.metrics import bleu_statistics

    stats = bleu_statistics(hypothesis, list(references), tokenize="none", max_order=max(4, int(n)))
    order = (len(stats) - 2) // 2
    return stats[2 + int(n) - 1], stats[2 + order + int(n) - 1]


def _wrong_clipped_precision(hypothesis, references, n):
    words = hypothesis.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    ref_grams = {tuple(r.split()[i:i + n]) for r in references for i in range(len(r.split()) - n + 1)}
    return sum(g in ref_grams for g in grams), len(grams)  # not clipped: a repeated n-gram matches every time


def beam_step(scores, logprobs, num_beams):
    """One step of beam search for one source: ``scores`` (NB,) are the open beams' summed
    log-probabilities, ``logprobs`` (NB, V) the next token's log-probabilities after each beam.
    Return ``(new_scores, parents, tokens)``, each (num_beams,): the ``num_beams`` best
    continuations ``scores[b] + logprobs[b, v]`` over all beams b and tokens v, best first (ties:
    the lower flat index b * V + v first).

    Example: scores [0, -1], logprobs [[-1, -2], [-0.1, -3]], 2 beams: candidates -1, -2, -1.1,
    -4; the best two are (beam 0, token 0) at -1 and (beam 1, token 0) at -1.1.

    The reference is the step of ``seq2seq.beam_search`` without end tokens.
    """
    scores = np.asarray(scores, dtype=np.float64)  # (NB,)
    logprobs = np.asarray(logprobs, dtype=np.float64)  # (NB, V)
    V = logprobs.shape[1]
    cand = (scores[:, None] + logprobs).reshape(-1)  # (NB * V,)
    top = np.argsort(-cand, kind="stable")[:num_beams]  # (num_beams,)
    return cand[top], top // V, top % V


def _wrong_beam_step(scores, logprobs, num_beams):
    scores, logprobs = np.asarray(scores, dtype=np.float64), np.asarray(logprobs, dtype=np.float64)
    best = logprobs.argmax(axis=1)[:num_beams]  # each beam keeps its own best token: greedy per beam
    beams = np.arange(len(best))
    return scores[beams] + logprobs[beams, best], beams, best


def cross_kv_saved_macs(S, T, C, n_layers):
    """A derivation: a decoder of ``n_layers`` layers of width C generates T tokens over a source
    of S tokens. Each layer's cross-attention projects the encoder's output (S, C) to keys and
    values with two (C, C) matrices. Recomputing them at every one of the T steps, rather than
    once, costs how many extra multiply-adds in total?

    One projection of the memory is S * C * C multiply-adds; keys and values make two; each layer
    does it once instead of T times: n_layers * 2 * S * C^2 * (T - 1).

    Example: S = 30, T = 30, C = 64, 2 layers: 2 * 2 * 30 * 4096 * 29 = 14,254,080.
    """
    return int(n_layers) * 2 * int(S) * int(C) ** 2 * (int(T) - 1)


def _wrong_cross_kv_saved_macs(S, T, C, n_layers):
    return int(n_layers) * int(S) * int(C) ** 2 * (int(T) - 1)  # the values forgotten: keys only


def _attention_case(seed, T, S, d):
    def make():
        rng = np.random.default_rng(seed)
        return rng.standard_normal((T, d)), rng.standard_normal((S, d)), rng.standard_normal((T, d))
    return make


def _beam_case(seed, NB, V, k):
    def make():
        rng = np.random.default_rng(seed)
        logits = rng.standard_normal((NB, V)) * 2
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -rng.random(NB) * 3, logp, k
    return make


EXERCISES = [
    register(Exercise(
        name="cross_attention_dmemory", chapter=10, title="cross-attention backward: the encoder's gradient",
        reference=cross_attention_dmemory,
        cases=(
            Case("3 queries over 5 memory rows, d = 4", _attention_case(0, 3, 5, 4)),
            Case("one query over 7 rows, d = 2", _attention_case(1, 1, 7, 2)),
            Case("6 queries over 2 rows, d = 8", _attention_case(2, 6, 2, 8)),
        ),
        rtol=1e-9, atol=1e-12,
        hint="memory is both the keys and the values: add the value path P^T dout and the key path "
             "dS^T q / sqrt(d), where dS is the softmax backward of dout memory^T",
    )),
    register(Exercise(
        name="clipped_precision", chapter=10, title="BLEU's clipped n-gram precision",
        reference=clipped_precision,
        cases=(
            Case("the docstring's example", lambda: ("the the the", ["the cat"], 1)),
            Case("bigrams against two references", lambda: ("Sa bolo ruza un trovi .",
                                                            ["Sa bolo un trovi .", "Ko bolo ruza un trovi ."], 2)),
            Case("repeated bigrams", lambda: ("a b a b a b", ["a b c a b"], 2)),
            Case("trigrams, one reference", lambda: ("Mia parka en esti .", ["Mia parka al iri ."], 3)),
        ),
        rtol=0, atol=0,
        hint="count the hypothesis n-grams with a Counter; a match counts at most max over references of "
             "the n-gram's count there",
    )),
    register(Exercise(
        name="beam_step", chapter=10, title="one step of beam search",
        reference=beam_step,
        cases=(
            Case("the docstring's example", lambda: (np.array([0.0, -1.0]), np.array([[-1.0, -2.0], [-0.1, -3.0]]),
                                                     2)),
            Case("4 beams, 9 tokens", _beam_case(0, 4, 9, 4)),
            Case("3 beams, 6 tokens, keep 3", _beam_case(1, 3, 6, 3)),
            Case("2 beams, 12 tokens, keep 2", _beam_case(2, 2, 12, 2)),
        ),
        rtol=1e-12, atol=1e-12,
        hint="add each beam's score to its row, flatten to NB * V candidates, take the best num_beams; "
             "the flat index i is beam i // V, token i % V",
    )),
    register(Exercise(
        name="cross_kv_saved_macs", chapter=10, title="what computing cross-attention keys and values once saves",
        reference=cross_kv_saved_macs,
        cases=(
            Case("the docstring's example", lambda: (30, 30, 64, 2)),
            Case("a long output", lambda: (12, 100, 128, 3)),
            Case("one layer, one step more", lambda: (7, 2, 16, 1)),
        ),
        rtol=0, atol=0,
        hint="per layer, keys and values are two S x C by C x C products; computed once instead of T times",
    )),
]

WRONG = {
    "cross_attention_dmemory": _wrong_cross_attention_dmemory,
    "clipped_precision": _wrong_clipped_precision,
    "beam_step": _wrong_beam_step,
    "cross_kv_saved_macs": _wrong_cross_kv_saved_macs,
}
