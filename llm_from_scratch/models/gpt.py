"""GPT-2: a decoder-only transformer language model, every forward and backward line written out.

The model reads token ids ``idx`` (B, T) and gives, at every position, logits for the next token:

    x = wte[idx] + wpe[0:T]                       token + learned position embeddings,  (B, T, C)
    for each of the L blocks:                     pre-LayerNorm residual blocks
        x = x + attn(ln_1(x))                     causal multi-head self-attention,     (B, T, C)
        x = x + mlp(ln_2(x))                      mlp(h) = gelu(h @ W_fc + b) @ W_proj + b
    logits = ln_f(x) @ wte^T                      the output head shares wte,            (B, T, V)
    loss = cross_entropy(logits, targets)         mean over positions whose target is not -100

Parameters are a flat ``dict[str, ndarray]`` with Hugging Face GPT-2's names and layouts
(``transformer.h.0.attn.c_attn.weight`` is (C, 3C), the ``Conv1D`` layout), so a Hugging Face
checkpoint loads by copying arrays (``from_pretrained``) and ours loads in ``transformers``
(``save_pretrained``). The output head is tied to the token embedding: there is no separate
``lm_head.weight`` in the dict, and ``wte`` receives the gradient of both of its uses, the
lookup at the bottom and the head at the top. Gradients accumulate with ``+=`` wherever a value
feeds two places: the residual stream and the tied embedding.

``block_forward``/``block_backward`` are one block; ``gpt_forward`` embeds, loops over the
blocks and applies the head, returning ``(logits, loss, cache)`` with a ``GPTCache`` (one
``BlockCache`` per layer), and ``gpt_backward(cache)`` returns ``grads`` with the same keys as
``params``. ``kernels="numba"`` swaps the numpy ops for their numba twins (the linear layers,
LayerNorm, GELU, cross-entropy, the embedding scatter-add and causal attention), chosen once by
``kernels.backend.get_ops``, so that every parallel part of a step runs on numba's threads;
results agree with the numpy path to float rounding. The attention is
``attention.mha_forward``, the package's one multi-head attention. ``num_params`` and
``flops_per_token`` count what the model holds and what a training step costs, without
building it.

Targets are the *next* tokens, aligned with ``idx`` (``targets[:, t] = idx[:, t + 1]``), as in
nanoGPT; Hugging Face's ``labels`` are ``idx`` itself, shifted inside the model. Both give the
same loss when our last target is -100 (see the tests).

Left out: untied output heads, dropout on the attention weights (``attn_pdrop`` must be 0 when
training), padding masks, mixed precision. Generation and its key/value cache are in
``llm_from_scratch.generate`` (they reuse ``gpt_logits`` and ``block_forward``).

References:

- A. Radford, J. Wu, R. Child, D. Luan, D. Amodei, I. Sutskever, "Language Models are
  Unsupervised Multitask Learners", 2019, section 2.3 (pre-LayerNorm, the final LayerNorm,
  residual projections initialised with std scaled by 1/sqrt(N) for N residual layers).
- A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.
- O. Press, L. Wolf, "Using the Output Embedding to Improve Language Models", EACL 2017 (tying).
- A. Karpathy, llm.c ``train_gpt2.c`` (``gpt2_forward``/``gpt2_backward``) and nanoGPT
  ``model.py`` (``GPTConfig``, Hugging Face names, ``estimate_mfu``).
- A. Chowdhery et al., "PaLM", 2022, appendix B (training FLOPs per token, 6N + 12 L C T).
- J. Kaplan et al., "Scaling Laws for Neural Language Models", 2020, table 1 (parameter count).
- Hugging Face ``transformers``, ``models/gpt2/modeling_gpt2.py`` and ``configuration_gpt2.py``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from llm_from_scratch.attention import MHACache, mha_backward, mha_forward
from llm_from_scratch.kernels.backend import KERNELS, get_ops
from llm_from_scratch.models import common
from llm_from_scratch.models.common import (cast_params, check_checkpoint, load_tensors, maybe_dropout_backward,
                                            maybe_dropout_forward, read_checkpoint_config, read_config, write_json)
from llm_from_scratch.ops import GELU_APPROXIMATE

# Dimension letters, the same in every shape comment of this file:
#   B  batch size            T  sequence length        C  channels, n_embd
#   V  vocabulary size       NH heads, n_head          HS head size, C // NH
#   L  number of blocks      P  n_positions, the rows of the position table

__all__ = ["GPTConfig", "KERNELS", "param_shapes", "num_params", "flops_per_token", "init_params",
           "check_params", "BlockCache", "block_forward", "block_backward", "GPTCache", "gpt_logits",
           "gpt_forward", "gpt_backward", "save_pretrained", "from_pretrained"]


# ----------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class GPTConfig:
    """The shape and hyperparameters of a GPT-2 model, with Hugging Face ``GPT2Config``'s field
    names, so ``config.json`` files go both ways. The defaults are GPT-2 small (124M), except
    dropout, which is off (Hugging Face's default is 0.1).

    >>> GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2).head_size
    4
    >>> GPTConfig(n_embd=10, n_head=4)
    Traceback (most recent call last):
    ...
    ValueError: GPTConfig: n_embd = 10 must be divisible by n_head = 4 (each head gets n_embd // n_head channels)
    """

    vocab_size: int = 50257  # V: how many token ids the model reads and predicts
    n_positions: int = 1024  # P: the longest sequence, the rows of the position table wpe
    n_embd: int = 768  # C: the width of the residual stream
    n_layer: int = 12  # L: how many transformer blocks are stacked
    n_head: int = 12  # NH: attention heads per block; each gets HS = C // NH channels
    layer_norm_epsilon: float = 1e-5  # added to the variance inside every LayerNorm
    activation_function: str = "gelu_new"  # the MLP's GELU: "gelu_new" (tanh form, GPT-2's) or "gelu" (erf)
    initializer_range: float = 0.02  # std of the normal initialisation of weights and embeddings
    resid_pdrop: float = 0.0  # dropout on each attention and MLP output, before the residual add
    embd_pdrop: float = 0.0  # dropout on the sum of token and position embeddings
    attn_pdrop: float = 0.0  # dropout on attention weights: not implemented, must be 0 to train
    tie_word_embeddings: bool = True  # the output head is wte; only True is supported

    def __post_init__(self):
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd = {self.n_embd} must be divisible by n_head = {self.n_head} "
                             f"(each head gets n_embd // n_head channels)")
        if not (isinstance(self.layer_norm_epsilon, (int, float)) and self.layer_norm_epsilon > 0):
            raise ValueError(f"GPTConfig: layer_norm_epsilon must be a positive number, got "
                             f"{self.layer_norm_epsilon!r}")
        if not (isinstance(self.initializer_range, (int, float)) and self.initializer_range >= 0):
            raise ValueError(f"GPTConfig: initializer_range must be a non-negative number, got "
                             f"{self.initializer_range!r}")
        if self.activation_function not in GELU_APPROXIMATE:
            raise ValueError(f"GPTConfig: activation_function {self.activation_function!r} is not supported; "
                             f"expected one of {sorted(GELU_APPROXIMATE)}")
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
                raise ValueError(f"GPTConfig: {name} is a dropout probability in [0, 1), got {p!r}")
        if self.tie_word_embeddings is not True:
            raise ValueError("GPTConfig: tie_word_embeddings must be True: this model's output head is the "
                             "token embedding wte (an untied lm_head is not implemented)")

    @property
    def head_size(self) -> int:
        """HS = n_embd // n_head, the channels of one attention head."""
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """The fields as a Hugging Face ``config.json`` dict (``model_type`` "gpt2").

        Besides our fields it states the GPT-2 options this model implements (no ``n_inner``, i.e.
        4C; attention scaled by 1/sqrt(HS), not by layer; no cross-attention), and leaves the
        special token ids empty: they belong to the tokenizer.

        >>> d = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2).to_dict()
        >>> d["model_type"], d["architectures"], d["n_embd"]
        ('gpt2', ['GPT2LMHeadModel'], 8)
        """
        d = dataclasses.asdict(self)
        d.update({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_inner": None,
                  "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                  "reorder_and_upcast_attn": False, "add_cross_attention": False,
                  "bos_token_id": None, "eos_token_id": None})
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        """Read a Hugging Face GPT-2 ``config.json`` dict, refusing options this model does not
        implement. Keys that do not change the computation (``n_ctx``, token ids, ``use_cache``,
        task parameters...) are ignored.

        >>> GPTConfig.from_dict({"model_type": "gpt2", "vocab_size": 11, "n_positions": 8, "n_embd": 8,
        ...                      "n_layer": 2, "n_head": 2, "use_cache": True}).n_layer
        2
        >>> GPTConfig.from_dict({"model_type": "llama"})
        Traceback (most recent call last):
        ...
        ValueError: config has model_type 'llama', expected 'gpt2' (a GPT-2 checkpoint)
        """
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        if d.get("model_type", "gpt2") != "gpt2":
            raise ValueError(f"config has model_type {d['model_type']!r}, expected 'gpt2' (a GPT-2 checkpoint)")
        n_embd = d.get("n_embd", cls.n_embd)
        unsupported = {
            "n_inner": (d.get("n_inner") not in (None, 4 * n_embd), f"an MLP width of 4 * n_embd = {4 * n_embd}"),
            "scale_attn_weights": (d.get("scale_attn_weights", True) is not True, "True"),
            "scale_attn_by_inverse_layer_idx": (d.get("scale_attn_by_inverse_layer_idx", False) is not False,
                                                "False"),
            "add_cross_attention": (d.get("add_cross_attention", False) is not False, "False"),
        }
        for key, (bad, expected) in unsupported.items():
            if bad:
                raise ValueError(f"config sets {key} = {d[key]!r}, which this GPT-2 does not implement; "
                                 f"expected {expected}")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def to_json(self, path) -> None:
        """Write ``to_dict()`` to ``path`` (a Hugging Face ``config.json``), atomically."""
        write_json(Path(path), self.to_dict())

    @classmethod
    def from_json(cls, path) -> "GPTConfig":
        """Read a Hugging Face GPT-2 ``config.json`` (see ``from_dict``)."""
        return read_config(path, cls.from_dict)


# ----------------------------------------------------------------------------------------
# parameters: names, shapes, counts, initialisation


def param_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's Hugging Face name and shape, in the order of a GPT-2 state dict.

    >>> shapes = param_shapes(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    >>> len(shapes), shapes["transformer.wte.weight"], shapes["transformer.h.0.attn.c_attn.weight"]
    (16, (11, 8), (8, 24))
    """
    V, P, C = config.vocab_size, config.n_positions, config.n_embd
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (P, C)}
    for i in range(config.n_layer):
        h = f"transformer.h.{i}."
        shapes.update({
            h + "ln_1.weight": (C,), h + "ln_1.bias": (C,),
            h + "attn.c_attn.weight": (C, 3 * C), h + "attn.c_attn.bias": (3 * C,),
            h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,),
            h + "ln_2.weight": (C,), h + "ln_2.bias": (C,),
            h + "mlp.c_fc.weight": (C, 4 * C), h + "mlp.c_fc.bias": (4 * C,),
            h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,),
        })
    shapes.update({"transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)})
    return shapes


def num_params(config: GPTConfig, non_embedding: bool = False) -> int:
    """How many numbers the model holds; the tied head is counted once (it is ``wte``).

    Per block: 12 C^2 in the four weight matrices (3C^2 + C^2 + 4C^2 + 4C^2), 13 C in biases and
    LayerNorms; plus V C + P C embeddings and 2 C for ``ln_f``. ``non_embedding=True`` leaves out
    ``wte`` and ``wpe``: the N of Kaplan et al. (2020), close to 12 L C^2.

    GPT-2 small: 12 * (12 * 768^2 + 13 * 768) + 50257 * 768 + 1024 * 768 + 2 * 768.

    >>> num_params(GPTConfig())
    124439808
    >>> num_params(GPTConfig(), non_embedding=True)
    85056000
    """
    V, P, C, L = config.vocab_size, config.n_positions, config.n_embd, config.n_layer
    blocks = L * (12 * C * C + 13 * C)
    return blocks + 2 * C if non_embedding else blocks + 2 * C + V * C + P * C


def flops_per_token(config: GPTConfig, T: int) -> int:
    """Floating-point operations of one training step (forward + backward), per token, for
    sequences of length ``T``: ``6 N + 12 L C T`` (PaLM, appendix B; nanoGPT's ``estimate_mfu``).

    ``N = num_params(config) - P C``: every parameter but the position table, which is only looked
    up. Each such weight costs 2 FLOPs per token in the forward matmul (a multiply and an add) and
    4 in the backward (its input's gradient and its own), hence 6 N; the tied ``wte`` counts once,
    as the head matmul (its lookup is free). Attention adds two (T x HS) products per head and
    token, ``q k^T`` and ``p v``: 2 * 2 T C forward, times 3 with the backward, 12 T C per block.
    The attention term counts the whole (T, T) score matrix, as the references do, though a causal
    model only needs its lower half. Biases and LayerNorms are counted at 6 FLOPs per parameter
    too, a rounding error (13 L C + 2 C of them).

    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> N = num_params(cfg) - 8 * 8
    >>> flops_per_token(cfg, T=5) == 6 * N + 12 * 2 * 8 * 5
    True
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 1 <= T <= config.n_positions:
        raise ValueError(f"T must be an integer in [1, n_positions = {config.n_positions}], got {T!r}")
    N = num_params(config) - config.n_positions * config.n_embd
    return 6 * N + 12 * config.n_layer * config.n_embd * int(T)


def init_params(config: GPTConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """GPT-2's initialisation: weights and embeddings N(0, initializer_range), biases 0, LayerNorm
    weights 1, and the two residual projections of each block (``attn.c_proj``, ``mlp.c_proj``)
    scaled by 1/sqrt(2 L): each block adds two terms to the residual stream, and the variance of a
    sum of 2 L independent terms grows with 2 L (Radford et al. 2019, section 2.3).

    Draws happen in float64 in ``param_shapes`` order and are then cast, so float32 and float64
    parameters from the same seed agree to float32 rounding.

    >>> p = init_params(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2), seed=0)
    >>> p["transformer.h.0.ln_1.weight"][:3], p["transformer.h.0.attn.c_attn.bias"][:3]
    (array([1., 1., 1.], dtype=float32), array([0., 0., 0.], dtype=float32))
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 (training) or float64 (gradient checks), got {dtype}")
    rng = np.random.default_rng(seed)
    std = config.initializer_range
    proj_std = std / np.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in param_shapes(config).items():
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            value = np.ones(shape) if name.endswith(".weight") else np.zeros(shape)  # (C,)
        elif name.endswith(".bias"):
            value = np.zeros(shape)  # (OC,)
        elif name.endswith("c_proj.weight"):
            value = rng.standard_normal(shape) * proj_std  # (C, C) or (4C, C)
        else:
            value = rng.standard_normal(shape) * std  # (V, C), (P, C), (C, 3C), (C, 4C)
        params[name] = value.astype(dtype)
    return params


def check_params(params: dict[str, np.ndarray], config: GPTConfig) -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names and shapes of
    ``param_shapes(config)``, all float32 or all float64; return that dtype."""
    return common.check_params(
        params, param_shapes(config), "this config", "init_params(config) or from_pretrained(...)",
        lambda extra: (" (the output head is tied to transformer.wte.weight: drop lm_head.weight)"
                       if "lm_head.weight" in extra else ""))


# ----------------------------------------------------------------------------------------
# the block


class BlockCache(NamedTuple):
    """What ``block_backward`` needs from ``block_forward``: the ops and the name prefix of the
    layer, and each sub-step's cache, in the order of the forward pass."""
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    prefix: str  # "transformer.h.{layer}."
    ln_1: tuple  # a_in = ln_1(x)
    attn: MHACache  # a = attn(a_in)
    attn_drop: np.ndarray | None  # dropout on a
    ln_2: tuple  # m_in = ln_2(x + a)
    fc: tuple  # u = m_in @ W_fc + b_fc
    gelu: tuple  # g = gelu(u)
    proj: tuple  # m = g @ W_proj + b_proj
    mlp_drop: np.ndarray | None  # dropout on m


def block_forward(x: np.ndarray, params: dict[str, np.ndarray], layer: int, config: GPTConfig,
                  ops: SimpleNamespace, train: bool = False, rng: np.random.Generator | None = None,
                  kv_cache: np.ndarray | None = None, start: int = 0):
    """Transformer block ``layer`` of GPT-2 (pre-LayerNorm) on the residual stream ``x`` (B, T, C):

        x = x + dropout(attn(ln_1(x)))            causal multi-head self-attention
        y = x + dropout(mlp(ln_2(x)))             mlp(h) = gelu(h @ W_fc + b_fc) @ W_proj + b_proj

    ``ops`` is a namespace of ``kernels.backend.get_ops``. ``train=True`` applies the config's
    ``resid_pdrop`` with masks from ``rng``. ``kv_cache`` (2, B, NH, P, HS) and ``start`` are for
    decoding (see ``generate.gpt_forward_cached``). Returns ``(y, cache)``.

    Example: a block changes its input, and ``block_backward`` gives every weight of its layer.

    >>> from llm_from_scratch.kernels.backend import get_ops
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> x = np.random.default_rng(0).standard_normal((1, 3, 8))
    >>> y, cache = block_forward(x, params, 1, cfg, get_ops("numpy"))
    >>> dx, grads = block_backward(np.ones_like(y), cache)
    >>> y.shape, dx.shape, sorted(grads)[:2]
    ((1, 3, 8), (1, 3, 8), ['transformer.h.1.attn.c_attn.bias', 'transformer.h.1.attn.c_attn.weight'])
    """
    h, p, eps, K = f"transformer.h.{layer}.", params, config.layer_norm_epsilon, ops
    # attention sub-block: x = x + attn(ln_1(x))
    a_in, ln_1 = K.layernorm_forward(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)  # (B, T, C)
    a, attn = mha_forward(a_in, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"], p[h + "attn.c_proj.weight"],
                          p[h + "attn.c_proj.bias"], config.n_head, causal=True, ops=K, kv_cache=kv_cache,
                          start=start)  # (B, T, C)
    a, attn_drop = maybe_dropout_forward(K, a, config.resid_pdrop, rng, train)  # (B, T, C)
    x = x + a  # (B, T, C)
    # MLP sub-block: y = x + c_proj(gelu(c_fc(ln_2(x))))
    m_in, ln_2 = K.layernorm_forward(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)  # (B, T, C)
    u, fc = K.linear_forward(m_in, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"])  # (B, T, 4C)
    g, gelu = K.gelu_forward(u, approximate=GELU_APPROXIMATE[config.activation_function])  # (B, T, 4C)
    m, proj = K.linear_forward(g, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"])  # (B, T, C)
    m, mlp_drop = maybe_dropout_forward(K, m, config.resid_pdrop, rng, train)  # (B, T, C)
    y = x + m  # (B, T, C)
    return y, BlockCache(K, h, ln_1, attn, attn_drop, ln_2, fc, gelu, proj, mlp_drop)


def block_backward(dy: np.ndarray, cache: BlockCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of ``block_forward``: ``(dx, grads)``, ``grads`` keyed by the layer's parameter
    names. Example: see ``block_forward``."""
    K, h, c, grads = cache.ops, cache.prefix, cache, {}
    # in the forward pass this was: y = x + m, so dy flows on unchanged to x, and whole into m
    dm = maybe_dropout_backward(K, dy, c.mlp_drop)  # (B, T, C)
    # m = g @ W_proj + b_proj
    dg, grads[h + "mlp.c_proj.weight"], grads[h + "mlp.c_proj.bias"] = K.linear_backward(dm, c.proj)  # (B, T, 4C)
    # g = gelu(u)
    du = K.gelu_backward(dg, c.gelu)  # (B, T, 4C)
    # u = m_in @ W_fc + b_fc
    dm_in, grads[h + "mlp.c_fc.weight"], grads[h + "mlp.c_fc.bias"] = K.linear_backward(du, c.fc)  # (B, T, C)
    # m_in = ln_2(x): x fed the residual and ln_2, so their gradients add
    dx, grads[h + "ln_2.weight"], grads[h + "ln_2.bias"] = K.layernorm_backward(dm_in, c.ln_2)  # (B, T, C)
    dx += dy  # (B, T, C), a fresh array from layernorm_backward
    # x = x + a
    da = maybe_dropout_backward(K, dx, c.attn_drop)  # (B, T, C)
    # a = attn(a_in)
    da_in, grads[h + "attn.c_attn.weight"], grads[h + "attn.c_attn.bias"], \
        grads[h + "attn.c_proj.weight"], grads[h + "attn.c_proj.bias"], _ = mha_backward(da, c.attn)  # (B, T, C)
    # a_in = ln_1(x): again two uses of x, two gradients added
    dx_ln1, grads[h + "ln_1.weight"], grads[h + "ln_1.bias"] = K.layernorm_backward(da_in, c.ln_1)  # (B, T, C)
    dx_ln1 += dx  # (B, T, C)
    return dx_ln1, grads


# ----------------------------------------------------------------------------------------
# forward and backward


class GPTCache(NamedTuple):
    """What ``gpt_backward`` needs from ``gpt_forward``."""
    config: GPTConfig
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    dtype: np.dtype  # of the parameters
    T: int  # sequence length
    tok: tuple  # the embedding lookup's cache
    embd_drop: np.ndarray | None  # dropout on tok + pos
    blocks: list  # a BlockCache per layer
    ln_f: tuple  # the final LayerNorm's cache
    head: tuple  # the tied head's linear cache
    ce: tuple | None  # the cross-entropy's cache, None without targets


def gpt_logits(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray, ops: SimpleNamespace,
               train: bool = False, rng: np.random.Generator | None = None, kv_cache: np.ndarray | None = None,
               start: int = 0):
    """The forward pass to the logits (B, T, V), without input checks: ``gpt_forward`` and
    ``generate.gpt_forward_cached`` check their inputs and call it. The tokens ``idx`` (B, T)
    sit at positions ``start .. start + T - 1`` (``start`` an int, or a (B,) array when the
    sequences of a batch are at different positions); ``kv_cache`` (L, 2, B, NH, P, HS) holds the
    keys and values of earlier positions, for decoding. Returns ``(logits, cache)``, a ``GPTCache``
    with ``dtype`` and ``ce`` left empty."""
    p, K, T = params, ops, idx.shape[1]
    # embeddings: token rows plus position rows
    tok, tok_cache = K.embedding_forward(idx, p["transformer.wte.weight"])  # (B, T) -> (B, T, C)
    if np.ndim(start) == 0:
        x = tok + p["transformer.wpe.weight"][start:start + T]  # (B, T, C) + (T, C) -> (B, T, C)
    else:  # one position per sequence
        x = tok + p["transformer.wpe.weight"][np.asarray(start)[:, None] + np.arange(T)]  # (B, T, C)
    x, embd_drop = maybe_dropout_forward(K, x, config.embd_pdrop, rng, train)  # (B, T, C)
    blocks = []
    for i in range(config.n_layer):
        x, block = block_forward(x, p, i, config, K, train, rng, None if kv_cache is None else kv_cache[i],
                                 start)  # (B, T, C)
        blocks.append(block)
    # final LayerNorm and the tied head: logits = ln_f(x) @ wte^T
    eps = config.layer_norm_epsilon
    xf, ln_f = K.layernorm_forward(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)  # (B, T, C)
    logits, head = K.linear_forward(xf, p["transformer.wte.weight"].T)  # (B, T, C) @ (C, V) -> (B, T, V)
    return logits, GPTCache(config, K, None, T, tok_cache, embd_drop, blocks, ln_f, head, None)


def gpt_forward(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray,
                targets: np.ndarray | None = None, kernels: str = "numpy", train: bool = False,
                rng: np.random.Generator | None = None):
    """Logits (B, T, V) for the token after each position of ``idx`` (B, T); with ``targets``
    (B, T, the next tokens, -100 where no loss is wanted) also the mean cross-entropy.

    Returns ``(logits, loss, cache)``; ``loss`` is None without targets. ``train=True`` applies
    the config's dropout, with masks drawn from ``rng`` (a ``np.random.Generator``).
    ``kernels`` is "numpy" or "numba" (see the module docstring).

    Example: at initialisation the logits are small, so the model predicts close to uniformly and
    the loss is close to log V = log 11 = 2.398.

    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> idx = np.array([[1, 2, 3, 4, 5]])
    >>> logits, loss, cache = gpt_forward(params, cfg, idx, targets=np.array([[2, 3, 4, 5, 6]]))
    >>> logits.shape, round(float(loss), 1)
    ((1, 5, 11), 2.4)
    >>> grads = gpt_backward(cache)
    >>> list(grads) == list(params), bool(grads["transformer.wpe.weight"][5:].any())  # rows 5-7 unused
    (True, False)
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    K = get_ops(kernels)
    dtype = check_params(params, config)
    if not isinstance(idx, np.ndarray) or not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 2:
        got = f"{idx.dtype} {idx.shape}" if isinstance(idx, np.ndarray) else type(idx).__name__
        raise ValueError(f"idx must be a (B, T) integer numpy array of token ids, got {got}; "
                         f"a single sequence is idx[None, :]")
    B, T = idx.shape
    if not 1 <= T <= config.n_positions:
        raise ValueError(f"sequence length T = {T} must be in [1, n_positions = {config.n_positions}], the "
                         f"number of learned positions; crop idx to its last {config.n_positions} tokens "
                         f"(idx[:, -{config.n_positions}:])")
    if train and config.attn_pdrop > 0:
        raise NotImplementedError(f"attn_pdrop = {config.attn_pdrop}: dropout on attention weights is not "
                                  "implemented; train with dataclasses.replace(config, attn_pdrop=0.0)")
    if train and (config.embd_pdrop > 0 or config.resid_pdrop > 0) and not isinstance(rng, np.random.Generator):
        raise ValueError("train=True with dropout needs rng=np.random.default_rng(seed) to draw the masks")
    if targets is not None and (not isinstance(targets, np.ndarray) or targets.shape != idx.shape):
        got = targets.shape if isinstance(targets, np.ndarray) else type(targets).__name__
        raise ValueError(f"targets must have the shape of idx {idx.shape} (the next token at each position, "
                         f"-100 to skip one), got {got}")
    logits, cache = gpt_logits(params, config, idx, K, train, rng)
    loss, ce = None, None
    if targets is not None:
        loss, ce = K.cross_entropy_forward(logits, targets)  # scalar
    return logits, loss, cache._replace(dtype=dtype, ce=ce)


def gpt_backward(cache: GPTCache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the loss with respect to every parameter: a dict with the keys (and order)
    of ``params``. ``dloss`` scales the mean loss's gradient; ``dlogits`` (B, T, V), if given,
    is used instead of the loss (the forward pass then needs no targets).

    Example: see ``gpt_forward``.
    """
    config, K, c = cache.config, cache.ops, cache
    grads = {}
    # in the forward pass this was: loss = cross_entropy(logits, targets), so now
    if dlogits is None:
        if c.ce is None:
            raise ValueError("gpt_backward needs the cache of a forward pass given targets, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, c.ce)  # (B, T, V)
    # logits = xf @ wte^T: the head's weight is wte transposed, so its gradient is too
    dxf, dwte_t, _ = K.linear_backward(dlogits, c.head)  # (B, T, C), (C, V)
    grads["transformer.wte.weight"] = np.ascontiguousarray(np.swapaxes(dwte_t, -1, -2))  # (V, C), the lookup adds below
    # xf = ln_f(x)
    dx, grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"] = K.layernorm_backward(dxf, c.ln_f)  # (B, T, C)
    for block in reversed(c.blocks):
        dx, block_grads = block_backward(dx, block)  # (B, T, C)
        grads.update(block_grads)
    # x = dropout(tok + pos), pos = wpe[:T], tok = wte[idx]
    dx = maybe_dropout_backward(K, dx, c.embd_drop)  # (B, T, C)
    if getattr(K, "per_example", False):  # DP-SGD's per-example gradients (privacy.dpsgd): no sum over the batch
        dwpe = np.zeros((dx.shape[0], config.n_positions, config.n_embd), dtype=c.dtype)  # (B, P, C)
        dwpe[:, :c.T] = dx  # (B, T, C)
    else:
        dwpe = np.zeros((config.n_positions, config.n_embd), dtype=c.dtype)  # (P, C)
        dwpe[:c.T] = dx.sum(axis=0)  # (B, T, C) -> (T, C): every sequence used the same positions
    grads["transformer.wpe.weight"] = dwpe
    # wte is used twice, by the head and by the lookup: the two gradients add
    grads["transformer.wte.weight"] += K.embedding_backward(dx, c.tok)  # (V, C)
    return {name: grads[name] for name in param_shapes(config)}


# ----------------------------------------------------------------------------------------
# Hugging Face checkpoints: config.json + model.safetensors

_BUFFER = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")  # causal-mask buffers, not parameters


def save_pretrained(params: dict[str, np.ndarray], config: GPTConfig, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``, as
    ``transformers.GPT2LMHeadModel.save_pretrained`` does, so that
    ``GPT2LMHeadModel.from_pretrained(directory)`` loads the model.

    Like Hugging Face's own files, the safetensors holds no ``lm_head.weight``: the head is tied
    to ``transformer.wte.weight`` and rebuilt from it on loading. Both files are written through
    a temporary file and a rename, so an interrupted save leaves the old checkpoint intact.
    """
    dtype = check_params(params, config)
    common.write_checkpoint(directory, {name: params[name] for name in param_shapes(config)},
                            {**config.to_dict(), "dtype": str(dtype)})


def from_pretrained(directory, dtype=None, config: GPTConfig | None = None
                    ) -> tuple[dict[str, np.ndarray], GPTConfig]:
    """Load a Hugging Face GPT-2 checkpoint directory (``config.json`` + ``model.safetensors``)
    into ``(params, config)``.

    Names may carry the ``transformer.`` prefix (``GPT2LMHeadModel``) or not (``GPT2Model``, the
    original OpenAI conversion). The causal-mask buffers ``attn.bias``/``attn.masked_bias`` of older
    files are skipped; an ``lm_head.weight`` must equal ``wte`` (the tie). ``dtype`` None keeps
    float32/float64 as stored (float16/bfloat16 become float32); otherwise every tensor is cast.
    ``config``, if given, must equal the checkpoint's. Raises naming missing tensors, unexpected
    ones, and wrong shapes (with both shapes).
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory, GPTConfig, config)
    raw = load_tensors(directory)
    tensors, lm_head = {}, None
    for name, value in raw.items():
        if _BUFFER.match(name):
            continue
        if name == "lm_head.weight":
            lm_head = value
            continue
        key = name if name.startswith("transformer.") else "transformer." + name
        if key in tensors:
            raise ValueError(f"{directory}: tensor {key!r} appears both with and without the 'transformer.' prefix")
        tensors[key] = value
    shapes = param_shapes(config)
    check_checkpoint(directory, tensors, shapes, "a GPT-2 with this config.json", f"n_layer = {config.n_layer}")
    wte = tensors["transformer.wte.weight"]
    if lm_head is not None and (lm_head.shape != wte.shape or not np.array_equal(lm_head, wte)):
        raise ValueError(f"{directory}: lm_head.weight differs from transformer.wte.weight; this model ties "
                         "its output head to the token embedding (an untied head is not implemented)")
    params = cast_params(tensors, shapes, dtype)
    check_params(params, config)
    return params, config
