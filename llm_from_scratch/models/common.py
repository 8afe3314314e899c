"""What the models share: parameter checks and reading/writing checkpoint folders."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from llm_from_scratch import safetensors

__all__ = ["check_arrays", "check_checkpoint", "read_config", "write_json", "load_tensors"]


def check_arrays(params: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.dtype:
    """Raise a readable error unless every ``params[name]`` is a float32 or float64 array of
    ``shapes[name]``, all of one dtype; return that dtype. (Missing and extra names are the
    caller's to report, with hints specific to its model.)"""
    dtypes = set()
    for name, shape in shapes.items():
        p = params[name]
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            got = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"params[{name!r}] must be a float32 or float64 numpy array, got {got}")
        if p.shape != shape:
            raise ValueError(f"params[{name!r}] has shape {p.shape}, expected {shape} for this config")
        dtypes.add(p.dtype)
    if len(dtypes) > 1:
        raise TypeError(f"params mix dtypes {sorted(str(d) for d in dtypes)}; cast them all to float32 "
                        "(training) or float64 (gradient checks)")
    return dtypes.pop()


def check_checkpoint(directory, tensors: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], model: str,
                     depth: str) -> None:
    """Refuse a checkpoint whose tensors are not exactly ``shapes``: name what is missing, what is
    extra (hinting at ``depth``, the config's layer count) and any tensor of the wrong shape.
    ``model`` says what the config describes, e.g. "a GPT-2 with this config.json"."""
    missing = [name for name in shapes if name not in tensors]
    if missing:
        raise ValueError(f"{directory}: {len(missing)} tensors of {model} are missing: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    unexpected = [name for name in tensors if name not in shapes]
    if unexpected:
        raise ValueError(f"{directory}: tensors {model} does not have: "
                         f"{', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''} "
                         f"(does {depth} match the file?)")
    for name, shape in shapes.items():
        if tensors[name].shape != shape:
            raise ValueError(f"{directory}: tensor {name!r} has shape {tensors[name].shape}, but config.json "
                             f"implies {shape}")


def read_config(path, from_dict):
    """Read a Hugging Face ``config.json`` and build a config with ``from_dict``; every failure
    names the file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such config file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    try:
        return from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_json(path: Path, d: dict) -> None:
    """Write ``d`` as indented JSON to ``path`` through a temporary file and a rename."""
    from llm_from_scratch.fileio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(d, indent=2) + "\n")


def load_tensors(directory: Path) -> dict[str, np.ndarray]:
    """All tensors of ``model.safetensors``, or of the shards listed in ``model.safetensors.index.json``."""
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return safetensors.load(single)
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise ValueError(f"{index}: shard {shard!r} must be a file name inside {directory}")
            tensors.update(safetensors.load(directory / shard))
        return tensors
    others = sorted(p.name for p in directory.glob("*.bin")) if directory.is_dir() else []
    hint = (f"; {others[0]} is a pickled PyTorch file, which this loader never opens (it can run code): "
            "convert it with transformers (save_pretrained writes safetensors)") if others else ""
    raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json{hint}")
