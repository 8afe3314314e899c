"""No exercise can be passed by a trivial answer: the untouched stub, zeros of the right shape
and type, the input (or any other argument) handed back unchanged, None, or the first case's
answer memorised and returned for every case.

``python -m tests.test_exercises_trivial`` prints, for every exercise, how many checks each
trivial answer passes.
"""

from __future__ import annotations

import numpy as np
import pytest

from llm_from_scratch import exercises

NAMES = [e.name for e in exercises.all_exercises()]


def _zeros_like(x):
    """Zeros with the structure, shapes and types of ``x``."""
    if isinstance(x, np.ndarray):
        return np.zeros_like(x)
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (int, np.integer)):
        return type(x)(0)
    if isinstance(x, (float, np.floating)):
        return type(x)(0.0)
    if isinstance(x, str):
        return ""
    if isinstance(x, bytes):
        return b""
    if isinstance(x, tuple):
        return tuple(_zeros_like(v) for v in x)
    if isinstance(x, list):
        return [_zeros_like(v) for v in x]
    if isinstance(x, dict):
        return {k: _zeros_like(v) for k, v in x.items()}
    return None


def trivial_answers(name: str) -> dict:
    """The trivial submissions for exercise ``name``, by description."""
    ex = exercises.get(name)
    namespace: dict = {}
    exec(compile(exercises.stub_source(name), f"{name}.py", "exec"), namespace)  # what `start` writes
    stub = namespace[name]

    def zeros(*args, **kwargs):
        return _zeros_like(ex.reference(*args, **kwargs))

    def nothing(*args, **kwargs):
        return None

    def argument(k):
        def unchanged(*args, **kwargs):
            return args[k] if k < len(args) else None
        return unchanged

    first = ex.reference(*ex.cases[0].make_args())

    def memorised(*args, **kwargs):  # the first case's answer, whatever the question
        return first

    n_args = max(len(case.make_args()) for case in ex.cases)
    answers = {"untouched stub": stub, "zeros of the right shape": zeros, "the input unchanged": argument(0),
               "nothing (None)": nothing, "the first case's answer every time": memorised}
    answers.update({f"argument {k} unchanged": argument(k) for k in range(1, n_args)})
    return answers


@pytest.mark.parametrize("name", NAMES)
def test_trivial_answers_fail(name):
    for description, fn in trivial_answers(name).items():
        report = exercises.check(name, fn)
        assert not report.passed, f"{name} accepts {description}:\n{report}"


if __name__ == "__main__":
    print("| exercise | chapter | checks | checks passed by: stub / zeros / input unchanged / None / "
          "the best other argument unchanged / the first case's answer |")
    print("|---|---|---|---|")
    for name in NAMES:
        passed = {}
        for description, fn in trivial_answers(name).items():
            report = exercises.check(name, fn)
            passed[description] = (sum(r.passed for r in report.results), report.passed)
        others = [v for k, v in passed.items() if k.startswith("argument")] or [(0, False)]
        cells = [passed["untouched stub"], passed["zeros of the right shape"], passed["the input unchanged"],
                 passed["nothing (None)"], max(others), passed["the first case's answer every time"]]
        text = " / ".join(f"{n}" + (" PASSES" if ok else "") for n, ok in cells)
        print(f"| {name} | {exercises.get(name).chapter} | {len(report.results)} | {text} |")
