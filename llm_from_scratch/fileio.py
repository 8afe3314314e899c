"""Write files so that a crash never leaves a half-written one where a good one was.

Every file this package writes (checkpoints, configs, tokenizers, metrics, exercise stubs,
embeddings) goes through ``atomic_write``: the bytes go to a temporary file in the same folder,
which is flushed and fsynced, then ``os.replace`` puts it in place in one step (a rename within
a filesystem is atomic on POSIX and Windows), and the folder itself is fsynced so the rename
survives a power cut. A reader of ``path`` sees the old file or the new one, never a mixture;
if writing fails midway (a full disk, an exception while producing the data, Ctrl-C), the
temporary file is removed and the old file is left as it was.

``append_line`` adds one line to a log (``metrics.jsonl``) with a single ``write`` on a file
opened for appending, so lines are never interleaved or split between two writes.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hello.txt")
    >>> atomic_write(path, "héllo\\n")
    >>> open(path, encoding="utf-8").read()
    'héllo\\n'
    >>> atomic_write(path, [b"two ", "chunks"])       # an iterable of chunks is written in order
    >>> open(path).read(), os.listdir(os.path.dirname(path))
    ('two chunks', ['hello.txt'])

Left out: locking (two processes writing the same path both succeed; the last rename wins) and
appending atomically across a crash (a power cut can still lose the end of a log).

References: the POSIX ``rename(2)`` and ``fsync(2)`` manual pages; T. Ts'o, "Don't fear the
fsync!" (2009), on why the data must be fsynced before the rename.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = ["atomic_write", "append_line"]


def _chunks(data) -> Iterable[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview, str)):
        data = (data,)
    for chunk in data:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        elif not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes or str to write, got a chunk of type {type(chunk).__name__}")
        yield chunk


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its rename is durable on its own
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse to fsync a folder; the file itself is already on disk
    finally:
        os.close(fd)


def atomic_write(path, data: bytes | str | Iterable[bytes | str]) -> None:
    """Replace ``path`` with ``data`` (bytes, str as UTF-8, or an iterable of such chunks) atomically.

    The folder must exist. The new file gets the permissions an ordinary ``open(path, "w")``
    would give it (0666 less the umask). Writing an iterable streams it, so a large checkpoint
    is never copied into one buffer; if the iterable raises, the old file is untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected the path of a file to write")
    folder = path.parent
    while True:
        tmp = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:  # created by us alone (O_EXCL), with the permissions of an ordinary new file
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in _chunks(data):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


def append_line(path, line: str) -> None:
    """Append ``line`` and a newline to ``path`` (created if missing) in one ``write``.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "log.jsonl")
    >>> append_line(path, '{"step": 0}'); append_line(path, '{"step": 1}')
    >>> open(path).read()
    '{"step": 0}\\n{"step": 1}\\n'
    """
    if "\n" in line or "\r" in line:
        raise ValueError(f"expected a single line without line breaks, got {line[:60]!r}")
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o666)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it all at once; be safe with short writes
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)
