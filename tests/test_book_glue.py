"""The numbers in a chapter's text come from its code.

A chapter inserts the numbers its cells compute with myst-nb's ``glue``: a code cell calls
``glue("name", float(x), display=False)`` and the markdown writes ``{glue:text}`name:.3f```. Two
ways this goes wrong, one check each:

- (a) a markdown cell refers to a name that no code cell of the same notebook glues: the build
  prints a warning and the reader sees nothing. A static scan of the sources; always runs.
- (b) the markdown types a number by hand that a glue variable of the same notebook also holds:
  a copy that the next run can contradict. On the notebooks as a build executed them (found as
  ``tests/test_book_figures.py`` finds them, or in the folder named by the environment variable
  ``BOOK_EXECUTED_NOTEBOOKS``); skipped without a build, and failing in CI (``CI`` set).

The rule of (b), chosen to catch copies and not coincidences. A number typed in the markdown
(outside glue roles, inline code, math, citations and links) is a *typed copy* of a glued value
``g`` when it equals ``g`` at the precision it is typed with:

- a decimal (``0.29``, ``3.16``, ``12.5``) when ``g`` rounded to the typed number of decimals equals
  it; a percentage (``38%``, ``0.31%``) when ``g`` rounded so equals it, or ``100 g`` does and
  the notebook shows that glue as a percentage (``{glue:text}`share:.0%```) somewhere; an integer of
  at least 100 that is not a year (``1,500``, ``124,439,808``) when ``g`` rounded to an integer does;
- and it carries at least three significant digits (``0.362``, ``12.5%``, ``2,400``; an integer's
  digits all count, but a round one, ``10%``, ``500`` or ``2,000``, never counts), or it carries
  two (``0.36``, ``38%``) and the same markdown cell also refers to ``g``'s glue name: a number
  typed next to its own glue (``{glue:text}`bpc:.3f``` here, ``0.36`` there). Two digits alone
  match some glued value by chance too often: a notebook that glues fifty F1 scores between 0.2
  and 0.7 holds nearly every two-digit decimal in that range.

Numbers with one significant digit (``0.5``, ``2``) never count either. Glued values that
are not numbers (markdown snippets, figures) take no part, and neither do glued values equal to 0
or 1 (flags and counts of one). A typed copy must be replaced by the glue reference
(``{glue:text}`name:.2f```), which also makes the two agree when the run changes; a number that must
stay typed (a quoted literature figure that happens to equal a measurement) is listed in
``ALLOWED`` with its reason.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path

import pytest

from tests.test_book_figures import executed_cells

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

# notebook -> typed numbers that stay typed although a glued value equals them, with the reason
ALLOWED: dict[str, dict[str, str]] = {}

GLUE_ROLE = re.compile(r"\{glue(?::\w*)?\}`([^`]*)`")
GLUE_DIRECTIVE = re.compile(r"^\s*(?:```+|:::+)\s*\{glue(?::\w+)?\}\s+(\S+)", re.MULTILINE)
WRAPPER = re.compile(r"^def (\w+)\(\s*(\w+)[^)]*\):\s*\n((?:[ \t]+.*\n?|\s*\n)+)", re.MULTILINE)
NUMBER = re.compile(r"(?<![\w.,^_/-])(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)(\s?%)?(?![\w^]|\.\d|,\d{3})")
# what is not prose: fenced code, math, inline code, roles ({cite}`...`), links' targets, comments
NOT_PROSE = [re.compile(p, re.DOTALL | re.MULTILINE) for p in (
    r"^\s*(```|~~~).*?^\s*\1", r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"\{[\w:-]+\}`[^`]*`", r"``?[^`]*`?`",
    r"\]\([^)]*\)", r"<!--.*?-->", r"^\s*:\w[\w-]*:.*$", r"https?://\S+")]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def glued_names(code: str) -> tuple[set[str], list[re.Pattern]]:
    """The names a notebook's code glues: literal names, and f-string names as patterns.

    A function whose body calls ``glue`` with its first argument (``def gl(name, value): glue(name,
    ...)``) glues the names it is called with.

    >>> names, patterns = glued_names('def gl(n, v):\\n    glue(n, float(v))\\n'
    ...                               'glue("a", 1.0)\\ngl("b", 2)\\nglue(f"c_{k}", 3)\\ngl("d_" + k, 4)')
    >>> sorted(names), [p.pattern for p in patterns]
    (['a', 'b'], ['c_.+', 'd_.+'])
    """
    callers = ["glue"]
    for name, arg, body in WRAPPER.findall(code):
        if re.search(rf"\bglue\(\s*{arg}\b", body):
            callers.append(name)
    call = re.compile(rf"\b(?:{'|'.join(callers)})\(\s*(f?)([\"'])(.+?)\2(\s*\+)?")
    names, patterns = set(), []
    for is_f, _, name, plus in call.findall(code):
        if plus:                                   # glue("bound_" + name, ...): a prefix
            patterns.append(re.compile(re.escape(name) + ".+"))
        elif is_f and "{" in name:
            patterns.append(re.compile(re.sub(r"\\\{.*?\\\}", ".+", re.escape(name))))
        else:
            names.add(name)
    return names, patterns


def glue_references(markdown: str) -> list[str]:
    """The glue names a markdown text refers to, in roles and directives.

    >>> glue_references("loss {glue:text}`val_loss:.3f` and {glue:}`n`\\n```{glue:figure} fig_a\\n```")
    ['val_loss', 'n', 'fig_a']
    """
    refs = [role.split(":")[0].strip() for role in GLUE_ROLE.findall(markdown)]
    return refs + GLUE_DIRECTIVE.findall(markdown)


def unresolved_references(cells: list[dict]) -> list[str]:
    """Glue names referred to in markdown cells and glued by no code cell."""
    code = "\n".join(_source(c) for c in cells if c["cell_type"] == "code")
    names, patterns = glued_names(code)
    refs = [r for c in cells if c["cell_type"] == "markdown" for r in glue_references(_source(c))]
    return sorted({r for r in refs if r not in names and not any(p.fullmatch(r) for p in patterns)})


def glued_values(cells: list[dict]) -> dict[str, float]:
    """The numbers an executed notebook glued, by name (text and figures left out)."""
    values = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            text = output.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain")
            try:
                value = ast.literal_eval("".join(text) if isinstance(text, list) else text)
            except (ValueError, SyntaxError, TypeError):
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[meta["name"]] = float(value)
    return values


def prose(markdown: str) -> str:
    """A markdown text without the parts that are not prose (code, math, roles, link targets)."""
    for pattern in NOT_PROSE:
        markdown = pattern.sub(" ", markdown)
    return markdown


def percent_glues(markdown: str) -> set[str]:
    """The glue names a markdown text formats as a percentage (``{glue:text}`share:.0%```)."""
    return {role.split(":")[0].strip() for role in GLUE_ROLE.findall(markdown)
            if ":" in role and role.rstrip().endswith("%")}


def typed_copies(markdown: str, values: dict[str, float],
                 percent_names: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(typed number, glue name) for every number typed in the prose that copies a glued value.

    A typed percentage copies a glued fraction ``g`` (as ``100 g``) only if the notebook shows
    that glue as a percentage somewhere (``percent_names``, or a reference in ``markdown``).

    >>> values = {"loss": 0.5432, "steps": 1500.0, "share": 0.3814, "flag": 1.0, "lr": 0.5, "bpc": 0.3621}
    >>> typed_copies("the loss is 0.543 after 1,500 steps; a 0.5 rate, 2 runs, 38% and 0.36", values)
    [('0.543', 'loss'), ('1,500', 'steps')]
    >>> typed_copies("{glue:text}`share:.0%` of the gap, 38% of it; {glue:text}`bpc:.3f` or 0.36 bits", values)
    [('38%', 'share'), ('0.36', 'bpc')]
    >>> typed_copies("the loss is {glue:text}`loss:.2f` ($0.54$, `0.54`), in 2020 and 0.55", values)
    []
    """
    nearby = set(glue_references(markdown))
    as_percent = set(percent_names) | percent_glues(markdown)
    found = []
    for match in NUMBER.finditer(prose(markdown)):
        text, percent = match.group(1), bool(match.group(2))
        digits = text.replace(",", "").lstrip("-")
        typed = float(digits)
        decimals = len(digits.split(".")[1]) if "." in digits else 0
        significant = len(digits.replace(".", "").lstrip("0"))
        if not decimals:
            if len(digits.lstrip("0").rstrip("0")) < 2:          # 10%, 500 and 2,000 are round numbers
                continue
            significant = len(digits.lstrip("0"))                # 1,500 and 256 are exact: all their digits
        if significant < 2:
            continue
        if percent:
            candidates = lambda g, name: ((round(100 * g, decimals),) if name in as_percent else ()) + (round(g, decimals),)
        elif decimals:
            candidates = lambda g, name: (round(g, decimals),)
        else:
            if typed < 100 or ("," not in text and 1900 <= typed <= 2099):
                continue
            candidates = lambda g, name: (round(g),)
        for name, g in values.items():
            if g in (0.0, 1.0) or (significant < 3 and name not in nearby):
                continue
            if any(abs(abs(c) - typed) < 1e-9 * max(1.0, typed) for c in candidates(g, name)):
                found.append((text + ("%" if percent else ""), name))
                break
    return found


def executed_notebook(name: str) -> list | None:
    folder = os.environ.get("BOOK_EXECUTED_NOTEBOOKS")
    if folder and (Path(folder) / name).is_file():
        return _cells(Path(folder) / name)
    return executed_cells(name)


# --- the rules themselves, on small synthetic notebooks, so that they can fail ------------------

def _notebook(code: list[str], markdown: list[str], outputs: dict[str, object] | None = None) -> list[dict]:
    cells = [{"cell_type": "code", "source": c, "outputs": []} for c in code]
    for name, value in (outputs or {}).items():
        cells[0]["outputs"].append({
            "output_type": "display_data",
            "data": {"application/papermill.record/text/plain": repr(value)},
            "metadata": {"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}}})
    return cells + [{"cell_type": "markdown", "source": m} for m in markdown]


def test_rule_a_finds_a_reference_nobody_glues():
    cells = _notebook(['glue("val_bpc", float(x), display=False)\nglue(f"f1_{k}", 1.0)'],
                      ["GPT {glue:text}`val_bpc:.3f`, MLP {glue:text}`mlp_bpc:.3f`, {glue:}`f1_small`"])
    assert unresolved_references(cells) == ["mlp_bpc"]


def test_rule_a_follows_a_glue_wrapper():
    cells = _notebook(['def gl(name, value):\n    glue(name, float(value), display=False)\n\n\ngl("E", e)\n'],
                      ["the floor {glue:text}`E:.3f` and the slope {glue:text}`alpha:.2f`"])
    assert unresolved_references(cells) == ["alpha"]


def test_rule_b_finds_a_number_typed_next_to_its_glue():
    cells = _notebook(['glue("loss", 0.5432)'], ["{glue:text}`loss:.3f` here, and 0.54 typed there"],
                      outputs={"loss": 0.5432})
    values = glued_values(cells)
    assert values == {"loss": 0.5432}
    assert typed_copies(_source(cells[-1]), values) == [("0.54", "loss")]


def test_rule_b_finds_a_three_digit_copy_anywhere_but_not_a_two_digit_coincidence():
    values = {"gpt_bpc": 0.3621, "f1": 0.2923}
    assert typed_copies("the summary: the GPT reaches 0.362 bits per character", values) == [("0.362", "gpt_bpc")]
    assert typed_copies("an exploratory run ended at 0.29", values) == []


def test_rule_b_reads_a_percentage_as_a_fraction_only_where_the_glue_is_one():
    values = {"gap": 0.1163}
    assert typed_copies("a gap of {glue:text}`gap:.2f` bits, chance 12%", values) == []
    assert typed_copies("a gap of {glue:text}`gap:.2f` bits, 12% of it", values, {"gap"}) == [("12%", "gap")]


def test_rule_b_leaves_settings_years_and_one_digit_numbers_alone():
    values = {"loss": 0.5432, "lr": 0.003, "n": 3.0, "share": 0.0512}
    text = ("a 3-gram at lr 0.003 (0.3 and 5% are one digit), Kaplan et al. 2020, "
            "$0.543$ in math and `0.54` in code; a 0.55 that is no copy")
    assert typed_copies(text, values) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glue_reference_is_glued_in_the_same_notebook(path):
    missing = unresolved_references(_cells(path))
    assert not missing, (f"{path.name}: the markdown refers to glue names that no code cell of the "
                         f"notebook glues: {missing}; glue them (glue(\"name\", float(x), display=False)) "
                         f"or fix the reference")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_typed_copies_of_glued_numbers(path):
    cells = executed_notebook(path.name)
    if cells is None:
        message = (f"{path.name} has no executed version (build the book first: jupyter-book build . "
                   f"--all -W, or set BOOK_EXECUTED_NOTEBOOKS to a folder of executed notebooks)")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    values = glued_values(cells)
    allowed = ALLOWED.get(path.name, {})
    markdown = [_source(cell) for cell in _cells(path) if cell["cell_type"] == "markdown"]
    as_percent = set().union(*(percent_glues(m) for m in markdown))
    copies = [(typed, name) for m in markdown for typed, name in typed_copies(m, values, as_percent)
              if typed not in allowed]
    print(f"{path.name}: {len(values)} glued numbers, {len(copies)} typed copies")
    assert not copies, (f"{path.name}: numbers typed in the markdown that a glued value of the notebook "
                        f"holds (typed, glue name): {copies}; write {{glue:text}}`name:FORMAT` instead")
