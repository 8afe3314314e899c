"""Every exercise: the reference passes, a plausible wrong solution fails, the CLI works."""

import importlib
import pkgutil

import numpy as np

import pytest

from llm_from_scratch import exercises
from llm_from_scratch.cli import main

NAMES = [e.name for e in exercises.all_exercises()]


def _wrong(name):
    """The plausible wrong solution kept beside each chapter's exercises (a chapter's exercises may
    be split over modules ``chNN.py``, ``chNNb.py``, ...)."""
    prefix = f"ch{exercises.get(name).chapter:02d}"
    for info in pkgutil.iter_modules(exercises.__path__):
        if info.name.startswith(prefix):
            module = importlib.import_module(f"llm_from_scratch.exercises.{info.name}")
            if name in getattr(module, "WRONG", {}):
                return module.WRONG[name]
    raise KeyError(f"no module {prefix}*.py of llm_from_scratch.exercises has WRONG[{name!r}]")


def test_every_chapter_so_far_has_exercises():
    chapters = {e.chapter for e in exercises.all_exercises()}
    assert {1, 2, 3, 4, 5} <= chapters


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name):
    report = exercises.check(name, exercises.get(name).reference)
    assert report.passed, str(report)
    assert len(report.results) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_plausible_wrong_solution_fails(name):
    report = exercises.check(name, _wrong(name))
    assert not report.passed
    failed = [r for r in report.results if not r.passed]
    assert failed and all(r.detail for r in failed), str(report)
    assert "hint:" in str(report)


def test_unknown_exercise_names_the_known_ones():
    with pytest.raises(KeyError, match="bpe_merge"):
        exercises.get("no_such_exercise")


def test_cli_start_check_cycle(tmp_path, capsys):
    folder = tmp_path / "mine"
    assert main(["exercises", "start", "bpe_merge", "--dir", str(folder)]) == 0
    stub = folder / "bpe_merge.py"
    text = stub.read_text()
    assert "def bpe_merge(ids, pair, new_id):" in text and "NotImplementedError" in text
    # the untouched stub fails with the error in the report
    assert main(["exercises", "check", "bpe_merge", "--dir", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "NotImplementedError" in out
    # start never overwrites the learner's work
    stub.write_text("def bpe_merge(ids, pair, new_id):\n    return 'mine'\n")
    assert main(["exercises", "start", "bpe_merge", "--dir", str(folder)]) == 0
    assert "'mine'" in stub.read_text()
    # a correct solution passes with exit code 0
    stub.write_text(exercises.reference_source("bpe_merge"))
    assert main(["exercises", "check", "bpe_merge", "--dir", str(folder)]) == 0
    assert "checks passed" in capsys.readouterr().out


def test_cli_check_reports_missing_file_and_missing_function(tmp_path, capsys):
    assert main(["exercises", "check", "entropy_bits", "--dir", str(tmp_path)]) == 2
    assert "exercises start entropy_bits" in capsys.readouterr().err
    (tmp_path / "entropy_bits.py").write_text("x = 1\n")
    assert main(["exercises", "check", "entropy_bits", "--dir", str(tmp_path)]) == 1
    assert "no function named entropy_bits" in capsys.readouterr().err
    assert main(["exercises", "list"]) == 0
    assert "bigram_perplexity" in capsys.readouterr().out


def test_an_infinite_expected_value_must_be_matched():
    from llm_from_scratch.exercises import _compare
    assert _compare(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]), 1e-6, 1e-9) == ""
    assert "max abs difference inf" in _compare(np.array([0.5, 1.0]), np.array([-np.inf, 1.0]), 1e-6, 1e-9)
    assert _compare(np.array([np.inf]), np.array([-np.inf]), 0.0, 0.0) != ""
