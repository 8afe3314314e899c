import dataclasses
import json

import numpy as np
import pytest

from llm_from_scratch import safetensors
from llm_from_scratch.models.gpt import (GPTConfig, check_params, flops_per_token, from_pretrained, gpt_backward,
                                         gpt_forward, init_params, num_params, param_shapes, save_pretrained)
from llm_from_scratch.optim import AdamW, decays
from llm_from_scratch.testing import assert_close, check_param_gradients, random_params

TINY = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)


def _random_params(config, seed, dtype=np.float64, scale=0.3):
    """Every entry random (biases and LayerNorms too): no gradient path hides behind a 0 or a 1."""
    return random_params(param_shapes(config), seed, dtype, scale)


def _batch(rng, config, B, T):
    idx = rng.integers(0, config.vocab_size, size=(B, T))  # (B, T)
    targets = np.concatenate([idx[:, 1:], rng.integers(0, config.vocab_size, size=(B, 1))], axis=1)  # (B, T)
    targets[0, 2] = -100  # an ignored position
    return idx, targets


# ----------------------------------------------------------------------------------------
# counts


def test_num_params_matches_the_parameter_dict():
    for cfg in (TINY, GPTConfig(vocab_size=100, n_positions=16, n_embd=12, n_layer=3, n_head=3)):
        params = init_params(cfg)
        assert num_params(cfg) == sum(p.size for p in params.values())
        embeddings = params["transformer.wte.weight"].size + params["transformer.wpe.weight"].size
        assert num_params(cfg, non_embedding=True) == num_params(cfg) - embeddings
    # GPT-2 small, medium: the counts Hugging Face reports for gpt2 and gpt2-medium
    assert num_params(GPTConfig()) == 124_439_808
    assert num_params(GPTConfig(n_embd=1024, n_layer=24, n_head=16)) == 354_823_168


def test_flops_per_token_is_three_forward_passes_of_matmuls():
    cfg = GPTConfig(vocab_size=50, n_positions=32, n_embd=16, n_layer=3, n_head=4)
    V, C, L, T = cfg.vocab_size, cfg.n_embd, cfg.n_layer, 20
    # per token, per block: c_attn, q k^T over T keys, p v over T keys, attn c_proj, c_fc, mlp c_proj;
    # then the tied head. A (1, k) @ (k, n) product is 2 k n FLOPs.
    per_block = 2 * C * 3 * C + 2 * T * C + 2 * T * C + 2 * C * C + 2 * C * 4 * C + 2 * 4 * C * C
    forward = L * per_block + 2 * C * V
    # backward costs twice the forward; 6 N also counts biases and LayerNorms (13 C per block, 2 C for ln_f)
    assert flops_per_token(cfg, T) == 3 * forward + 6 * (13 * C * L + 2 * C)
    with pytest.raises(ValueError, match="n_positions = 32"):
        flops_per_token(cfg, 33)


def test_init_params_statistics_and_seeds():
    cfg = GPTConfig(vocab_size=300, n_positions=64, n_embd=64, n_layer=4, n_head=4)
    params = init_params(cfg, seed=3)
    for name, p in params.items():
        if ".ln_" in name or ".ln_f." in name:
            expected = 1.0 if name.endswith("weight") else 0.0
            assert np.all(p == expected), name
        elif name.endswith(".bias"):
            assert np.all(p == 0), name
        else:
            std = 0.02 / np.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
            assert abs(p.std() / std - 1) < 0.06, f"{name}: std {p.std():.5f}, expected {std:.5f}"
            assert abs(p.mean()) < 4 * std / np.sqrt(p.size), name
    again = init_params(cfg, seed=3, dtype=np.float64)
    for name, p in params.items():
        assert p.dtype == np.float32 and again[name].dtype == np.float64
        assert_close(p, again[name].astype(np.float32), rtol=0, name=name)  # same draws, cast
    assert not np.array_equal(init_params(cfg, seed=4)["transformer.wte.weight"], params["transformer.wte.weight"])


# ----------------------------------------------------------------------------------------
# gradients




def test_whole_model_gradcheck_float64():
    rng = np.random.default_rng(0)
    params = _random_params(TINY, seed=1)
    idx, targets = _batch(rng, TINY, B=2, T=5)
    logits, loss, cache = gpt_forward(params, TINY, idx, targets)
    grads = gpt_backward(cache)
    assert list(grads) == list(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float64 for k in params)
    assert np.all(grads["transformer.wpe.weight"][5:] == 0)  # positions 5..7 were never used
    check_param_gradients(params, lambda: float(gpt_forward(params, TINY, idx, targets)[1]), grads)


def test_whole_model_gradcheck_with_random_upstream_and_dropout():
    # L = sum(logits * dout) for a random dout, with dropout on: each call redraws the same masks
    cfg = dataclasses.replace(TINY, resid_pdrop=0.2, embd_pdrop=0.3)
    rng = np.random.default_rng(1)
    params = _random_params(cfg, seed=2)
    idx, _ = _batch(rng, cfg, B=2, T=4)

    def logits():
        return gpt_forward(params, cfg, idx, train=True, rng=np.random.default_rng(7))[0]

    dout = rng.standard_normal(logits().shape)
    _, _, cache = gpt_forward(params, cfg, idx, train=True, rng=np.random.default_rng(7))
    grads = gpt_backward(cache, dlogits=dout)
    check_param_gradients(params, lambda: float(np.sum(logits() * dout)), grads)
    # the masks really drop something, and evaluation mode does not
    assert not np.allclose(logits(), gpt_forward(params, cfg, idx)[0])


def test_backward_leaves_its_inputs_alone_and_dloss_scales():
    rng = np.random.default_rng(2)
    params = _random_params(TINY, seed=3)
    idx, targets = _batch(rng, TINY, B=2, T=6)
    before = {k: v.copy() for k, v in params.items()}
    _, _, cache = gpt_forward(params, TINY, idx, targets)
    g1 = gpt_backward(cache)
    g2 = gpt_backward(cache, dloss=2.0)  # the cache can be used twice
    for k in params:
        assert_close(g2[k], 2 * g1[k], rtol=1e-12, atol=1e-15, name=k)
        assert np.array_equal(params[k], before[k])
    dlogits = rng.standard_normal((2, 6, TINY.vocab_size))
    kept = dlogits.copy()
    gpt_backward(cache, dlogits=dlogits)
    assert np.array_equal(dlogits, kept)


def test_causal_logits_ignore_the_future():
    rng = np.random.default_rng(3)
    params = _random_params(TINY, seed=4)
    idx = rng.integers(0, TINY.vocab_size, size=(2, 7))
    changed = idx.copy()
    changed[:, 4:] = (changed[:, 4:] + 1) % TINY.vocab_size
    a, _, _ = gpt_forward(params, TINY, idx)
    b, _, _ = gpt_forward(params, TINY, changed)
    assert_close(a[:, :4], b[:, :4], rtol=1e-12, atol=1e-14)
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-3


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 2e-5)])
def test_numba_kernels_match_numpy(dtype, tol):
    cfg = GPTConfig(vocab_size=37, n_positions=16, n_embd=16, n_layer=2, n_head=4)
    rng = np.random.default_rng(4)
    params = _random_params(cfg, seed=5, dtype=dtype)
    idx, targets = _batch(rng, cfg, B=3, T=16)
    ref_logits, ref_loss, ref_cache = gpt_forward(params, cfg, idx, targets, kernels="numpy")
    logits, loss, cache = gpt_forward(params, cfg, idx, targets, kernels="numba")
    assert logits.dtype == dtype and np.asarray(loss).dtype == dtype
    assert_close(logits, ref_logits, rtol=tol, atol=tol, name="logits")
    assert_close(loss, ref_loss, rtol=tol, name="loss")
    ref_grads, grads = gpt_backward(ref_cache), gpt_backward(cache)
    for name in params:
        scale = float(np.abs(ref_grads[name]).max())
        assert_close(grads[name], ref_grads[name], rtol=tol, atol=tol * scale, name=f"gradient of {name}")


def test_numba_option_routes_attention_through_the_kernel(monkeypatch):
    # the numba namespace's attention (the kernel) is what kernels="numba" calls, both ways
    from llm_from_scratch.kernels import attention as kernel
    from llm_from_scratch.kernels.backend import get_ops

    calls = []
    K = get_ops("numba")
    assert K.attention_forward is kernel.attention_forward and K.attention_backward is kernel.attention_backward

    def fwd(q, k, v, causal=True, key_mask=None):
        calls.append("forward")
        return kernel.attention_forward(q, k, v, causal=causal, key_mask=key_mask)

    def bwd(dout, cache):
        calls.append("backward")
        return kernel.attention_backward(dout, cache)

    monkeypatch.setattr(K, "attention_forward", fwd)
    monkeypatch.setattr(K, "attention_backward", bwd)
    params = _random_params(TINY, seed=6)
    idx, targets = _batch(np.random.default_rng(5), TINY, B=2, T=5)
    _, loss, cache = gpt_forward(params, TINY, idx, targets, kernels="numba")
    gpt_backward(cache)
    assert calls == ["forward"] * TINY.n_layer + ["backward"] * TINY.n_layer
    assert_close(loss, gpt_forward(params, TINY, idx, targets)[1], rtol=1e-12, name="loss")


def test_numba_option_routes_every_linear_layer_through_the_twin(monkeypatch):
    # the attention's c_attn and c_proj too (attention.mha_forward receives the numba namespace)
    from llm_from_scratch.kernels.backend import get_ops

    calls = []
    K = get_ops("numba")
    for name in ("linear_forward", "linear_backward"):
        original = getattr(K, name)
        monkeypatch.setattr(K, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    params = _random_params(TINY, seed=7)
    idx, targets = _batch(np.random.default_rng(6), TINY, B=2, T=5)
    _, loss, cache = gpt_forward(params, TINY, idx, targets, kernels="numba")
    grads = gpt_backward(cache)
    per_pass = 4 * TINY.n_layer + 1  # c_attn, attn c_proj, c_fc, mlp c_proj per block; the head
    assert calls == ["linear_forward"] * per_pass + ["linear_backward"] * per_pass
    ref_grads = gpt_backward(gpt_forward(params, TINY, idx, targets)[2])
    assert_close(grads["transformer.wte.weight"], ref_grads["transformer.wte.weight"], rtol=1e-10, atol=1e-12,
                 name="gradient of the tied wte")


# ----------------------------------------------------------------------------------------
# errors


def test_bad_inputs_give_clear_errors():
    params = init_params(TINY)
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 11\), got 11 at position \(1, 2\)"):
        gpt_forward(params, TINY, np.array([[1, 2, 3], [4, 5, 11]]))
    with pytest.raises(ValueError, match=r"T = 9 must be in \[1, n_positions = 8\].*idx\[:, -8:\]"):
        gpt_forward(params, TINY, np.zeros((1, 9), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(B, T\) integer"):
        gpt_forward(params, TINY, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        gpt_forward(params, TINY, np.zeros((1, 4), dtype=np.int64), targets=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected targets in \[0, 11\) or ignore_index -100, got 12"):
        gpt_forward(params, TINY, np.zeros((1, 4), dtype=np.int64), targets=np.full((1, 4), 12))
    with pytest.raises(ValueError, match="kernels must be one of"):
        gpt_forward(params, TINY, np.zeros((1, 4), dtype=np.int64), kernels="cuda")
    with pytest.raises(NotImplementedError, match="attn_pdrop"):
        gpt_forward(params, dataclasses.replace(TINY, attn_pdrop=0.1), np.zeros((1, 4), dtype=np.int64), train=True)
    with pytest.raises(ValueError, match="needs rng"):
        gpt_forward(params, dataclasses.replace(TINY, resid_pdrop=0.1), np.zeros((1, 4), dtype=np.int64), train=True)
    _, _, cache = gpt_forward(params, TINY, np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="given targets, or dlogits"):
        gpt_backward(cache)


def test_params_are_checked():
    params = init_params(TINY)
    with pytest.raises(KeyError, match="transformer.h.1.ln_2.bias"):
        check_params({k: v for k, v in params.items() if k != "transformer.h.1.ln_2.bias"}, TINY)
    with pytest.raises(KeyError, match="drop lm_head.weight"):
        check_params({**params, "lm_head.weight": params["transformer.wte.weight"]}, TINY)
    with pytest.raises(ValueError, match=r"'transformer.wpe.weight'\] has shape \(4, 8\), expected \(8, 8\)"):
        check_params({**params, "transformer.wpe.weight": np.zeros((4, 8), np.float32)}, TINY)
    with pytest.raises(TypeError, match="mix dtypes"):
        check_params({**params, "transformer.ln_f.bias": np.zeros(8)}, TINY)


def test_config_validation_and_json_round_trip(tmp_path):
    cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2, resid_pdrop=0.1)
    cfg.to_json(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["model_type"] == "gpt2" and d["architectures"] == ["GPT2LMHeadModel"]
    assert GPTConfig.from_json(tmp_path / "config.json") == cfg
    for bad, message in [(dict(vocab_size=0), "vocab_size must be a positive integer"),
                         (dict(n_embd=10, n_head=4), "divisible by n_head"),
                         (dict(activation_function="relu"), "activation_function 'relu' is not supported"),
                         (dict(resid_pdrop=1.0), r"resid_pdrop is a dropout probability in \[0, 1\)"),
                         (dict(tie_word_embeddings=False), "untied lm_head is not implemented"),
                         (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon must be a positive")]:
        with pytest.raises(ValueError, match=message):
            GPTConfig(**bad)
    for key, value, message in [("n_inner", 64, "n_inner = 64"), ("scale_attn_weights", False, "scale_attn_weights"),
                                ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx"),
                                ("add_cross_attention", True, "add_cross_attention"),
                                ("model_type", "bert", "model_type 'bert'")]:
        with pytest.raises(ValueError, match=message):
            GPTConfig.from_dict({**d, key: value})
    assert GPTConfig.from_dict({**d, "n_inner": 32, "n_ctx": 8, "task_specific_params": {}}) == cfg  # 4C is fine
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        GPTConfig.from_json(tmp_path / "broken.json")


# ----------------------------------------------------------------------------------------
# checkpoints


def test_save_and_load_round_trip(tmp_path):
    params = init_params(TINY, seed=5)
    save_pretrained(params, TINY, tmp_path)
    tensors, metadata, _ = safetensors.read_header(tmp_path / "model.safetensors")
    assert set(tensors) == set(params) and "lm_head.weight" not in tensors
    assert metadata == {"format": "pt"}
    assert not list(tmp_path.glob(".*.tmp"))
    loaded, cfg = from_pretrained(tmp_path)
    assert cfg == TINY and list(loaded) == list(params)
    for name in params:
        assert loaded[name].dtype == np.float32 and np.array_equal(loaded[name], params[name]), name
    as64, _ = from_pretrained(tmp_path, dtype=np.float64)
    assert as64["transformer.wte.weight"].dtype == np.float64


def test_load_accepts_unprefixed_names_buffers_and_a_tied_head(tmp_path):
    params = init_params(TINY, seed=6)
    TINY.to_json(tmp_path / "config.json")
    # the layout of OpenAI's original conversion: no prefix, causal-mask buffers, and an lm_head copy
    tensors = {name.removeprefix("transformer."): p for name, p in params.items()}
    for i in range(TINY.n_layer):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 8, 8), np.float32))
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    tensors["lm_head.weight"] = params["transformer.wte.weight"]
    safetensors.save(tensors, tmp_path / "model.safetensors")
    loaded, _ = from_pretrained(tmp_path)
    assert list(loaded) == list(params) and all(np.array_equal(loaded[k], params[k]) for k in params)

    tensors["lm_head.weight"] = params["transformer.wte.weight"] + 1
    safetensors.save(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight differs from transformer.wte.weight"):
        from_pretrained(tmp_path)


def test_load_refuses_bad_checkpoints(tmp_path):
    params = init_params(TINY, seed=7)
    save_pretrained(params, TINY, tmp_path)
    # a missing tensor is named
    safetensors.save({k: v for k, v in params.items() if k != "transformer.h.1.mlp.c_fc.bias"},
                     tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing: transformer.h.1.mlp.c_fc.bias"):
        from_pretrained(tmp_path)
    # a wrong shape gives the name and both shapes
    safetensors.save({**params, "transformer.h.0.attn.c_proj.weight": np.zeros((8, 7), np.float32)},
                     tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"'transformer.h.0.attn.c_proj.weight' has shape \(8, 7\), but "
                                         r"config.json implies \(8, 8\)"):
        from_pretrained(tmp_path)
    # config.json disagrees with the tensors: a third layer that is not there, or one layer too few
    save_pretrained(params, TINY, tmp_path)
    dataclasses.replace(TINY, n_layer=3).to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"12 tensors .* missing: transformer.h.2.ln_1.weight"):
        from_pretrained(tmp_path)
    dataclasses.replace(TINY, n_layer=1).to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"does not have: transformer.h.1.attn.c_attn.bias.*n_layer = 1"):
        from_pretrained(tmp_path)
    # the caller expected another config
    TINY.to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match="n_embd: expected 16, checkpoint has 8"):
        from_pretrained(tmp_path, config=dataclasses.replace(TINY, n_embd=16))
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="pickled PyTorch file"):
        from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------
# parity with Hugging Face transformers


def _hf_model(torch, transformers, dtype, seed=0):
    """A small GPT2LMHeadModel with every parameter random (biases and LayerNorms too)."""
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=13, n_positions=12, n_embd=16, n_layer=2, n_head=4,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
                                  eos_token_id=None, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _hf_loss(torch, model, idx, dtype):
    """Hugging Face's causal-LM loss (labels = idx, shifted inside), but in ``dtype``: its own loss
    function upcasts the logits to float32 first, which in float64 would cost eight digits."""
    logits = model(torch.tensor(idx)).logits  # (B, T, V)
    if dtype == torch.float32:
        return logits, model(torch.tensor(idx), labels=torch.tensor(idx)).loss
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    return logits, torch.nn.functional.cross_entropy(shifted, torch.tensor(idx[:, 1:]).reshape(-1))


@pytest.mark.parity
@pytest.mark.parametrize("precision,tol", [("float32", 1e-5), ("float64", 1e-10)])
def test_logits_loss_and_every_gradient_match_transformers(torch, transformers, tmp_path, precision, tol):
    tdtype = getattr(torch, precision)
    model = _hf_model(torch, transformers, tdtype)
    model.save_pretrained(tmp_path)
    params, cfg = from_pretrained(tmp_path)
    assert params["transformer.wte.weight"].dtype == np.dtype(precision)
    assert num_params(cfg) == model.num_parameters()

    rng = np.random.default_rng(0)
    idx = rng.integers(0, cfg.vocab_size, size=(3, 10))  # (B, T)
    targets = np.concatenate([idx[:, 1:], np.full((3, 1), -100)], axis=1)  # HF's shift: no target at the end
    logits, loss, cache = gpt_forward(params, cfg, idx, targets)
    grads = gpt_backward(cache)

    hf_logits, hf_loss = _hf_loss(torch, model, idx, tdtype)
    hf_loss.backward()
    assert_close(logits, hf_logits.detach().numpy(), rtol=tol, atol=tol, name="logits")
    assert_close(loss, hf_loss.item(), rtol=tol, atol=tol, name="loss")
    hf_params = dict(model.named_parameters())  # the tied lm_head is not listed: its gradient is in wte's
    assert set(hf_params) == set(grads)
    for name, g in grads.items():
        hf_grad = hf_params[name].grad.numpy()
        assert_close(g, hf_grad, rtol=tol, atol=tol * max(1.0, float(np.abs(hf_grad).max())),
                     name=f"gradient of {name}")


@pytest.mark.parity
def test_our_checkpoint_loads_in_transformers(torch, transformers, tmp_path):
    transformers.logging.set_verbosity_error()
    cfg = GPTConfig(vocab_size=13, n_positions=12, n_embd=16, n_layer=2, n_head=4)
    params = _random_params(cfg, seed=8, dtype=np.float32, scale=0.1)
    save_pretrained(params, cfg, tmp_path)
    model, info = transformers.GPT2LMHeadModel.from_pretrained(tmp_path, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied again
    assert model.dtype == torch.float32
    assert_close(model.transformer.h[1].mlp.c_fc.weight.detach().numpy(), params["transformer.h.1.mlp.c_fc.weight"],
                 rtol=0, name="c_fc weight")
    hf_cfg = transformers.GPT2Config.from_pretrained(tmp_path)
    for field in dataclasses.fields(GPTConfig):
        assert getattr(hf_cfg, field.name) == getattr(cfg, field.name), field.name

    idx = np.random.default_rng(1).integers(0, cfg.vocab_size, size=(2, 12))
    logits, _, _ = gpt_forward(params, cfg, idx)
    with torch.no_grad():
        hf_logits = model(torch.tensor(idx)).logits.numpy()
    assert_close(logits, hf_logits, rtol=1e-5, atol=1e-5, name="logits")

    # the files hold the same tensor names as Hugging Face's own save
    model.save_pretrained(tmp_path / "hf")
    assert set(safetensors.read_header(tmp_path / "hf" / "model.safetensors")[0]) == set(params)


@pytest.mark.parity
def test_ten_adamw_steps_match_torch(torch, transformers, tmp_path):
    # float64: the key part of c_attn's bias has a gradient of exactly 0 in exact arithmetic (adding
    # the same number to every score of a query leaves its softmax unchanged), so in float32 both
    # models see only rounding noise there, ~1e-9, which Adam normalises into steps of size ~lr in
    # random directions; the two runs then differ by ~1e-3 in those entries and agree elsewhere.
    model = _hf_model(torch, transformers, torch.float64, seed=1)
    model.train()  # dropout is 0, so train mode only matters for bookkeeping
    model.save_pretrained(tmp_path)
    params, cfg = from_pretrained(tmp_path)
    lr, betas, eps, wd = 1e-2, (0.9, 0.95), 1e-8, 0.1
    named = dict(model.named_parameters())
    groups = [{"params": [p for n, p in named.items() if decays(n, params[n])], "weight_decay": wd},
              {"params": [p for n, p in named.items() if not decays(n, params[n])], "weight_decay": 0.0}]
    assert len(groups[0]["params"]) == 2 + 4 * cfg.n_layer  # wte, wpe and four matrices per block
    torch_opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    opt = AdamW(lr=lr, betas=betas, eps=eps, weight_decay=wd, decay=decays)
    rng = np.random.default_rng(2)
    for step in range(10):
        idx = rng.integers(0, cfg.vocab_size, size=(2, 12))
        targets = np.concatenate([idx[:, 1:], np.full((2, 1), -100)], axis=1)
        _, loss, cache = gpt_forward(params, cfg, idx, targets)
        opt.step(params, gpt_backward(cache))
        torch_opt.zero_grad()
        _, hf_loss = _hf_loss(torch, model, idx, torch.float64)
        hf_loss.backward()
        torch_opt.step()
        assert_close(loss, hf_loss.item(), rtol=1e-9, name=f"loss at step {step}")
    for name, p in named.items():
        assert_close(params[name], p.detach().numpy(), rtol=1e-9, atol=1e-10, name=f"{name} after 10 steps")


def test_load_reads_sharded_checkpoints(tmp_path):
    params = init_params(TINY, seed=9)
    TINY.to_json(tmp_path / "config.json")
    names = list(params)
    shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
    for shard, part in shards.items():
        safetensors.save({k: params[k] for k in part}, tmp_path / shard)
    weight_map = {k: shard for shard, part in shards.items() for k in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    loaded, _ = from_pretrained(tmp_path)
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    weight_map[names[0]] = "../elsewhere.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ValueError, match="must be a file name"):
        from_pretrained(tmp_path)
