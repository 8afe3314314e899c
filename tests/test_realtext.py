"""Real text: the standard library corpus is deterministic, within budget and real code;
reading a reader's file gives clear errors."""

from __future__ import annotations

import sys

import pytest

from llm_from_scratch.data import load_text_file, python_stdlib_text, stdlib_files


def test_stdlib_files_are_sorted_and_skip_tests_and_packages():
    files = stdlib_files()
    assert files == sorted(files) and len(files) > 300
    assert "json/decoder.py" in files and "os.py" in files
    for f in files:
        parts = f.split("/")
        assert f.endswith(".py")
        assert not {"test", "tests", "idle_test", "site-packages"} & set(parts[:-1]), f


@pytest.mark.parametrize("budget", [0, 1, 100, 5000, 200_000])
def test_budget_is_respected_and_text_is_whole_lines(budget):
    text = python_stdlib_text(max_bytes=budget)
    n = len(text.encode("utf-8"))
    assert n <= budget
    if budget >= 5000:
        assert n > budget - 5000        # the budget is used, not just the first file
    assert text == "" or text.endswith("\n")


def test_deterministic_and_real_code():
    a = python_stdlib_text(max_bytes=300_000)
    assert a == python_stdlib_text(max_bytes=300_000)
    assert python_stdlib_text(max_bytes=600_000).startswith(a[:-2000])
    assert a.startswith("# ==== file: __future__.py ====\n")
    assert '"""' in a and "\ndef " in a and "import " in a and "return " in a
    assert "\r" not in a
    files = [line[len("# ==== file: "):-len(" ====")] for line in a.splitlines()
             if line.startswith("# ==== file: ")]
    assert files == sorted(files) and len(files) > 5
    bare = python_stdlib_text(max_bytes=300_000, separator=False)
    assert "# ==== file:" not in bare and bare.startswith('"""')


def test_stdlib_text_errors(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        python_stdlib_text(max_bytes=-1)
    with pytest.raises(FileNotFoundError, match="os.py"):
        python_stdlib_text(stdlib_dir=str(tmp_path / "missing"))


def test_stdlib_text_from_a_given_directory(tmp_path):
    (tmp_path / "b.py").write_text("b = 2\r\n")
    (tmp_path / "a.py").write_text('"""A."""\na = 1')
    (tmp_path / "bad.py").write_bytes(b"x = '\xff'\n")         # not UTF-8: skipped
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text("skipped = True\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("m = 3\n")
    text = python_stdlib_text(stdlib_dir=str(tmp_path))
    assert text == ('# ==== file: a.py ====\n"""A."""\na = 1\n'
                    '# ==== file: b.py ====\nb = 2\n'
                    '# ==== file: pkg/m.py ====\nm = 3\n')


def test_load_text_file(tmp_path):
    p = tmp_path / "mine.txt"
    p.write_bytes("one\r\ntwo ✓\n".encode("utf-8"))
    assert load_text_file(p) == "one\ntwo ✓\n"
    assert load_text_file(str(p), max_bytes=9) == "one\ntwo "       # ✓ is 3 bytes: left out
    assert load_text_file(p, max_bytes=0) == ""
    with pytest.raises(FileNotFoundError, match="no such text file"):
        load_text_file(tmp_path / "nope.txt")
    with pytest.raises(IsADirectoryError, match="directory"):
        load_text_file(tmp_path)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not UTF-8 .* byte 0xe9 at byte offset 3"):
        load_text_file(bad)
    with pytest.raises(ValueError, match="max_bytes"):
        load_text_file(p, max_bytes=-3)


def test_python_version_is_recorded():
    # the book's corpus numbers come from 3.11; other versions give other (valid) text
    assert sys.version_info >= (3, 11)
