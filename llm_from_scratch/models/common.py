"""What the models share: parameter checks, dropout while training, and reading/writing
checkpoint folders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from llm_from_scratch import safetensors

__all__ = ["check_arrays", "check_params", "maybe_dropout_forward", "maybe_dropout_backward", "check_checkpoint",
           "read_checkpoint_config", "cast_params", "read_config", "write_json", "write_checkpoint", "load_tensors"]


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


def _missing_and_extra(have: dict, shapes: dict) -> tuple[list[str], list[str]]:
    """The names of ``shapes`` missing from ``have``, and the names of ``have`` not in ``shapes``."""
    return [name for name in shapes if name not in have], [name for name in have if name not in shapes]


def check_params(params: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], what: str, build: str,
                 extra_hint: Callable[[list[str]], str] = lambda extra: "") -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names of ``shapes`` (KeyError),
    with those shapes (ValueError), all float32 or all float64 (TypeError); return the dtype.

    ``what`` describes the config ("this config"), ``build`` says how to make the right dict, and
    ``extra_hint(extra_names)`` may explain a typical extra tensor.

    >>> check_params({"w": np.zeros(2)}, {"w": (2,), "b": (2,)}, "this config", "init_params(config)")
    Traceback (most recent call last):
    ...
    KeyError: "params lacks 1 of the 2 tensors of this config, e.g. ['b']; build them with init_params(config)"
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> numpy array, got {type(params).__name__}")
    missing, extra = _missing_and_extra(params, shapes)
    if missing:
        raise KeyError(f"params lacks {len(missing)} of the {len(shapes)} tensors of {what}, e.g. {missing[:3]}; "
                       f"build them with {build}")
    if extra:
        raise KeyError(f"params has tensors {what} does not use: {extra[:3]}{extra_hint(extra)}")
    return check_arrays(params, shapes)


def maybe_dropout_forward(ops, x: np.ndarray, p: float, rng, train: bool):
    """``ops.dropout_forward`` when it does something (training, ``p`` > 0); otherwise
    ``(x, None)``, the identity without a copy."""
    if not train or p == 0:
        return x, None
    return ops.dropout_forward(x, p, rng, train=True)


def maybe_dropout_backward(ops, dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``maybe_dropout_forward``: ``dout`` itself through the identity."""
    return dout if cache is None else ops.dropout_backward(dout, cache)


def read_checkpoint_config(directory: Path, config_class, given=None):
    """The config of the checkpoint folder ``directory`` (its ``config.json`` read by
    ``config_class.from_json``), refused when it differs from the ``given`` one (None: any),
    naming every field that differs."""
    found = config_class.from_json(directory / "config.json")
    if given is not None and given != found:
        diffs = [f"{f.name}: expected {getattr(given, f.name)!r}, checkpoint has {getattr(found, f.name)!r}"
                 for f in dataclasses.fields(found) if getattr(given, f.name) != getattr(found, f.name)]
        raise ValueError(f"{directory}: the checkpoint's config differs from the one given: " + "; ".join(diffs))
    return found


def cast_params(tensors: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], dtype=None
                ) -> dict[str, np.ndarray]:
    """The tensors named in ``shapes``, in that order: cast to ``dtype``, or, with None, kept as
    stored when float32/float64 (float16/bfloat16 become float32)."""
    params = {}
    for name in shapes:
        value = tensors[name]
        if dtype is not None:
            value = value.astype(dtype)
        elif value.dtype not in (np.float32, np.float64):
            value = value.astype(np.float32)
        params[name] = value
    return params


def check_checkpoint(directory, tensors: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], model: str,
                     depth: str) -> None:
    """Refuse a checkpoint whose tensors are not exactly ``shapes``: name what is missing, what is
    extra (hinting at ``depth``, the config's layer count) and any tensor of the wrong shape.
    ``model`` says what the config describes, e.g. "a GPT-2 with this config.json"."""
    missing, unexpected = _missing_and_extra(tensors, shapes)
    if missing:
        raise ValueError(f"{directory}: {len(missing)} tensors of {model} are missing: "
                         f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
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
    if isinstance(d, dict) and "quantization_config" in d:
        method = d["quantization_config"].get("quant_method") if isinstance(d["quantization_config"], dict) else None
        raise ValueError(f"{path}: this is a quantized checkpoint ({method}), not float weights; load it with "
                         "llm_from_scratch.quantize.load_quantized")
    try:
        return from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def write_json(path: Path, d: dict) -> None:
    """Write ``d`` as indented JSON to ``path`` through a temporary file and a rename."""
    from llm_from_scratch.fileio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(d, indent=2) + "\n")


def write_checkpoint(directory, tensors: dict[str, np.ndarray], config: dict) -> None:
    """A Hugging Face checkpoint folder: ``model.safetensors`` (``tensors``) and ``config.json``
    (``config``), each written through a temporary file and a rename."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    safetensors.save(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    write_json(directory / "config.json", config)


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
