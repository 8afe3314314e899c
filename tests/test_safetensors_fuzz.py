"""Fuzzing the safetensors reader: thousands of malformed files, each must give a clean error.

Every file is a mutation of a small valid checkpoint: truncations, flipped header bytes, huge or
zero length fields, overlapping or out-of-range offsets, unknown dtypes, a header claiming a
terabyte tensor, non-UTF-8 or invalid JSON, duplicate keys, deep nesting, absurd shapes. Each
``load`` is classified as

    ok          loaded (the mutation left a valid file, e.g. flipped data bytes)
    clean       SafetensorsError (a ValueError whose one-line message names the file and the problem)
    crash       any other exception
    hang        over the per-file time limit
    overalloc   peak traced memory above the file's size (BF16: the float32 output) + a constant

``python -m tests.test_safetensors_fuzz 10000`` prints the table for 10,000 files.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import struct
import sys
import tempfile
import time
import tracemalloc
from collections import Counter

import numpy as np

from llm_from_scratch.safetensors import SafetensorsError, load, save

SLACK = 256 * 1024    # bytes a load may allocate beyond the file (JSON objects, numpy headers)
TIME_LIMIT = 2.0      # seconds per file


def _base_tensors():
    rng = np.random.default_rng(0)
    return {"wte": rng.standard_normal((16, 8)).astype(np.float32), "bias": rng.standard_normal(8),
            "ids": np.arange(12, dtype=np.int64).reshape(3, 4), "mask": np.array([True, False, True]),
            "half": rng.standard_normal((4, 2)).astype(np.float16), "empty": np.zeros((0, 4), np.float32)}


def _pack(header, data: bytes, header_len=None, raw=None) -> bytes:
    if raw is None:
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw) if header_len is None else header_len % 2 ** 64) + raw + data


def _mutants(base: bytes, rng: np.random.Generator):
    """Yield (kind, file bytes) forever, cycling through the kinds of damage."""
    (n,) = struct.unpack("<Q", base[:8])
    header = json.loads(base[8:8 + n])
    data = base[8 + n:]
    names = [k for k in header if k != "__metadata__"]
    dtypes = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"]

    def edited(fn):
        h = json.loads(json.dumps(header))
        fn(h, h[names[int(rng.integers(len(names)))]])
        return _pack(h, data)

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def weird_value():
        return [None, True, -1, 0, 2 ** 63, 2 ** 64 + 5, -(2 ** 70), 1.5, float("inf"), "7", [], {}, [1, 2, 3],
                [0, 10 ** 30], 10 ** 25][int(rng.integers(15))]

    kinds = {
        "truncated": lambda: base[:int(rng.integers(0, len(base)))],
        "flipped header bytes": lambda: bytearray_flip(base, 8, 8 + n, rng),
        "flipped any bytes": lambda: bytearray_flip(base, 0, len(base), rng),
        "header length field": lambda: struct.pack("<Q", pick([0, 1, 7, n - 1, n + 1, n + 8, len(base), 2 ** 32,
                                                               2 ** 63, 2 ** 64 - 1,
                                                               int(rng.integers(0, 2 ** 62))])) + base[8:],
        "offsets out of range": lambda: edited(lambda h, t: t.__setitem__(
            "data_offsets", [int(rng.integers(-100, 2000)), int(rng.integers(-100, 4000))])),
        "offsets overlapping": lambda: edited(lambda h, t: t.__setitem__(
            "data_offsets", [t["data_offsets"][0] - 4, t["data_offsets"][1] - 4])),
        "offsets wrong type": lambda: edited(lambda h, t: t.__setitem__("data_offsets", weird_value())),
        "unknown dtype": lambda: edited(lambda h, t: t.__setitem__(
            "dtype", str(rng.choice(["F8", "f32", "C64", "", "U16", "F32 ", "OBJ", "bf16"])))),
        "other dtype": lambda: edited(lambda h, t: t.__setitem__("dtype", str(rng.choice(dtypes)))),
        "terabyte tensor": lambda: edited(lambda h, t: t.update(dtype="F32", shape=[2 ** 38],
                                                                 data_offsets=[0, 2 ** 40])),
        "huge shape": lambda: edited(lambda h, t: t.__setitem__("shape", [
            [2 ** 62, 2 ** 62, 0], [0, 10 ** 40], [1] * 70, [2 ** 64], [0] * 65, [10 ** 19, 0]][int(rng.integers(6))])),
        "shape wrong type": lambda: edited(lambda h, t: t.__setitem__("shape", weird_value())),
        "missing or extra key": lambda: edited(lambda h, t: t.pop(str(rng.choice(["dtype", "shape", "data_offsets"])))
                                               if rng.random() < 0.5 else t.__setitem__("extra", 1)),
        "bad metadata": lambda: edited(lambda h, t: h.__setitem__("__metadata__", weird_value())),
        "duplicate keys": lambda: _pack(None, data, raw=duplicate_key_header(header, rng)),
        "non-UTF-8 header": lambda: _pack(None, data, raw=non_utf8(base[8:8 + n], rng)),
        "invalid JSON": lambda: _pack(None, data, raw=invalid_json(base[8:8 + n], rng)),
        "deep nesting": lambda: _pack(None, data, raw=b"[" * int(rng.integers(1000, 200_000))),
        "giant number": lambda: _pack(None, data, raw=b'{"a": {"dtype": "F32", "shape": [' + b"9" * int(
            rng.integers(4000, 20000)) + b'], "data_offsets": [0, 4]}}'),
        "not an object": lambda: _pack(None, data, raw=str(rng.choice(["[]", "3", '"x"', "null", "true",
                                                                        "NaN", "{}", "[1,2]"])).encode()),
        "random garbage": lambda: rng.bytes(int(rng.integers(0, 300))),
        "long fields": lambda: edited(lambda h, t: t.__setitem__(pick(["shape", "data_offsets", "dtype"]), pick([
            [0] * 5000, list(range(3000)), "F" * 20000, {"k": "v" * 10000}]))),
    }
    while True:
        for kind, make in kinds.items():
            yield kind, make()


def bytearray_flip(b: bytes, lo: int, hi: int, rng) -> bytes:
    out = bytearray(b)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(lo, hi))
        out[i] ^= 1 << int(rng.integers(8)) if rng.random() < 0.7 else int(rng.integers(1, 256))
    return bytes(out)


def duplicate_key_header(header: dict, rng) -> bytes:
    items = [(k, v) for k, v in header.items()]
    k, v = items[int(rng.integers(len(items)))]
    items.insert(int(rng.integers(len(items) + 1)), (k, v))      # the same key twice, same or not
    body = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in items)
    return ("{" + body + "}").encode()


def non_utf8(raw: bytes, rng) -> bytes:
    out = bytearray(raw)
    bad = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82"][int(rng.integers(6))]
    i = int(rng.integers(len(out)))
    return bytes(out[:i] + bad + out[i:])


def invalid_json(raw: bytes, rng) -> bytes:
    cuts = [raw[:int(rng.integers(len(raw)))], raw.replace(b":", b"=", 1), raw.replace(b'"', b"'", 2),
            raw.rstrip() + b",", b"{" + raw, raw.replace(b"]", b"", 1), b"\x00" * 16]
    return cuts[int(rng.integers(len(cuts)))]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def classify(path, blob: bytes) -> tuple[str, str]:
    """Write ``blob`` to ``path``, ``load`` it, and return (outcome, detail)."""
    path.write_bytes(blob)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    tracemalloc.start()
    tracemalloc.reset_peak()
    outcome, detail, budget = "ok", "", len(blob) + SLACK
    try:
        out = load(path)
        budget = max(budget, sum(a.nbytes for a in out.values()) + len(blob) + SLACK)
        del out
    except _Timeout:
        outcome, detail = "hang", ""
    except SafetensorsError as exc:
        outcome, detail = "clean", str(exc)
        if str(path) not in detail:
            outcome, detail = "crash", f"message does not name the file: {detail}"
        elif "\n" in detail or len(detail) > len(str(path)) + 400:
            outcome, detail = "crash", f"message is not one short line ({len(detail)} characters): {detail[:200]}"
    except BaseException as exc:  # noqa: BLE001 - every other exception is what we are counting
        outcome, detail = "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if outcome in ("ok", "clean") and peak > budget:
        outcome, detail = "overalloc", f"peak {peak} bytes for a {len(blob)}-byte file"
    return outcome, detail


def fuzz(tmp_path, n_files: int, seed: int = 0):
    """Run ``n_files`` mutants; return ({kind: Counter(outcome)}, [(kind, outcome, detail)] failures)."""
    base_path = tmp_path / "base.safetensors"
    save(_base_tensors(), base_path, metadata={"format": "np"})
    base = base_path.read_bytes()
    rng = np.random.default_rng(seed)
    table: dict[str, Counter] = {}
    failures = []
    gen = _mutants(base, rng)
    path = tmp_path / "fuzz.safetensors"
    for _ in range(n_files):
        kind, blob = next(gen)
        outcome, detail = classify(path, blob)
        table.setdefault(kind, Counter())[outcome] += 1
        if outcome not in ("ok", "clean"):
            failures.append((kind, outcome, detail))
    return table, failures


def format_table(table) -> str:
    cols = ["ok", "clean", "crash", "hang", "overalloc"]
    rows = [f"| {'mutation':<22} | " + " | ".join(f"{c:>9}" for c in cols) + " |",
            "|" + "-" * 24 + "|" + "|".join("-" * 11 for _ in cols) + "|"]
    total = Counter()
    for kind, c in table.items():
        total += c
        rows.append(f"| {kind:<22} | " + " | ".join(f"{c[k]:>9}" for k in cols) + " |")
    rows.append(f"| {'total':<22} | " + " | ".join(f"{total[k]:>9}" for k in cols) + " |")
    return "\n".join(rows)


def _scratch(tmp_path):
    # thousands of small writes: memory-backed /dev/shm where there is one, else pytest's folder
    shm = pathlib.Path("/dev/shm")
    return pathlib.Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path


def test_fuzzed_files_give_clean_errors(tmp_path):
    t0 = time.perf_counter()
    scratch = _scratch(tmp_path)
    try:
        table, failures = fuzz(scratch, 1500, seed=1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{format_table(table)}\n{sum(map(sum, map(Counter.values, table.values())))} files "
          f"in {time.perf_counter() - t0:.1f} s")
    assert not failures, f"{len(failures)} bad outcomes, first: {failures[:3]}"
    clean = sum(c["clean"] for c in table.values())
    assert clean > 1000, f"only {clean} of 1500 mutants were refused: the fuzzer is not damaging files"


def test_loading_a_large_file_allocates_about_its_size(tmp_path):
    # 8 MB of float32 + 2 MB of BF16: the reader must not hold a second copy of the data
    path = tmp_path / "big.safetensors"
    save({"w": np.ones((1024, 2048), np.float32)}, path)
    outcome, detail = classify(path, path.read_bytes())
    assert outcome == "ok", detail
    bf16 = np.full(1 << 20, 0x3F80, "<u2").tobytes()   # 1.0 in bfloat16
    outcome, detail = classify(path, _pack({"x": {"dtype": "BF16", "shape": [1 << 20],
                                                  "data_offsets": [0, len(bf16)]}}, bf16))
    assert outcome == "ok", detail
    assert np.all(load(path)["x"] == 1.0)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        t0 = time.perf_counter()
        table, failures = fuzz(pathlib.Path(d), n, seed=0)
        print(format_table(table))
        print(f"{n} files in {time.perf_counter() - t0:.1f} s")
        for kind, c in Counter((k, o, d.split(':')[0]) for k, o, d in failures).most_common(30):
            print(c, kind)
