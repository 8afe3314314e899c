"""Decoding with BART one token at a time: the encoder once, then the decoder with caches.

``encode`` runs the encoder on the source. ``start_decoding`` projects the encoder's output to
every decoder layer's cross-attention keys and values once per source, and makes an empty
key/value cache for each decoder self-attention; ``decode_step`` feeds the decoder only the new
tokens: ``attention.mha_forward(kv_cache=..., start=...)`` writes their keys and values into the
cache and attends over all of them, and the cross-attention runs the attention core
(``attention.attention_forward``) on the precomputed keys and values (``mha_forward`` would
project its ``memory`` again at every step). ``reorder_state`` keeps the rows beam search
continues. The logits equal ``bart_forward``'s on the whole prefix (see the tests); the search
itself (greedy, beams) is ``llm_from_scratch.seq2seq``.

Left out: gradients through the caches (inference only), caches that slide past
``max_position_embeddings``.

References: R. Pope et al., "Efficiently Scaling Transformer Inference", 2022, section 2 (the
key/value cache); Hugging Face ``transformers``, ``cache_utils.EncoderDecoderCache`` (the
cross-attention keys and values computed once).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from llm_from_scratch.attention import _linear_forward, split_heads
from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.bart.config import BartConfig
from llm_from_scratch.models.bart.model import _check_ids, _encoder, _key_mask, check_params, decoder_logits
from llm_from_scratch.models.bart.model import bart_forward, init_params  # noqa: F401  (used by the doctests)

__all__ = ["encode", "DecoderState", "start_decoding", "decode_step", "reorder_state"]


def encode(params: dict[str, np.ndarray], config: BartConfig, input_ids: np.ndarray,
           attention_mask: np.ndarray | None = None, kernels: str = "numpy") -> np.ndarray:
    """The encoder's output (B, S, C) for the source ``input_ids`` (B, S) (inference)."""
    check_params(params, config)
    _check_ids(config, input_ids, "input_ids")
    memory_mask = _key_mask(attention_mask, input_ids.shape, "attention_mask")
    return _encoder(get_ops(kernels), params, config, input_ids, memory_mask, False, None)[0]


class DecoderState(NamedTuple):
    """Everything a decoding step needs besides the new tokens."""
    memory_kvs: list  # per decoder layer, (2, B, NH, S, HS): cross-attention keys and values of the memory
    memory_mask: np.ndarray | None  # (B, S) True for real source tokens, or None
    kv_caches: np.ndarray  # (L_dec, 2, B, NH, P', HS): the self-attention keys and values so far
    length: int  # decoder tokens seen so far (positions 0 .. length - 1 are cached)


def start_decoding(params: dict[str, np.ndarray], config: BartConfig, memory: np.ndarray,
                   attention_mask: np.ndarray | None = None, max_length: int | None = None,
                   kernels: str = "numpy") -> DecoderState:
    """A ``DecoderState`` for decoding over the encoder's output ``memory`` (B, S, C): each decoder
    layer's cross-attention keys and values projected once, and an empty self-attention cache
    with room for ``max_length`` tokens (default: ``max_position_embeddings``)."""
    K, NH = get_ops(kernels), config.decoder_attention_heads
    B, S, C = memory.shape
    P = config.max_position_embeddings if max_length is None else int(max_length)
    if not 1 <= P <= config.max_position_embeddings:
        raise ValueError(f"max_length = {P} must be in [1, max_position_embeddings = {config.max_position_embeddings}]")
    memory_kvs = []
    for i in range(config.decoder_layers):
        pre = f"model.decoder.layers.{i}.encoder_attn."
        w = np.concatenate([params[pre + "k_proj.weight"], params[pre + "v_proj.weight"]])  # (2C, C)
        b = np.concatenate([params[pre + "k_proj.bias"], params[pre + "v_proj.bias"]])  # (2C,)
        kv, _ = _linear_forward(K, memory, w.T, b)  # (B, S, C) -> (B, S, 2C)
        k, v = np.split(kv, 2, axis=2)  # 2 x (B, S, C)
        memory_kvs.append(np.stack([split_heads(k, NH), split_heads(v, NH)]))  # (2, B, NH, S, HS)
    kv_caches = np.zeros((config.decoder_layers, 2, B, NH, P, C // NH), dtype=memory.dtype)  # (L, 2, B, NH, P', HS)
    mask = _key_mask(attention_mask, (B, S), "attention_mask")
    return DecoderState(memory_kvs, mask, kv_caches, 0)


def decode_step(params: dict[str, np.ndarray], config: BartConfig, state: DecoderState, decoder_input_ids: np.ndarray,
                kernels: str = "numpy") -> tuple[np.ndarray, DecoderState]:
    """Logits (B, T, V) of the T new decoder tokens ``decoder_input_ids`` (B, T), which sit at
    positions ``state.length ..``; returns them and the state advanced by T (the key/value
    cache is written in place). Equal to ``bart_forward`` on the whole prefix (see the tests).

    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_layers=2, decoder_attention_heads=2)
    >>> params = init_params(cfg, dtype=np.float64)
    >>> src, tgt = np.array([[0, 5, 6, 2]]), np.array([[2, 7, 8]])
    >>> state = start_decoding(params, cfg, encode(params, cfg, src))
    >>> steps = []
    >>> for t in range(3):
    ...     logits, state = decode_step(params, cfg, state, tgt[:, t:t + 1])
    ...     steps.append(logits)
    >>> bool(np.allclose(np.concatenate(steps, axis=1), bart_forward(params, cfg, src, tgt)[0]))
    True
    """
    _check_ids(config, decoder_input_ids, "decoder_input_ids")
    T, room = decoder_input_ids.shape[1], state.kv_caches.shape[4]
    if state.length + T > room:
        raise ValueError(f"the cache holds {room} positions; {state.length} are used and {T} more do not fit "
                         f"(start_decoding(..., max_length=...) sets the room)")
    K = get_ops(kernels)
    logits, _, _, _ = decoder_logits(params, config, decoder_input_ids, None, state.memory_mask, None, K,
                                     kv_caches=state.kv_caches, start=state.length,
                                     memory_kvs=state.memory_kvs)  # (B, T, V)
    return logits, state._replace(length=state.length + T)


def reorder_state(state: DecoderState, index: np.ndarray) -> DecoderState:
    """The state of the batch rows ``index`` (N,), in that order (beam search keeps the caches of
    the beams it continues; a row may be taken twice)."""
    mask = None if state.memory_mask is None else state.memory_mask[index]  # (N, S)
    return DecoderState([kv[:, index] for kv in state.memory_kvs], mask, state.kv_caches[:, :, index], state.length)
