"""The one place where the numpy ops or their numba twins are chosen.

Every model takes ``kernels="numpy"`` (the ops the book teaches, ``llm_from_scratch.ops`` and
``llm_from_scratch.attention``) or ``kernels="numba"`` (their twins in
``llm_from_scratch.kernels.ops`` and ``llm_from_scratch.kernels.attention``) and turns that
name into an ops namespace here, once per call of the model:

>>> K = get_ops("numpy")
>>> K.name, K.linear_forward.__module__, K.attention_forward.__module__
('numpy', 'llm_from_scratch.ops', 'llm_from_scratch.attention')
>>> get_ops("numba").attention_forward.__module__
'llm_from_scratch.kernels.attention'
>>> get_ops("cuda")
Traceback (most recent call last):
...
ValueError: kernels must be one of ('numpy', 'numba'), got 'cuda'

The namespace holds every forward/backward pair of the ops module under its own name, plus
``attention_forward``/``attention_backward`` (scaled dot-product attention) and ``name``.
Layers receive it as their ``ops`` argument and never import a backend themselves, so a third
backend would be one more branch in ``get_ops``.

Left out: mixing backends within one model (the numba twins already fall back to the numpy
reference where they have nothing faster), and backends chosen per op.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

__all__ = ["KERNELS", "get_ops"]

KERNELS = ("numpy", "numba")  # the values of every model's ``kernels`` option


@functools.cache
def get_ops(kernels: str = "numpy") -> SimpleNamespace:
    """The ops namespace for ``kernels`` ("numpy" or "numba"); see the module docstring."""
    if kernels == "numpy":
        from llm_from_scratch import attention, ops
    elif kernels == "numba":
        from llm_from_scratch.kernels import attention, ops
    else:
        raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    functions = {name: getattr(ops, name) for name in ops.__all__}
    return SimpleNamespace(name=kernels, **functions, attention_forward=attention.attention_forward,
                           attention_backward=attention.attention_backward)
