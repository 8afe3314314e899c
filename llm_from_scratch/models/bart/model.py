"""The BART model: parameters, layers, and the forward and backward passes.

The encoder reads the source ``input_ids`` (B, S) with its padding mask; the decoder reads the
target so far, ``decoder_input_ids`` (B, T), and attends to the encoder's output at every
layer. The layout is BART's (Lewis et al. 2020), as Hugging Face's
``BartForConditionalGeneration`` computes it:

    e = LN_emb(scale * shared[ids] + pos[2:2+S])       embeddings, then LayerNorm         (B, S, C)
    for each of the L_enc encoder layers:               post-LayerNorm, as BERT
        e = LN(e + attn(e))                             every token sees every real source token
        e = LN(e + W_2 gelu(W_1 e + b_1) + b_2)         the feed-forward network, width F
    x = LN_emb(scale * shared[dec_ids] + pos[2:2+T])    the decoder's own positions           (B, T, C)
    for each of the L_dec decoder layers:
        x = LN(x + self_attn(x))                        causal, plus the decoder padding mask
        x = LN(x + cross_attn(x, e))                    queries from x, keys and values from e,
                                                        padded source positions masked
        x = LN(x + W_2 gelu(W_1 x + b_1) + b_2)
    logits = x @ shared^T + final_logits_bias           the head is the shared embedding    (B, T, V)
    loss = cross_entropy(logits, labels)                mean where labels != -100

``scale`` is sqrt(C) with ``scale_embedding`` and 1 otherwise. The position tables have
``max_position_embeddings + 2`` rows and position t reads row t + 2: fairseq reserved the first
two rows for its padding scheme, and BART checkpoints kept them (Hugging Face's
``BartLearnedPositionalEmbedding.offset``). Every LayerNorm has eps 1e-5 (PyTorch's default).

Parameters are a flat ``dict[str, ndarray]`` with ``BartForConditionalGeneration``'s names and
``nn.Linear``'s (C_out, C_in) layout (``model.encoder.layers.0.self_attn.q_proj.weight``), so a
checkpoint loads by copying. One table, ``model.shared.weight`` (V, C), is read three times: by
the encoder's lookup, the decoder's lookup and the output head. Hugging Face holds it under
three more names (``model.encoder.embed_tokens.weight``, ``model.decoder.embed_tokens.weight``,
``lm_head.weight``); they are the same tensor and are not entries of the dict, and
``model.shared.weight`` gets the sum of the three gradients. As in PyTorch (``padding_idx``),
the ``pad_token_id`` row gets no gradient from the two lookups, only from the head.
``final_logits_bias`` (1, V) is a buffer in Hugging Face (zero in released checkpoints, not
trained); its gradient is returned all the same.

Attention is ``attention.mha_forward``, the package's one multi-head attention: the three
(C, C) projections q, k, v are stacked into its fused (C, 3C) layout, and cross-attention is the
same call with ``memory=``, whose backward returns the gradient of the memory (``dmemory``). The
encoder's output feeds every decoder layer, so its gradient is the sum of the decoder layers'
``dmemory``.

``train=True`` applies the config's dropout, as Hugging Face trains: ``dropout`` on the
embeddings and on every residual branch, ``attention_dropout`` on the attention weights,
``activation_dropout`` after the GELU, with masks drawn from ``rng`` (the same seed, the same
masks). ``kernels="numba"`` swaps the numpy ops for their numba twins (chosen once by
``kernels.backend.get_ops``); results agree with the numpy path to float rounding.

Decoding one token at a time (``models.bart.decoding``) runs the same decoder layers with a
key/value cache (``kv_cache``, ``start``) and precomputed cross-attention keys and values
(``memory_kv``).

Left out: layerdrop (``encoder_layerdrop``/``decoder_layerdrop`` must be 0 to train), the
classification and question-answering heads, ``inputs_embeds``, head masks, mixed precision.
Deliberate difference from Hugging Face, as in ``attention``: a query whose keys are all masked
gets a zero output (Hugging Face averages over the masked keys).

References:

- M. Lewis et al., "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language
  Generation, Translation, and Comprehension", ACL 2020, section 2.1 (architecture).
- A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3 (the encoder-decoder,
  post-LayerNorm residuals, cross-attention).
- Hugging Face ``transformers``, ``models/bart/modeling_bart.py`` and ``configuration_bart.py``;
  fairseq ``models/bart``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from llm_from_scratch.attention import attention_forward, merge_heads, mha_backward, mha_forward, split_heads
from llm_from_scratch.kernels.backend import KERNELS, get_ops
from llm_from_scratch.models import common
from llm_from_scratch.models.bart.config import BartConfig
from llm_from_scratch.models.bert.encoder import dense_backward, dense_forward
from llm_from_scratch.models.common import maybe_dropout_backward, maybe_dropout_forward
from llm_from_scratch.ops import GELU_APPROXIMATE

# Dimension letters, the same in every shape comment of this package:
#   B  batch size              S  source length (encoder)     T  target length (decoder)
#   C  channels, d_model       V  vocabulary size             F  feed-forward width (ffn_dim)
#   NH heads                   HS head size, C // NH          L  layers (encoder or decoder)
#   P  max_position_embeddings, so the position tables have P + 2 rows

__all__ = ["KERNELS", "POSITION_OFFSET", "LAYER_NORM_EPS", "param_shapes", "num_params", "init_params",
           "check_params", "shift_tokens_right", "EncoderLayerCache", "encoder_layer_forward",
           "encoder_layer_backward", "DecoderLayerCache", "decoder_layer_forward", "decoder_layer_backward",
           "BartCache", "bart_forward", "bart_backward", "decoder_logits"]

POSITION_OFFSET = 2  # position t reads row t + 2 of a position table (fairseq's reserved rows)
LAYER_NORM_EPS = 1e-5  # every LayerNorm of BART: PyTorch's nn.LayerNorm default


# ----------------------------------------------------------------------------------------
# parameters: names, shapes, counts, initialisation


def _attn_shapes(prefix: str, C: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):  # Hugging Face's order
        shapes.update({f"{prefix}.{proj}.weight": (C, C), f"{prefix}.{proj}.bias": (C,)})
    shapes.update({f"{prefix}_layer_norm.weight": (C,), f"{prefix}_layer_norm.bias": (C,)})
    return shapes


def param_shapes(config: BartConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's Hugging Face name and (PyTorch) shape, in the order of a
    ``BartForConditionalGeneration`` state dict, without the tied copies of ``model.shared.weight``.

    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, encoder_ffn_dim=12, decoder_layers=1,
    ...                  decoder_attention_heads=2, decoder_ffn_dim=12)
    >>> shapes = param_shapes(cfg)
    >>> len(shapes), shapes["model.encoder.embed_positions.weight"], shapes["model.decoder.layers.0.fc1.weight"]
    (50, (12, 8), (12, 8))
    """
    V, C, P = config.vocab_size, config.d_model, config.max_position_embeddings
    shapes = {"final_logits_bias": (1, V), "model.shared.weight": (V, C)}
    for stack, L, F in (("encoder", config.encoder_layers, config.encoder_ffn_dim),
                        ("decoder", config.decoder_layers, config.decoder_ffn_dim)):
        shapes[f"model.{stack}.embed_positions.weight"] = (P + POSITION_OFFSET, C)
        for i in range(L):
            h = f"model.{stack}.layers.{i}."
            shapes.update(_attn_shapes(h + "self_attn", C))
            if stack == "decoder":
                shapes.update(_attn_shapes(h + "encoder_attn", C))
            shapes.update({h + "fc1.weight": (F, C), h + "fc1.bias": (F,), h + "fc2.weight": (C, F),
                           h + "fc2.bias": (C,), h + "final_layer_norm.weight": (C,),
                           h + "final_layer_norm.bias": (C,)})
        shapes.update({f"model.{stack}.layernorm_embedding.weight": (C,),
                       f"model.{stack}.layernorm_embedding.bias": (C,)})
    return shapes


def num_params(config: BartConfig) -> int:
    """How many numbers the model holds, the shared embedding once and ``final_logits_bias``
    included (Hugging Face's ``num_parameters()`` leaves that buffer out: subtract V).

    bart-large: 406,291,456 + 50,265.

    >>> num_params(BartConfig())
    406341721
    """
    return sum(math.prod(shape) for shape in param_shapes(config).values())


def init_params(config: BartConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Hugging Face BART's initialisation: weights and embeddings N(0, init_std), the
    ``pad_token_id`` row of the shared embedding 0, biases and ``final_logits_bias`` 0,
    LayerNorm weights 1. Draws happen in float64 in ``param_shapes`` order, then are cast.

    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=2)
    >>> p = init_params(cfg)
    >>> p["model.shared.weight"][cfg.pad_token_id], p["final_logits_bias"].shape
    (array([0., 0., 0., 0., 0., 0., 0., 0.], dtype=float32), (1, 13))
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 (training) or float64 (gradient checks), got {dtype}")
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        if "layer_norm" in name or "layernorm" in name:
            value = np.ones(shape) if name.endswith(".weight") else np.zeros(shape)  # (C,)
        elif name.endswith("bias"):
            value = np.zeros(shape)  # (OC,) or (1, V)
        else:
            value = rng.standard_normal(shape) * config.init_std  # (OC, C), (V, C), (P + 2, C)
        if name == "model.shared.weight":
            value[config.pad_token_id] = 0.0  # (C,) PyTorch's padding_idx row starts at zero
        params[name] = value.astype(dtype)
    return params


def check_params(params: dict[str, np.ndarray], config: BartConfig) -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names and shapes of
    ``param_shapes(config)``, all float32 or all float64; return that dtype."""
    tied = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
    return common.check_params(
        params, param_shapes(config), "this BartConfig", "init_params(config) or from_pretrained(...)",
        lambda extra: (" (the embed_tokens and lm_head weights are model.shared.weight: drop those entries)"
                       if any(n in tied for n in extra) else ""))


def shift_tokens_right(labels: np.ndarray, pad_token_id: int, decoder_start_token_id: int) -> np.ndarray:
    """The decoder inputs for ``labels`` (B, T): the start token, then the labels shifted one to
    the right, with -100 (ignored labels) replaced by the pad token (Hugging Face's function).

    >>> shift_tokens_right(np.array([[5, 6, 2, -100]]), pad_token_id=1, decoder_start_token_id=2)
    array([[2, 5, 6, 2]])
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"labels must be a (B, T) integer numpy array, got {got}")
    shifted = np.empty_like(labels)  # (B, T)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    shifted[shifted == -100] = pad_token_id
    return shifted


# ----------------------------------------------------------------------------------------
# input checks


def _check_ids(config: BartConfig, ids, what: str) -> None:
    if not isinstance(ids, np.ndarray) or not np.issubdtype(ids.dtype, np.integer) or ids.ndim != 2:
        got = f"{ids.dtype} {ids.shape}" if isinstance(ids, np.ndarray) else type(ids).__name__
        raise ValueError(f"{what} must be a (B, T) integer numpy array of token ids, got {got}; "
                         f"a single sequence is ids[None, :]")
    P = config.max_position_embeddings
    if not 1 <= ids.shape[1] <= P:
        raise ValueError(f"{what} has length {ids.shape[1]}; it must be in [1, max_position_embeddings = {P}], "
                         f"the number of learned positions")


def _key_mask(mask, shape: tuple, what: str) -> np.ndarray | None:
    """A (B, T) 0/1 attention mask as booleans, None when absent or all ones."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray) or mask.shape != shape:
        got = mask.shape if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"{what} must have shape {shape} (1 for real tokens, 0 for padding), got {got}")
    if mask.dtype != np.bool_ and not np.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{what} must hold only 0 (padding) and 1 (real token), got values "
                         f"{sorted(set(np.unique(mask).tolist()))[:5]}")
    mask = np.ascontiguousarray(mask, dtype=np.bool_)  # (B, T)
    return None if mask.all() else mask


# ----------------------------------------------------------------------------------------
# pieces: embeddings, attention in nn.Linear layout


class EmbedCache(NamedTuple):
    """What ``_embed_backward`` needs from ``_embed_forward``."""
    prefix: str  # "model.encoder." or "model.decoder."
    tok: tuple  # the lookup's cache
    scale: float  # the embedding scale, sqrt(C) or 1
    rows: slice  # the rows of the position table that were read
    ln: tuple  # layernorm_embedding's cache
    drop: np.ndarray | None  # dropout on the result


def _embed_forward(K, p, config, prefix, ids, start, train, rng):
    """x = dropout(LN(scale * shared[ids] + pos[start + 2 : start + 2 + T])), (B, T, C)."""
    T = ids.shape[1]
    tok, tok_cache = K.embedding_forward(ids, p["model.shared.weight"])  # (B, T) -> (B, T, C)
    scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
    if scale != 1.0:
        tok = tok * tok.dtype.type(scale)  # (B, T, C)
    rows = slice(start + POSITION_OFFSET, start + POSITION_OFFSET + T)
    x = tok + p[prefix + "embed_positions.weight"][rows]  # (B, T, C) + (T, C) -> (B, T, C)
    x, ln = K.layernorm_forward(x, p[prefix + "layernorm_embedding.weight"], p[prefix + "layernorm_embedding.bias"],
                                LAYER_NORM_EPS)  # (B, T, C)
    x, drop = maybe_dropout_forward(K, x, config.dropout, rng, train)  # (B, T, C)
    return x, EmbedCache(prefix, tok_cache, scale, rows, ln, drop)


def _embed_backward(K, dx, c: EmbedCache, config, grads, dtype):
    """Gradients of ``_embed_forward`` into ``grads``; the lookup's part of the shared table's
    gradient is returned, its ``pad_token_id`` row zeroed (PyTorch's ``padding_idx``)."""
    p = c.prefix
    dx = maybe_dropout_backward(K, dx, c.drop)  # (B, T, C)
    # in the forward pass this was: x = LN(tok + pos), so now
    dsum, grads[p + "layernorm_embedding.weight"], grads[p + "layernorm_embedding.bias"] = \
        K.layernorm_backward(dx, c.ln)  # (B, T, C)
    dpos = np.zeros((config.max_position_embeddings + POSITION_OFFSET, config.d_model), dtype=dtype)  # (P + 2, C)
    dpos[c.rows] = dsum.sum(axis=0)  # (B, T, C) -> (T, C): every sequence read the same rows
    grads[p + "embed_positions.weight"] = dpos
    if c.scale != 1.0:
        dsum = dsum * dsum.dtype.type(c.scale)  # tok = scale * shared[ids]
    dshared = K.embedding_backward(dsum, c.tok)  # (V, C)
    dshared[config.pad_token_id] = 0  # (C,) the padding row is not trained by the lookup
    return dshared


def _fused_attn(p, prefix):
    """``mha_forward``'s arguments from the four nn.Linear layers of ``prefix``: the (C, C)
    weights of q, k and v stacked to (3C, C), whose transpose is the fused (C, 3C) layout."""
    w = np.concatenate([p[f"{prefix}.{n}_proj.weight"] for n in "qkv"])  # (3C, C)
    b = np.concatenate([p[f"{prefix}.{n}_proj.bias"] for n in "qkv"])  # (3C,)
    return w.T, b, p[f"{prefix}.out_proj.weight"].T, p[f"{prefix}.out_proj.bias"]  # (C, 3C), (3C,), (C, C), (C,)


def _fused_attn_grads(g, prefix, grads):
    """Split ``mha_backward``'s fused gradients back into the four nn.Linear layers of ``prefix``."""
    C = g.dw_proj.shape[0]
    dw = g.dw_attn.T  # (3C, C)
    for j, n in enumerate("qkv"):
        grads[f"{prefix}.{n}_proj.weight"] = np.ascontiguousarray(dw[j * C:(j + 1) * C])  # (C, C)
        grads[f"{prefix}.{n}_proj.bias"] = g.db_attn[j * C:(j + 1) * C]  # (C,)
    grads[f"{prefix}.out_proj.weight"] = np.ascontiguousarray(g.dw_proj.T)  # (C, C), nn.Linear's layout
    grads[f"{prefix}.out_proj.bias"] = g.db_proj  # (C,)


def _ffn_forward(K, p, h, config, x, train, rng):
    """m = dropout(W_2 dropout_act(gelu(W_1 x + b_1)) + b_2), (B, T, C), and its caches."""
    u, fc1 = dense_forward(K, x, p[h + "fc1.weight"], p[h + "fc1.bias"])  # (B, T, F)
    g, gelu = K.gelu_forward(u, approximate=GELU_APPROXIMATE[config.activation_function])  # (B, T, F)
    g, drop_g = maybe_dropout_forward(K, g, config.activation_dropout, rng, train)  # (B, T, F)
    m, fc2 = dense_forward(K, g, p[h + "fc2.weight"], p[h + "fc2.bias"])  # (B, T, C)
    m, drop_m = maybe_dropout_forward(K, m, config.dropout, rng, train)  # (B, T, C)
    return m, (fc1, gelu, drop_g, fc2, drop_m)


def _ffn_backward(K, dm, cache, h, grads):
    """Gradient of ``_ffn_forward`` with respect to its input x, (B, T, C)."""
    fc1, gelu, drop_g, fc2, drop_m = cache
    dm = maybe_dropout_backward(K, dm, drop_m)  # (B, T, C)
    # m = W_2 g + b_2
    dg, grads[h + "fc2.weight"], grads[h + "fc2.bias"] = dense_backward(K, dm, fc2)  # (B, T, F)
    dg = maybe_dropout_backward(K, dg, drop_g)  # (B, T, F)
    # g = gelu(u)
    du = K.gelu_backward(dg, gelu)  # (B, T, F)
    # u = W_1 x + b_1
    dx, grads[h + "fc1.weight"], grads[h + "fc1.bias"] = dense_backward(K, du, fc1)  # (B, T, C)
    return dx


# ----------------------------------------------------------------------------------------
# the layers


class EncoderLayerCache(NamedTuple):
    """What ``encoder_layer_backward`` needs from ``encoder_layer_forward``."""
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    prefix: str  # "model.encoder.layers.{i}."
    attn: tuple  # (MHACache, dropout cache) of a = attn(x)
    ln_a: tuple  # x_a = LN(x + a)
    ffn: tuple  # the feed-forward caches
    ln_m: tuple  # y = LN(x_a + m)


def encoder_layer_forward(x: np.ndarray, params: dict[str, np.ndarray], layer: int, config: BartConfig,
                          ops: SimpleNamespace, key_mask: np.ndarray | None = None, train: bool = False,
                          rng: np.random.Generator | None = None):
    """Encoder layer ``layer`` (post-LayerNorm) on ``x`` (B, S, C); ``key_mask`` (B, S) is True for
    real source tokens (None: all real). Returns ``(y, cache)``:

        x_a = LN(x + dropout(attn(x)))                 bidirectional self-attention
        y   = LN(x_a + dropout(W_2 gelu(W_1 x_a + b_1) + b_2))
    """
    h, p, K = f"model.encoder.layers.{layer}.", params, ops
    a, attn = mha_forward(x, *_fused_attn(p, h + "self_attn"), config.encoder_attention_heads, causal=False,
                          key_mask=key_mask, ops=K, dropout=config.attention_dropout if train else 0.0,
                          rng=rng)  # (B, S, C)
    a, drop_a = maybe_dropout_forward(K, a, config.dropout, rng, train)  # (B, S, C)
    x, ln_a = K.layernorm_forward(x + a, p[h + "self_attn_layer_norm.weight"], p[h + "self_attn_layer_norm.bias"],
                                  LAYER_NORM_EPS)  # (B, S, C)
    m, ffn = _ffn_forward(K, p, h, config, x, train, rng)  # (B, S, C)
    y, ln_m = K.layernorm_forward(x + m, p[h + "final_layer_norm.weight"], p[h + "final_layer_norm.bias"],
                                  LAYER_NORM_EPS)  # (B, S, C)
    return y, EncoderLayerCache(K, h, (attn, drop_a), ln_a, ffn, ln_m)


def encoder_layer_backward(dy: np.ndarray, cache: EncoderLayerCache) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Gradients of ``encoder_layer_forward``: ``(dx, grads)``, ``grads`` keyed by the layer's names."""
    K, h, c, grads = cache.ops, cache.prefix, cache, {}
    # in the forward pass this was: y = LN(x_a + m): the sum's gradient reaches x_a and m whole
    ds, grads[h + "final_layer_norm.weight"], grads[h + "final_layer_norm.bias"] = K.layernorm_backward(dy, c.ln_m)
    dx_a = _ffn_backward(K, ds, c.ffn, h, grads)  # (B, S, C)
    dx_a += ds  # (B, S, C): x_a fed the residual and the feed-forward network
    # x_a = LN(x + dropout(a))
    ds, grads[h + "self_attn_layer_norm.weight"], grads[h + "self_attn_layer_norm.bias"] = \
        K.layernorm_backward(dx_a, c.ln_a)  # (B, S, C)
    attn, drop_a = c.attn
    g = mha_backward(maybe_dropout_backward(K, ds, drop_a), attn)  # a = attn(x)
    _fused_attn_grads(g, h + "self_attn", grads)
    return g.dx + ds, grads  # (B, S, C): the residual and the attention both read x


class DecoderLayerCache(NamedTuple):
    """What ``decoder_layer_backward`` needs from ``decoder_layer_forward``."""
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    prefix: str  # "model.decoder.layers.{i}."
    self_attn: tuple  # (MHACache, dropout cache) of a = self_attn(x)
    ln_a: tuple  # x_a = LN(x + a)
    cross_attn: tuple | None  # (MHACache, dropout cache) of c = cross_attn(x_a, memory); None when decoding
    ln_c: tuple  # x_c = LN(x_a + c)
    ffn: tuple  # the feed-forward caches
    ln_m: tuple  # y = LN(x_c + m)


def _cross_attention_precomputed(x, p, prefix, NH, kv, key_mask, K):
    """Cross-attention of the queries of ``x`` (B, T, C) over keys and values already projected
    from the encoder's output, ``kv`` (2, B, NH, S, HS) (inference only, no cache):
    ``mha_forward(x, ..., memory=memory)`` without projecting the memory again."""
    q, _ = dense_forward(K, x, p[prefix + ".q_proj.weight"], p[prefix + ".q_proj.bias"])  # (B, T, C)
    y, _ = attention_forward(np.ascontiguousarray(split_heads(q, NH)), kv[0], kv[1], causal=False,
                             key_mask=key_mask)  # (B, NH, T, HS)
    out, _ = dense_forward(K, merge_heads(y), p[prefix + ".out_proj.weight"], p[prefix + ".out_proj.bias"])
    return out  # (B, T, C)


def decoder_layer_forward(x: np.ndarray, memory: np.ndarray | None, params: dict[str, np.ndarray], layer: int,
                          config: BartConfig, ops: SimpleNamespace, key_mask: np.ndarray | None = None,
                          memory_mask: np.ndarray | None = None, train: bool = False,
                          rng: np.random.Generator | None = None, kv_cache: np.ndarray | None = None,
                          start: int = 0, memory_kv: np.ndarray | None = None):
    """Decoder layer ``layer`` (post-LayerNorm) on ``x`` (B, T, C), attending to the encoder's
    output ``memory`` (B, S, C). ``key_mask`` (B, T) masks padded decoder positions, and
    ``memory_mask`` (B, S) padded source positions (None: all real). Returns ``(y, cache)``:

        x_a = LN(x + dropout(self_attn(x)))            causal self-attention
        x_c = LN(x_a + dropout(cross_attn(x_a, memory)))   queries x_a, keys and values memory
        y   = LN(x_c + dropout(W_2 gelu(W_1 x_c + b_1) + b_2))

    For decoding (inference only): ``kv_cache`` (2, B, NH, P', HS) and ``start`` as in
    ``mha_forward``, and ``memory_kv`` (2, B, NH, S, HS), the cross-attention's keys and values
    projected once from the memory (``memory`` is then unused; the cache cannot go backward).
    """
    h, p, K, NH = f"model.decoder.layers.{layer}.", params, ops, config.decoder_attention_heads
    attn_p = config.attention_dropout if train else 0.0
    # self-attention sub-block: x_a = LN(x + dropout(self_attn(x)))
    a, sa = mha_forward(x, *_fused_attn(p, h + "self_attn"), NH, causal=True, key_mask=key_mask, ops=K,
                        dropout=attn_p, rng=rng, kv_cache=kv_cache, start=start)  # (B, T, C)
    a, drop_a = maybe_dropout_forward(K, a, config.dropout, rng, train)  # (B, T, C)
    x, ln_a = K.layernorm_forward(x + a, p[h + "self_attn_layer_norm.weight"], p[h + "self_attn_layer_norm.bias"],
                                  LAYER_NORM_EPS)  # (B, T, C)
    # cross-attention sub-block: x_c = LN(x_a + dropout(cross_attn(x_a, memory)))
    if memory_kv is None:
        c, ca = mha_forward(x, *_fused_attn(p, h + "encoder_attn"), NH, causal=False, key_mask=memory_mask,
                            memory=memory, ops=K, dropout=attn_p, rng=rng)  # (B, T, C)
    else:
        c, ca = _cross_attention_precomputed(x, p, h + "encoder_attn", NH, memory_kv, memory_mask, K), None
    c, drop_c = maybe_dropout_forward(K, c, config.dropout, rng, train)  # (B, T, C)
    x, ln_c = K.layernorm_forward(x + c, p[h + "encoder_attn_layer_norm.weight"],
                                  p[h + "encoder_attn_layer_norm.bias"], LAYER_NORM_EPS)  # (B, T, C)
    # feed-forward sub-block: y = LN(x_c + m)
    m, ffn = _ffn_forward(K, p, h, config, x, train, rng)  # (B, T, C)
    y, ln_m = K.layernorm_forward(x + m, p[h + "final_layer_norm.weight"], p[h + "final_layer_norm.bias"],
                                  LAYER_NORM_EPS)  # (B, T, C)
    return y, DecoderLayerCache(K, h, (sa, drop_a), ln_a, None if ca is None else (ca, drop_c), ln_c, ffn, ln_m)


def decoder_layer_backward(dy: np.ndarray, cache: DecoderLayerCache
                           ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Gradients of ``decoder_layer_forward``: ``(dx, dmemory, grads)``; ``dmemory`` (B, S, C) is
    the gradient that reaches the encoder's output through this layer's cross-attention."""
    K, h, c, grads = cache.ops, cache.prefix, cache, {}
    if c.cross_attn is None:
        raise ValueError("decoder_layer_backward needs a forward pass without memory_kv (decoding is inference only)")
    # in the forward pass this was: y = LN(x_c + m)
    ds, grads[h + "final_layer_norm.weight"], grads[h + "final_layer_norm.bias"] = K.layernorm_backward(dy, c.ln_m)
    dx_c = _ffn_backward(K, ds, c.ffn, h, grads)  # (B, T, C)
    dx_c += ds  # (B, T, C): x_c fed the residual and the feed-forward network
    # x_c = LN(x_a + dropout(c)), c = cross_attn(x_a, memory)
    ds, grads[h + "encoder_attn_layer_norm.weight"], grads[h + "encoder_attn_layer_norm.bias"] = \
        K.layernorm_backward(dx_c, c.ln_c)  # (B, T, C)
    ca, drop_c = c.cross_attn
    g = mha_backward(maybe_dropout_backward(K, ds, drop_c), ca)  # queries from x_a, keys and values from memory
    _fused_attn_grads(g, h + "encoder_attn", grads)
    dx_a = g.dx + ds  # (B, T, C): the residual and the cross-attention's queries both read x_a
    dmemory = g.dmemory  # (B, S, C)
    # x_a = LN(x + dropout(a)), a = self_attn(x)
    ds, grads[h + "self_attn_layer_norm.weight"], grads[h + "self_attn_layer_norm.bias"] = \
        K.layernorm_backward(dx_a, c.ln_a)  # (B, T, C)
    sa, drop_a = c.self_attn
    g = mha_backward(maybe_dropout_backward(K, ds, drop_a), sa)
    _fused_attn_grads(g, h + "self_attn", grads)
    return g.dx + ds, dmemory, grads  # (B, T, C), (B, S, C)


# ----------------------------------------------------------------------------------------
# the whole model


class BartCache(NamedTuple):
    """What ``bart_backward`` needs from ``bart_forward``."""
    config: BartConfig
    ops: SimpleNamespace  # the ops namespace the forward pass ran with
    dtype: np.dtype  # of the parameters
    enc_embed: EmbedCache
    enc_layers: list  # an EncoderLayerCache per encoder layer
    dec_embed: EmbedCache
    dec_layers: list  # a DecoderLayerCache per decoder layer
    head: tuple  # the head's linear cache
    ce: tuple | None  # the cross-entropy's cache, None without labels


def _encoder(K, p, config, input_ids, key_mask, train, rng):
    """The encoder's output (B, S, C), its embedding cache and its layer caches."""
    e, enc_embed = _embed_forward(K, p, config, "model.encoder.", input_ids, 0, train, rng)  # (B, S, C)
    layers = []
    for i in range(config.encoder_layers):
        e, layer = encoder_layer_forward(e, p, i, config, K, key_mask, train, rng)  # (B, S, C)
        layers.append(layer)
    return e, enc_embed, layers


def decoder_logits(params: dict[str, np.ndarray], config: BartConfig, decoder_input_ids: np.ndarray,
                   memory: np.ndarray | None, memory_mask: np.ndarray | None = None,
                   decoder_mask: np.ndarray | None = None, ops: SimpleNamespace | None = None, train: bool = False,
                   rng: np.random.Generator | None = None, kv_caches: np.ndarray | None = None, start: int = 0,
                   memory_kvs: list | None = None):
    """The decoder and the head, without input checks: logits (B, T, V) of ``decoder_input_ids``
    (B, T) at positions ``start ..`` over the encoder's output ``memory`` (B, S, C). Returns
    ``(logits, dec_embed, layers, head)``; ``kv_caches``/``memory_kvs`` (one per decoder layer)
    are for decoding (see ``decode_step``)."""
    p, K = params, ops if ops is not None else get_ops("numpy")
    x, dec_embed = _embed_forward(K, p, config, "model.decoder.", decoder_input_ids, start, train, rng)  # (B, T, C)
    layers = []
    for i in range(config.decoder_layers):
        x, layer = decoder_layer_forward(x, memory, p, i, config, K, decoder_mask, memory_mask, train, rng,
                                         None if kv_caches is None else kv_caches[i], start,
                                         None if memory_kvs is None else memory_kvs[i])  # (B, T, C)
        layers.append(layer)
    # the head: logits = x @ shared^T + final_logits_bias
    logits, head = K.linear_forward(x, p["model.shared.weight"].T, p["final_logits_bias"][0])  # (B, T, V)
    return logits, dec_embed, layers, head


def _check_train(config: BartConfig, train: bool, rng) -> None:
    if not train:
        return
    if config.encoder_layerdrop or config.decoder_layerdrop:
        raise NotImplementedError("layerdrop is not implemented; train with dataclasses.replace(config, "
                                  "encoder_layerdrop=0.0, decoder_layerdrop=0.0)")
    if (config.dropout or config.attention_dropout or config.activation_dropout) and \
            not isinstance(rng, np.random.Generator):
        raise ValueError("train=True with dropout needs rng=np.random.default_rng(seed) to draw the masks "
                         "(or set the config's dropout probabilities to 0)")


def bart_forward(params: dict[str, np.ndarray], config: BartConfig, input_ids: np.ndarray,
                 decoder_input_ids: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                 decoder_attention_mask: np.ndarray | None = None, labels: np.ndarray | None = None,
                 kernels: str = "numpy", train: bool = False, rng: np.random.Generator | None = None):
    """Logits (B, T, V) for the next target token at each decoder position, as
    ``BartForConditionalGeneration``; with ``labels`` (B, T, -100 where no loss is wanted) also
    the mean cross-entropy. Returns ``(logits, loss, cache)``; ``loss`` is None without labels.

    ``input_ids`` (B, S) is the source, ``attention_mask`` (B, S) 1 for its real tokens and 0 for
    padding; ``decoder_input_ids`` (B, T) the decoder's inputs (None with ``labels``:
    ``shift_tokens_right(labels)``, as Hugging Face does), ``decoder_attention_mask`` (B, T) its
    padding (added to the causal mask). ``train=True`` applies the config's dropout with masks
    from ``rng``; ``kernels`` is "numpy" or "numba".

    Example: at initialisation the model predicts close to uniformly, a loss near log 13 = 2.56.

    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=2,
    ...                  encoder_attention_heads=2, encoder_ffn_dim=12, decoder_layers=1,
    ...                  decoder_attention_heads=4, decoder_ffn_dim=16)
    >>> params = init_params(cfg, dtype=np.float64)
    >>> src, labels = np.array([[0, 5, 6, 7, 2]]), np.array([[8, 9, 2]])
    >>> logits, loss, cache = bart_forward(params, cfg, src, labels=labels)
    >>> logits.shape, round(float(loss), 1)
    ((1, 3, 13), 2.6)
    >>> grads = bart_backward(cache)
    >>> list(grads) == list(params), bool(grads["model.encoder.layers.1.fc2.weight"].any())
    (True, True)
    """
    if not isinstance(config, BartConfig):
        raise TypeError(f"config must be a BartConfig, got {type(config).__name__}")
    K = get_ops(kernels)
    dtype = check_params(params, config)
    _check_train(config, train, rng)
    _check_ids(config, input_ids, "input_ids")
    if decoder_input_ids is None:
        if labels is None:
            raise ValueError("bart_forward needs decoder_input_ids, or labels to shift right into them")
        decoder_input_ids = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
    _check_ids(config, decoder_input_ids, "decoder_input_ids")
    if decoder_input_ids.shape[0] != input_ids.shape[0]:
        raise ValueError(f"input_ids {input_ids.shape} and decoder_input_ids {decoder_input_ids.shape} must have the "
                         "same batch size B")
    if labels is not None and (not isinstance(labels, np.ndarray) or labels.shape != decoder_input_ids.shape):
        got = labels.shape if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"labels must have the shape of decoder_input_ids {decoder_input_ids.shape} (-100 to skip "
                         f"a position), got {got}")
    memory_mask = _key_mask(attention_mask, input_ids.shape, "attention_mask")  # (B, S) or None
    decoder_mask = _key_mask(decoder_attention_mask, decoder_input_ids.shape, "decoder_attention_mask")  # (B, T)
    memory, enc_embed, enc_layers = _encoder(K, params, config, input_ids, memory_mask, train, rng)  # (B, S, C)
    logits, dec_embed, dec_layers, head = decoder_logits(params, config, decoder_input_ids, memory, memory_mask,
                                                         decoder_mask, K, train, rng)  # (B, T, V)
    loss, ce = None, None
    if labels is not None:
        loss, ce = K.cross_entropy_forward(logits, labels)  # scalar
    return logits, loss, BartCache(config, K, dtype, enc_embed, enc_layers, dec_embed, dec_layers, head, ce)


def bart_backward(cache: BartCache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the loss with respect to every parameter: a dict with the keys (and order) of
    ``params``. ``dloss`` scales the mean loss's gradient; ``dlogits`` (B, T, V), if given, is
    used instead of the loss (the forward pass then needs no labels).

    Example: see ``bart_forward``.
    """
    config, K, c, grads = cache.config, cache.ops, cache, {}
    # in the forward pass this was: loss = cross_entropy(logits, labels), so now
    if dlogits is None:
        if c.ce is None:
            raise ValueError("bart_backward needs the cache of a forward pass given labels, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, c.ce)  # (B, T, V)
    # logits = x @ shared^T + final_logits_bias
    dx, dshared_t, dbias = K.linear_backward(dlogits, c.head)  # (B, T, C), (C, V), (V,)
    grads["final_logits_bias"] = dbias[None, :]  # (1, V)
    dshared = np.ascontiguousarray(dshared_t.T)  # (V, C); the two lookups add below
    dmemory = None
    for layer in reversed(c.dec_layers):
        dx, dmem, layer_grads = decoder_layer_backward(dx, layer)  # (B, T, C), (B, S, C)
        grads.update(layer_grads)
        # memory fed the cross-attention of every decoder layer: the gradients add
        dmemory = dmem if dmemory is None else dmemory + dmem  # (B, S, C)
    dshared += _embed_backward(K, dx, c.dec_embed, config, grads, c.dtype)  # (V, C)
    de = dmemory  # (B, S, C): the encoder's output reached the loss only through cross-attention
    for layer in reversed(c.enc_layers):
        de, layer_grads = encoder_layer_backward(de, layer)  # (B, S, C)
        grads.update(layer_grads)
    dshared += _embed_backward(K, de, c.enc_embed, config, grads, c.dtype)  # (V, C)
    grads["model.shared.weight"] = dshared
    return {name: grads[name] for name in param_shapes(config)}
