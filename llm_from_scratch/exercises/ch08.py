"""Exercises for chapter 8, pretraining a GPT and generating text.

Two exercises rebuild the package's sampling filters (``generate.top_k_filter`` and
``generate.top_p_filter`` are the references); ``shift_targets`` cuts the (input, target) windows
of next-token prediction, as ``data.batching.get_batch`` does for random starts; and
``temperature_softmax`` turns logits into the probabilities a sampler draws from, with the
package's ``generate.apply_temperature`` and ``ops.softmax_forward``. Each wrapper imports what it
calls inside its body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register
from llm_from_scratch.generate import top_k_filter, top_p_filter


def _leaves_inputs_alone(fn, make_args):
    args = make_args()
    before = [np.array(a, copy=True) for a in args]
    fn(*args)
    for i, (a, kept) in enumerate(zip(args, before)):
        if not np.array_equal(np.asarray(a), kept):
            return f"argument {i} was changed; return a new array and leave the inputs alone"
    return ""


def _logits_case(seed, shape, scale, arg):
    """Seeded float64 logits of ``shape`` (scale sets how peaked the distributions are)."""
    def make():
        rng = np.random.default_rng(seed)
        return (scale * rng.standard_normal(shape), arg)
    return make


def _probs_case(probs, arg):
    return lambda: (np.log(np.asarray(probs, dtype=np.float64)), arg)


def _same_tokens_kept(reference, cases):
    """A property check: on every case, the submission keeps (finite logit) exactly the tokens
    the reference keeps. (The value comparison alone cannot see a finite logit where the
    reference has -inf: the difference is infinite, and so is any relative tolerance.)"""
    def check(fn):
        for case in cases:
            expected = np.isfinite(reference(*case.make_args()))
            got = np.isfinite(np.asarray(fn(*case.make_args()), dtype=np.float64))
            if got.shape != expected.shape:
                return f"{case.description}: expected shape {expected.shape}, got {got.shape}"
            if not np.array_equal(got, expected):
                where = tuple(int(i) for i in np.argwhere(got != expected)[0])
                what = "kept" if got[where] else "dropped"
                return (f"{case.description}: token {where} should be "
                        f"{'dropped' if what == 'kept' else 'kept'}, but was {what}")
        return ""
    return check


# ---------------------------------------------------------------------------------------------
# top_p_filter: the reference is the package's generate.top_p_filter, signature (logits, p)

def _wrong_top_p_filter(logits, p):
    # keeps the tokens whose running total, *including themselves*, stays below p: the token
    # that carries the total across p is dropped, so the kept mass is less than p
    order = np.argsort(-logits, axis=-1, kind="stable")
    z = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    cum = np.cumsum(np.take_along_axis(probs, order, axis=-1), axis=-1)
    keep_sorted = cum < p
    keep_sorted[..., 0] = True
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf)


def _top_p_keeps_enough_mass(fn):
    """On random rows, the kept tokens hold at least p of the mass, and dropping the least
    likely kept token would leave less than p (the set is the smallest one)."""
    rng = np.random.default_rng(7)
    logits = 2.0 * rng.standard_normal((50, 20))  # (N, V)
    p = 0.8
    out = np.asarray(fn(logits.copy(), p))
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    kept = np.isfinite(out)
    for row in range(len(logits)):
        mass = probs[row][kept[row]].sum()
        if mass < p - 1e-12:
            return f"row {row}: the kept tokens hold {mass:.4f} of the probability, less than p = {p}"
        smallest = probs[row][kept[row]].min()
        if mass - smallest >= p:
            return (f"row {row}: the kept set is not the smallest: without its least likely token it "
                    f"still holds {mass - smallest:.4f} >= p = {p}")
    return ""


# ---------------------------------------------------------------------------------------------
# top_k_filter: the reference is the package's generate.top_k_filter, signature (logits, k)

def _wrong_top_k_filter(logits, k):
    # keeps exactly k token ids from argsort: of several tokens tied with the k-th largest
    # logit, only some survive, depending on the sort
    keep = np.argsort(-logits, axis=-1)[..., :k]
    out = np.full_like(logits, -np.inf)
    np.put_along_axis(out, keep, np.take_along_axis(logits, keep, axis=-1), axis=-1)
    return out


def _tie_case():
    # probabilities 0.4, 0.2, 0.2, 0.2 (shuffled): with k = 2 the three tied tokens all stay
    return (np.log(np.array([[0.2, 0.4, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3]])), 2)


# ---------------------------------------------------------------------------------------------
# shift_targets

def shift_targets(tokens, starts, block_size):
    """The training windows of next-token prediction: ``(x, y)``, both ``(B, T)`` int64 arrays.

    ``tokens`` is a 1-D array of token ids, ``starts`` holds ``B`` start positions and
    ``block_size`` is ``T``. Row ``b`` of ``x`` is the window ``tokens[s : s + T]`` with
    ``s = starts[b]``, and row ``b`` of ``y`` is the same window one token later,
    ``tokens[s + 1 : s + T + 1]``: at every position the target is the token that follows.
    Every start must leave room for the window and its last target
    (``0 <= s <= len(tokens) - T - 1``); raise ``ValueError`` otherwise.

    Example: tokens = [10, 11, 12, 13, 14, 15], starts = [0, 2], T = 3 give
    x = [[10, 11, 12], [12, 13, 14]] and y = [[11, 12, 13], [13, 14, 15]].

    The reference indexes the tokens as ``data.batching.get_batch`` does for its random starts.
    """
    tokens = np.asarray(tokens)
    starts = np.asarray(starts, dtype=np.int64)
    T = int(block_size)
    if starts.size and (starts.min() < 0 or starts.max() > len(tokens) - T - 1):
        raise ValueError(f"starts must be in [0, {len(tokens) - T - 1}] for {len(tokens)} tokens and "
                         f"block_size {T} (a window plus its last target), got {starts.tolist()}")
    idx = starts[:, None] + np.arange(T)  # (B, T) positions of the inputs
    x = tokens[idx].astype(np.int64)  # (B, T)
    y = tokens[idx + 1].astype(np.int64)  # (B, T) the next token at every position
    return x, y


def _wrong_shift_targets(tokens, starts, block_size):
    # shifts inside the window with np.roll: the last target wraps around to the window's own
    # first token instead of the token after the window
    tokens = np.asarray(tokens)
    idx = np.asarray(starts)[:, None] + np.arange(block_size)
    x = tokens[idx].astype(np.int64)
    return x, np.roll(x, -1, axis=1)


def _shift_case(seed, n, B, T, V=50):
    def make():
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, V, size=n)
        return (tokens, rng.integers(0, n - T, size=B), T)
    return make


def _shift_rejects_overflow(fn):
    try:
        fn(np.arange(10), np.array([7]), 3)  # needs tokens[7 : 11]: one past the end
    except ValueError:
        return ""
    except Exception as exc:
        return f"a start too close to the end should raise ValueError, got {type(exc).__name__}: {exc}"
    return "starts = [7] with 10 tokens and T = 3 has no target for its last position: raise ValueError"


# ---------------------------------------------------------------------------------------------
# temperature_softmax

def temperature_softmax(logits, temperature):
    """The sampling distribution at a temperature: ``softmax(logits / temperature)`` over the
    last axis, as float64 probabilities of the shape of ``logits``.

    Compute it stably: subtract each row's largest scaled logit before exponentiating, so
    logits in the thousands do not overflow. A temperature below 1 sharpens the distribution,
    above 1 flattens it; ``temperature`` is a positive number.

    Example: logits [2, 0] give probabilities 0.881 and 0.119 at temperature 1; at temperature 2
    they are divided to [1, 0], probabilities 0.731 and 0.269; at temperature 0.5, [4, 0] gives
    0.982 and 0.018.

    The reference is the package's ``generate.apply_temperature`` then ``ops.softmax_forward``.
    """
    from llm_from_scratch import ops
    from llm_from_scratch.generate import apply_temperature

    scaled = apply_temperature(np.asarray(logits, dtype=np.float64), temperature)  # (..., V)
    probs, _ = ops.softmax_forward(scaled)  # (..., V)
    return probs


def _wrong_temperature_softmax(logits, temperature):
    # multiplies by the temperature instead of dividing: a "hot" sampler becomes a sharp one
    z = np.asarray(logits, dtype=np.float64) * temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------

TOP_P_CASES = (
    Case("the docstring's example, p = 0.7: 0.5 + 0.3 reaches it", _probs_case([0.5, 0.3, 0.15, 0.05], 0.7)),
    Case("the docstring's example, p = 0.9: three tokens", _probs_case([0.5, 0.3, 0.15, 0.05], 0.9)),
    Case("p = 0.4: the most likely token alone", _probs_case([0.5, 0.3, 0.15, 0.05], 0.4)),
    Case("p = 1 keeps everything", _logits_case(0, (3, 8), 1.0, 1.0)),
    Case("a batch of 4 rows, V = 12, p = 0.9", _logits_case(1, (4, 12), 2.0, 0.9)),
    Case("(B, T, V) = (2, 3, 10), peaked rows, p = 0.5", _logits_case(2, (2, 3, 10), 3.0, 0.5)),
    Case("flat rows (V = 40), p = 0.95", _logits_case(3, (2, 40), 0.3, 0.95)),
)

TOP_K_CASES = (
    Case("the docstring's example: k = 2 of 0.5, 0.3, 0.15, 0.05", _probs_case([0.5, 0.3, 0.15, 0.05], 2)),
    Case("ties at the k-th logit are all kept", _tie_case),
    Case("k = 1 is greedy: one token per row", _logits_case(0, (4, 10), 1.0, 1)),
    Case("a batch of 3 rows, V = 20, k = 5", _logits_case(1, (3, 20), 2.0, 5)),
    Case("(B, T, V) = (2, 3, 7), k = 3", _logits_case(2, (2, 3, 7), 1.0, 3)),
    Case("k larger than V keeps everything", _logits_case(3, (2, 6), 1.0, 10)),
)

def bits_per_char(nats_per_token, chars_per_token):
    """A loss in nats per token, of a model whose tokens hold ``chars_per_token`` characters on
    average, as bits per character: the unit that compares a BPE model with a character model and
    with StoryWorld's entropy floor.

    Derivation: a text of n tokens holds n * chars_per_token characters and costs
    n * nats_per_token nats in all, which is n * nats_per_token / ln 2 bits; per character,
    nats_per_token / (chars_per_token * ln 2).

    Example: 2.0 nats per token at 4 characters per token is 2 / (4 * 0.6931) = 0.7213 bits per
    character.

    The reference is ``pretrain.bits_per_char``.
    """
    from llm_from_scratch.pretrain import bits_per_char as reference

    return reference(nats_per_token, chars_per_token)


def _wrong_bits_per_char(nats_per_token, chars_per_token):
    return nats_per_token * chars_per_token / np.log(2)  # multiplied by the characters per token


EXERCISES = [
    register(Exercise(
        name="top_p_filter", chapter=8, title="nucleus (top-p) filtering of logits",
        reference=top_p_filter,
        cases=TOP_P_CASES,
        rtol=1e-12, atol=1e-12,
        extra_checks=(("keeps exactly the reference's tokens in every case", _same_tokens_kept(top_p_filter, TOP_P_CASES)),
                      ("keeps the smallest set holding at least p", _top_p_keeps_enough_mass),
                      ("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _logits_case(4, (3, 9), 1.0, 0.8)))),
        hint="sort the tokens from most to least likely; a token stays if the tokens ranked ABOVE it "
             "hold less than p (so the token that carries the total across p stays too); the most "
             "likely token always stays; dropped logits become -inf",
    )),
    register(Exercise(
        name="top_k_filter", chapter=8, title="top-k filtering of logits",
        reference=top_k_filter,
        cases=TOP_K_CASES,
        rtol=1e-12, atol=1e-12,
        extra_checks=(("keeps exactly the reference's tokens in every case", _same_tokens_kept(top_k_filter, TOP_K_CASES)),
                      ("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _logits_case(4, (3, 9), 1.0, 4))),),
        hint="find the k-th largest logit of each row (np.partition or np.sort) and keep every logit "
             ">= it, so ties with the k-th all stay; k > V keeps everything; the others become -inf",
    )),
    register(Exercise(
        name="shift_targets", chapter=8, title="input windows and their next-token targets",
        reference=shift_targets,
        cases=(
            Case("the docstring's example", lambda: (np.array([10, 11, 12, 13, 14, 15]), np.array([0, 2]), 3)),
            Case("a window that ends one token before the end", lambda: (np.arange(20, 30), np.array([6]), 3)),
            Case("B, T = 4, 8 from 100 random tokens", _shift_case(0, 100, 4, 8)),
            Case("B, T = 16, 32 from 1000 random tokens", _shift_case(1, 1000, 16, 32)),
            Case("T = 1: one prediction per window", _shift_case(2, 30, 5, 1)),
        ),
        extra_checks=(("a start with no room for the last target raises ValueError", _shift_rejects_overflow),),
        hint="y is the window one position later in the TOKENS, tokens[s + 1 : s + T + 1], not the window "
             "rolled by one: its last target is the token after the window",
    )),
    register(Exercise(
        name="temperature_softmax", chapter=8, title="the sampling distribution at a temperature",
        reference=temperature_softmax,
        cases=(
            Case("the docstring's example at temperature 2", lambda: (np.array([2.0, 0.0]), 2.0)),
            Case("the docstring's example at temperature 0.5", lambda: (np.array([2.0, 0.0]), 0.5)),
            Case("temperature 1 is the plain softmax", _logits_case(0, (3, 10), 2.0, 1.0)),
            Case("(B, V) = (4, 38) at temperature 0.7", _logits_case(1, (4, 38), 2.0, 0.7)),
            Case("(B, T, V) = (2, 3, 5) at temperature 1.5", _logits_case(2, (2, 3, 5), 1.0, 1.5)),
            Case("logits in the thousands (no overflow) at temperature 0.8", _logits_case(3, (2, 6), 1000.0, 0.8)),
        ),
        rtol=1e-9, atol=1e-12,
        extra_checks=(("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _logits_case(4, (2, 5), 1.0, 2.0))),),
        hint="divide the logits by the temperature, then a softmax over the last axis with the row's "
             "maximum subtracted first",
    )),
]

EXERCISES.append(register(Exercise(
    name="bits_per_char", chapter=8, title="nats per token to bits per character (a derivation)",
    reference=bits_per_char,
    cases=(
        Case("the docstring's example", lambda: (2.0, 4.0)),
        Case("a character model (one character per token)", lambda: (0.25, 1.0)),
        Case("chapter 8's code model: BPE at 2.9 characters per token", lambda: (4.8, 2.9)),
        Case("a word-level model, 5.7 characters per token", lambda: (7.5, 5.7)),
    ),
    rtol=1e-12, atol=1e-12,
    hint="count both sides for a text of n tokens: its characters, and its total cost in bits",
)))

WRONG = {
    "bits_per_char": _wrong_bits_per_char,
    "top_p_filter": _wrong_top_p_filter,
    "top_k_filter": _wrong_top_k_filter,
    "shift_targets": _wrong_shift_targets,
    "temperature_softmax": _wrong_temperature_softmax,
}
