"""Sphinx extension for the book's HTML pages: offline Mermaid and a "run it yourself" note.

Three things the configuration alone cannot do:

1. **Mermaid from ``file://``.** sphinxcontrib-mermaid writes an inline ES module that does
   ``import mermaid from "<url>"``. A browser refuses module imports from ``file://`` pages
   (they have no origin to allow), so a book opened from disk would show raw diagram source
   even with a local copy of Mermaid. On each page with a diagram, this extension loads the
   vendored classic bundle ``mermaid.min.js`` (it defines ``window.mermaid``) with an ordinary
   ``<script>`` tag and rewrites that one import line to ``const mermaid = window.mermaid;``.
   The rest of sphinxcontrib-mermaid's script (theme, lazy rendering, options) runs unchanged.
   The bundle's location is the ``mermaid_use_local`` option, relative to ``html_static_path``.

2. **No script twice.** A script included twice on a page (same file or inline body, same
   attributes) is kept once; sphinx-thebe's ``const`` declarations otherwise throw.

3. **"Run it yourself".** Every page built from a notebook gets a short note under its title
   with the notebook's file name and its measured run time, read from
   ``book/_chapter_facts.csv`` (one line per chapter notebook), so no notebook carries it.

Example ``_config.yml`` (Jupyter Book 1.x)::

    sphinx:
      local_extensions:
        book_pages: _ext
      config:
        html_static_path: [_vendor]
        mermaid_use_local: mermaid/mermaid.min.js

References: sphinxcontrib-mermaid 2.1.1 ``install_js`` and ``default.js.j2``; Sphinx 7.4
``html-page-context`` event (https://www.sphinx-doc.org/en/master/extdev/appapi.html).
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

FACTS_FILE = Path(__file__).resolve().parent.parent / "book" / "_chapter_facts.csv"

# sphinxcontrib-mermaid's template starts with exactly this statement (quoted URL, semicolon).
_IMPORT_LINE = re.compile(r'^\s*import mermaid from "[^"]*";?\s*$', re.MULTILINE)


def read_chapter_facts(path: Path = FACTS_FILE) -> dict[str, dict[str, int]]:
    """Read ``notebook,run_seconds,figures`` rows into ``{notebook: {"run_seconds", "figures"}}``.

    >>> facts = read_chapter_facts()
    >>> facts["04_cross_entropy.ipynb"]["run_seconds"] > 0
    True
    """
    facts: dict[str, dict[str, int]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        expected = ["notebook", "run_seconds", "figures"]
        if rows.fieldnames != expected:
            raise ValueError(f"{path}: header is {rows.fieldnames}, expected {expected}")
        for line, row in enumerate(rows, start=2):
            try:
                facts[row["notebook"]] = {"run_seconds": int(row["run_seconds"]),
                                          "figures": int(row["figures"])}
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: expected a notebook name and two whole numbers, "
                                 f"got {row}") from None
    return facts


def _load_mermaid_classically(app, pagename, templatename, context, doctree) -> None:
    url_setting = app.config.mermaid_use_local
    scripts = context.get("script_files")
    if not url_setting or scripts is None:
        return
    for script in list(scripts):
        body = getattr(script, "attributes", {}).get("body", "")
        if script.attributes.get("type") != "module" or not _IMPORT_LINE.search(body):
            continue
        scripts.remove(script)
        attributes = dict(script.attributes)
        attributes["body"] = _IMPORT_LINE.sub("const mermaid = window.mermaid;", body, count=1)
        # The classic bundle runs while the page is parsed; module scripts run after parsing.
        app.add_js_file(url_setting, priority=script.priority)
        app.add_js_file(None, priority=script.priority, **attributes)


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    # sphinx-thebe's inline configuration (``const THEBE_JS_URL = ...``) reaches the page twice
    # with jupyter-book 1.0.4, and the second ``const`` throws a SyntaxError in every page.
    scripts = context.get("script_files")
    if scripts is None:
        return
    seen = set()
    for script in list(scripts):
        # An inline script's file name is None or "" depending on how it was added.
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key in seen:
            scripts.remove(script)
        seen.add(key)


def _run_it_yourself_note(app, pagename, templatename, context, doctree) -> None:
    source = Path(app.env.doc2path(pagename)) if pagename in app.env.all_docs else None
    if source is None or source.suffix != ".ipynb" or "body" not in context:
        return
    facts = read_chapter_facts().get(source.name)
    relative = source.relative_to(app.srcdir).as_posix()
    when = (f" It runs in about {facts['run_seconds']} s on a 2-core machine."
            if facts else "")
    note = ('<div class="admonition tip run-it-yourself">'
            '<p class="admonition-title">Run it yourself</p>'
            f'<p>This chapter is the notebook <code>{html.escape(relative)}</code>: open it with '
            f'<code>jupyter lab {html.escape(relative)}</code> and run every cell.{when}</p></div>')
    body = context["body"]
    end_of_title = body.find("</h1>")
    if end_of_title < 0:
        context["body"] = note + body
    else:
        cut = end_of_title + len("</h1>")
        context["body"] = body[:cut] + note + body[cut:]


def setup(app):
    # After sphinxcontrib-mermaid's install_js (connected at the default priority 500).
    app.connect("html-page-context", _load_mermaid_classically, priority=900)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", _run_it_yourself_note, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
