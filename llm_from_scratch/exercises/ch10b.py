"""Exercises for chapter 10, question answering (the translation exercises of the same chapter are
in ``ch10.py``).

``squad_token_f1`` is SQuAD's token F1 of one predicted answer against one gold answer, the score
by which the chapter compares a model that copies a span with one that writes its answer
(``metrics.token_f1`` is the reference). Its wrapper imports what it calls inside its body, so its
source, copied into a file on its own, still runs.
"""

from __future__ import annotations

from llm_from_scratch.exercises import Case, Exercise, register


def squad_token_f1(prediction, gold):
    """SQuAD's token F1 of the answer ``prediction`` against the answer ``gold``.

    Normalise both (lower case, drop punctuation, drop the articles a/an/the, split at
    whitespace), count the tokens they share with multiplicity (a token twice in both counts
    twice), and return ``2 P R / (P + R)`` with precision P = shared / len(prediction tokens) and
    recall R = shared / len(gold tokens); 0.0 when they share nothing.

    Example: "red apple tree" vs "the red apple": {red, apple, tree} vs {red, apple}, 2 shared,
    P = 2/3, R = 1, F1 = 0.8.

    The reference is the package's ``metrics.token_f1``.
    """
    from llm_from_scratch.metrics import token_f1

    return token_f1(prediction, gold)


def _wrong_squad_token_f1(prediction, gold):
    from llm_from_scratch.metrics import normalize_answer

    p, g = set(normalize_answer(prediction).split()), set(normalize_answer(gold).split())
    same = len(p & g)  # sets: a repeated token is counted once, and its repeats vanish from the lengths
    return 0.0 if same == 0 else 2 * same / (len(p) + len(g))


EXERCISES = [
    register(Exercise(
        name="squad_token_f1", chapter=10, title="SQuAD token F1 of one answer",
        reference=squad_token_f1,
        cases=(
            Case("the docstring's example", lambda: ("red apple tree", "the red apple")),
            Case("case, punctuation and articles do not count", lambda: ("The Park!", "park")),
            Case("a repeated word counts twice in the prediction's length", lambda: ("ball ball", "ball")),
            Case("one word of two right", lambda: ("the red ball", "a red cup")),
            Case("nothing shared", lambda: ("Mia", "Tom")),
            Case("an empty prediction", lambda: ("", "kitchen")),
            Case("repeats on both sides", lambda: ("big big red hat", "big big hat")),
        ),
        rtol=1e-12, atol=1e-12,
        hint="normalise both answers first (metrics.normalize_answer does it), then count shared tokens with "
             "collections.Counter(p) & Counter(g), so a repeated token counts as often as it repeats",
    )),
]

WRONG = {
    "squad_token_f1": _wrong_squad_token_f1,
}
