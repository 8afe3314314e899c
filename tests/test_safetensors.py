import json
import struct

import numpy as np
import pytest

from llm_from_scratch.safetensors import SafetensorsError, load, read_header, save
from llm_from_scratch.testing import assert_close


def _tensors():
    rng = np.random.default_rng(0)
    return {
        "transformer.wte.weight": rng.standard_normal((7, 5)).astype(np.float32),
        "transformer.h.0.ln_1.bias": rng.standard_normal(5),
        "ids": np.arange(6, dtype=np.int64).reshape(2, 3),
        "mask": np.array([True, False, True]),
        "half": rng.standard_normal((3, 2)).astype(np.float16),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def test_round_trip_preserves_values_dtypes_and_shapes(tmp_path):
    t = _tensors()
    save(t, tmp_path / "m.safetensors", metadata={"format": "np"})
    back = load(tmp_path / "m.safetensors")
    assert set(back) == set(t)
    for k in t:
        assert back[k].dtype == t[k].dtype and back[k].shape == t[k].shape, k
        assert np.array_equal(back[k], t[k]), k
        assert back[k].flags.writeable
    tensors, meta, start = read_header(tmp_path / "m.safetensors")
    assert meta == {"format": "np"} and start % 8 == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "m.safetensors"]  # no temporary file left behind


def test_partial_load_and_unknown_name(tmp_path):
    save(_tensors(), tmp_path / "m.safetensors")
    assert list(load(tmp_path / "m.safetensors", names=["ids"])) == ["ids"]
    with pytest.raises(SafetensorsError, match="no tensor named 'nope'"):
        load(tmp_path / "m.safetensors", names=["nope"])



def _write(path, header: dict, data: bytes, header_len=None, pad=True):
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


@pytest.mark.parametrize("header,data,header_len,match", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10 ** 9, "exceeds the limit"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 5000, "runs past the end"),
    ({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype 'Q7'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "non-negative integers"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 8, None, "fall outside"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, None, "overlaps"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, None, "belong to no tensor"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 9, None, "at the end of the file"),
    ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, None, "expected exactly the keys"),
    ({"__metadata__": {"k": 3}}, b"", None, "strings to strings"),
])
def test_malformed_files_are_refused_with_a_reason(tmp_path, header, data, header_len, match):
    path = _write(tmp_path / "bad.safetensors", header, data, header_len)
    with pytest.raises(SafetensorsError, match=match):
        load(path)


def test_garbage_and_short_files(tmp_path):
    (tmp_path / "short").write_bytes(b"\1\2")
    with pytest.raises(SafetensorsError, match="too short"):
        load(tmp_path / "short")
    (tmp_path / "junk").write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{]")
    with pytest.raises(SafetensorsError, match="not valid UTF-8 JSON"):
        load(tmp_path / "junk")
    with pytest.raises(SafetensorsError, match="no such file"):
        load(tmp_path / "missing")


def test_save_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(SafetensorsError, match="complex128"):
        save({"z": np.zeros(2, dtype=np.complex128)}, tmp_path / "z.safetensors")
    with pytest.raises(SafetensorsError, match="non-empty"):
        save({}, tmp_path / "z.safetensors")
    assert not list(tmp_path.iterdir())


def test_bf16_reads_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    path = _write(tmp_path / "b.safetensors", {"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}},
                  bf16.tobytes())
    assert_close(load(path)["x"], values, rtol=0)


@pytest.mark.parity
def test_reference_library_reads_ours_and_we_read_its(tmp_path):
    from tests.conftest import reference
    st = reference("safetensors.numpy")
    t = _tensors()
    del t["empty"]
    save(t, tmp_path / "ours.safetensors")
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    for k in t:
        assert np.array_equal(theirs[k], t[k]), k
    st.save_file(t, str(tmp_path / "theirs.safetensors"), metadata={"m": "1"})
    back = load(tmp_path / "theirs.safetensors")
    for k in t:
        assert np.array_equal(back[k], t[k]) and back[k].dtype == t[k].dtype, k
