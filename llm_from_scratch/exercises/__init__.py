"""Course exercises: write a function yourself, then let the package check it.

Each exercise names one function the reader writes, gives its signature and docstring, and
checks a submission against the reference solution on a handful of seeded test cases (plus any
property checks of its own). It works two ways:

In a terminal::

    llm-scratch exercises list
    llm-scratch exercises start bigram_perplexity      # writes exercises/bigram_perplexity.py
    llm-scratch exercises check bigram_perplexity      # runs the checks, exit code 1 on failure

In a notebook::

    from llm_from_scratch.exercises import check
    check("bigram_perplexity", my_bigram_perplexity)

The reference solution of every exercise is real code: often the package's own function, so the
reader rebuilds a piece of the library and the check compares the two. The book shows each
reference folded under its exercise; ``tests/test_exercises.py`` proves that every reference
passes its checks and a plausible wrong solution fails them.
"""

from __future__ import annotations

import inspect
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Case", "CheckResult", "Report", "Exercise", "register", "get", "all_exercises", "check",
           "stub_source", "reference_source"]


@dataclass(frozen=True)
class Case:
    """One test case: a description and a function that builds the arguments (fresh each time, so
    a submission that mutates its inputs cannot affect the reference)."""
    description: str
    make_args: Callable[[], tuple]


@dataclass(frozen=True)
class CheckResult:
    description: str
    passed: bool
    detail: str = ""


@dataclass
class Report:
    """What a check found. True when every case passed; prints as a readable list."""
    exercise: str
    results: list[CheckResult] = field(default_factory=list)
    hint: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = [f"exercise {self.exercise}: {sum(r.passed for r in self.results)}/{len(self.results)} checks passed"]
        for r in self.results:
            mark = "PASS" if r.passed else "FAIL"
            lines.append(f"  [{mark}] {r.description}")
            if r.detail and not r.passed:
                lines.extend("         " + line for line in r.detail.splitlines())
        if not self.passed and self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython display
        printer.text(str(self))


def _compare(actual: Any, expected: Any, rtol: float, atol: float, path: str = "result") -> str:
    """Return "" when ``actual`` matches ``expected``, else a message that says where and by how much."""
    if isinstance(expected, (tuple, list)) and not isinstance(expected, str):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            return f"{path}: expected a sequence of length {len(expected)}, got {_short(actual)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            msg = _compare(a, e, rtol, atol, f"{path}[{i}]")
            if msg:
                return msg
        return ""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(actual) != set(expected):
            return f"{path}: expected a dict with keys {sorted(expected)}, got {_short(actual)}"
        for k in expected:
            msg = _compare(actual[k], expected[k], rtol, atol, f"{path}[{k!r}]")
            if msg:
                return msg
        return ""
    if isinstance(expected, (np.ndarray, float, np.floating)) and not isinstance(expected, bool):
        a = np.asarray(actual, dtype=np.float64) if _numeric(actual) else None
        e = np.asarray(expected, dtype=np.float64)
        if a is None:
            return f"{path}: expected a number or array, got {_short(actual)}"
        if a.shape != e.shape:
            return f"{path}: expected shape {e.shape}, got shape {a.shape}"
        with np.errstate(invalid="ignore"):
            diff = np.where(a == e, 0.0, np.abs(a - e))
            # an infinite expected value (say a filtered-out logit of -inf) must be matched exactly
            diff = np.where(np.isfinite(e) | (a == e), diff, np.inf)
            tolerance = np.where(np.isfinite(e), atol + rtol * np.abs(e), 0.0)
        if np.any(np.isnan(diff)) or np.any(diff > tolerance):
            i = int(np.nanargmax(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0
            idx = np.unravel_index(i, e.shape) if e.ndim else ()
            where = f" at index {tuple(int(j) for j in idx)}" if e.ndim else ""
            return (f"{path}: max abs difference {np.nanmax(np.where(np.isnan(diff), np.inf, diff)):.3g}{where} "
                    f"(got {a[idx]:.8g}, expected {e[idx]:.8g}; tolerance rtol={rtol}, atol={atol})")
        return ""
    if actual != expected:
        return f"{path}: expected {_short(expected)}, got {_short(actual)}"
    return ""


def _numeric(x: Any) -> bool:
    try:
        return np.asarray(x).dtype.kind in "biuf"
    except Exception:
        return False


def _short(x: Any, limit: int = 120) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Exercise:
    """A function to write, the reference that solves it, and the cases that check it.

    ``extra_checks`` are property checks that take the submitted function and return "" when it
    passes or a message saying what went wrong.
    """
    name: str
    chapter: int
    title: str
    reference: Callable
    cases: tuple[Case, ...]
    hint: str
    rtol: float = 1e-6
    atol: float = 1e-9
    extra_checks: tuple[tuple[str, Callable[[Callable], str]], ...] = ()

    @property
    def function_name(self) -> str:
        return self.name

    def run(self, fn: Callable) -> Report:
        report = Report(self.name, hint=self.hint)
        if not callable(fn):
            report.results.append(CheckResult("submission is a function", False,
                                              f"expected a function named {self.name}, got {_short(fn)}"))
            return report
        for case in self.cases:
            expected = self.reference(*case.make_args())
            try:
                actual = fn(*case.make_args())
            except Exception as exc:  # the learner's error is part of the report, not a crash
                tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                report.results.append(CheckResult(case.description, False, f"raised {tb}"))
                continue
            message = _compare(actual, expected, self.rtol, self.atol)
            report.results.append(CheckResult(case.description, not message, message))
        for description, prop in self.extra_checks:
            try:
                message = prop(fn)
            except Exception as exc:
                message = "raised " + traceback.format_exception_only(type(exc), exc)[-1].strip()
            report.results.append(CheckResult(description, not message, message))
        return report


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    if exercise.name in _REGISTRY:
        raise ValueError(f"exercise {exercise.name!r} is registered twice")
    _REGISTRY[exercise.name] = exercise
    return exercise


def _load_all() -> None:
    """Import every chapter module (``ch01.py``, ``ch02.py``, ...): importing one registers its exercises."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("ch"):
            importlib.import_module(f"{__name__}.{info.name}")


def all_exercises() -> list[Exercise]:
    """Every exercise, in chapter order."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda e: (e.chapter, e.name))


def get(name: str) -> Exercise:
    _load_all()
    if name not in _REGISTRY:
        known = ", ".join(e.name for e in all_exercises())
        raise KeyError(f"no exercise named {name!r}; known exercises: {known}")
    return _REGISTRY[name]


def check(name: str, fn: Callable) -> Report:
    """Check a function against exercise ``name`` and return the report (it prints itself in a
    notebook and is truthy when every check passed)."""
    return get(name).run(fn)


def reference_source(name: str) -> str:
    """The source code of an exercise's reference solution."""
    return textwrap.dedent(inspect.getsource(get(name).reference))


def stub_source(name: str) -> str:
    """A file for the learner: imports, the signature and docstring, and a body to replace."""
    ex = get(name)
    fn = ex.reference
    module = inspect.getmodule(fn)
    signature = inspect.signature(fn)
    doc = inspect.getdoc(fn) or ""
    doc_block = textwrap.indent('"""' + doc + '\n"""', "    ")
    return (
        f'"""Exercise {ex.name} (chapter {ex.chapter}): {ex.title}.\n\n'
        f"Fill in the function below, then run:  llm-scratch exercises check {ex.name}\n"
        f'"""\n\n'
        f"import math\n\nimport numpy as np\n\n\n"
        f"def {ex.name}{signature}:\n{doc_block}\n"
        f'    raise NotImplementedError("write {ex.name} here")\n'
    ) if module else ""

