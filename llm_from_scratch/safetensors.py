"""Read and write the safetensors format by hand, validating everything; nothing is unpickled.

A safetensors file is three parts:

    8 bytes     N, the header length, an unsigned little-endian 64-bit integer
    N bytes     a JSON object: {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                                ..., "__metadata__": {"key": "value"}}   (optional, strings only)
    the rest    the raw tensor bytes, row-major, little-endian; offsets count from here

That is all: no code is ever executed when a file is read, unlike a pickled checkpoint, which can
run anything. ``load`` checks what a hostile or truncated file could get wrong: header length
within bounds and within the file, valid UTF-8 JSON, known dtypes, non-negative integer shapes,
offsets inside the data and matching the shape, no two tensors overlapping, and no bytes left
unaccounted for. Every failure raises ``SafetensorsError`` naming the file, the tensor and what
was expected. ``save`` writes to a temporary file in the same folder and renames it into place,
so a crash never leaves a half-written checkpoint where a good one was.

Dtypes: F64, F32, F16, BF16 (read as float32: numpy has no bfloat16), I64, I32, I16, I8, U8, BOOL.

Reference: the format specification in the Hugging Face ``safetensors`` repository (README,
"Format"), whose Rust implementation refuses the same malformed inputs.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from pathlib import Path

import numpy as np

from llm_from_scratch.fileio import atomic_write

__all__ = ["SafetensorsError", "load", "save", "read_header", "MAX_HEADER_BYTES"]

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAMES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64",
          np.dtype("<i4"): "I32", np.dtype("<i2"): "I16", np.dtype("i1"): "I8", np.dtype("u1"): "U8",
          np.dtype("?"): "BOOL"}


class SafetensorsError(ValueError):
    """A safetensors file (or a dict to be saved) is malformed; the message says how."""


_MAX_NDIM = 64  # numpy's limit


def _short(x, limit: int = 80) -> str:
    # a hostile header can hold megabytes in one field; an error message quotes at most a line
    text = repr(x)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list) -> dict:
    # json.loads keeps the last of two equal keys silently; a header must not have any
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def read_header(path) -> tuple[dict, dict, int]:
    """Validate a file's header and return ``(tensors, metadata, data_start)``.

    ``tensors`` maps each name to ``(dtype_name, shape, begin, end)`` with absolute byte offsets.
    """
    path = Path(path)
    if not path.is_file():
        raise SafetensorsError(f"{path}: no such file")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: {size} bytes is too short for a safetensors file "
                                   f"(it starts with an 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise SafetensorsError(f"{path}: header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
        if 8 + n > size:
            raise SafetensorsError(f"{path}: header length {n} runs past the end of the {size}-byte file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise SafetensorsError(f"{path}: the header names {_short(exc.args[0])} twice; each key must appear once") from None
    except RecursionError:
        raise SafetensorsError(f"{path}: the header's JSON is nested too deeply to be a safetensors header") from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, an integer of more than 4300 digits
        raise SafetensorsError(f"{path}: the header is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    data_start = 8 + n
    data_len = size - data_start
    tensors = {}
    for name, info in header.items():
        where = f"{path}: tensor {_short(name)}"
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: expected exactly the keys dtype, shape, data_offsets, got {_short(info)}")
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise SafetensorsError(f"{where}: unknown dtype {_short(dtype)}; expected one of {sorted(_DTYPES)}")
        shape = info["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise SafetensorsError(f"{where}: shape must be a list of non-negative integers, got {_short(shape)}")
        if len(shape) > _MAX_NDIM or math.prod(d for d in shape if d) * _DTYPES[dtype].itemsize >= 2 ** 63:
            raise SafetensorsError(f"{where}: shape {_short(shape)} of {dtype} is too large for an array "
                                   f"(at most {_MAX_NDIM} dimensions and 2**63 bytes, zero dimensions aside)")
        offsets = info["data_offsets"]
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise SafetensorsError(f"{where}: data_offsets must be [begin, end] integers, got {_short(offsets)}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise SafetensorsError(f"{where}: data_offsets {_short(offsets)} fall outside the {data_len} data bytes")
        expected = math.prod(shape) * _DTYPES[dtype].itemsize
        if end - begin != expected:
            raise SafetensorsError(f"{where}: shape {_short(shape)} of {dtype} needs {expected} bytes, "
                                   f"data_offsets {_short(offsets)} give {end - begin}")
        tensors[name] = (dtype, tuple(shape), data_start + begin, data_start + end)
    # no overlaps, no gaps: sorted by offset, each tensor starts where the previous one ended
    cursor = data_start
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin < cursor:
            raise SafetensorsError(f"{path}: tensor {_short(name)} overlaps the tensor before it "
                                   f"(starts at data byte {begin - data_start}, previous ends at {cursor - data_start})")
        if begin > cursor:
            raise SafetensorsError(f"{path}: {begin - cursor} data bytes before tensor {_short(name)} belong to no tensor")
        cursor = end
    if cursor != size:
        raise SafetensorsError(f"{path}: {size - cursor} bytes at the end of the file belong to no tensor")
    return tensors, metadata, data_start


def load(path, names=None) -> dict[str, np.ndarray]:
    """Read tensors from a safetensors file into numpy arrays (native byte order, writable).

    ``names`` limits which tensors are read. BF16 tensors come back as float32.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, os.path.join(d, "m.safetensors"))
    >>> load(os.path.join(d, "m.safetensors"))["w"]
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    tensors, _, _ = read_header(path)
    wanted = tensors if names is None else {n: tensors[n] for n in _check_names(names, tensors, path)}
    out = {}
    with open(path, "rb") as f:
        for name, (dtype, shape, begin, end) in wanted.items():
            # read straight into the array: one copy of the data in memory, never a second
            arr = np.empty(shape, dtype=_DTYPES[dtype])
            f.seek(begin)
            if f.readinto(arr.reshape(-1).view(np.uint8)) != end - begin:
                raise SafetensorsError(f"{path}: tensor {name!r} ends past the end of the file "
                                       f"(did the file change while it was read?)")
            if dtype == "BF16":  # the 16 high bits of a float32
                wide = np.empty(shape, dtype=np.float32)
                np.left_shift(arr, 16, out=wide.view(np.uint32), dtype=np.uint32)
                arr = wide
            elif not arr.dtype.isnative:
                arr = arr.byteswap().view(arr.dtype.newbyteorder("="))
            out[name] = arr
    return out


def _check_names(names, tensors, path):
    missing = [n for n in names if n not in tensors]
    if missing:
        raise SafetensorsError(f"{path}: no tensor named {missing[0]!r}; the file has {len(tensors)} tensors")
    return list(names)


def save(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` atomically (``fileio.atomic_write``), in the safetensors format.

    Tensors are laid out largest dtype first, then by name, as the reference implementation does;
    the header is padded with spaces to a multiple of 8 bytes so the data stays aligned.
    """
    if not isinstance(tensors, dict) or not tensors:
        raise SafetensorsError("save needs a non-empty dict of name -> numpy array")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError("metadata must map strings to strings")
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise SafetensorsError(f"tensor names must be non-empty strings other than __metadata__, got {name!r}")
        arr = np.asarray(value)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder not in "|" else arr.dtype
        if dt not in _NAMES:
            raise SafetensorsError(f"tensor {name!r} has dtype {arr.dtype}, which safetensors cannot store; "
                                   f"expected one of float64/32/16, int64/32/16/8, uint8, bool")
        arrays[name] = np.ascontiguousarray(arr, dtype=dt)
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in order:
        nbytes = arrays[name].nbytes
        header[name] = {"dtype": _NAMES[arrays[name].dtype], "shape": list(arrays[name].shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = itertools.chain([struct.pack("<Q", len(raw)), raw], (arrays[name].tobytes() for name in order))
    atomic_write(path, chunks)  # one tensor's bytes in memory at a time
