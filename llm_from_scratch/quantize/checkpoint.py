"""Quantized checkpoints: ``config.json`` + ``model.safetensors`` holding codes and scales.

The folder looks like a Hugging Face checkpoint, with two additions:

``model.safetensors``
    float tensors under their own names (float32); a quantized matrix ``NAME`` stores its codes
    under ``NAME`` (I8 (C, OC), or U8 (C // 2, OC) for packed int4: the linear op's layout,
    whatever the float layout was; see ``quantize.core``) and its scales beside it under
    ``NAME.scales`` (F32 (OC,) for int8, F16 (C // g, OC) for int4). The header's ``__metadata__`` says
    ``quant_method`` = "llm-from-scratch-absmax", ``format_version`` = "1", ``bits``,
    ``group_size`` ("none" for int8) and ``quantized``: a JSON object mapping each quantized
    name to its ``out_axis`` (1: the float matrix was (C, OC); 0: it was (OC, C)).
``config.json``
    the model's config (GPT-2 or BERT) plus ``quantization_config`` (``quant_method``,
    ``bits``, ``group_size``, ``format_version``, ``tied_head``, ``word_embeddings``), the key under which Hugging
    Face records quantized checkpoints. The float loaders (``models.common.read_config``)
    refuse a config that has it, naming ``load_quantized``.

Both files are written atomically (``safetensors.save`` and ``common.write_json`` go through
``fileio.atomic_write``). ``load_quantized`` checks what a mismatched or damaged folder could
get wrong and names it: no quantization metadata (a float checkpoint), bits other than 4 or 8,
a group size that differs between the two files, missing scales, scales or codes of the wrong
shape or dtype, tensors the config does not have.

Tokenizer files beside the model (``tokenizer.json``, ``vocab.txt``, sentence-transformers'
settings) are copied by the ``llm-scratch quantize`` command, not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llm_from_scratch import safetensors
from llm_from_scratch.models.common import write_json
from llm_from_scratch.quantize.core import QuantizedTensor
from llm_from_scratch.quantize.models import check_quantized_params, is_quantized, quantized_names

__all__ = ["QUANT_METHOD", "FORMAT_VERSION", "SCALES_SUFFIX", "QuantizedCheckpointError", "save_quantized",
           "load_quantized", "read_quantization"]

QUANT_METHOD = "llm-from-scratch-absmax"
FORMAT_VERSION = 1
SCALES_SUFFIX = ".scales"


class QuantizedCheckpointError(ValueError):
    """A quantized checkpoint folder is missing something or does not fit together; the message says what."""


def _model(config):
    from llm_from_scratch.models.bert.encoder import BertConfig
    from llm_from_scratch.models.gpt import GPTConfig

    if isinstance(config, GPTConfig):
        from llm_from_scratch.models.gpt import param_shapes
        return "gpt2", param_shapes(config)
    if isinstance(config, BertConfig):
        return "bert", None
    raise TypeError(f"config must be a GPTConfig or a BertConfig, got {type(config).__name__}")


def _shapes(config, params) -> dict:
    kind, shapes = _model(config)
    if kind == "bert":
        from llm_from_scratch.models.bert.encoder import heads_of, param_shapes
        shapes = param_shapes(config, heads_of(params))
    return shapes


def _settings(params_q) -> tuple[int, int | None, bool, bool]:
    qts = [v for v in params_q.values() if isinstance(v, QuantizedTensor)]
    kinds = {(q.bits, q.group_size) for q in qts}
    if len(kinds) != 1:
        raise ValueError(f"a quantized checkpoint holds one kind of quantization; these params mix {sorted(kinds, key=str)}")
    bits, group_size = kinds.pop()
    tied_head = isinstance(params_q.get("transformer.wte.weight"), QuantizedTensor)
    word_embeddings = isinstance(params_q.get("bert.embeddings.word_embeddings.weight"), QuantizedTensor)
    return bits, group_size, tied_head, word_embeddings


def save_quantized(params_q: dict, config, directory) -> None:
    """Write ``params_q`` (from ``quantize_params``) and ``config`` (a ``GPTConfig`` or a
    ``BertConfig``) to ``directory`` as described in the module docstring, atomically file by file.

    >>> import tempfile
    >>> from llm_from_scratch.models.gpt import GPTConfig, init_params
    >>> from llm_from_scratch.quantize.models import quantize_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=32, n_layer=1, n_head=2)
    >>> d = tempfile.mkdtemp()
    >>> save_quantized(quantize_params(init_params(cfg), bits=4), cfg, d)
    >>> params, config = load_quantized(d)
    >>> params["transformer.h.0.attn.c_attn.weight"], config == cfg
    (QuantizedTensor(int4, shape=(32, 96), out_axis=1, group_size=32), True)
    """
    if not is_quantized(params_q):
        raise ValueError("params hold no QuantizedTensor; quantize them with quantize_params(params, bits) first, "
                         "or save float parameters with the model's save_pretrained")
    shapes = _shapes(config, params_q)
    check_quantized_params(params_q, shapes)
    bits, group_size, tied_head, word_embeddings = _settings(params_q)
    tensors, layout = {}, {}
    for name, value in params_q.items():
        if isinstance(value, QuantizedTensor):
            tensors[name] = value.data  # (OC, C) int8 or (OC, C // 2) uint8
            tensors[name + SCALES_SUFFIX] = value.scales.astype(np.float16 if bits == 4 else np.float32)
            layout[name] = value.out_axis
        else:
            tensors[name] = value
    metadata = {"quant_method": QUANT_METHOD, "format_version": str(FORMAT_VERSION), "bits": str(bits),
                "group_size": "none" if group_size is None else str(group_size),
                "quantized": json.dumps(layout, separators=(",", ":"))}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kind, _ = _model(config)
    d = config.to_dict() if kind == "gpt2" else config.to_dict(_architectures(params_q))
    d["dtype"] = "float32"
    d["quantization_config"] = {"quant_method": QUANT_METHOD, "format_version": FORMAT_VERSION, "bits": bits,
                                "group_size": group_size, "tied_head": tied_head,
                                "word_embeddings": word_embeddings}
    safetensors.save(tensors, directory / "model.safetensors", metadata=metadata)
    write_json(directory / "config.json", d)


def _architectures(params) -> tuple[str, ...]:
    from llm_from_scratch.models.bert.checkpoint import _architectures as arch
    from llm_from_scratch.models.bert.encoder import heads_of
    return tuple(arch(heads_of(params)))


def read_quantization(directory) -> dict | None:
    """The ``quantization_config`` of a checkpoint folder's ``config.json``, or None for a float checkpoint."""
    path = Path(directory) / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no config.json; expected a checkpoint folder written by "
                                "save_quantized (llm-scratch quantize)") from None
    except ValueError as exc:
        raise QuantizedCheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(d, dict):
        raise QuantizedCheckpointError(f"{path}: expected a JSON object")
    return d.get("quantization_config")


def load_quantized(directory) -> tuple[dict, object]:
    """Read a folder written by ``save_quantized``: ``(params_q, config)``, with ``config`` a
    ``GPTConfig`` or a ``BertConfig`` (from ``model_type``). Every inconsistency raises
    ``QuantizedCheckpointError`` naming the file and what is wrong (see the module docstring).
    Example: see ``save_quantized``."""
    from llm_from_scratch.models.bert.encoder import BertConfig
    from llm_from_scratch.models.gpt import GPTConfig

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder; expected a quantized checkpoint folder")
    qc = read_quantization(directory)
    cfg_path, st_path = directory / "config.json", directory / "model.safetensors"
    if qc is None:
        raise QuantizedCheckpointError(f"{cfg_path} has no quantization_config: this is a float checkpoint; load it "
                                       "with the model's from_pretrained, or quantize it first (llm-scratch quantize)")
    if not isinstance(qc, dict) or qc.get("quant_method") != QUANT_METHOD:
        method = qc.get("quant_method") if isinstance(qc, dict) else qc
        raise QuantizedCheckpointError(f"{cfg_path}: quantization method {method!r} is not this package's "
                                       f"({QUANT_METHOD!r}); GPTQ, AWQ or bitsandbytes files are not supported")
    if qc.get("format_version") != FORMAT_VERSION:
        raise QuantizedCheckpointError(f"{cfg_path}: format_version {qc.get('format_version')!r}, this code reads "
                                       f"version {FORMAT_VERSION}")
    bits, group_size = qc.get("bits"), qc.get("group_size")
    if bits not in (4, 8) or isinstance(bits, bool):
        raise QuantizedCheckpointError(f"{cfg_path}: bits = {bits!r}; a quantized checkpoint has bits 4 or 8")
    if bits == 4 and not (isinstance(group_size, int) and group_size >= 2 and group_size % 2 == 0):
        raise QuantizedCheckpointError(f"{cfg_path}: int4 needs an even group_size >= 2, got {group_size!r}")
    if bits == 8 and group_size is not None:
        raise QuantizedCheckpointError(f"{cfg_path}: int8 has one scale per output channel, so group_size must be "
                                       f"null, got {group_size!r}")
    raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    raw.pop("quantization_config")
    model_type = raw.get("model_type")
    config_class = {"gpt2": GPTConfig, "bert": BertConfig}.get(model_type)
    if config_class is None:
        raise QuantizedCheckpointError(f"{cfg_path}: model_type {model_type!r}; expected 'gpt2' or 'bert'")
    try:
        config = config_class.from_dict(raw)
    except (ValueError, TypeError) as exc:
        raise QuantizedCheckpointError(f"{cfg_path}: {exc}") from None

    # the safetensors header must agree with config.json
    _, meta, _ = safetensors.read_header(st_path)
    if meta.get("quant_method") != QUANT_METHOD:
        raise QuantizedCheckpointError(f"{st_path}: its __metadata__ has no quant_method {QUANT_METHOD!r}: these are "
                                       "float weights, yet config.json says quantized; the two files do not belong "
                                       "together")
    if meta.get("bits") != str(bits):
        raise QuantizedCheckpointError(f"{st_path}: bits {meta.get('bits')!r} in the file, {bits} in config.json")
    file_group = meta.get("group_size")
    if file_group != ("none" if group_size is None else str(group_size)):
        raise QuantizedCheckpointError(f"{st_path}: group size mismatch: {file_group!r} in the file, "
                                       f"{group_size!r} in config.json")
    try:
        layout = json.loads(meta.get("quantized", ""))
        assert isinstance(layout, dict) and all(v in (0, 1) for v in layout.values())
    except (ValueError, AssertionError):
        raise QuantizedCheckpointError(f"{st_path}: __metadata__['quantized'] must be a JSON object of name -> "
                                       "out_axis (0 or 1)") from None
    tensors = safetensors.load(st_path)
    params = {}
    for name, value in tensors.items():
        if name.endswith(SCALES_SUFFIX) and name[:-len(SCALES_SUFFIX)] in layout:
            continue
        if name in layout:
            params[name] = _read_quantized(st_path, name, value, tensors.get(name + SCALES_SUFFIX), bits,
                                           group_size, layout[name], config)
        else:
            if value.dtype != np.float32:
                raise QuantizedCheckpointError(f"{st_path}: tensor {name!r} is {value.dtype}; a float tensor of a "
                                               "quantized checkpoint is float32 (is it listed in "
                                               "__metadata__['quantized']?)")
            params[name] = value
    shapes = _shapes(config, params)
    params = {name: params[name] for name in shapes if name in params} | \
        {name: v for name, v in params.items() if name not in shapes}
    try:
        check_quantized_params(params, shapes)
    except (KeyError, ValueError, TypeError) as exc:
        raise QuantizedCheckpointError(f"{st_path}: {exc.args[0]}") from None
    expected = quantized_names(params, bool(qc.get("tied_head")), bool(qc.get("word_embeddings")))
    if set(expected) != set(layout):
        raise QuantizedCheckpointError(f"{st_path}: quantized tensors {sorted(set(layout) ^ set(expected))[:3]} "
                                       "differ from what quantize_params makes for this model")
    return params, config


def _read_quantized(path, name, data, scales, bits, group_size, out_axis, config) -> QuantizedTensor:
    if scales is None:
        raise QuantizedCheckpointError(f"{path}: missing scales for {name!r}: expected a tensor "
                                       f"{name + SCALES_SUFFIX!r} beside it")
    expected_dtype = np.int8 if bits == 8 else np.uint8
    if data.dtype != expected_dtype or data.ndim != 2:
        raise QuantizedCheckpointError(f"{path}: {name!r} holds {data.dtype} {data.shape}; int{bits} codes are a 2-D "
                                       f"{np.dtype(expected_dtype)} array")
    width, OC = data.shape
    C = width if bits == 8 else 2 * width
    if bits == 4 and C % group_size:
        raise QuantizedCheckpointError(f"{path}: group size {group_size} does not divide the input dimension "
                                       f"C = {C} of {name!r}")
    expected_scales = (OC,) if bits == 8 else (C // group_size, OC)
    scale_dtype = np.float32 if bits == 8 else np.float16
    if scales.shape != expected_scales or scales.dtype != scale_dtype:
        raise QuantizedCheckpointError(f"{path}: wrong scale shape for {name!r}: {scales.dtype} {scales.shape}, "
                                       f"expected {np.dtype(scale_dtype)} {expected_scales} for int{bits} codes "
                                       f"{data.shape}" + ("" if bits == 8 else f" in groups of {group_size}"))
    if not np.all(np.isfinite(scales)) or np.any(scales < 0):
        raise QuantizedCheckpointError(f"{path}: the scales of {name!r} must be finite and >= 0")
    shape = (OC, C) if out_axis == 0 else (C, OC)
    return QuantizedTensor(bits, shape, data, scales.astype(np.float32), group_size, out_axis)
