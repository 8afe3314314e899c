"""The built HTML book, opened page by page in headless Chromium with the network cut off.

For every page of ``_build/html`` (whatever pages the table of contents produced), from
``file://`` and with every host name resolving to nothing, this checks that:

- every math element was typeset by MathJax, and no raw ``\\(``, ``\\[``, ``$$`` or
  ``\\begin{`` is left in the text a reader sees (code blocks aside);
- every Mermaid block became an SVG;
- the page logged no JavaScript error (console errors, uncaught exceptions, failed loads);
- every image loaded (``naturalWidth > 0``), and a chapter page shows at least as many
  notebook figures as ``book/_chapter_facts.csv`` records for it;
- every internal link points at a file that exists, and its ``#anchor`` at an id on that page;
- a chapter page carries its "Run it yourself" note naming its notebook.

A CDN dependency fails it: nothing outside the build can load. A screenshot of each page goes to
``_build/screenshots/`` for a person to look at.

The browser is driven through the Chrome DevTools Protocol over ``--remote-debugging-pipe``
(JSON messages separated by NUL bytes on file descriptors 3 and 4), so no driver or websocket
package is needed. Reference: https://chromedevtools.github.io/devtools-protocol/

Needs Chromium (Debian: ``apt-get install chromium``) and a built book
(``jupyter-book build . --all -W``). Without either the test is skipped on a reader's machine
and fails in CI (``CI`` set). ``BOOK_HTML`` points it at another build directory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.test_book_figures import CHAPTER_FACTS, read_chapter_facts

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html")).resolve()
SCREENSHOTS = BUILD.parent / "screenshots"
PAGE_TIMEOUT = 60.0  # seconds for one page to load, typeset and draw
WIDTH, HEIGHT, MAX_SHOT_HEIGHT = 1280, 1000, 6000

REDIRECT = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"#]+)', re.IGNORECASE)
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _required() -> bool:
    return bool(os.environ.get("CI"))


def _skip_or_fail(message: str):
    if _required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def find_browser() -> str | None:
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def book_pages(build: Path = BUILD) -> list[Path]:
    """Every HTML page of the build, theme templates and page sources aside."""
    if not build.is_dir():
        return []
    skip = {"_static", "_sources", "_images"}
    return sorted(p for p in build.rglob("*.html")
                  if not skip.intersection(p.relative_to(build).parts[:-1]))


# --------------------------------------------------------------------------------------------
# Anchors: the ids and names every page defines, read from the static HTML
# --------------------------------------------------------------------------------------------

class _AnchorParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" or (key == "name" and tag == "a"):
                if value:
                    self.anchors.add(value)


_anchor_cache: dict[Path, set[str]] = {}


def anchors_of(page: Path) -> set[str]:
    if page not in _anchor_cache:
        parser = _AnchorParser()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        _anchor_cache[page] = parser.anchors
    return _anchor_cache[page]


def broken_internal_links(hrefs: list[str], build: Path = BUILD) -> list[str]:
    """The ``file://`` links among ``hrefs`` whose file or ``#anchor`` does not exist."""
    broken = []
    for href in sorted(set(hrefs)):
        parts = urlsplit(href)
        if parts.scheme != "file":
            continue
        target = Path(unquote(parts.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no such file)")
            continue
        fragment = unquote(parts.fragment)
        if fragment and target.suffix == ".html" and fragment not in anchors_of(target):
            broken.append(f"{href} (no id {fragment!r} on {target.name})")
    return broken


# --------------------------------------------------------------------------------------------
# A minimal DevTools Protocol client over --remote-debugging-pipe
# --------------------------------------------------------------------------------------------

class Browser:
    """Headless Chromium, no network: every host resolves to nothing, and a dead proxy."""

    def __init__(self, executable: str):
        self.profile = tempfile.mkdtemp(prefix="book-browser-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # in the child: its fd 3 reads our commands, fd 4 writes replies
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [executable, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
                "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--mute-audio", "--hide-scrollbars", f"--user-data-dir={self.profile}",
                f"--window-size={WIDTH},{HEIGHT}",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                "about:blank"]
        self.process = subprocess.Popen(args, preexec_fn=wire_pipes, close_fds=False,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                  session=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe "
                                   f"(exit code {self.process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: bool = False,
             timeout: float = PAGE_TIMEOUT) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for_event(self, method: str, timeout: float = PAGE_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(index)
            event = self._read_message(deadline)
            if "method" in event:
                self.events.append(event)

    def evaluate(self, expression: str, timeout: float = PAGE_TIMEOUT):
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, session=True,
                           timeout=timeout)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for_event("Page.loadEventFired")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests seen since ``open``."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                text = details.get("exception", {}).get("description") or details.get("text")
                found.append(f"uncaught exception: {text}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                text = " ".join(str(arg.get("value", arg.get("description", "")))
                                for arg in params.get("args", []))
                found.append(f"console.{params['type']}: {text}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                found.append(f"failed to load request {params.get('requestId')}: "
                             f"{params.get('errorText')}")
        return found

    def screenshot(self, path: Path) -> None:
        height = self.evaluate("document.documentElement.scrollHeight") or HEIGHT
        height = max(HEIGHT, min(int(height), MAX_SHOT_HEIGHT))
        shot = self.call("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True,
                          "clip": {"x": 0, "y": 0, "width": WIDTH, "height": height, "scale": 1}},
                         session=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".png.tmp")
        temporary.write_bytes(base64.b64decode(shot["data"]))
        temporary.replace(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


# Runs in the page once it has loaded: waits for MathJax, Mermaid and images, then reports.
INSPECT_PAGE = r"""
(async () => {
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // Folded content (exercise solutions, toggled cells) is opened so everything gets drawn.
  document.querySelectorAll('details').forEach((d) => { d.open = true; });
  document.querySelectorAll('.toggle-hidden, .toggle-details__summary')
    .forEach((e) => e.classList.remove('toggle-hidden'));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const mermaids = () => [...document.querySelectorAll('.mermaid')];
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    if (mermaids().every((m) => m.querySelector('svg'))) break;
    // Off-screen diagrams render when scrolled into view.
    for (const m of mermaids()) if (!m.querySelector('svg')) m.scrollIntoView();
    await sleep(250);
  }
  window.scrollTo(0, 0);
  await Promise.all([...document.images].map((img) => {
    img.loading = 'eager';
    return img.complete ? null : new Promise((r) => { img.onload = img.onerror = r; });
  }));
  const main = document.querySelector('main') || document.body;
  const visible = main.cloneNode(true);
  visible.querySelectorAll('pre, code, script, style, mjx-container, .mermaid, .highlight')
    .forEach((e) => e.remove());
  const text = visible.textContent;
  const rawTex = [];
  for (const marker of ['\\(', '\\[', '$$', '\\begin{']) {
    let at = text.indexOf(marker);
    if (at >= 0) rawTex.push(text.slice(Math.max(0, at - 40), at + 60).replace(/\s+/g, ' '));
  }
  const maths = [...document.querySelectorAll('.math')];
  return {
    title: document.title,
    math: maths.length,
    untypeset: maths.filter((m) => !m.querySelector('mjx-container'))
                    .map((m) => m.textContent.slice(0, 80)),
    // Errors, and undefined macros (MathJax draws those as red text, e.g. a lost \R).
    mathjaxErrors: [...document.querySelectorAll(
                      'mjx-merror, [data-mjx-error], [data-mml-node="merror"], '
                      + 'g[data-mml-node="mtext"][fill="red"]')]
                    .map((e) => e.getAttribute('data-mjx-error') || e.textContent
                                || e.outerHTML.slice(0, 120)).slice(0, 5),
    rawTex,
    mermaid: mermaids().length,
    mermaidUndrawn: mermaids().filter((m) => !m.querySelector('svg'))
                    .map((m) => m.textContent.slice(0, 80)),
    images: [...document.images].map((i) => ({src: i.src, width: i.naturalWidth,
                                                output: !!i.closest('.cell_output')})),
    links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
    runNote: (document.querySelector('.run-it-yourself') || {}).textContent || '',
  };
})()
"""


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    if executable is None:
        _skip_or_fail("no Chromium found (tried " + ", ".join(BROWSER_NAMES)
                      + "); install it with: apt-get install chromium")
    instance = Browser(executable)
    yield instance
    instance.close()


def _page_ids():
    pages = book_pages()
    return [p.relative_to(BUILD).as_posix() for p in pages] or ["<no built book>"]


@pytest.mark.parametrize("page", _page_ids())
def test_page_renders_offline(browser, page):
    if page == "<no built book>":
        _skip_or_fail(f"no built book in {BUILD}; build it first: jupyter-book build . --all -W")
    path = BUILD / page
    redirect = REDIRECT.search(path.read_text(encoding="utf-8", errors="replace"))
    if redirect:  # a page that only forwards (index.html): its target must exist
        assert not broken_internal_links([(path.parent / redirect.group(1)).as_uri()]), \
            f"{page} redirects to {redirect.group(1)}, which does not exist"
        return
    browser.open(path.as_uri())
    report = browser.evaluate(INSPECT_PAGE)
    browser.screenshot(SCREENSHOTS / (page.replace("/", "__").removesuffix(".html") + ".png"))
    errors = browser.errors()

    problems = []
    if report["untypeset"]:
        problems.append(f"{len(report['untypeset'])} of {report['math']} math elements not "
                        f"typeset, e.g. {report['untypeset'][:3]}")
    if report["mathjaxErrors"]:
        problems.append(f"MathJax errors: {report['mathjaxErrors']}")
    if report["rawTex"]:
        problems.append(f"raw TeX in the rendered text: {report['rawTex']}")
    if report["mermaidUndrawn"]:
        problems.append(f"{len(report['mermaidUndrawn'])} of {report['mermaid']} Mermaid blocks "
                        f"not drawn as SVG: {report['mermaidUndrawn'][:3]}")
    if errors:
        problems.append(f"{len(errors)} JavaScript/loading errors: {errors[:5]}")
    unloaded = [image["src"] for image in report["images"] if image["width"] == 0]
    if unloaded:
        problems.append(f"{len(unloaded)} images did not load: {unloaded[:5]}")
    broken = broken_internal_links(report["links"])
    if broken:
        problems.append(f"{len(broken)} broken internal links: {broken[:5]}")

    notebook = Path(page).stem + ".ipynb"
    if notebook in read_chapter_facts() and notebook not in report["runNote"]:
        problems.append(f"no 'Run it yourself' note naming {notebook}: {report['runNote']!r}")

    figures = sum(1 for image in report["images"] if image["output"] and image["width"] > 0)
    expected = read_chapter_facts().get(notebook, {}).get("figures", 0)
    if figures < expected:
        problems.append(f"{figures} notebook figures shown, {CHAPTER_FACTS.name} expects at "
                        f"least {expected}")
    print(f"{page}: {report['math']} math, {report['mermaid']} mermaid, "
          f"{len(report['images'])} images ({figures} figures, expected >= {expected}), "
          f"{len(set(report['links']))} links, {len(errors)} errors")
    assert not problems, f"{page} ({report['title']!r}):\n  " + "\n  ".join(problems)


def test_build_has_every_chapter_page():
    """Every chapter in book/_chapter_facts.csv has a page in the build."""
    if not BUILD.is_dir():
        _skip_or_fail(f"no built book in {BUILD}; build it first: jupyter-book build . --all -W")
    missing = [name for name in read_chapter_facts()
               if not (BUILD / "book" / (Path(name).stem + ".html")).is_file()]
    assert not missing, f"chapters without a page in {BUILD / 'book'}: {missing}"


def test_link_checker_catches_a_missing_anchor(tmp_path):
    """The link check itself fails on a bad anchor and a missing file."""
    page = tmp_path / "page.html"
    page.write_text('<h1 id="top">x</h1><a name="old">y</a>', encoding="utf-8")
    good = [page.as_uri() + "#top", page.as_uri() + "#old", page.as_uri()]
    bad = [page.as_uri() + "#nowhere", (tmp_path / "gone.html").as_uri()]
    assert broken_internal_links(good, tmp_path) == []
    assert len(broken_internal_links(good + bad, tmp_path)) == 2
