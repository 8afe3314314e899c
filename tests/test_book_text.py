"""The book's text and the README agree with what the project does.

- Headings carry no hand-typed section numbers: the book numbers chapters and sections itself,
  so ``## 4.1 Softmax`` would read "4.1. 4.1 Softmax".
- The README's first command is the one ``.ci/run`` runs, character for character.
- The README's run-time table says what ``book/_chapter_facts.csv`` records, for every chapter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_book_figures import CHAPTER_FACTS, read_chapter_facts

ROOT = Path(__file__).resolve().parent.parent
NUMBERED_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\d+(?:\.\d+)*\.?(?:\s|$)")


def markdown_headings(path: Path) -> list[str]:
    """Heading lines of a notebook's markdown cells or a markdown file (code fences skipped)."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    else:
        texts = [path.read_text(encoding="utf-8")]
    headings = []
    for text in texts:
        fenced = False
        for line in text.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and line.lstrip().startswith("#"):
                headings.append(line)
    return headings


@pytest.mark.parametrize("line, numbered", [
    ("## 4.1 From maximum likelihood", True), ("# 4. The loss", True), ("### 2 Tokens", True),
    ("## 4.1", True), ("## Softmax and its gradient", False), ("## GPT-2's projection", False),
    ("# Appendix A: conventions", False), ("#### 2024 in review", True),
])
def test_numbered_heading_pattern(line, numbered):
    assert bool(NUMBERED_HEADING.match(line)) is numbered


@pytest.mark.parametrize("path", sorted((ROOT / "book").glob("*.ipynb"))
                         + sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_headings_have_no_hand_typed_numbers(path):
    numbered = [line for line in markdown_headings(path) if NUMBERED_HEADING.match(line)]
    assert not numbered, (f"{path.name}: headings start with a hand-typed number (the book "
                          f"numbers them itself; remove the number): {numbered}")


def readme_commands() -> list[str]:
    """The lines of README.md's first fenced code block."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert block, "README.md has no fenced code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readme_first_command_exactly():
    first = readme_commands()[0].strip()
    assert "jupyter-book build" in first, f"README's first command does not build the book: {first}"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert first in ci_lines, (f".ci/run has no line exactly equal to README.md's first command:\n"
                               f"  {first}")


def test_readme_run_times_match_the_chapter_facts():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `book/([^`]+\.ipynb)` \| (\d+) s \|", text, re.MULTILINE))
    facts = {name: str(row["run_seconds"]) for name, row in read_chapter_facts().items()}
    assert table == facts, (f"README.md's run-time table {table} differs from "
                            f"{CHAPTER_FACTS.name} {facts}")
