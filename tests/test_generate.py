import numpy as np
import pytest

from llm_from_scratch.generate import (apply_temperature, filter_logits, generate, gpt_forward_cached, greedy_next,
                                       init_kv_cache, kv_cache_bytes, sample_from_logits, sample_next,
                                       sequence_logprob, top_k_filter, top_p_filter)
from llm_from_scratch.models.gpt import GPTConfig, from_pretrained, gpt_forward, param_shapes
from llm_from_scratch.testing import assert_close, random_params

SMALL = GPTConfig(vocab_size=37, n_positions=16, n_embd=16, n_layer=2, n_head=4)


def _random_params(config, seed, dtype=np.float32, scale=0.3):
    """Every entry random, large enough for peaked next-token distributions, so that generated
    sequences depend on the model and not on rounding."""
    return random_params(param_shapes(config), seed, dtype, scale)


def _assert_same_filtered(actual, expected, name):
    """The same tokens filtered out (-inf) and the same values kept."""
    mismatch = np.isfinite(actual) != np.isfinite(expected)
    assert not mismatch.any(), f"{name}: kept sets differ at {np.argwhere(mismatch)[:3].tolist()}"
    keep = np.isfinite(expected)
    assert_close(actual[keep], expected[keep], rtol=0, name=name)


def _probs(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------
# the filters, on logits worked by hand


def test_greedy_and_temperature_by_hand():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 3.0]])
    assert greedy_next(logits).tolist() == [1, 0]  # the first of a tie
    assert greedy_next(logits[0]) == 1  # a single row
    assert_close(apply_temperature(np.array([2.0, 0.0]), 2.0), np.array([1.0, 0.0]), name="logits / 2")
    z = np.array([1.0, -3.0], dtype=np.float32)
    assert apply_temperature(z, 0.7).dtype == np.float32
    # greedy ignores the filters and draws no random numbers
    rng = np.random.default_rng(5)
    assert sample_next(logits, rng, temperature=3.0, top_p=0.5, greedy=True).tolist() == [1, 0]
    assert rng.random() == np.random.default_rng(5).random()


def test_top_k_keeps_k():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    for k, kept in [(1, [0]), (2, [0, 1]), (3, [0, 1, 2]), (4, [0, 1, 2, 3]), (99, [0, 1, 2, 3])]:
        out = top_k_filter(logits, k)
        assert np.flatnonzero(np.isfinite(out)).tolist() == kept, k
        assert_close(out[kept], logits[kept], rtol=0, name=f"kept logits, k={k}")  # unchanged
    # renormalised: 0.5 / 0.8 and 0.3 / 0.8
    assert_close(_probs(top_k_filter(logits, 2)), np.array([0.625, 0.375, 0, 0]), atol=1e-15, name="top-2 probs")
    # ties with the k-th largest logit are all kept, as Hugging Face does
    assert np.isfinite(top_k_filter(np.array([2.0, 1.0, 1.0, 0.0]), 2)).tolist() == [True, True, True, False]
    # row by row, dtype kept
    rows = np.random.default_rng(0).standard_normal((5, 30)).astype(np.float32)
    out = top_k_filter(rows, 7)
    assert out.dtype == np.float32 and (np.isfinite(out).sum(axis=1) == 7).all()
    assert (np.sort(np.where(np.isfinite(out), out, np.inf), axis=1)[:, 0] >= np.sort(rows, axis=1)[:, -7]).all()


def test_top_p_boundaries():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    for p, kept in [(0.4, 1), (0.7, 2), (0.79, 2), (0.81, 3), (0.9, 3), (0.96, 4), (1.0, 4), (1e-9, 1)]:
        assert np.flatnonzero(np.isfinite(top_p_filter(logits, p))).tolist() == list(range(kept)), p
    # exact boundaries: four equal logits have probabilities exactly 1/4, and cumulative sums
    # 1/4, 1/2, 3/4 are exact too. The smallest set reaching p = 1/2 has two tokens, not three.
    flat = np.zeros(4)
    assert np.isfinite(top_p_filter(flat, 0.5)).tolist() == [True, True, False, False]  # ties: lower ids first
    assert np.isfinite(top_p_filter(flat, 0.25)).sum() == 1
    assert np.isfinite(top_p_filter(flat, 0.5 + 1e-12)).sum() == 3
    assert np.isfinite(top_p_filter(flat, 0.75)).sum() == 3
    # tokens already at -inf stay out, even at p = 1
    masked = np.array([0.0, -np.inf, 1.0, -np.inf])
    assert np.isfinite(top_p_filter(masked, 1.0)).tolist() == [True, False, True, False]
    assert np.isfinite(top_p_filter(masked, 0.99)).tolist() == [True, False, True, False]
    # on random rows: always at least one token, the kept set reaches p, and is the smallest that does
    rng = np.random.default_rng(1)
    rows = (2 * rng.standard_normal((200, 50))).astype(np.float32)
    for p in (0.01, 0.3, 0.9, 0.999):
        out = top_p_filter(rows, p)
        assert out.dtype == np.float32
        probs = _probs(rows.astype(np.float64))
        keep = np.isfinite(out)
        assert keep.any(axis=1).all()
        kept_mass = np.where(keep, probs, 0).sum(axis=1)
        smallest_kept = np.where(keep, probs, np.inf).min(axis=1)
        assert (kept_mass >= p - 1e-12).all(), p
        assert (kept_mass - smallest_kept < p).all(), p
        # the kept tokens are the most likely ones
        assert (np.where(keep, -np.inf, probs).max(axis=1) <= smallest_kept).all()


def test_filters_compose_in_hugging_face_order():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.isfinite(filter_logits(logits, top_p=0.9)).sum() == 3
    # temperature 0.5 squares and renormalises the probabilities: 0.685, 0.247, ...; 0.685 + 0.247 >= 0.9
    assert np.isfinite(filter_logits(logits, temperature=0.5, top_p=0.9)).sum() == 2
    rows = np.random.default_rng(2).standard_normal((8, 40))
    expected = top_p_filter(top_k_filter(apply_temperature(rows, 0.7), 10), 0.8)
    _assert_same_filtered(filter_logits(rows, 0.7, 10, 0.8), expected, name="temperature -> top-k -> top-p")
    _assert_same_filtered(filter_logits(rows), rows, name="no filter")


def test_temperature_to_zero_approaches_greedy():
    logits = np.array([1.0, 0.9, 0.5, -2.0])
    p_max = [_probs(apply_temperature(logits, t))[0] for t in (2.0, 1.0, 0.3, 0.1, 0.03, 0.01)]
    assert all(a < b for a, b in zip(p_max, p_max[1:])), p_max
    assert p_max[-1] > 1 - 1e-4
    draws = sample_next(np.tile(logits, (1000, 1)), np.random.default_rng(0), temperature=0.005)
    assert (draws == 0).all()
    # and large temperatures approach uniform
    assert_close(_probs(apply_temperature(logits, 1e6)), np.full(4, 0.25), atol=1e-6, name="uniform")


def test_sampling_follows_the_probabilities():
    probs = np.array([0.5, 0.3, 0.2, 0.0])
    with np.errstate(divide="ignore"):
        logits = np.tile(np.log(probs), (40_000, 1))  # log 0 = -inf
    draws = sample_from_logits(logits, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert freq[3] == 0  # probability 0 is never drawn
    assert np.abs(freq - probs).max() < 0.01, freq  # ~4 standard errors
    # top-k then sampling draws only from the k kept tokens
    draws = sample_next(logits[:2000], np.random.default_rng(1), top_k=2)
    assert set(draws.tolist()) == {0, 1}
    assert (sample_from_logits(logits[:50], np.random.default_rng(7)) ==
            sample_from_logits(logits[:50], np.random.default_rng(7))).all()


def test_bad_options_give_clear_errors():
    logits = np.zeros((2, 5))
    for t in (0, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="greedy"):
            apply_temperature(logits, t)
    for p in (0, 0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
            top_p_filter(logits, p)
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
            top_k_filter(logits, k)
    with pytest.raises(ValueError, match="float32 or float64"):
        greedy_next(np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="rng=np.random.default_rng"):
        sample_next(logits)

    params = _random_params(SMALL, 0)
    prompt = np.array([[1, 2, 3]])
    with pytest.raises(ValueError, match="greedy"):
        generate(params, SMALL, prompt, 3, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        generate(params, SMALL, prompt, 3, top_p=2.0)
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 37\), got 40 at position \[0, 1\]"):
        generate(params, SMALL, np.array([[1, 40]]), 3)
    with pytest.raises(ValueError, match="idx\\[None, :\\]"):
        generate(params, SMALL, np.array([1, 2]), 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(params, SMALL, prompt, -1)
    with pytest.raises(ValueError, match="stop_token"):
        generate(params, SMALL, prompt, 3, stop_token=37)
    with pytest.raises(ValueError, match="kernels must be one of"):
        generate(params, SMALL, prompt, 3, kernels="cuda")
    kv = init_kv_cache(SMALL, B=1, S=4)
    with pytest.raises(ValueError, match="must fit the cache's S = 4 positions"):
        gpt_forward_cached(params, SMALL, prompt, kv, start=2)
    with pytest.raises(ValueError, match="init_kv_cache"):
        gpt_forward_cached(params, SMALL, prompt, init_kv_cache(SMALL, B=2), start=0)
    with pytest.raises(ValueError, match="init_kv_cache"):
        gpt_forward_cached(params, SMALL, prompt, init_kv_cache(SMALL, B=1, dtype=np.float64), start=0)
    with pytest.raises(ValueError, match="1 <= S <= n_positions = 16"):
        init_kv_cache(SMALL, B=1, S=17)
    with pytest.raises(ValueError, match="n_positions = 16"):
        sequence_logprob(params, SMALL, np.zeros((1, 17), dtype=int))
    with pytest.raises(ValueError, match="start must be in"):
        sequence_logprob(params, SMALL, prompt, start=0)


# ----------------------------------------------------------------------------------------
# the key/value cache


def test_kv_cache_bytes_is_the_array_size():
    for dtype in (np.float32, np.float64):
        kv = init_kv_cache(SMALL, B=3, S=10, dtype=dtype)
        assert kv.shape == (2, 2, 3, 4, 10, 4)
        assert kv.nbytes == kv_cache_bytes(SMALL, B=3, T=10, dtype=dtype)
    assert kv_cache_bytes(GPTConfig(), 1, 1024) == 2 * 4 * 12 * 12 * 64 * 1024


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
def test_cached_logits_equal_the_full_forward_at_every_step(dtype, tol):
    params = _random_params(SMALL, 1, dtype)
    rng = np.random.default_rng(2)
    seq = rng.integers(0, SMALL.vocab_size, size=(3, SMALL.n_positions))  # (B, P)
    kv = init_kv_cache(SMALL, B=3, dtype=dtype)
    full, _, _ = gpt_forward(params, SMALL, seq)  # (B, P, V)
    T0 = 5
    logits = gpt_forward_cached(params, SMALL, seq[:, :T0], kv, start=0)  # prefill
    assert logits.dtype == dtype
    assert_close(logits, full[:, :T0], rtol=tol, atol=tol, name="prefill logits")
    for n in range(T0, SMALL.n_positions):  # then one token at a time
        step = gpt_forward_cached(params, SMALL, seq[:, n:n + 1], kv, start=n)  # (B, 1, V)
        # each step against a full forward of the sequence so far (the causal mask makes
        # the rows of `full` the same numbers)
        assert_close(step[:, 0], gpt_forward(params, SMALL, seq[:, :n + 1])[0][:, -1], rtol=tol, atol=tol,
                     name=f"logits at step {n}")
        assert_close(step[:, 0], full[:, n], rtol=tol, atol=tol, name=f"logits at step {n}")
    # chunks of several tokens at a time after the prefill give the same logits too
    kv2 = init_kv_cache(SMALL, B=3, dtype=dtype)
    parts = [gpt_forward_cached(params, SMALL, seq[:, a:b], kv2, start=a) for a, b in [(0, 3), (3, 9), (9, 16)]]
    assert_close(np.concatenate(parts, axis=1), full, rtol=tol, atol=tol, name="chunked logits")
    assert_close(kv2, kv, rtol=tol, atol=tol, name="cached keys and values")


SAMPLING = [dict(greedy=True), dict(), dict(temperature=0.8, top_k=10, top_p=0.9), dict(temperature=1.5, top_p=0.7)]


@pytest.mark.parametrize("options", SAMPLING, ids=["greedy", "sample", "t0.8-k10-p0.9", "t1.5-p0.7"])
def test_generate_with_and_without_cache_token_for_token(options):
    params = _random_params(SMALL, 3)
    rng = np.random.default_rng(4)
    # prompts of 1, 4 and 20 tokens (20 > n_positions = 16: cropped), generating past n_positions
    for seed, (B, T, new) in enumerate([(3, 1, 12), (2, 4, 20), (3, 20, 6)]):
        prompt = rng.integers(0, SMALL.vocab_size, size=(B, T))
        cached = generate(params, SMALL, prompt, new, seed=seed, use_cache=True, **options)
        plain = generate(params, SMALL, prompt, new, seed=seed, use_cache=False, **options)
        assert cached.shape == (B, T + new) and cached.dtype == np.int64
        assert (cached[:, :T] == prompt).all()
        assert (cached == plain).all(), f"B, T, new = {B, T, new}: first difference at " \
                                        f"{np.argwhere(cached != plain)[0]}"
        assert len(set(map(tuple, cached[:, T:].tolist()))) > 1 or B == 1  # rows differ: not a trivial test


def test_sampled_generation_depends_on_the_seed_only():
    params = _random_params(SMALL, 3)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = generate(params, SMALL, prompt, 15, seed=11)
    assert (a == generate(params, SMALL, prompt, 15, seed=11)).all()
    assert (a != generate(params, SMALL, prompt, 15, seed=12)).any()


def test_generation_past_n_positions_recomputes_the_window():
    params = _random_params(SMALL, 5, np.float64)
    P = SMALL.n_positions
    prompt = np.random.default_rng(6).integers(0, SMALL.vocab_size, size=(2, P + 3))  # longer than P
    out = generate(params, SMALL, prompt, 10, greedy=True)
    seq = prompt.copy()  # the same by hand: the last P tokens, argmax, append
    for _ in range(10):
        logits, _, _ = gpt_forward(params, SMALL, seq[:, -P:])
        seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None]], axis=1)
    assert (out == seq).all()


def test_stop_token_pads_finished_rows_and_ends_early():
    params = _random_params(SMALL, 7)
    prompt = np.array([[1, 2, 3], [7, 8, 9]])
    free = generate(params, SMALL, prompt, 12, greedy=True)
    stop = int(free[0, 5])  # row 0's third new token
    out = generate(params, SMALL, prompt, 12, greedy=True, stop_token=stop)
    first = [int(np.flatnonzero(r[3:] == stop)[0]) + 3 if (r[3:] == stop).any() else None for r in free]
    end = max(f for f in first if f is not None) + 1 if None not in first else free.shape[1]
    assert out.shape == (2, end)
    for b, f in enumerate(first):
        if f is None:
            assert (out[b] == free[b, :end]).all()
        else:
            assert (out[b, :f + 1] == free[b, :f + 1]).all() and (out[b, f:] == stop).all()
    assert generate(params, SMALL, prompt, 0).shape == (2, 3)


def test_numba_kernels_match_numpy():
    params = _random_params(SMALL, 8)
    prompt = np.random.default_rng(9).integers(0, SMALL.vocab_size, size=(2, 5))
    kv_np, kv_nb = init_kv_cache(SMALL, B=2), init_kv_cache(SMALL, B=2)
    a = gpt_forward_cached(params, SMALL, prompt, kv_np, 0)
    b = gpt_forward_cached(params, SMALL, prompt, kv_nb, 0, kernels="numba")
    assert_close(b, a, rtol=1e-5, atol=1e-5, name="numba prefill logits")
    a = gpt_forward_cached(params, SMALL, prompt[:, :1], kv_np, 5)
    b = gpt_forward_cached(params, SMALL, prompt[:, :1], kv_nb, 5, kernels="numba")
    assert_close(b, a, rtol=1e-5, atol=1e-5, name="numba step logits")
    out = generate(params, SMALL, prompt, 15, top_k=8, seed=2)
    assert (generate(params, SMALL, prompt, 15, top_k=8, seed=2, kernels="numba") == out).all()


# ----------------------------------------------------------------------------------------
# scoring


def test_sequence_logprob_sums_the_next_token_log_probabilities():
    params = _random_params(SMALL, 10, np.float64)
    idx = np.random.default_rng(11).integers(0, SMALL.vocab_size, size=(3, 9))
    logits, _, _ = gpt_forward(params, SMALL, idx)
    logp = np.log(_probs(logits))  # (B, T, V)
    for start in (1, 4, 9):
        expected = sum(logp[np.arange(3), t - 1, idx[:, t]] for t in range(start, 9)) if start < 9 else np.zeros(3)
        assert_close(sequence_logprob(params, SMALL, idx, start=start), expected, rtol=1e-12, atol=1e-12,
                     name=f"log-probability from {start}")
    # with start = 1 it is minus the summed cross-entropy of gpt_forward
    targets = np.concatenate([idx[:, 1:], np.full((3, 1), -100)], axis=1)
    _, loss, _ = gpt_forward(params, SMALL, idx, targets)
    assert_close(-sequence_logprob(params, SMALL, idx).sum() / (3 * 8), loss, rtol=1e-12, name="mean loss")
    # greedy decoding takes the most likely token at every step, so its continuation scores the
    # sum of the per-step maxima
    greedy = generate(params, SMALL, idx[:, :3], 6, greedy=True)
    logp = np.log(_probs(gpt_forward(params, SMALL, greedy)[0]))  # (B, 9, V)
    assert_close(sequence_logprob(params, SMALL, greedy, start=3), logp[:, 2:8].max(axis=-1).sum(axis=-1),
                 rtol=1e-12, name="greedy continuation")


# ----------------------------------------------------------------------------------------
# parity with Hugging Face transformers


def _hf_model(torch, transformers, seed=0):
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                                  eos_token_id=None)
    model = transformers.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parity
def test_greedy_generation_matches_transformers(torch, transformers, tmp_path):
    model = _hf_model(torch, transformers)
    model.save_pretrained(tmp_path)
    params, cfg = from_pretrained(tmp_path)
    rng = np.random.default_rng(0)
    for B, T in [(1, 1), (3, 5), (2, 12)]:
        prompt = rng.integers(0, cfg.vocab_size, size=(B, T))
        new = cfg.n_positions - T  # up to the last position the model knows
        ids = torch.tensor(prompt)
        for hf_cache in (True, False):
            with torch.no_grad():
                hf = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False,
                                    pad_token_id=0, use_cache=hf_cache).numpy()
            for use_cache in (True, False):
                ours = generate(params, cfg, prompt, new, greedy=True, use_cache=use_cache)
                assert ours.shape == hf.shape
                assert (ours == hf).all(), f"B, T = {B, T}, HF use_cache={hf_cache}, ours {use_cache}: first " \
                                           f"difference at {np.argwhere(ours != hf)[0]}"


@pytest.mark.parity
def test_filters_match_transformers_warpers(torch, transformers):
    lp = transformers.generation.logits_process
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((16, 200))).astype(np.float32)  # (B, V)
    ids = torch.zeros((16, 1), dtype=torch.long)  # the warpers ignore input_ids
    cases = [dict(temperature=0.7), dict(top_k=1), dict(top_k=13), dict(top_k=500), dict(top_p=0.05),
             dict(top_p=0.5), dict(top_p=0.95), dict(temperature=1.3, top_k=40, top_p=0.8),
             dict(temperature=0.5, top_k=20, top_p=0.6)]
    for case in cases:
        warpers = lp.LogitsProcessorList()
        if "temperature" in case:
            warpers.append(lp.TemperatureLogitsWarper(case["temperature"]))
        if "top_k" in case:
            warpers.append(lp.TopKLogitsWarper(case["top_k"]))
        if "top_p" in case:
            warpers.append(lp.TopPLogitsWarper(case["top_p"]))
        expected = warpers(ids, torch.tensor(logits)).numpy()
        ours = filter_logits(logits, **case)
        assert ours.dtype == np.float32
        mismatch = np.isfinite(ours) != np.isfinite(expected)
        assert not mismatch.any(), f"{case}: kept sets differ at {np.argwhere(mismatch)[:3].tolist()}"
        assert_close(_probs(ours.astype(np.float64)), _probs(expected.astype(np.float64)), rtol=1e-6, atol=1e-7,
                     name=f"filtered distribution {case}")


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_sequences_at_different_positions_decode_together_as_alone(kernels):
    """Two prompts of different lengths, each prefilled into its own row of one cache, then
    decoded together one token per step with a (B,) array of positions: every step's logits equal
    those of each sequence decoded alone."""
    params = _random_params(SMALL, 11, np.float64)
    prompts = [np.array([[3, 1, 4, 1, 5]]), np.array([[9, 2]])]
    new = np.array([[7], [8]])  # the next token of each
    kv = init_kv_cache(SMALL, B=2, dtype=np.float64)
    alone = []
    for b, prompt in enumerate(prompts):
        one = init_kv_cache(SMALL, B=1, dtype=np.float64)
        gpt_forward_cached(params, SMALL, prompt, one, start=0, kernels=kernels)  # prefill on its own
        kv[:, :, b] = one[:, :, 0]  # the batch cache's row b holds this sequence's history
        alone.append(gpt_forward_cached(params, SMALL, new[b:b + 1], one, start=prompt.shape[1], kernels=kernels))
    starts = np.array([p.shape[1] for p in prompts])
    together = gpt_forward_cached(params, SMALL, new, kv, start=starts, kernels=kernels)  # (2, 1, V)
    for b in range(2):
        assert_close(together[b:b + 1], alone[b], rtol=1e-10, atol=1e-12, name=f"sequence {b}")
    with pytest.raises(ValueError, match=r"\(B,\) = \(2,\) integer array"):
        gpt_forward_cached(params, SMALL, new, kv, start=np.array([1, 2, 3]))
