"""Weight-only quantization of the package's models: int8 per output channel and int4 in groups.

- ``core``: ``QuantizedTensor``, ``quantize_int8``, ``quantize_int4``, ``dequantize`` (the formulas,
  the layouts, the int4 packing);
- ``matmul``: ``quantized_matmul``, a numba kernel reading the codes directly, and its numpy
  reference;
- ``models``: ``quantize_params`` for a GPT-2 or BERT parameter dict, ``quantized_ops`` with which
  the models' own forward passes run on quantized weights;
- ``checkpoint``: ``save_quantized`` / ``load_quantized`` (safetensors with scales beside each
  matrix and the settings in its metadata and in ``config.json``);
- ``measure``: the sizes, decode speeds and quality figures of ``book/data/quant`` and
  ``load_results`` to read them (``python -m llm_from_scratch.quantize measure --out FILE``).

    >>> import numpy as np
    >>> w = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)  # (C, OC)
    >>> x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)  # (1, C)
    >>> rel = lambda qt: float(np.abs(quantized_matmul(x, qt) - x @ w).max() / np.abs(x @ w).max())
    >>> rel(quantize_int8(w)) < 0.01, rel(quantize_int4(w)) < 0.1
    (True, True)

See the submodules' docstrings for the formulas and references.
"""

from llm_from_scratch.quantize.checkpoint import (FORMAT_VERSION, QUANT_METHOD, SCALES_SUFFIX,
                                                  QuantizedCheckpointError, load_quantized, read_quantization,
                                                  save_quantized)
from llm_from_scratch.quantize.core import (BITS, QuantizedTensor, concatenate, dequantize, dequantize_rows,
                                            quantize, quantize_int4, quantize_int8)
from llm_from_scratch.quantize.matmul import quantized_matmul, quantized_matmul_reference
from llm_from_scratch.quantize.models import (check_quantized_params, dequantize_params, is_quantized,
                                              params_nbytes, quantize_params, quantized_names, quantized_ops)

__all__ = ["QuantizedTensor", "BITS", "quantize_int8", "quantize_int4", "quantize", "dequantize", "dequantize_rows",
           "concatenate", "quantized_matmul", "quantized_matmul_reference", "quantized_names", "quantize_params",
           "dequantize_params", "is_quantized", "check_quantized_params", "quantized_ops", "params_nbytes",
           "save_quantized", "load_quantized", "read_quantization", "QuantizedCheckpointError", "QUANT_METHOD",
           "FORMAT_VERSION", "SCALES_SUFFIX", "load_results"]


def load_results(path):
    """The measurements JSON of ``book/data/quant`` (see ``measure.load_results``)."""
    from llm_from_scratch.quantize.measure import load_results as _load

    return _load(path)
