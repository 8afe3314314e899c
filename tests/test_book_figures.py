"""Every chapter notebook draws its figures when the book is built.

``book/_chapter_facts.csv`` records, one line per chapter notebook, how many images its figure
cells produce (counted from a real execution) and how long it runs. After
``jupyter-book build``, the notebook as executed for the book must hold at least that many image
outputs. It is read from the build's execution cache (``_build/.jupyter_cache``, the entry that
matches the notebook's current code), or else from the executed copy in
``_build/jupyter_execute/`` (a build that reuses the cache writes that copy without outputs). This catches a kernel that draws nothing, e.g. one that inherited
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
CACHE = ROOT / "_build" / ".jupyter_cache"
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
    return _count_images(json.loads(notebook.read_text(encoding="utf-8"))["cells"])


def _count_images(cells) -> int:
    return sum(1 for cell in cells for output in cell.get("outputs", [])
               if any(kind in output.get("data", {}) for kind in IMAGE_TYPES))


def executed_cells(notebook: str) -> list | None:
    """The cells of ``book/<notebook>`` as the book build executed them, or None if it did not."""
    if CACHE.is_dir():
        try:
            import nbformat
            from jupyter_cache import get_cache

            cache = get_cache(CACHE)
            record = cache.match_cache_notebook(nbformat.read(ROOT / "book" / notebook, 4))
            cells = cache.get_cache_bundle(record.pk).nb.cells
            if any(cell.get("outputs") for cell in cells):
                return cells
        except (ImportError, KeyError, ValueError):
            pass  # no cache entry for the notebook's current code
    copy = EXECUTED / "book" / notebook
    if copy.is_file():
        cells = json.loads(copy.read_text(encoding="utf-8"))["cells"]
        if any(cell.get("outputs") for cell in cells):
            return cells
    return None


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
    cells = executed_cells(notebook)
    if cells is None:
        message = (f"{notebook} has no executed version in {CACHE} or {EXECUTED}; build the "
                   f"book first: jupyter-book build . --all -W")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    expected = read_chapter_facts()[notebook]["figures"]
    found = _count_images(cells)
    print(f"{notebook}: {found} image outputs, expected at least {expected}")
    assert found >= expected, (f"{notebook} produced {found} image outputs when executed, "
                               f"expected at least {expected} ({CHAPTER_FACTS.name}); is "
                               f"MPLBACKEND set to a non-inline backend for the kernel?")
