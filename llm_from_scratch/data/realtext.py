"""Real text: the Python standard library's own source, or a text file of the reader's.

The book's real-text corpus needs no download: every Python installation carries megabytes
of well-written code and docstrings in its standard library. ``python_stdlib_text`` reads
those ``.py`` files from the running interpreter in a fixed order and concatenates them up to
a byte budget, so the same interpreter always gives the same corpus.

    >>> text = python_stdlib_text(max_bytes=2000)
    >>> text.startswith("# ==== file: ")
    True

The exact text (and so every number computed from it) depends on the Python version: the
standard library changes from release to release. The book's numbers come from Python 3.11.

Left out: downloading corpora (no network access is assumed), any cleaning beyond normalizing
line endings, and non-UTF-8 encodings (a file that is not UTF-8 is skipped or reported).

References: the ``sysconfig`` module documentation (``sysconfig.get_paths()["stdlib"]``);
Karpathy's char-rnn and nanoGPT use small single-file corpora in the same spirit.
"""

from __future__ import annotations

import codecs
import os
import sysconfig

__all__ = ["python_stdlib_text", "stdlib_files", "load_text_file"]

# directory names whose files are never read: installed packages and test suites
# (test/, tests/, idlelib/idle_test, lib2to3/tests, unittest/test, ...)
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                       "__pycache__"})

SEPARATOR = "# ==== file: {path} ====\n"


def stdlib_files(stdlib_dir: str | None = None) -> list[str]:
    """Relative paths (with ``/``) of the standard library's ``.py`` files, sorted.

    Skips installed packages and test suites (any directory named in ``SKIP_DIRS``).

    >>> files = stdlib_files()
    >>> "json/decoder.py" in files, any(f.startswith("test/") for f in files)
    (True, False)
    """
    root = stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"]
    if not os.path.isdir(root):
        raise FileNotFoundError(f"standard library directory {root!r} does not exist; pass "
                                f"stdlib_dir= the folder that holds os.py")
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        rel = os.path.relpath(dirpath, root)
        for f in filenames:
            if f.endswith(".py"):
                path = f if rel == "." else os.path.join(rel, f)
                out.append(path.replace(os.sep, "/"))
    return sorted(out)


def python_stdlib_text(max_bytes: int = 1_000_000, stdlib_dir: str | None = None,
                       separator: bool = True) -> str:
    """The standard library's ``.py`` sources concatenated, at most ``max_bytes`` UTF-8 bytes.

    Files come in sorted order of their relative paths (``stdlib_files``); each is preceded
    by a line ``# ==== file: json/decoder.py ====`` (unless ``separator=False``); files that are
    not valid UTF-8 are skipped; ``\\r\\n`` becomes ``\\n``. The last file is cut after its last
    whole line that fits, so the result never exceeds the budget.

    >>> t = python_stdlib_text(max_bytes=300)
    >>> len(t.encode("utf-8")) <= 300, t.endswith("\\n")
    (True, True)
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
    root = stdlib_dir if stdlib_dir is not None else sysconfig.get_paths()["stdlib"]
    parts, used = [], 0
    for rel in stdlib_files(root):
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            data = f.read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        data = data.replace(b"\r\n", b"\n")
        if data and not data.endswith(b"\n"):
            data += b"\n"
        if separator:
            data = SEPARATOR.format(path=rel).encode("utf-8") + data
        if used + len(data) > max_bytes:
            cut = data.rfind(b"\n", 0, max_bytes - used) + 1   # whole lines only
            parts.append(data[:cut])
            break
        parts.append(data)
        used += len(data)
    return b"".join(parts).decode("utf-8")


def load_text_file(path: str | os.PathLike, max_bytes: int | None = None) -> str:
    """A UTF-8 text file's contents, or its first ``max_bytes`` bytes (never splitting a
    character); ``\r\n`` becomes ``\n``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = p.write_bytes("héllo".encode("utf-8"))
    >>> load_text_file(p), load_text_file(p, max_bytes=2)   # 'é' is two bytes: not split
    ('héllo', 'h')
    """
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                                  or max_bytes < 0):
        raise ValueError(f"max_bytes must be None or a non-negative integer, got {max_bytes!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such text file: {path!r} (working directory "
                                f"{os.getcwd()!r})")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory; expected a text file")
    with open(path, "rb") as f:
        data = f.read() if max_bytes is None else f.read(max_bytes)
        cut = max_bytes is not None and f.read(1) != b""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        # final=False leaves out a character that max_bytes cut in two instead of failing on it
        text = decoder.decode(data, final=not cut)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path!r} is not UTF-8 text: byte {data[e.start]:#04x} at byte offset "
                         f"{e.start} cannot be decoded ({e.reason}); convert the file to UTF-8 "
                         f"(e.g. iconv -f latin1 -t utf-8)") from None
    return text.replace("\r\n", "\n")
