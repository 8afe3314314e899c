"""Text generation with a GPT: sampling rules for the next token, and a key/value cache.

A language model gives, for a prefix, logits for the next token. Generation repeats one step:

    logits = model(idx)[:, -1]                    the last position's logits,           (B, V)
    logits = logits / temperature                 flatter (> 1) or sharper (< 1)
    logits = top_k_filter(logits, k)              keep the k most likely tokens
    logits = top_p_filter(logits, p)              keep the smallest set with mass >= p
    next   = sample_from_logits(logits, rng)      one draw from softmax(logits),        (B,)
    idx    = concat(idx, next)                    (B, T + 1)

or, greedily, ``next = argmax(logits)``. The filters are applied in the order Hugging Face
``transformers`` applies its logits warpers (temperature, then top-k, then top-p), and a
filtered-out token gets logit -inf, probability 0.

The key/value cache. In causal attention a position's key and value depend only on the tokens
up to it, so once computed they never change. ``gpt_forward_cached`` keeps every layer's keys
and values in one preallocated array ``(L, 2, B, NH, S, HS)`` (room for S <= P positions)
and, fed only the *new* tokens, computes their queries, keys and values, writes the keys and
values into the cache and attends over everything cached so far. Generation then processes the
prompt once ("prefill"), and each later step is a forward pass of one token: its linear layers
cost the same at every step and only its attention grows with the length T, where a full
recompute pays for the linear layers of all T positions and T^2 attention scores at every
step. The price is memory, ``kv_cache_bytes`` = 2 (keys and values) x bytes per number x L x
NH x HS x T x B.

Past ``n_positions`` tokens the cache cannot slide: the model only knows positions
0..P-1, so the window of the last P tokens is re-embedded at positions 0..P-1 and every cached
key changes. ``generate`` then recomputes that window at each step (as fast as no cache, and
token for token the same as ``use_cache=False``); prompts longer than P are cropped the same
way, as in nanoGPT.

``sequence_logprob`` scores a continuation, log p(idx[:, start:] | idx[:, :start]), to compare
decoding strategies by the likelihood the model gives their outputs.

Quantized weights (``quantize.quantize_params``) decode through the same functions: the cached
forward then runs with ``quantize.quantized_ops``, whose linear layers read int8 or int4 codes.

The cached forward is the model's own forward pass, ``models.gpt.gpt_logits``, given the cache:
each block's ``attention.mha_forward`` writes the new keys and values into it and attends over
all of them. It is inference only (no gradient flows through the cache). ``kernels="numba"``
swaps in the numba ops, as in training.

Left out: beam search, repetition penalties, min-p / typical sampling, padding (prompts of a
batch have the same length), multi-query / grouped-query caches, paged or quantised caches.

References:

- A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi, "The Curious Case of Neural Text
  Degeneration", ICLR 2020, section 3.1 (nucleus sampling, eq. 2: the smallest set of tokens
  whose probability reaches p) and section 4 (why greedy and beam search degenerate).
- A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural Story Generation", ACL 2018, section 5.4
  (top-k sampling).
- D. H. Ackley, G. E. Hinton, T. J. Sejnowski, "A Learning Algorithm for Boltzmann Machines",
  1985 (the temperature of a softmax).
- R. Pope et al., "Efficiently Scaling Transformer Inference", 2022, section 2 (the KV cache
  and its memory cost).
- A. Karpathy, nanoGPT ``model.py`` (``generate``: crop to the block size, temperature,
  top-k); Hugging Face ``transformers``, ``generation/logits_process.py``
  (``TemperatureLogitsWarper``, ``TopKLogitsWarper``, ``TopPLogitsWarper``).
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch import ops
from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.gpt import GPTConfig, check_params, gpt_forward, gpt_logits

# Dimension letters, the same in every shape comment of this file:
#   B  batch size            T  new tokens in one call  C  channels, n_embd
#   V  vocabulary size       NH heads, n_head           HS head size, C // NH
#   L  number of blocks      P  n_positions             S  positions the cache holds (<= P)
#   N  tokens attended to: the cached ones plus the new ones

__all__ = ["greedy_next", "apply_temperature", "top_k_filter", "top_p_filter", "filter_logits",
           "sample_from_logits", "sample_next", "kv_cache_bytes", "init_kv_cache", "gpt_forward_cached",
           "generate", "sequence_logprob"]


# ----------------------------------------------------------------------------------------
# choosing the next token from logits


def _check_logits(logits) -> None:
    if not isinstance(logits, np.ndarray) or logits.dtype not in (np.float32, np.float64) or logits.ndim < 1:
        got = f"{logits.dtype} {logits.shape}" if isinstance(logits, np.ndarray) else type(logits).__name__
        raise ValueError(f"logits must be a float32 or float64 numpy array (..., V), got {got}")


def _softmax64(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis, in float64 (probabilities for decisions and draws)."""
    probs, _ = ops.softmax_forward(logits.astype(np.float64))  # (..., V)
    return probs


def greedy_next(logits: np.ndarray) -> np.ndarray:
    """The most likely token of each row: ``argmax`` over the last axis (the first one on a tie).

    >>> greedy_next(np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 3.0]]))
    array([1, 0])
    """
    _check_logits(logits)
    return logits.argmax(axis=-1)  # (..., V) -> (...)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``logits / temperature``: below 1 sharpens the distribution, above 1 flattens it.

    softmax(z / tau) tends to the one-hot of argmax(z) as tau -> 0 (greedy decoding) and to
    uniform as tau -> infinity. Temperature 0 itself would divide by zero: use greedy decoding.

    Example: logits [2, 0] have probabilities e^2 / (e^2 + 1) = 0.88 and 0.12; at temperature 2
    they become [1, 0], probabilities 0.73 and 0.27.

    >>> apply_temperature(np.array([2.0, 0.0]), 2.0)
    array([1., 0.])
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating, np.integer)) \
            or not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}; for the "
                         "temperature -> 0 limit (always the most likely token) use greedy decoding "
                         "(greedy=True, or greedy_next)")
    return logits / logits.dtype.type(temperature)  # (..., V)


def top_k_filter(logits: np.ndarray, k: int) -> np.ndarray:
    """Keep the ``k`` largest logits of each row; the others become -inf (probability 0).

    Tokens tied with the k-th largest logit are all kept, as in Hugging Face's
    ``TopKLogitsWarper``; ``k`` larger than V keeps everything.

    Example: probabilities 0.5, 0.3, 0.15, 0.05 with k = 2 keep the first two, which softmax
    then renormalises to 0.5 / 0.8 = 0.625 and 0.375.

    >>> logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    >>> np.exp(top_k_filter(logits, 2))
    array([0.5, 0.3, 0. , 0. ])
    """
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"top_k must be an integer >= 1 (how many tokens to keep), got {k!r}; "
                         "use top_k=None to keep every token")
    V = logits.shape[-1]
    k = min(int(k), V)
    kth = np.partition(logits, V - k, axis=-1)[..., V - k:V - k + 1]  # (..., 1) the k-th largest logit
    return np.where(logits >= kth, logits, -np.inf).astype(logits.dtype)  # (..., V)


def top_p_filter(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filtering (Holtzman et al. 2020): keep the smallest set of most likely tokens
    whose probabilities add up to at least ``p``; the others become -inf.

    Sort the tokens from most to least likely; a token is kept if the tokens ranked above it
    hold less than ``p`` of the probability. The most likely token is always kept (nothing is
    ranked above it), so at least one token survives for any p > 0; p = 1 keeps every token.
    Ties are ranked by token id (a stable sort). Probabilities are computed in float64.

    Hugging Face's ``TopPLogitsWarper`` computes the same set from the other end (it drops the
    least likely tokens while their total stays <= 1 - p), in float32: the two agree except when
    a cumulative sum lands within rounding of p.

    Example: probabilities 0.5, 0.3, 0.15, 0.05. With p = 0.7 the first two (0.8 >= 0.7) are
    kept; with p = 0.9 the first three (0.95); with p = 0.4 only the first (0.5).

    >>> logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    >>> np.exp(top_p_filter(logits, 0.7)), np.exp(top_p_filter(logits, 0.9))
    (array([0.5, 0.3, 0. , 0. ]), array([0.5 , 0.3 , 0.15, 0.  ]))
    >>> np.exp(top_p_filter(logits, 0.4))
    array([0.5, 0. , 0. , 0. ])
    """
    _check_logits(logits)
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1], the probability mass to keep, got {p!r}; "
                         "use top_p=None (or 1.0) to keep every token")
    if p == 1:
        return logits.copy()
    order = np.argsort(-logits, axis=-1, kind="stable")  # (..., V) token ids, most likely first
    sorted_probs = np.take_along_axis(_softmax64(logits), order, axis=-1)  # (..., V)
    cum = np.cumsum(sorted_probs, axis=-1)  # (..., V) the mass of the top 1, 2, ..., V tokens
    keep_sorted = np.ones(cum.shape, dtype=bool)  # (..., V) the first token always stays
    keep_sorted[..., 1:] = cum[..., :-1] < p  # token r stays if the r tokens above it hold less than p
    keep = np.empty_like(keep_sorted)  # (..., V) the same flags, back in token-id order
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, logits, -np.inf).astype(logits.dtype)  # (..., V)


def filter_logits(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """Temperature, then top-k, then top-p: the order of Hugging Face's logits warpers.

    The order matters only for top-p, which looks at probabilities: those after temperature and
    after top-k has removed the tail. ``None`` skips a filter.

    >>> logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    >>> np.isfinite(filter_logits(logits, top_p=0.9))  # 0.5 + 0.3 < 0.9: three tokens
    array([ True,  True,  True, False])
    >>> np.isfinite(filter_logits(logits, temperature=0.5, top_p=0.9))  # 0.69 + 0.25 >= 0.9: two
    array([ True,  True, False, False])
    """
    logits = apply_temperature(logits, temperature)  # (..., V)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)  # (..., V)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)  # (..., V)
    return logits


def sample_from_logits(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row from ``softmax(logits)``, by inverting the cumulative distribution.

    Draw u uniform in [0, 1) and return the first token whose cumulative probability exceeds
    u: token i is returned for u in [cdf[i-1], cdf[i]), an interval of length p[i], so a
    token of probability 0 (logit -inf) is never drawn. Exactly one ``rng.random`` call of
    shape (..., 1) per call, so the same seed gives the same tokens.

    Example: with probabilities 0.5, 0.3 and 0.2, 10 000 draws land close to those frequencies.

    >>> rng = np.random.default_rng(0)
    >>> logits = np.tile(np.log(np.array([0.5, 0.3, 0.2])), (10_000, 1))
    >>> np.bincount(sample_from_logits(logits, rng)) / 10_000
    array([0.499 , 0.2989, 0.2021])
    """
    _check_logits(logits)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    cdf = np.cumsum(_softmax64(logits), axis=-1)  # (..., V)
    cdf /= cdf[..., -1:]  # (..., V) exactly 1 at the end, whatever the rounding of the sum
    u = rng.random(cdf.shape[:-1] + (1,))  # (..., 1) uniform in [0, 1)
    return (cdf <= u).sum(axis=-1)  # (...) how many tokens end at or below u = the index of the first above


def sample_next(logits: np.ndarray, rng: np.random.Generator | None = None, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, greedy: bool = False) -> np.ndarray:
    """The next token of each row: ``greedy_next(logits)`` if ``greedy``, otherwise a draw from
    ``filter_logits(logits, temperature, top_k, top_p)``.

    Greedy decoding ignores the filters (none of them can remove the most likely token, and
    a positive temperature does not move the argmax) and draws no random numbers.

    >>> logits = np.array([[0.0, 5.0, 1.0]])
    >>> sample_next(logits, greedy=True), sample_next(logits, np.random.default_rng(0), top_k=1)
    (array([1]), array([1]))
    """
    if greedy:
        return greedy_next(logits)
    if rng is None:
        raise ValueError("sampling needs rng=np.random.default_rng(seed); for the most likely token pass greedy=True")
    return sample_from_logits(filter_logits(logits, temperature, top_k, top_p), rng)


# ----------------------------------------------------------------------------------------
# the key/value cache


def kv_cache_bytes(config: GPTConfig, B: int, T: int, dtype=np.float32) -> int:
    """Memory of the keys and values of ``B`` sequences of ``T`` tokens:
    2 (a key and a value) x bytes per number x L x NH x HS x T x B.

    GPT-2 small (L = 12, NH = 12, HS = 64) holding 1024 float32 tokens: 72 MiB per sequence.

    >>> kv_cache_bytes(GPTConfig(), B=1, T=1024) / 2**20
    72.0
    """
    nbytes = np.dtype(dtype).itemsize
    return 2 * nbytes * config.n_layer * config.n_head * config.head_size * T * B


def init_kv_cache(config: GPTConfig, B: int, S: int | None = None, dtype=np.float32) -> np.ndarray:
    """An empty cache for ``B`` sequences of up to ``S`` tokens (default ``n_positions``):
    zeros of shape ``(L, 2, B, NH, S, HS)``; ``[i, 0]`` holds layer i's keys, ``[i, 1]`` its values.

    >>> init_kv_cache(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2), B=3).shape
    (2, 2, 3, 2, 8, 4)
    """
    S = config.n_positions if S is None else S
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or not 1 <= S <= config.n_positions:
        raise ValueError(f"the cache holds S positions, 1 <= S <= n_positions = {config.n_positions}, got {S!r}")
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
        raise ValueError(f"batch size B must be a positive integer, got {B!r}")
    return np.zeros((config.n_layer, 2, B, config.n_head, S, config.head_size), dtype=dtype)  # (L, 2, B, NH, S, HS)


def _check_idx(idx, config: GPTConfig) -> None:
    if not isinstance(idx, np.ndarray) or not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 2 \
            or idx.shape[0] < 1 or idx.shape[1] < 1:
        got = f"{idx.dtype} {idx.shape}" if isinstance(idx, np.ndarray) else type(idx).__name__
        raise ValueError(f"idx must be a (B, T) integer numpy array of token ids with B, T >= 1, got {got}; "
                         "a single sequence is idx[None, :]")
    bad = (idx < 0) | (idx >= config.vocab_size)
    if bad.any():
        b, t = np.argwhere(bad)[0]
        raise ValueError(f"expected token ids in [0, {config.vocab_size}), got {idx[b, t]} at position "
                         f"[{b}, {t}]")


def gpt_forward_cached(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray,
                       kv_cache: np.ndarray, start: int, kernels: str = "numpy", *, check: bool = True
                       ) -> np.ndarray:
    """Logits (B, T, V) for new tokens ``idx`` (B, T) at positions ``start .. start + T - 1``,
    given the keys and values of positions ``0 .. start - 1`` in ``kv_cache``
    (L, 2, B, NH, S, HS); the new tokens' keys and values are written into it.

    ``start`` may be a (B,) array: each sequence of the batch at its own position, with its own
    history in its row of the cache (sequences of different lengths decoded together, as a server
    batches them).

    The same computation as ``gpt_forward`` on the whole sequence, restricted to the new rows:
    every op except attention works on each position alone, and attention needs the old
    positions only through their keys and values. ``start = 0`` with the whole prompt fills
    the cache ("prefill"); ``start = n`` with one token is one step of generation.
    ``check=False`` skips the input checks (``generate`` checks once, not at every token).

    Example: the prompt, then one more token, give the logits of a full forward pass.

    >>> from llm_from_scratch.models.gpt import init_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> kv = init_kv_cache(cfg, B=1, dtype=np.float64)
    >>> first = gpt_forward_cached(params, cfg, np.array([[1, 2, 3]]), kv, start=0)  # (1, 3, 11)
    >>> last = gpt_forward_cached(params, cfg, np.array([[4]]), kv, start=3)  # (1, 1, 11)
    >>> full = gpt_forward(params, cfg, np.array([[1, 2, 3, 4]]))[0]  # (1, 4, 11)
    >>> bool(np.allclose(first, full[:, :3]) and np.allclose(last, full[:, 3:]))
    True
    """
    K = _ops(params, kernels)
    if check:
        _check_cached_inputs(params, config, idx, kv_cache, start)
    return gpt_logits(params, config, idx, K, kv_cache=kv_cache, start=start)[0]  # (B, T, V)


def _ops(params, kernels: str):
    """The ops for ``params``: ``get_ops(kernels)``, or for quantized weights (``quantize.quantize_params``)
    the same ops with linear layers that read them (``quantize.quantized_ops``)."""
    from llm_from_scratch import quantize

    return quantize.quantized_ops(kernels) if quantize.is_quantized(params) else get_ops(kernels)


def _check_params(params, config: GPTConfig) -> np.dtype:
    """``check_params``, accepting quantized weights beside float32 tensors."""
    from llm_from_scratch import quantize
    from llm_from_scratch.models.gpt import param_shapes

    if quantize.is_quantized(params):
        return quantize.check_quantized_params(params, param_shapes(config))
    return check_params(params, config)


def _check_cached_inputs(params, config, idx, kv_cache, start) -> None:
    """Readable errors for the arguments of ``gpt_forward_cached``."""
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    dtype = _check_params(params, config)
    _check_idx(idx, config)
    B, T = idx.shape
    L, NH, HS = config.n_layer, config.n_head, config.head_size
    if not isinstance(kv_cache, np.ndarray) or kv_cache.ndim != 6 or kv_cache.dtype != dtype \
            or kv_cache.shape[:4] != (L, 2, B, NH) or kv_cache.shape[5] != HS:
        got = f"{kv_cache.dtype} {kv_cache.shape}" if isinstance(kv_cache, np.ndarray) else type(kv_cache).__name__
        raise ValueError(f"kv_cache must be a {dtype} array (L, 2, B, NH, S, HS) = ({L}, 2, {B}, {NH}, S, {HS}), "
                         f"got {got}; make one with init_kv_cache(config, B, dtype=...)")
    S = kv_cache.shape[4]
    if isinstance(start, np.ndarray):
        if start.shape != (B,) or not np.issubdtype(start.dtype, np.integer):
            raise ValueError(f"start must be an integer or a (B,) = ({B},) integer array of positions, one per "
                             f"sequence, got {start.dtype} {start.shape}")
        lowest, highest = int(start.min()), int(start.max())
    elif isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ValueError(f"start must be an integer or a (B,) integer array of positions, got {start!r}")
    else:
        lowest = highest = int(start)
    if not 0 <= lowest <= highest <= S - T:
        raise ValueError(f"start = {start!r} with T = {T} new tokens must fit the cache's S = {S} positions "
                         f"(0 <= start <= S - T = {S - T}); past n_positions, recompute the last "
                         f"{config.n_positions} tokens from start = 0")


# ----------------------------------------------------------------------------------------
# generation and scoring


def generate(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray, max_new_tokens: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             greedy: bool = False, seed: int = 0, use_cache: bool = True, stop_token: int | None = None,
             kernels: str = "numpy") -> np.ndarray:
    """Continue each prompt of ``idx`` (B, T) by ``max_new_tokens`` tokens; returns the prompts
    and their continuations, (B, T + new).

    Each step picks the next token with ``sample_next`` (greedy, or a draw after temperature,
    top-k and top-p) from a ``np.random.default_rng(seed)``, so a seed fixes the output.

    ``use_cache=True`` runs the prompt through ``gpt_forward_cached`` once and then one token
    per step; ``use_cache=False`` recomputes ``gpt_forward`` on the whole sequence each step.
    Both give the same logits up to float rounding, and so the same tokens.

    The model sees at most the last ``n_positions`` tokens: a longer prompt is cropped (the
    returned array still starts with the whole prompt), and once the sequence outgrows
    ``n_positions`` the cache cannot slide (every position would change), so each later step
    recomputes the window of the last ``n_positions`` tokens, as ``use_cache=False`` does.

    ``stop_token``: a row that produces it is finished, and is padded with ``stop_token`` while
    the others go on; generation ends early once every row has finished, so fewer than
    ``max_new_tokens`` columns may be added.

    >>> from llm_from_scratch.models.gpt import init_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> params = init_params(cfg, seed=0)
    >>> prompt = np.array([[1, 2, 3], [4, 5, 6]])
    >>> out = generate(params, cfg, prompt, max_new_tokens=10, top_k=5, seed=1)  # past n_positions = 8
    >>> out.shape, bool((out[:, :3] == prompt).all())
    ((2, 13), True)
    >>> bool((generate(params, cfg, prompt, 10, top_k=5, seed=1, use_cache=False) == out).all())
    True
    """
    if not isinstance(config, GPTConfig):
        raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
    get_ops(kernels)
    dtype = _check_params(params, config)
    if not use_cache and _ops(params, kernels) is not get_ops(kernels):
        raise ValueError("quantized weights decode with the key/value cache only: use_cache=True")
    _check_idx(idx, config)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if stop_token is not None and not (isinstance(stop_token, (int, np.integer)) and not isinstance(stop_token, bool)
                                       and 0 <= stop_token < config.vocab_size):
        raise ValueError(f"stop_token must be None or a token id in [0, {config.vocab_size}), got {stop_token!r}")
    if not greedy:  # check the sampling options before any work
        filter_logits(np.zeros(1), temperature, top_k, top_p)
    rng = np.random.default_rng(seed)
    B, T = idx.shape
    P = config.n_positions
    out = np.empty((B, T + max_new_tokens), dtype=np.int64)  # (B, T + new)
    out[:, :T] = idx
    done = np.zeros(B, dtype=bool)  # (B,) rows that have produced stop_token
    kv = init_kv_cache(config, B, min(P, T + max_new_tokens), dtype) if use_cache else None  # (L, 2, B, NH, S, HS)
    filled = 0  # positions of the cache that hold keys and values

    for n in range(T, T + max_new_tokens):  # n: tokens so far; this step makes token n
        if not use_cache:
            logits = gpt_forward(params, config, out[:, max(0, n - P):n], kernels=kernels)[0]  # (B, <=P, V)
        elif filled == 0 or n > P:  # empty, or the window has slid: (re)compute the last P tokens
            window = out[:, max(0, n - P):n]  # (B, <=P)
            logits = gpt_forward_cached(params, config, window, kv, 0, kernels, check=False)  # (B, <=P, V)
            filled = window.shape[1]
        else:  # the newest token is the only one not yet in the cache
            logits = gpt_forward_cached(params, config, out[:, n - 1:n], kv, filled, kernels,
                                        check=False)  # (B, 1, V)
            filled += 1
        nxt = sample_next(logits[:, -1], rng, temperature, top_k, top_p, greedy)  # (B, V) -> (B,)
        if stop_token is not None:
            nxt = np.where(done, stop_token, nxt)  # (B,) finished rows stay finished
            done |= nxt == stop_token
        out[:, n] = nxt
        if stop_token is not None and done.all():
            return out[:, :n + 1]
    return out


def sequence_logprob(params: dict[str, np.ndarray], config: GPTConfig, idx: np.ndarray, start: int = 1,
                     kernels: str = "numpy") -> np.ndarray:
    """Log-probability the model gives the continuation ``idx[:, start:]`` after the prompt
    ``idx[:, :start]``: sum over t >= start of log p(idx[:, t] | idx[:, :t]), in float64, (B,).

    Divide by the number of tokens, ``T - start``, for the mean log-probability per token
    (its negative is the cross-entropy, its exponential the inverse perplexity). One forward
    pass scores every position at once, so the whole sequence must fit in ``n_positions``.

    Example: an untrained model is close to uniform, so each of 3 tokens costs about
    log(1/11) = -2.40 and the continuation about -7.2.

    >>> from llm_from_scratch.models.gpt import init_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    >>> sequence_logprob(init_params(cfg, seed=0), cfg, np.array([[1, 2, 3, 4, 5]]), start=2).round(2)
    array([-7.09])
    """
    _check_idx(idx, config)
    B, T = idx.shape
    if T > config.n_positions:
        raise ValueError(f"the sequence has T = {T} tokens but the model sees n_positions = {config.n_positions} "
                         f"at once; score idx[:, -{config.n_positions}:] (with start counted from there)")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 1 <= start <= T:
        raise ValueError(f"start must be in [1, T = {T}] (the first token has no prediction to score), "
                         f"got {start!r}")
    logits, _, _ = gpt_forward(params, config, idx, kernels=kernels)  # (B, T, V)
    logp, _ = ops.log_softmax_forward(logits[:, start - 1:T - 1].astype(np.float64))  # (B, T - start, V)
    chosen = np.take_along_axis(logp, idx[:, start:, None], axis=-1)[..., 0]  # (B, T - start)
    return chosen.sum(axis=-1)  # (B,)
