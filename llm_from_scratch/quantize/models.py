"""Whole models with quantized weights: which tensors are quantized, and the ops that read them.

``quantize_params(params, bits)`` replaces the matrices of the linear layers of a GPT-2 or a
BERT parameter dict by ``QuantizedTensor``s and leaves everything else float32: embeddings,
position tables, LayerNorms and biases are a small part of the bytes and the part most
sensitive to rounding.

    GPT-2 (``transformer.*``)  attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj   (C, OC): out_axis 1
                               transformer.wte only with ``tied_head=True``       (V, C): out_axis 0
    BERT (``bert.*``)          every 2-D weight of bert.encoder and bert.pooler  (OC, C): out_axis 0
                               word_embeddings only with ``word_embeddings=True`` (V, C): out_axis 0

The tied GPT head. GPT-2's output head is the token embedding ``wte`` (V, C) itself, the largest
matrix of a small model. ``tied_head=True`` quantizes it per row (a row of ``wte`` is one
output channel of the head ``x @ wte.T``), so the head multiplies by the codes and the input
lookup reads dequantized rows (``dequantize_rows``). The default leaves it float32, as
llama.cpp keeps its output matrix at a higher precision than the rest; the committed
measurements (``book/data/quant``) give the bpc either way. BERT's word embedding (V, C) is
only looked up, never multiplied by; ``word_embeddings=True`` stores it quantized per row too
(a row is a token's vector), which is where most of MiniLM's bytes are.

The forward passes are the models' own. ``quantized_ops(kernels)`` is the ops namespace of
``kernels.backend.get_ops(kernels)`` with two ops replaced: ``linear_forward`` sends a
``QuantizedTensor`` weight to ``quantized_matmul`` (float weights go to the original op), and
``embedding_forward`` looks up rows of a quantized table. ``models.gpt.gpt_logits`` (what
generation with the key/value cache calls), ``generate.gpt_forward_cached``, ``generate.generate``
and ``models.bert.encoder_forward`` choose these ops when ``is_quantized(params)``; BERT's fused
query/key/value stacking (``np.concatenate``) and its ``w.T`` views work on quantized tensors as on
arrays (``QuantizedTensor.T`` and ``core.concatenate``). Quantized models run forward only: no
backward pass, no training.
"""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import numpy as np

from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.quantize.core import QuantizedTensor, dequantize, dequantize_rows, quantize
from llm_from_scratch.quantize.matmul import quantized_matmul

__all__ = ["quantized_names", "quantize_params", "dequantize_params", "is_quantized", "check_quantized_params",
           "quantized_ops", "params_nbytes"]

_GPT_MATRICES = re.compile(r"^transformer\.h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
_BERT_MATRICES = re.compile(r"^bert\.(encoder\.layer\.\d+\..+|pooler\.dense)\.weight$")
GPT_HEAD = "transformer.wte.weight"
BERT_WORDS = "bert.embeddings.word_embeddings.weight"


def quantized_names(params: dict, tied_head: bool = False, word_embeddings: bool = False) -> dict[str, int]:
    """The names ``quantize_params`` quantizes, each with its ``out_axis``, in ``params`` order.

    >>> from llm_from_scratch.models.gpt import GPTConfig, init_params
    >>> p = init_params(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    >>> quantized_names(p)
    {'transformer.h.0.attn.c_attn.weight': 1, 'transformer.h.0.attn.c_proj.weight': 1, 'transformer.h.0.mlp.c_fc.weight': 1, 'transformer.h.0.mlp.c_proj.weight': 1}
    """
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> array, got {type(params).__name__}")
    if any(k.startswith("transformer.") for k in params):
        if word_embeddings:
            raise ValueError("word_embeddings is for a BERT's word embedding table; a GPT-2's is its tied head "
                             "(tied_head=True)")
        names = {k: 1 for k in params if _GPT_MATRICES.match(k)}
        if tied_head:
            names = {GPT_HEAD: 0, **names}
        return names
    if any(k.startswith("bert.") for k in params):
        if tied_head:
            raise ValueError("tied_head is for a GPT-2's tied output head; a BERT encoder has none")
        names = {k: 0 for k in params if _BERT_MATRICES.match(k) and len(params[k].shape) == 2}
        return {BERT_WORDS: 0, **names} if word_embeddings else names
    raise ValueError("params are neither a GPT-2 (transformer.*) nor a BERT (bert.*) parameter dict; "
                     "quantize single matrices with quantize_int8 / quantize_int4")


def quantize_params(params: dict[str, np.ndarray], bits: int, group_size: int = 32,
                    tied_head: bool = False, word_embeddings: bool = False) -> dict:
    """A copy of ``params`` with the linear layers' matrices quantized to ``bits`` (8 or 4,
    int4 in groups of ``group_size``) and every other tensor kept float32 (see the module
    docstring for which tensors, ``tied_head`` and ``word_embeddings``). Keys and their order are
    unchanged.

    >>> from llm_from_scratch.models.gpt import GPTConfig, init_params
    >>> p = init_params(GPTConfig(vocab_size=11, n_positions=8, n_embd=32, n_layer=1, n_head=2))
    >>> q = quantize_params(p, bits=4)
    >>> q["transformer.h.0.mlp.c_fc.weight"], q["transformer.h.0.mlp.c_fc.bias"].dtype
    (QuantizedTensor(int4, shape=(32, 128), out_axis=1, group_size=32), dtype('float32'))
    """
    if bits not in (4, 8) or isinstance(bits, bool):
        raise ValueError(f"bits must be 8 or 4, got {bits!r}")
    if is_quantized(params):
        raise ValueError("params are already quantized; quantize the float parameters")
    names = quantized_names(params, tied_head, word_embeddings)
    out = {}
    for name, value in params.items():
        if name in names:
            try:
                out[name] = quantize(value, bits, group_size, names[name])
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        else:
            out[name] = np.asarray(value, dtype=np.float32)
    return out


def dequantize_params(params_q: dict) -> dict[str, np.ndarray]:
    """Float32 parameters from quantized ones: each ``QuantizedTensor`` dequantized. The model
    they make computes what the quantized one does, up to float32 rounding."""
    return {k: dequantize(v) if isinstance(v, QuantizedTensor) else v for k, v in params_q.items()}


def is_quantized(params) -> bool:
    """Whether any tensor of the dict ``params`` is a ``QuantizedTensor``."""
    return isinstance(params, dict) and any(isinstance(v, QuantizedTensor) for v in params.values())


def check_quantized_params(params: dict, shapes: dict[str, tuple[int, ...]]) -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names of ``shapes``, each a
    float32 array or a ``QuantizedTensor`` of that shape; return float32 (the dtype the model
    computes in)."""
    missing = [n for n in shapes if n not in params]
    extra = [n for n in params if n not in shapes]
    if missing or extra:
        raise KeyError(f"quantized params do not match the config: missing {missing[:3]}, extra {extra[:3]}")
    for name, shape in shapes.items():
        p = params[name]
        if isinstance(p, QuantizedTensor):
            if p.shape != shape:
                raise ValueError(f"params[{name!r}] is a quantized {p.shape} matrix, expected {shape} for this config")
        elif not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.shape != shape:
            got = f"{p.dtype} {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"params[{name!r}] must be float32 {shape} beside quantized weights, got {got}")
    return np.dtype(np.float32)


def params_nbytes(params: dict) -> int:
    """Bytes of a parameter dict as saved: float tensors at their size, quantized ones as codes
    plus scales (``QuantizedTensor.nbytes``)."""
    return int(sum(v.nbytes for v in params.values()))


@functools.cache
def quantized_ops(kernels: str = "numba") -> SimpleNamespace:
    """The ops of ``get_ops(kernels)`` with ``linear_forward`` and ``embedding_forward``
    accepting ``QuantizedTensor`` weights (see the module docstring).

    >>> from llm_from_scratch.quantize.core import quantize_int8
    >>> K = quantized_ops("numpy")
    >>> w = np.array([[1.0, 0.0], [0.0, -2.0]], dtype=np.float32)
    >>> out, _ = K.linear_forward(np.ones((1, 2), dtype=np.float32), quantize_int8(w), np.zeros(2, np.float32))
    >>> out
    array([[ 1., -2.]], dtype=float32)
    """
    base = get_ops(kernels)

    def linear_forward(x, w, b=None):
        if not isinstance(w, QuantizedTensor):
            return base.linear_forward(x, w, b)
        out = quantized_matmul(x, w)  # (..., C) @ (C, OC) -> (..., OC)
        if b is not None:
            out += b  # (..., OC)
        return out, (x, w, b is not None)

    def embedding_forward(idx, wte):
        if not isinstance(wte, QuantizedTensor):
            return base.embedding_forward(idx, wte)
        V = wte.out_features
        if not isinstance(idx, np.ndarray) or not np.issubdtype(idx.dtype, np.integer) \
                or idx.size and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"expected integer token ids in [0, {V})")
        return dequantize_rows(wte, idx), (idx, V)  # (B, T, C)

    def no_backward(*args, **kwargs):
        raise NotImplementedError("quantized weights run forward only: train the float model, then quantize it")

    return SimpleNamespace(**{**vars(base), "name": f"{base.name}+quantized", "linear_forward": linear_forward,
                              "embedding_forward": embedding_forward, "linear_backward": no_backward,
                              "embedding_backward": no_backward})
