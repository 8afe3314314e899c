"""Decoding with an encoder-decoder (BART): greedy search and beam search, as Hugging Face's
``generate`` does them.

The source is encoded once; the decoder then grows each output from ``decoder_start_token_id``
one token at a time. A step feeds the decoder only the newest token: the self-attention keys and
values of earlier tokens sit in a cache and the cross-attention keys and values of the source
were projected once (``models.bart.start_decoding``/``decode_step``). ``use_cache=False``
recomputes the decoder over the whole prefix at every step instead; both give the same tokens.

Greedy search takes the most likely token at every step:

    next = argmax(logits[:, -1])             (B,); a finished row gets pad_token_id instead
    stop when every row has produced eos_token_id, or at max_length tokens

Beam search keeps the ``num_beams`` best partial outputs (beams) of each source, scored by
their summed log-probability, and a list of the ``num_beams`` best finished ones:

    cand   = score[beam] + log_softmax(logits[beam])       (B, num_beams * V) every continuation
    top    = the 2 * num_beams best candidates              enough for num_beams to stay open
    a candidate ending in eos (or reaching max_length) that ranks among the first num_beams
      joins the finished list with score sum_logprob / generated_length ** length_penalty
      (length_penalty > 0 favours longer outputs, < 0 shorter ones)
    the num_beams best candidates that did not finish are the next beams

It stops for a source when its finished list cannot improve: with ``early_stopping=True`` as
soon as it holds ``num_beams`` outputs; with ``False`` when moreover the best open beam, scored
at its current length, is no better than the worst finished one; with ``"never"`` (the textbook
rule) when that beam cannot win even at ``max_length`` (for length_penalty > 0). The best
finished output is returned (the ``num_return_sequences`` best ones). These are the semantics of
``transformers`` 5 (``GenerationMixin._beam_search``), down to the order of the steps, so the
two give the same tokens (see the tests). With ``num_beams=1`` and ``early_stopping=True`` (or
``length_penalty=0``) beam search is greedy search.

``forced_eos_token_id`` (BART's config sets it) makes the last token at ``max_length`` the end
token, and ``forced_bos_token_id`` the first generated one, as Hugging Face's
``ForcedEOSTokenLogitsProcessor``/``ForcedBOSTokenLogitsProcessor`` do. Sources of different
lengths are padded and their ``attention_mask`` hides the padding from the cross-attention.
Scores stay in the model's dtype (Hugging Face casts them to float32), and outputs are always
padded with ``pad_token_id`` (Hugging Face's beam search pads with the end token when the pad
id is 0).

The two search loops (``_greedy_loop``, ``_beam_loop``) only ask a decoder for the last
position's logits of the sequences so far and, for beams, to reorder its rows; the
decoder-only translator of ``llm_from_scratch.translate`` runs them over a GPT.

Left out: sampling (``llm_from_scratch.generate`` has the filters for GPT), ``min_length``,
repetition penalties and ``no_repeat_ngram_size``, diverse and constrained beam search.

References:

- I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence Learning with Neural Networks",
  NeurIPS 2014, section 3.1 (left-to-right beam search).
- Y. Wu et al., "Google's Neural Machine Translation System", 2016, section 7 (length
  normalisation of beam scores).
- M. Lewis et al., "BART", ACL 2020 (decoding settings of the summarisation checkpoints).
- Hugging Face ``transformers``, ``generation/utils.py`` (``_sample``, ``_beam_search`` and its
  helpers) and ``generation/logits_process.py``.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.bart import (BartConfig, check_params, decode_step, decoder_logits, encode,
                                          reorder_state, start_decoding)

# Dimension letters: B sources, S source length, N decoder rows (B, or B * num_beams),
# V vocabulary size, NB num_beams, K candidates kept per source (2 * NB with one eos id).

__all__ = ["DEFAULT_MAX_LENGTH", "greedy_search", "beam_search", "generate"]

DEFAULT_MAX_LENGTH = 20  # Hugging Face's GenerationConfig.max_length
_CONFIG = "config"  # "take this token id from the model's config"
_NEG = -1.0e9  # Hugging Face's score for "not a candidate"


class _Decoder:
    """Last-position logits (N, V) of growing decoder sequences (N, T), with or without the cache."""

    def __init__(self, params, config, memory, attention_mask, max_length, use_cache, kernels):
        self.params, self.config, self.kernels, self.use_cache = params, config, kernels, use_cache
        if use_cache:  # the longest sequence ever fed is max_length - 1 tokens long
            self.state = start_decoding(params, config, memory, attention_mask, max(1, max_length - 1), kernels)
        else:
            mask = None if attention_mask is None else np.asarray(attention_mask).astype(bool)  # (N, S)
            self.memory, self.mask = memory, None if mask is None or mask.all() else mask

    def logits(self, seqs: np.ndarray) -> np.ndarray:
        if self.use_cache:  # feed only what the cache has not seen: the prefix at first, then one token
            logits, self.state = decode_step(self.params, self.config, self.state, seqs[:, self.state.length:],
                                             self.kernels)  # (N, T', V)
        else:
            logits = decoder_logits(self.params, self.config, seqs, self.memory, self.mask,
                                    ops=get_ops(self.kernels))[0]  # (N, T, V)
        return logits[:, -1]  # (N, V)

    def reorder(self, index: np.ndarray) -> None:
        if self.use_cache:
            self.state = reorder_state(self.state, index)
        else:
            self.memory = self.memory[index]  # (N, S, C)
            self.mask = None if self.mask is None else self.mask[index]  # (N, S)


def _force(scores: np.ndarray, cur_len: int, max_length: int, forced_bos, forced_eos) -> np.ndarray:
    """Hugging Face's forced-token processors: at the first generated position only
    ``forced_bos`` may come, at the last (``max_length - 1`` tokens so far) only ``forced_eos``."""
    token = forced_bos if cur_len == 1 else forced_eos if cur_len == max_length - 1 else None
    if token is None:
        return scores
    forced = np.full_like(scores, -np.inf)  # (N, V)
    forced[:, token] = 0.0
    return forced


def _log_softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)  # (N, V)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))  # (N, V)


def _top(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each row of ``x`` (B, M), largest first (ties: lower index)."""
    return np.argsort(-x, axis=1, kind="stable")[:, :k]  # (B, k)


def _options(config, input_ids, attention_mask, max_new_tokens, max_length, eos_token_id, pad_token_id,
             decoder_start_token_id, forced_bos_token_id, forced_eos_token_id):
    """Check the inputs; fill the token ids from the config; return them and max_length."""
    if not isinstance(config, BartConfig):
        raise TypeError(f"config must be a BartConfig, got {type(config).__name__}")
    if not isinstance(input_ids, np.ndarray) or input_ids.ndim != 2 or not np.issubdtype(input_ids.dtype, np.integer):
        got = f"{input_ids.dtype} {input_ids.shape}" if isinstance(input_ids, np.ndarray) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (B, S) integer numpy array of source token ids, got {got}")
    if attention_mask is not None and (not isinstance(attention_mask, np.ndarray)
                                       or attention_mask.shape != input_ids.shape):
        got = attention_mask.shape if isinstance(attention_mask, np.ndarray) else type(attention_mask).__name__
        raise ValueError(f"attention_mask must have the shape of input_ids {input_ids.shape}, got {got}")
    ids = {}
    for name, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id),
                        ("decoder_start_token_id", decoder_start_token_id),
                        ("forced_bos_token_id", forced_bos_token_id), ("forced_eos_token_id", forced_eos_token_id)):
        if isinstance(value, str) and value == _CONFIG:
            value = getattr(config, name, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                  or not 0 <= value < config.vocab_size):
            raise ValueError(f"{name} must be None or a token id in [0, {config.vocab_size}), got {value!r}")
        ids[name] = value
    if ids["decoder_start_token_id"] is None:
        raise ValueError("decoder_start_token_id is needed: the decoder's first input")
    if ids["pad_token_id"] is None:
        ids["pad_token_id"] = ids["eos_token_id"]  # Hugging Face does the same, with a warning
    if max_new_tokens is not None:  # it wins over max_length, as in Hugging Face
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        max_length = 1 + int(max_new_tokens)  # the start token + the new ones
    elif max_length is None:
        max_length = DEFAULT_MAX_LENGTH
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or \
            not 2 <= max_length <= config.max_position_embeddings + 1:
        raise ValueError(f"max_length must be an integer in [2, max_position_embeddings + 1 = "
                         f"{config.max_position_embeddings + 1}] (the start token and at least one more), "
                         f"got {max_length!r}")
    return ids, int(max_length)


def greedy_search(params: dict[str, np.ndarray], config: BartConfig, input_ids: np.ndarray,
                  attention_mask: np.ndarray | None = None, max_new_tokens: int | None = None,
                  max_length: int | None = None, eos_token_id=_CONFIG, pad_token_id=_CONFIG,
                  decoder_start_token_id=_CONFIG, forced_bos_token_id=None, forced_eos_token_id=_CONFIG,
                  use_cache: bool = True, kernels: str = "numpy") -> np.ndarray:
    """The most likely token at every step, for each source of ``input_ids`` (B, S) (padding
    hidden by ``attention_mask``): returns (B, L) token ids starting with the decoder start token;
    rows that ended early are filled with ``pad_token_id``. Token ids default to the config's
    (pass None to switch one off). See ``generate`` for the options.

    >>> from llm_from_scratch.models.bart import init_params
    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> out = greedy_search(params, cfg, np.array([[0, 5, 6, 2]]), max_new_tokens=4, eos_token_id=None)
    >>> out.shape, int(out[0, 0]), int(out[0, -1])  # starts with </s> = 2, forced to end with it
    ((1, 5), 2, 2)
    """
    ids, max_length = _options(config, input_ids, attention_mask, max_new_tokens, max_length, eos_token_id,
                               pad_token_id, decoder_start_token_id, forced_bos_token_id, forced_eos_token_id)
    memory = encode(params, config, input_ids, attention_mask, kernels)  # (B, S, C)
    decoder = _Decoder(params, config, memory, attention_mask, max_length, use_cache, kernels)
    return _greedy_loop(decoder, input_ids.shape[0], ids, max_length)


def _greedy_loop(decoder, B: int, ids: dict, max_length: int) -> np.ndarray:
    """Greedy search over any ``decoder`` with ``logits(seqs) -> (N, V)`` (the last position's)."""
    eos, pad = ids["eos_token_id"], ids["pad_token_id"]
    seqs = np.full((B, 1), ids["decoder_start_token_id"], dtype=np.int64)  # (B, 1)
    unfinished = np.ones(B, dtype=bool)  # (B,)
    while True:
        scores = _force(decoder.logits(seqs), seqs.shape[1], max_length, ids["forced_bos_token_id"],
                        ids["forced_eos_token_id"])  # (B, V)
        nxt = scores.argmax(axis=-1)  # (B,)
        if eos is not None:
            nxt = np.where(unfinished, nxt, pad)  # (B,) finished rows only pad
            unfinished &= nxt != eos
        seqs = np.concatenate([seqs, nxt[:, None]], axis=1)  # (B, T + 1)
        if not unfinished.any() or seqs.shape[1] >= max_length:
            return seqs


def beam_search(params: dict[str, np.ndarray], config: BartConfig, input_ids: np.ndarray,
                attention_mask: np.ndarray | None = None, num_beams: int = 4, length_penalty: float = 1.0,
                early_stopping: bool | str = False, num_return_sequences: int = 1,
                max_new_tokens: int | None = None, max_length: int | None = None, eos_token_id=_CONFIG,
                pad_token_id=_CONFIG, decoder_start_token_id=_CONFIG, forced_bos_token_id=None,
                forced_eos_token_id=_CONFIG, use_cache: bool = True, kernels: str = "numpy") -> np.ndarray:
    """Beam search with ``num_beams`` beams per source (see the module docstring): returns
    (B * num_return_sequences, L) token ids, the best outputs of each source first, padded with
    ``pad_token_id``. See ``generate`` for the options.

    Example: one beam that stops at the first finished output is greedy search.

    >>> from llm_from_scratch.models.bart import init_params
    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=2)
    >>> params, src = init_params(cfg, seed=0, dtype=np.float64), np.array([[0, 5, 6, 2]])
    >>> beams = beam_search(params, cfg, src, num_beams=1, early_stopping=True, max_new_tokens=6)
    >>> bool(np.array_equal(beams, greedy_search(params, cfg, src, max_new_tokens=6)))
    True
    """
    if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if not (isinstance(num_return_sequences, (int, np.integer)) and 1 <= num_return_sequences <= num_beams):
        raise ValueError(f"num_return_sequences must be in [1, num_beams = {num_beams}], got {num_return_sequences!r}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
        raise ValueError(f"length_penalty must be a number, got {length_penalty!r}")
    ids, max_length = _options(config, input_ids, attention_mask, max_new_tokens, max_length, eos_token_id,
                               pad_token_id, decoder_start_token_id, forced_bos_token_id, forced_eos_token_id)
    NB = int(num_beams)
    # every source's encoding, repeated for its NB beams: rows b * NB .. b * NB + NB - 1
    memory = np.repeat(encode(params, config, input_ids, attention_mask, kernels), NB, axis=0)  # (B * NB, S, C)
    mask = None if attention_mask is None else np.repeat(attention_mask, NB, axis=0)  # (B * NB, S)
    decoder = _Decoder(params, config, memory, mask, max_length, use_cache, kernels)
    return _beam_loop(decoder, input_ids.shape[0], ids, max_length, NB, float(length_penalty), early_stopping,
                      num_return_sequences, memory.dtype)


def _beam_loop(decoder, B: int, ids: dict, max_length: int, NB: int, lp: float, early_stopping,
               num_return_sequences: int, dtype) -> np.ndarray:
    """Beam search over any ``decoder`` with ``logits(seqs) -> (B * NB, V)`` and ``reorder(index)``,
    whose rows b * NB .. b * NB + NB - 1 belong to source b."""
    eos = ids["eos_token_id"]
    K = max(2, 1 + (eos is not None)) * NB  # candidates kept per source
    fill = ids["pad_token_id"]
    running = np.full((B, NB, max_length), fill, dtype=np.int64)  # (B, NB, max_length) the open beams
    running[:, :, 0] = ids["decoder_start_token_id"]
    running_scores = np.zeros((B, NB), dtype=dtype)  # (B, NB) summed log-probabilities
    running_scores[:, 1:] = _NEG  # at first all beams are the same: continue only the first
    finished = running.copy()  # (B, NB, max_length) the best finished outputs
    finished_scores = np.full((B, NB), _NEG, dtype=dtype)  # (B, NB) length-penalised scores
    finished_lengths = np.zeros((B, NB), dtype=np.int64)  # (B, NB) tokens generated, eos included
    is_finished = np.zeros((B, NB), dtype=bool)  # (B, NB) slots that hold a real finished output
    improvable = np.ones((B, 1), dtype=bool)  # (B, 1) can a source's finished list still improve?
    top_nb = np.arange(K) < NB  # (K,) only the first NB candidates may finish
    offset = np.arange(B)[:, None] * NB  # (B, 1) row of each source's first beam
    cur_len = 1
    while True:
        # a. the next token's log-probabilities for every open beam, added to the beam's score
        logp = _log_softmax(decoder.logits(running[:, :, :cur_len].reshape(B * NB, cur_len)))  # (B * NB, V)
        logp = _force(logp, cur_len, max_length, ids["forced_bos_token_id"], ids["forced_eos_token_id"])
        V = logp.shape[-1]
        cand = (logp.reshape(B, NB, V) + running_scores[:, :, None]).reshape(B, NB * V)  # (B, NB * V)
        # b. the K best continuations of each source
        top = _top(cand, K)  # (B, K)
        top_scores = np.take_along_axis(cand, top, axis=1)  # (B, K)
        top_beam, top_token = top // V, top % V  # (B, K) which beam, which token
        top_seqs = np.take_along_axis(running, top_beam[:, :, None], axis=1)  # (B, K, max_length)
        top_seqs[:, :, cur_len] = top_token
        hits = np.zeros((B, K), dtype=bool) if eos is None else top_token == eos  # (B, K)
        hits |= cur_len + 1 >= max_length  # every candidate ends at max_length
        # c. the NB best candidates that did not end are the next open beams
        open_scores = top_scores + hits * _NEG  # (B, K)
        keep = _top(open_scores, NB)  # (B, NB)
        running = np.take_along_axis(top_seqs, keep[:, :, None], axis=1)  # (B, NB, max_length)
        running_scores = np.take_along_axis(open_scores, keep, axis=1)  # (B, NB)
        parents = np.take_along_axis(top_beam, keep, axis=1)  # (B, NB)
        # d. candidates that ended among the first NB join the finished list if they rank
        just = hits & top_nb[None, :]  # (B, K)
        new_scores = top_scores / float(cur_len) ** lp  # (B, K) generated length = cur_len + 1 - 1
        full = is_finished.all(axis=1, keepdims=True) & (early_stopping is True)  # (B, 1)
        new_scores = new_scores + full * _NEG + (~improvable) * _NEG + (~just) * _NEG  # (B, K)
        merged = np.concatenate([finished_scores, new_scores], axis=1)  # (B, NB + K)
        best = _top(merged, NB)  # (B, NB)
        finished = np.take_along_axis(np.concatenate([finished, top_seqs], axis=1), best[:, :, None], axis=1)
        finished_scores = np.take_along_axis(merged, best, axis=1)  # (B, NB)
        new_lengths = np.broadcast_to(np.where(just, cur_len, 0), (B, K))  # (B, K)
        finished_lengths = np.take_along_axis(np.concatenate([finished_lengths, new_lengths], axis=1), best, axis=1)
        is_finished = np.take_along_axis(np.concatenate([is_finished, just], axis=1), best, axis=1)  # (B, NB)
        # e. the caches follow the beams that continue
        decoder.reorder((parents + offset).reshape(-1))  # (B * NB,)
        cur_len += 1
        # f. can the best open beam still beat the worst finished output?
        length = max_length - 1 if early_stopping == "never" and lp > 0 else cur_len - 1
        best_open = running_scores[:, :1] / float(length) ** lp  # (B, 1)
        worst = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), _NEG)  # (B, NB)
        improvable &= (best_open > worst).any(axis=1, keepdims=True)  # (B, 1)
        if not (improvable.any() and not (is_finished.all() and early_stopping is True) and not hits.all()):
            break
    R = num_return_sequences
    out = finished[:, :R].reshape(B * R, max_length)  # (B * R, max_length), best first
    return out[:, :1 + int(finished_lengths[:, :R].max())]  # cropped to the longest returned output


def generate(params: dict[str, np.ndarray], config: BartConfig, input_ids: np.ndarray,
             attention_mask: np.ndarray | None = None, num_beams: int = 1, max_new_tokens: int | None = None,
             max_length: int | None = None, length_penalty: float = 1.0, early_stopping: bool | str = False,
             num_return_sequences: int = 1, eos_token_id=_CONFIG, pad_token_id=_CONFIG,
             decoder_start_token_id=_CONFIG, forced_bos_token_id=None, forced_eos_token_id=_CONFIG,
             use_cache: bool = True, kernels: str = "numpy") -> np.ndarray:
    """Output token ids for the sources ``input_ids`` (B, S), as Hugging Face's
    ``model.generate(input_ids, attention_mask=..., num_beams=..., ...)``: greedy search for
    ``num_beams=1``, beam search otherwise. Returns (B * num_return_sequences, L) ids that start
    with ``decoder_start_token_id``, padded with ``pad_token_id``.

    Options, with Hugging Face's names and meanings: ``max_new_tokens`` (tokens after the start
    token; it wins over ``max_length``, the whole output's length, default 20),
    ``length_penalty`` (exponent of the length that divides a finished beam's log-probability),
    ``early_stopping`` (True, False or "never"), ``eos_token_id``, ``pad_token_id``,
    ``decoder_start_token_id`` and ``forced_eos_token_id`` (default: the config's; None switches
    one off), ``forced_bos_token_id`` (default None). ``use_cache=False`` recomputes the decoder
    over the whole prefix at every step; ``kernels`` is "numpy" or "numba".

    >>> from llm_from_scratch.models.bart import init_params
    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=1,
    ...                  encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> src = np.array([[0, 5, 6, 2], [0, 7, 2, 1]]); mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]])
    >>> generate(params, cfg, src, mask, num_beams=3, max_new_tokens=5, num_return_sequences=2).shape[0]
    4
    """
    if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    check_params(params, config)
    tokens = dict(max_new_tokens=max_new_tokens, max_length=max_length, eos_token_id=eos_token_id,
                  pad_token_id=pad_token_id, decoder_start_token_id=decoder_start_token_id,
                  forced_bos_token_id=forced_bos_token_id, forced_eos_token_id=forced_eos_token_id,
                  use_cache=use_cache, kernels=kernels)
    if num_beams == 1:
        if num_return_sequences != 1:
            raise ValueError("greedy search (num_beams=1) returns one output per source; use num_beams >= "
                             f"num_return_sequences = {num_return_sequences}")
        return greedy_search(params, config, input_ids, attention_mask, **tokens)
    return beam_search(params, config, input_ids, attention_mask, num_beams, length_penalty, early_stopping,
                       num_return_sequences, **tokens)
