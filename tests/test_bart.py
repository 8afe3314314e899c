import dataclasses
import json

import numpy as np
import pytest

from llm_from_scratch import safetensors
from llm_from_scratch.kernels.backend import get_ops
from llm_from_scratch.models.bart import (BartConfig, bart_backward, bart_forward, check_params, decode_step,
                                          decoder_layer_backward, decoder_layer_forward, encode,
                                          encoder_layer_backward, encoder_layer_forward, from_pretrained,
                                          init_params, num_params, param_shapes, reorder_state, save_pretrained,
                                          shift_tokens_right, start_decoding)
from llm_from_scratch.testing import assert_close, gradcheck, numerical_gradient

# uneven sizes everywhere, and an encoder and a decoder of different depths and head counts
TINY = BartConfig(vocab_size=13, max_position_embeddings=9, d_model=8, encoder_layers=2, encoder_attention_heads=2,
                  encoder_ffn_dim=12, decoder_layers=3, decoder_attention_heads=4, decoder_ffn_dim=10, dropout=0.0,
                  pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)


def _random_params(config, seed=0, dtype=np.float64, scale=0.3):
    """Parameters with every entry random (biases, LayerNorms and final_logits_bias too), so no
    gradient path hides behind a zero bias or a unit gain."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config).items():
        value = rng.standard_normal(shape) * scale
        if ("layer_norm" in name or "layernorm" in name) and name.endswith(".weight"):
            value += 1.0
        params[name] = value.astype(dtype)
    return params


def _batch(rng, config, B=2, S=5, T=4, pad_in_source=True):
    """A source whose second row ends in two padded positions, decoder inputs whose last row has
    one padded position, and labels with ignored positions. Real tokens avoid the pad id, so the
    pad row of the shared table is read only where it is masked."""
    src = rng.integers(3, config.vocab_size, size=(B, S))  # (B, S)
    src_mask = np.ones((B, S), dtype=np.int64)  # (B, S)
    src_mask[-1, S - 2:] = 0
    if pad_in_source:
        src[-1, S - 2:] = config.pad_token_id
    labels = rng.integers(3, config.vocab_size, size=(B, T))  # (B, T)
    labels[0, 1] = -100
    labels[-1, T - 1] = -100
    dec = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)  # (B, T)
    dec_mask = np.ones((B, T), dtype=np.int64)  # (B, T)
    dec_mask[-1, T - 1] = 0
    return src, src_mask, dec, dec_mask, labels


def _check_all_gradients(params, loss_fn, grads, tol=1e-6):
    for name, p in params.items():
        numeric = numerical_gradient(loss_fn, p)
        scale = max(1.0, float(np.abs(numeric).max()))
        assert_close(grads[name], numeric, rtol=tol, atol=tol * scale, name=f"gradient of {name}")


# ----------------------------------------------------------------------------------------
# configuration and parameters


def test_config_validation_and_json_round_trip(tmp_path):
    cfg = dataclasses.replace(TINY, activation_function="gelu_new", scale_embedding=True)
    cfg.to_json(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["model_type"] == "bart" and d["architectures"] == ["BartForConditionalGeneration"]
    assert d["is_encoder_decoder"] is True and d["tie_word_embeddings"] is True
    assert BartConfig.from_json(tmp_path / "config.json") == cfg
    for bad, message in [(dict(vocab_size=0), "vocab_size must be a positive integer"),
                         (dict(decoder_attention_heads=3), "divisible by decoder_attention_heads = 3"),
                         (dict(activation_function="relu"), "activation_function 'relu' is not supported"),
                         (dict(dropout=1.0), r"dropout is a probability in \[0, 1\)"),
                         (dict(scale_embedding=1), "scale_embedding must be True or False"),
                         (dict(pad_token_id=13), r"pad_token_id must be a token id in \[0, vocab_size = 13\)")]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(TINY, **bad)
    for key, value, message in [("tie_word_embeddings", False, "tie_word_embeddings = False"),
                                ("eos_token_id", [2, 3], "single token id"), ("model_type", "t5", "'t5'")]:
        with pytest.raises(ValueError, match=message):
            BartConfig.from_dict({**d, key: value})
    assert BartConfig.from_dict({**d, "use_cache": True, "id2label": {"0": "A"}, "classifier_dropout": 0.1}) == cfg
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BartConfig.from_json(tmp_path / "broken.json")


def test_params_counts_init_and_checks():
    params = init_params(TINY, seed=3)
    assert num_params(TINY) == sum(p.size for p in params.values())
    assert "lm_head.weight" not in params and "model.encoder.embed_tokens.weight" not in params
    big = BartConfig(vocab_size=400, max_position_embeddings=64, d_model=64, encoder_layers=2,
                     encoder_attention_heads=4, decoder_layers=1, decoder_attention_heads=2)
    for name, p in init_params(big, seed=1).items():
        if "layer_norm" in name or "layernorm" in name:
            assert np.all(p == (1.0 if name.endswith("weight") else 0.0)), name
        elif name.endswith("bias"):
            assert np.all(p == 0), name
        else:
            rows = np.delete(p, big.pad_token_id, axis=0) if name == "model.shared.weight" else p
            assert abs(rows.std() / 0.02 - 1) < 0.1, f"{name}: std {rows.std():.5f}, expected 0.02"
    assert np.all(params["model.shared.weight"][TINY.pad_token_id] == 0)
    again = init_params(TINY, seed=3, dtype=np.float64)
    assert all(np.array_equal(params[k], again[k].astype(np.float32)) for k in params)
    with pytest.raises(KeyError, match="drop those entries"):
        check_params({**params, "lm_head.weight": params["model.shared.weight"]}, TINY)
    with pytest.raises(KeyError, match="final_logits_bias"):
        check_params({k: v for k, v in params.items() if k != "final_logits_bias"}, TINY)
    with pytest.raises(ValueError, match=r"embed_positions.weight'\] has shape \(9, 8\), expected \(11, 8\)"):
        check_params({**params, "model.encoder.embed_positions.weight": np.zeros((9, 8), np.float32)}, TINY)


def test_shift_tokens_right_and_input_errors():
    labels = np.array([[5, 6, 2, -100], [7, 2, -100, -100]])
    assert shift_tokens_right(labels, 1, 2).tolist() == [[2, 5, 6, 2], [2, 7, 2, 1]]
    params = init_params(TINY, dtype=np.float64)
    src = np.array([[3, 4, 5]])
    with pytest.raises(ValueError, match="needs decoder_input_ids, or labels"):
        bart_forward(params, TINY, src)
    with pytest.raises(ValueError, match=r"decoder_input_ids has length 10; it must be in \[1, max_position"):
        bart_forward(params, TINY, src, np.full((1, 10), 4))
    with pytest.raises(ValueError, match="same batch size"):
        bart_forward(params, TINY, src, np.full((2, 3), 4))
    with pytest.raises(ValueError, match="attention_mask must hold only 0"):
        bart_forward(params, TINY, src, src, attention_mask=np.array([[1, 2, 1]]))
    with pytest.raises(ValueError, match="labels must have the shape of decoder_input_ids"):
        bart_forward(params, TINY, src, src, labels=np.array([[1, 2]]))
    with pytest.raises(ValueError, match="needs rng"):
        bart_forward(params, dataclasses.replace(TINY, dropout=0.1), src, src, train=True)
    with pytest.raises(NotImplementedError, match="layerdrop"):
        bart_forward(params, dataclasses.replace(TINY, decoder_layerdrop=0.1), src, src, train=True)


# ----------------------------------------------------------------------------------------
# gradients: float64 central differences


def test_decoder_layer_gradcheck_reaches_decoder_and_memory():
    # L = sum(y * dy) for a random dy: the gradient of the decoder stream, of the memory (through the
    # cross-attention's keys and values) and of every weight of the layer, with both padding masks
    rng = np.random.default_rng(0)
    params = _random_params(TINY, seed=1)
    B, T, S, C = 2, 3, 5, TINY.d_model
    key_mask = np.array([[True, True, True], [True, True, False]])  # (B, T)
    memory_mask = np.array([[True] * 5, [True, True, True, False, False]])  # (B, S)
    h = "model.decoder.layers.1."
    names = [n for n in params if n.startswith(h)]
    inputs = {"x": rng.standard_normal((B, T, C)), "memory": rng.standard_normal((B, S, C)),
              **{n: params[n] for n in names}}
    K, cache = get_ops("numpy"), {}

    def forward(x, memory, **p):
        y, cache["c"] = decoder_layer_forward(x, memory, {**params, **p}, 1, TINY, K, key_mask, memory_mask)
        return y

    def backward(dy):
        dx, dmemory, grads = decoder_layer_backward(dy, cache["c"])
        return (dx, dmemory, *[grads[n] for n in names])

    errors = gradcheck(forward, backward, inputs, wrt=list(inputs), seed=3)
    assert len(errors) == 2 + 26  # x, memory and the layer's 26 tensors
    # the padded source positions are invisible: their memory gets no gradient
    dmemory = backward(np.random.default_rng(3).standard_normal((B, T, C)))[1]
    assert np.all(dmemory[1, 3:] == 0) and np.all(dmemory[0] != 0)


def test_encoder_layer_gradcheck():
    rng = np.random.default_rng(1)
    params = _random_params(TINY, seed=2)
    h = "model.encoder.layers.0."
    names = [n for n in params if n.startswith(h)]
    key_mask = np.array([[True] * 4, [True, True, True, False]])  # (B, S)
    inputs = {"x": rng.standard_normal((2, 4, TINY.d_model)), **{n: params[n] for n in names}}
    K, cache = get_ops("numpy"), {}

    def forward(x, **p):
        y, cache["c"] = encoder_layer_forward(x, {**params, **p}, 0, TINY, K, key_mask)
        return y

    def backward(dy):
        dx, grads = encoder_layer_backward(dy, cache["c"])
        return (dx, *[grads[n] for n in names])

    gradcheck(forward, backward, inputs, seed=4)


# the parameters of one path each: embeddings, both attentions of a decoder layer, an encoder layer,
# the head (the full lists are checked by test_whole_model_gradcheck_float64)
SOME = ["model.shared.weight", "final_logits_bias", "model.encoder.embed_positions.weight",
        "model.decoder.layernorm_embedding.weight", "model.decoder.layers.1.encoder_attn.k_proj.weight",
        "model.decoder.layers.0.self_attn.v_proj.bias", "model.decoder.layers.2.fc1.weight",
        "model.encoder.layers.0.self_attn.q_proj.weight", "model.encoder.layers.1.final_layer_norm.bias"]


@pytest.mark.parametrize("scale_embedding", [False, True])
def test_whole_model_gradcheck_float64(scale_embedding):
    cfg = dataclasses.replace(TINY, scale_embedding=scale_embedding)
    rng = np.random.default_rng(2)
    params = _random_params(cfg, seed=3)
    src, src_mask, dec, dec_mask, labels = _batch(rng, cfg)
    # PyTorch's padding_idx keeps the pad row out of the lookups' gradient, which a finite difference
    # does not know about: here the pad id is read only at masked source positions, which change nothing
    dec[dec == cfg.pad_token_id] = 4

    def forward():
        return bart_forward(params, cfg, src, dec, src_mask, dec_mask, labels)

    logits, loss, cache = forward()
    grads = bart_backward(cache)
    assert list(grads) == list(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float64 for k in params)
    # rows of the position tables past the sequences (and the two reserved ones) read nothing
    assert np.all(grads["model.encoder.embed_positions.weight"][:2] == 0)
    assert np.all(grads["model.encoder.embed_positions.weight"][2 + src.shape[1]:] == 0)
    assert np.all(grads["model.decoder.embed_positions.weight"][2 + dec.shape[1]:] == 0)
    checked = params if not scale_embedding else {k: params[k] for k in SOME}  # every one once is enough
    _check_all_gradients(checked, lambda: float(forward()[1]), grads)


def test_whole_model_gradcheck_with_dropout_and_random_upstream():
    cfg = dataclasses.replace(TINY, dropout=0.2, attention_dropout=0.3, activation_dropout=0.25)
    rng = np.random.default_rng(3)
    params = _random_params(cfg, seed=4)
    src, src_mask, dec, dec_mask, _ = _batch(rng, cfg, B=2, S=4, T=3)
    dec[dec == cfg.pad_token_id] = 4  # see test_whole_model_gradcheck_float64

    def logits():
        return bart_forward(params, cfg, src, dec, src_mask, dec_mask, train=True, rng=np.random.default_rng(7))

    out, _, cache = logits()
    dlogits = rng.standard_normal(out.shape)
    kept = dlogits.copy()
    grads = bart_backward(cache, dlogits=dlogits)
    assert np.array_equal(dlogits, kept)
    _check_all_gradients({k: params[k] for k in SOME}, lambda: float(np.sum(logits()[0] * dlogits)), grads)
    assert not np.allclose(out, bart_forward(params, cfg, src, dec, src_mask, dec_mask)[0])  # dropout acted


def test_backward_leaves_inputs_alone_and_dloss_scales():
    rng = np.random.default_rng(4)
    params = _random_params(TINY, seed=5)
    before = {k: v.copy() for k, v in params.items()}
    src, src_mask, dec, dec_mask, labels = _batch(rng, TINY)
    _, _, cache = bart_forward(params, TINY, src, dec, src_mask, dec_mask, labels)
    g1, g2 = bart_backward(cache), bart_backward(cache, dloss=2.0)
    for k in params:
        assert_close(g2[k], 2 * g1[k], rtol=1e-12, atol=1e-15, name=k)
        assert np.array_equal(params[k], before[k])


# ----------------------------------------------------------------------------------------
# behaviour


def test_source_padding_is_invisible():
    rng = np.random.default_rng(5)
    params = _random_params(TINY, seed=6)
    src = rng.integers(3, TINY.vocab_size, size=(1, 4))
    dec = np.array([[2, 5, 6]])
    alone = bart_forward(params, TINY, src, dec)[0]
    for filler in (TINY.pad_token_id, 7):
        padded = np.concatenate([src, np.full((1, 3), filler)], axis=1)
        mask = np.array([[1, 1, 1, 1, 0, 0, 0]])
        for kernels in ("numpy", "numba"):
            logits = bart_forward(params, TINY, padded, dec, attention_mask=mask, kernels=kernels)[0]
            assert_close(logits, alone, rtol=1e-10, atol=1e-12, name=f"logits with padding, {kernels}")


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_cached_decoding_equals_the_full_forward(kernels):
    # prefill two tokens, then one at a time, with a padded batch of sources; then reorder the rows
    rng = np.random.default_rng(6)
    params = _random_params(TINY, seed=7)
    src, src_mask, _, _, _ = _batch(rng, TINY, B=3, S=6)
    dec = rng.integers(3, TINY.vocab_size, size=(3, 6))
    dec[:, 0] = TINY.decoder_start_token_id
    full = bart_forward(params, TINY, src, dec, src_mask, kernels=kernels)[0]  # (B, T, V)
    state = start_decoding(params, TINY, encode(params, TINY, src, src_mask, kernels), src_mask, max_length=6,
                           kernels=kernels)
    parts = []
    for t0, t1 in [(0, 2), (2, 3), (3, 4), (4, 5)]:
        logits, state = decode_step(params, TINY, state, dec[:, t0:t1], kernels)
        parts.append(logits)
    got = np.concatenate(parts, axis=1)
    assert_close(got, full[:, :5], rtol=1e-10, atol=1e-12, name="cached vs full logits")
    assert np.array_equal(got.argmax(-1), full[:, :5].argmax(-1))  # token for token
    index = np.array([2, 0, 0])
    state = reorder_state(state, index)
    last, state = decode_step(params, TINY, state, dec[index, 5:6], kernels)
    assert_close(last, full[index, 5:6], rtol=1e-10, atol=1e-12, name="after reordering the rows")
    with pytest.raises(ValueError, match="the cache holds 6 positions"):
        decode_step(params, TINY, state, dec[:, :1], kernels)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 2e-5)])
def test_numba_kernels_match_numpy(dtype, tol):
    rng = np.random.default_rng(8)
    cfg = BartConfig(vocab_size=37, max_position_embeddings=16, d_model=32, encoder_layers=2,
                     encoder_attention_heads=4, encoder_ffn_dim=48, decoder_layers=2, decoder_attention_heads=2,
                     decoder_ffn_dim=40, dropout=0.0)
    params = _random_params(cfg, seed=9, dtype=dtype, scale=0.1)
    src, src_mask, dec, dec_mask, labels = _batch(rng, cfg, B=3, S=9, T=7)
    ref_logits, ref_loss, ref_cache = bart_forward(params, cfg, src, dec, src_mask, dec_mask, labels)
    logits, loss, cache = bart_forward(params, cfg, src, dec, src_mask, dec_mask, labels, kernels="numba")
    assert_close(logits, ref_logits, rtol=tol, atol=tol, name="logits")
    assert_close(loss, ref_loss, rtol=tol, name="loss")
    ref_grads, grads = bart_backward(ref_cache), bart_backward(cache)
    worst = 0.0
    for name in params:
        scale = max(1.0, float(np.abs(ref_grads[name]).max()))
        assert_close(grads[name], ref_grads[name], rtol=tol, atol=tol * scale, name=f"gradient of {name}")
        worst = max(worst, float(np.abs(grads[name] - ref_grads[name]).max()))
    print(f"numba vs numpy, {np.dtype(dtype)}: logits {np.abs(logits - ref_logits).max():.1e}, worst gradient "
          f"{worst:.1e}")


# ----------------------------------------------------------------------------------------
# checkpoints


def test_save_and_load_round_trip(tmp_path):
    params = _random_params(TINY, seed=10, dtype=np.float32)
    save_pretrained(params, TINY, tmp_path)
    loaded, cfg = from_pretrained(tmp_path)
    assert cfg == TINY and list(loaded) == list(params)
    assert all(np.array_equal(loaded[k], params[k]) and loaded[k].dtype == np.float32 for k in params)
    # older files hold the tied copies and fairseq's version buffers; a copy must equal the table
    tensors = safetensors.load(tmp_path / "model.safetensors")
    shared = tensors["model.shared.weight"]
    extra = {"lm_head.weight": shared, "model.encoder.embed_tokens.weight": shared,
             "model.decoder.embed_tokens.weight": shared, "model.encoder.version": np.array([3.0], np.float32)}
    safetensors.save({**tensors, **extra}, tmp_path / "model.safetensors")
    again, _ = from_pretrained(tmp_path, dtype=np.float64)
    assert all(np.array_equal(again[k], params[k].astype(np.float64)) for k in params)
    safetensors.save({**tensors, **extra, "lm_head.weight": shared + 1}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="lm_head.weight differs from model.shared.weight"):
        from_pretrained(tmp_path)
    del tensors["model.decoder.layers.2.fc1.bias"]
    safetensors.save(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="model.decoder.layers.2.fc1.bias"):
        from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="decoder_layers: expected 2, checkpoint has 3"):
        from_pretrained(tmp_path, config=dataclasses.replace(TINY, decoder_layers=2))


# ----------------------------------------------------------------------------------------
# parity with Hugging Face transformers


def _hf_model(torch, transformers, cfg, seed, dtype):
    """A BartForConditionalGeneration of ``cfg`` with every parameter random (LayerNorms and
    final_logits_bias included), eager attention, in ``dtype``."""
    transformers.logging.set_verbosity_error()
    hf_cfg = transformers.BartConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("architectures",)})
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.BartForConditionalGeneration(hf_cfg).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
        model.final_logits_bias.copy_(torch.randn_like(model.final_logits_bias) * 0.3)
    return model


@pytest.mark.parity
@pytest.mark.parametrize("scale_embedding", [False, True])
def test_logits_loss_and_every_gradient_match_transformers_float64(torch, transformers, tmp_path, scale_embedding):
    cfg = dataclasses.replace(TINY, scale_embedding=scale_embedding, vocab_size=17, max_position_embeddings=12)
    model = _hf_model(torch, transformers, cfg, seed=0, dtype=torch.float64)
    model.save_pretrained(tmp_path)  # safetensors, as Hugging Face writes it
    params, loaded_cfg = from_pretrained(tmp_path)
    assert loaded_cfg == cfg and all(p.dtype == np.float64 for p in params.values())
    rng = np.random.default_rng(11)
    src, src_mask, dec, dec_mask, labels = _batch(rng, cfg, B=3, S=7, T=6)
    src[0, 2] = cfg.pad_token_id  # a real pad token: its row gets the head's gradient, not the lookups'
    logits, loss, cache = bart_forward(params, cfg, src, dec, src_mask, dec_mask, labels)
    grads = bart_backward(cache)

    out = model(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask),
                decoder_input_ids=torch.tensor(dec), decoder_attention_mask=torch.tensor(dec_mask))
    hf_logits = out.logits
    hf_logits.retain_grad()
    # transformers' own loss casts the logits to float32; the reference loss stays in float64
    hf_loss = torch.nn.functional.cross_entropy(hf_logits.reshape(-1, cfg.vocab_size), torch.tensor(labels).reshape(-1))
    hf_loss.backward()
    diffs = {"logits": float(np.abs(logits - hf_logits.detach().numpy()).max()),
             "loss": abs(float(loss) - hf_loss.item())}
    assert_close(logits, hf_logits.detach().numpy(), rtol=1e-10, atol=1e-10, name="logits")
    assert_close(loss, hf_loss.item(), rtol=1e-12, name="loss")
    hf_grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
    hf_grads["final_logits_bias"] = hf_logits.grad.sum(dim=(0, 1)).numpy()[None, :]  # a buffer in transformers
    assert set(hf_grads) == set(params), set(hf_grads) ^ set(params)
    worst, worst_name = 0.0, None
    for name in params:
        g, ref = grads[name], hf_grads[name]
        assert_close(g, ref, rtol=1e-10, atol=1e-10 * max(1.0, float(np.abs(ref).max())), name=f"gradient of {name}")
        d = float(np.abs(g - ref).max())
        if d > worst:
            worst, worst_name = d, name
    print(f"BART float64 vs transformers (scale_embedding={scale_embedding}): logits {diffs['logits']:.1e}, "
          f"loss {diffs['loss']:.1e}, worst gradient {worst:.1e} ({worst_name})")


@pytest.mark.parity
def test_our_checkpoints_load_in_transformers(torch, transformers, tmp_path):
    transformers.logging.set_verbosity_error()
    cfg = dataclasses.replace(TINY, max_position_embeddings=12)
    params = _random_params(cfg, seed=12, dtype=np.float32, scale=0.1)
    save_pretrained(params, cfg, tmp_path)
    model, info = transformers.BartForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    model.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()  # tied on loading
    hf_cfg = transformers.BartConfig.from_pretrained(tmp_path)
    for field in dataclasses.fields(BartConfig):
        assert getattr(hf_cfg, field.name) == getattr(cfg, field.name), field.name
    rng = np.random.default_rng(13)
    src, src_mask, dec, dec_mask, _ = _batch(rng, cfg, B=2, S=6, T=5)
    with torch.no_grad():
        out = model(input_ids=torch.tensor(src), attention_mask=torch.tensor(src_mask),
                    decoder_input_ids=torch.tensor(dec), decoder_attention_mask=torch.tensor(dec_mask))
    ours = bart_forward(params, cfg, src, dec, src_mask, dec_mask)[0]
    assert_close(ours, out.logits.numpy(), rtol=1e-5, atol=1e-5, name="logits in transformers")
    assert_close(model.final_logits_bias.numpy(), params["final_logits_bias"], rtol=0, name="final_logits_bias")


@pytest.mark.parity
def test_num_params_matches_transformers(torch, transformers):
    transformers.logging.set_verbosity_error()
    cfg = dataclasses.replace(TINY, vocab_size=50, d_model=16)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(**cfg.to_dict()))
    assert num_params(cfg) == model.num_parameters() + cfg.vocab_size  # + final_logits_bias, a buffer there
