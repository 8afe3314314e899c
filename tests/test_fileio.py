"""``fileio.atomic_write`` replaces a file in one step or not at all, and every writer uses it."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from llm_from_scratch import fileio, safetensors
from llm_from_scratch.fileio import append_line, atomic_write
from llm_from_scratch.tokenizers import ByteBPETokenizer, CharTokenizer, WordPieceTokenizer


def _failing_chunks():
    yield b"new data that never "
    raise RuntimeError("the data source broke midway")


@pytest.fixture
def fsyncs(monkeypatch):
    """Record the calls to os.fsync (still calling the real one): "file" or "folder" for each."""
    calls = []
    real = os.fsync

    def counting(fd):
        calls.append("file" if stat.S_ISREG(os.fstat(fd).st_mode) else "folder")
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_atomic_write_bytes_str_and_chunks(tmp_path, fsyncs):
    path = tmp_path / "f.bin"
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    atomic_write(path, "ü\n")
    assert path.read_bytes() == "ü\n".encode("utf-8")
    atomic_write(path, (c for c in [b"a", "b", bytearray(b"c"), memoryview(b"d")]))
    assert path.read_bytes() == b"abcd"
    assert fsyncs.count("file") == 3  # the data of each write, before its rename
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_failing_midway_keeps_the_old_file(tmp_path, fsyncs):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"the old, good file")
    with pytest.raises(RuntimeError, match="broke midway"):
        atomic_write(path, _failing_chunks())
    assert path.read_bytes() == b"the old, good file"
    assert os.listdir(tmp_path) == ["model.safetensors"], "a temporary file was left behind"
    assert fsyncs == [], "nothing should have been synced or renamed"
    with pytest.raises(TypeError, match="got a chunk of type int"):
        atomic_write(path, [b"ok", 3])
    assert path.read_bytes() == b"the old, good file" and os.listdir(tmp_path) == ["model.safetensors"]


def test_atomic_write_failing_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    path.write_text("{}")

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, '{"a": 1}')
    assert path.read_text() == "{}" and os.listdir(tmp_path) == ["x.json"]


def test_atomic_write_permissions_and_errors(tmp_path):
    path = tmp_path / "p.txt"
    atomic_write(path, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open(path, "w") would make it
    with pytest.raises(IsADirectoryError, match="is a folder"):
        atomic_write(tmp_path, "x")
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "p.txt", "x")


def test_append_line(tmp_path):
    path = tmp_path / "log.jsonl"
    for step in range(3):
        append_line(path, json.dumps({"step": step}))
    assert path.read_text() == '{"step": 0}\n{"step": 1}\n{"step": 2}\n'
    with pytest.raises(ValueError, match="without line breaks"):
        append_line(path, "two\nlines")
    assert path.read_text().count("\n") == 3


def test_every_writer_is_atomic(tmp_path, monkeypatch):
    """safetensors, the tokenizers, write_json, exercise stubs and embeddings files all go through
    atomic_write (each one fsyncs)."""
    from llm_from_scratch import cli
    from llm_from_scratch.models.common import write_json

    written = []
    real = fileio.atomic_write

    def spy(path, data):
        written.append(os.path.basename(path))
        return real(path, data)

    for module in ("llm_from_scratch.fileio", "llm_from_scratch.safetensors", "llm_from_scratch.tokenizers.base",
                   "llm_from_scratch.tokenizers.wordpiece", "llm_from_scratch.cli"):
        monkeypatch.setattr(f"{module}.atomic_write", spy)
    safetensors.save({"w": np.ones((2, 3), np.float32)}, tmp_path / "m.safetensors")
    CharTokenizer.from_text("ab").save(tmp_path / "char.json")
    ByteBPETokenizer().save(tmp_path / "bpe.json")
    WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]).save_vocab(tmp_path / "vocab.txt")
    write_json(tmp_path / "config.json", {"a": 1})
    cli._save_npy(tmp_path / "e.npy", np.eye(2, dtype=np.float32))
    assert cli.main(["exercises", "start", "bigram_perplexity", "--dir", str(tmp_path / "ex")]) == 0
    assert written == ["m.safetensors", "char.json", "bpe.json", "vocab.txt", "config.json", "e.npy", "bigram_perplexity.py"]
    assert np.array_equal(np.load(tmp_path / "e.npy"), np.eye(2, dtype=np.float32))
    assert sorted(os.listdir(tmp_path)) == sorted(written[:-1] + ["ex"])


def test_safetensors_save_failing_midway_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    safetensors.save({"w": np.zeros(3, np.float32)}, path)
    before = path.read_bytes()

    class Exploding(np.ndarray):
        def tobytes(self, *args, **kwargs):
            raise MemoryError("out of memory while copying the tensor")

    monkeypatch.setattr(safetensors.np, "ascontiguousarray", lambda a, dtype: np.asarray(a, dtype).view(Exploding))
    with pytest.raises(MemoryError):
        safetensors.save({"w": np.ones(3, np.float32)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]
