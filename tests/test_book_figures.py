"""Every chapter notebook draws its figures when the book is built.

``book/_chapter_facts.csv`` records, one line per chapter notebook, how many images its figure
cells produce (counted from a real execution) and how long it runs. After
``jupyter-book build``, the executed copies in ``_build/jupyter_execute/`` must hold at least
that many image outputs. This catches a kernel that draws nothing, e.g. one that inherited
``MPLBACKEND=Agg`` so ``plt.show()`` emitted no image; nbval does not notice that, since it
compares text outputs only. The browser test (``test_book_browser.py``) checks the same counts
on the built HTML pages.

Without a built book this is skipped on a reader's machine and fails in CI (``CI`` set).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "_build" / "jupyter_execute"
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def _load_book_pages():
    spec = importlib.util.spec_from_file_location("book_pages", ROOT / "_ext" / "book_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_book_pages = _load_book_pages()
CHAPTER_FACTS = _book_pages.FACTS_FILE
read_chapter_facts = _book_pages.read_chapter_facts


def toc_notebooks() -> list[str]:
    """The notebooks the table of contents lists, as paths relative to the repository."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [f + ".ipynb" for f in files if (ROOT / (f + ".ipynb")).is_file()]


def count_images(notebook: Path) -> int:
    """Image outputs (PNG, SVG, JPEG) in a notebook's cells.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.ipynb"
    >>> _ = path.write_text('{"cells": [{"cell_type": "code", "outputs": '
    ...                     '[{"data": {"image/png": "iVBOR"}}, {"text": "1"}]}]}')
    >>> count_images(path)
    1
    """
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for cell in cells for output in cell.get("outputs", [])
               if any(kind in output.get("data", {}) for kind in IMAGE_TYPES))


def test_every_chapter_notebook_has_one_line_of_facts():
    facts = read_chapter_facts()
    listed = [Path(name).name for name in toc_notebooks()]
    missing = [name for name in listed if name not in facts]
    unknown = [name for name in facts if name not in listed]
    assert not missing, (f"{CHAPTER_FACTS.name} has no line for {missing}: add "
                         f"'NAME.ipynb,RUN_SECONDS,FIGURES' with the notebook's measured run "
                         f"time and the number of images its cells draw")
    assert not unknown, f"{CHAPTER_FACTS.name} lists notebooks not in _toc.yml: {unknown}"


@pytest.mark.parametrize("notebook", sorted(read_chapter_facts()))
def test_executed_notebook_draws_its_figures(notebook):
    executed = EXECUTED / "book" / notebook
    if not executed.is_file():
        message = (f"no executed copy {executed}; build the book first: "
                   f"jupyter-book build . --all -W")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    expected = read_chapter_facts()[notebook]["figures"]
    found = count_images(executed)
    print(f"{notebook}: {found} image outputs, expected at least {expected}")
    assert found >= expected, (f"{notebook} produced {found} image outputs when executed, "
                               f"expected at least {expected} ({CHAPTER_FACTS.name}); is "
                               f"MPLBACKEND set to a non-inline backend for the kernel?")
