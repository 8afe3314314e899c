import time

import numpy as np
import pytest

from llm_from_scratch.models.bart import BartConfig, from_pretrained, init_params, param_shapes, save_pretrained
from llm_from_scratch.seq2seq import beam_search, generate, greedy_search

CFG = BartConfig(vocab_size=29, max_position_embeddings=24, d_model=16, encoder_layers=2, encoder_attention_heads=2,
                 encoder_ffn_dim=24, decoder_layers=3, decoder_attention_heads=4, decoder_ffn_dim=20, dropout=0.0)


def _params(config=CFG, seed=2, scale=0.8, eos_bias=2.2):
    """Random weights with the end token's logit raised by ``eos_bias``: with seed 2 the outputs
    of SOURCES end at different steps (one right away, others at max_length), and beam search with
    and without early stopping disagree, so the tests below see every branch of the search."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        value = rng.standard_normal(shape)  # float64
        if "norm" in name:
            value = 1 + 0.3 * value if name.endswith("weight") else 0.05 * value
        elif name == "final_logits_bias":
            value = 0.1 * value
            value[0, config.eos_token_id] += eos_bias
        else:
            value = scale * value
        params[name] = value
    return params


def _sources():
    """Four sources of lengths 9, 6, 4 and 7, padded with <pad> = 1 to 9."""
    rng = np.random.default_rng(0)
    src = rng.integers(3, CFG.vocab_size, size=(4, 9))  # (B, S)
    mask = np.ones_like(src)  # (B, S)
    for i, length in enumerate([9, 6, 4, 7]):
        mask[i, length:] = 0
        src[i, length:] = CFG.pad_token_id
    return src, mask


def _ended_at(out, eos=2):
    """The step at which each output produced eos (1 = the first generated token), -1 if never."""
    return [int(np.argmax(row[1:] == eos)) + 1 if (row[1:] == eos).any() else -1 for row in out]


def test_the_test_model_exercises_early_ends_and_early_stopping():
    params, (src, mask) = _params(), _sources()
    greedy = greedy_search(params, CFG, src, mask, max_new_tokens=12)
    early = beam_search(params, CFG, src, mask, num_beams=4, early_stopping=True, max_new_tokens=12)
    late = beam_search(params, CFG, src, mask, num_beams=4, early_stopping=False, max_new_tokens=12)
    print("steps at which eos came: greedy", _ended_at(greedy), "beam 4 early", _ended_at(early), "beam 4 late",
          _ended_at(late))
    assert greedy.shape == (4, 13) and greedy[:, 0].tolist() == [2] * 4
    assert len(set(_ended_at(greedy) + _ended_at(early) + _ended_at(late))) >= 4
    assert np.all(greedy[2, 2:] == CFG.pad_token_id)  # ended at once, then only padding
    assert not np.array_equal(early, late) and not np.array_equal(greedy, early)


@pytest.mark.parametrize("max_new_tokens", [3, 12])
def test_beam_of_one_is_greedy(max_new_tokens):
    params, (src, mask) = _params(), _sources()
    greedy = greedy_search(params, CFG, src, mask, max_new_tokens=max_new_tokens)
    for options in (dict(early_stopping=True), dict(early_stopping=False, length_penalty=0.0),
                    dict(early_stopping="never", length_penalty=0.0)):
        beams = beam_search(params, CFG, src, mask, num_beams=1, max_new_tokens=max_new_tokens, **options)
        assert np.array_equal(beams, greedy), options


def test_with_and_without_the_cache_the_same_tokens():
    params, (src, mask) = _params(), _sources()
    for num_beams, options in [(1, {}), (4, dict(early_stopping=False)), (3, dict(num_return_sequences=2))]:
        cached = generate(params, CFG, src, mask, num_beams=num_beams, max_new_tokens=10, **options)
        full = generate(params, CFG, src, mask, num_beams=num_beams, max_new_tokens=10, use_cache=False, **options)
        numba = generate(params, CFG, src, mask, num_beams=num_beams, max_new_tokens=10, kernels="numba", **options)
        assert np.array_equal(cached, full) and np.array_equal(cached, numba), num_beams


def test_a_padded_batch_decodes_each_source_as_if_alone():
    params, (src, mask) = _params(), _sources()
    for num_beams in (1, 4):
        batch = generate(params, CFG, src, mask, num_beams=num_beams, max_new_tokens=8)
        for i in range(len(src)):
            alone = generate(params, CFG, src[i:i + 1, :mask[i].sum()], num_beams=num_beams, max_new_tokens=8)[0]
            row = batch[i]
            assert np.array_equal(row[:len(alone)], alone), (num_beams, i)
            assert np.all(row[len(alone):] == CFG.pad_token_id)


def test_options_and_errors():
    params, (src, mask) = _params(), _sources()
    assert generate(params, CFG, src, mask).shape[1] <= 20  # Hugging Face's default max_length
    assert generate(params, CFG, src, mask, max_length=5).shape == (4, 5)
    out = generate(params, CFG, src, mask, max_new_tokens=6, eos_token_id=None, forced_eos_token_id=None)
    assert out.shape == (4, 7)  # without an end token every output runs to max_length
    out = generate(params, CFG, src, mask, max_new_tokens=6, forced_bos_token_id=0)
    assert np.all(out[:, 1] == 0)
    assert np.all(generate(params, CFG, src, mask, max_new_tokens=6, num_beams=2)[:, 0] == 2)
    for kwargs, message in [(dict(num_beams=0), "num_beams must be a positive integer"),
                            (dict(num_beams=2, early_stopping="sometimes"), "early_stopping must be True, False or"),
                            (dict(num_beams=2, num_return_sequences=3), r"num_return_sequences must be in \[1, "),
                            (dict(num_return_sequences=2), "greedy search"),
                            (dict(max_length=26), r"max_length must be an integer in \[2, "),
                            (dict(max_new_tokens=0), "max_new_tokens must be a positive integer"),
                            (dict(eos_token_id=29), r"eos_token_id must be None or a token id in \[0, 29\)")]:
        with pytest.raises(ValueError, match=message):
            generate(params, CFG, src, mask, **kwargs)
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        generate(params, CFG, src, mask[:, :3])


def test_cache_speeds_up_decoding():
    """A side-by-side timing (printed): greedy decoding of 32 tokens with and without the cache,
    on a small model; the tokens are the same."""
    cfg = BartConfig(vocab_size=256, max_position_embeddings=64, d_model=64, encoder_layers=2,
                     encoder_attention_heads=4, encoder_ffn_dim=256, decoder_layers=2, decoder_attention_heads=4,
                     decoder_ffn_dim=256, dropout=0.0)
    params = init_params(cfg, seed=0)
    src = np.random.default_rng(1).integers(3, cfg.vocab_size, size=(2, 32))
    options = dict(max_new_tokens=32, eos_token_id=None, forced_eos_token_id=None)
    times, outs = {}, {}
    for use_cache in (True, False):
        start = time.perf_counter()
        outs[use_cache] = generate(params, cfg, src, use_cache=use_cache, **options)
        times[use_cache] = time.perf_counter() - start
    assert np.array_equal(outs[True], outs[False]) and outs[True].shape == (2, 33)
    tokens = 2 * 32
    print(f"greedy, 2 x 32 tokens, C=64, 2+2 layers: cache {tokens / times[True]:.0f} tok/s, no cache "
          f"{tokens / times[False]:.0f} tok/s ({times[False] / times[True]:.1f}x)")


# ----------------------------------------------------------------------------------------
# parity with transformers' generate


GENERATE_SETTINGS = [
    dict(num_beams=1),
    dict(num_beams=4, early_stopping=True),
    dict(num_beams=4, early_stopping=False),
    dict(num_beams=4, early_stopping="never", length_penalty=2.0),
    dict(num_beams=3, length_penalty=-0.5, num_return_sequences=2),
]


@pytest.fixture(scope="module")
def hf_bart(tmp_path_factory):
    """The test model saved by us and loaded by transformers, in float64."""
    from tests.conftest import reference
    torch, transformers = reference("torch"), reference("transformers")
    transformers.logging.set_verbosity_error()
    folder = tmp_path_factory.mktemp("bart")
    save_pretrained(_params(), CFG, folder)
    model = transformers.BartForConditionalGeneration.from_pretrained(folder, dtype=torch.float64).eval()
    return torch, model, folder


@pytest.mark.parity
@pytest.mark.parametrize("settings", GENERATE_SETTINGS, ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
@pytest.mark.parametrize("max_new_tokens", [5, 12])
def test_generate_matches_transformers(hf_bart, settings, max_new_tokens):
    torch, model, folder = hf_bart
    params, config = from_pretrained(folder)
    src, mask = _sources()
    ours = generate(params, config, src, mask, max_new_tokens=max_new_tokens, **settings)
    with torch.no_grad():
        theirs = model.generate(torch.tensor(src), attention_mask=torch.tensor(mask), max_new_tokens=max_new_tokens,
                                do_sample=False, **settings).numpy()
    print(settings, max_new_tokens, "eos at steps", _ended_at(ours))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs), f"ours\n{ours}\ntransformers\n{theirs}"
