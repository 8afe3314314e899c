"""Weight-only quantization: the formulas, the numba matmul against its numpy reference, quantized
GPT decoding and BERT encoding, and quantized checkpoints with every error they can raise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llm_from_scratch import safetensors
from llm_from_scratch.generate import generate, gpt_forward_cached, init_kv_cache
from llm_from_scratch.models.bert.embeddings import encode_sentences
from llm_from_scratch.models.bert.encoder import BertConfig, encoder_forward
from llm_from_scratch.models.bert.encoder import init_params as bert_init
from llm_from_scratch.models.gpt import GPTConfig, from_pretrained, gpt_forward, init_params, save_pretrained
from llm_from_scratch.quantize import (QuantizedCheckpointError, QuantizedTensor, dequantize, dequantize_params,
                                       load_quantized, quantize_int4, quantize_int8, quantize_params,
                                       quantized_matmul, quantized_matmul_reference, save_quantized)
from llm_from_scratch.testing import assert_close_scaled


def _w(shape, seed=0, scale=0.02):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------
# the formulas


def test_int8_is_per_output_channel_absmax_in_both_layouts():
    w = _w((48, 5))  # (C, OC): ops.linear_forward's layout
    qt = quantize_int8(w)
    assert qt.data.dtype == np.int8 and qt.data.shape == (48, 5) and qt.scales.shape == (5,)  # (C, OC)
    assert_close_scaled(qt.scales, np.abs(w).max(axis=0) / 127, 1e-7, "scales")
    assert (np.abs(qt.data).max(axis=0) == 127).all()  # each channel's largest weight maps to +-127
    assert np.array_equal(qt.data, np.rint(w / qt.scales).astype(np.int8))
    err = np.abs(dequantize(qt) - w)
    assert (err <= qt.scales[None, :] / 2 * (1 + 1e-5)).all(), f"max err {err.max()}"
    # the same matrix in nn.Linear's layout (OC, C), quantized over its rows, gives the same codes
    qt0 = quantize_int8(np.ascontiguousarray(w.T), out_axis=0)
    assert np.array_equal(qt0.data, qt.data) and np.array_equal(qt0.scales, qt.scales)
    assert np.array_equal(dequantize(qt0), dequantize(qt).T)


def test_int4_groups_pack_two_codes_per_byte():
    w = _w((64, 3), seed=1)  # (C, OC), two groups of 32 per output channel
    qt = quantize_int4(w, group_size=32)
    assert qt.data.dtype == np.uint8 and qt.data.shape == (32, 3) and qt.scales.shape == (2, 3)  # (C/2, OC), (G, OC)
    groups = w.T.reshape(3, 2, 32)  # (OC, G, g)
    expected_scales = (np.abs(groups).max(axis=2) / 7).astype(np.float16).astype(np.float32)
    assert np.array_equal(qt.scales, expected_scales.T)
    codes = np.clip(np.rint(groups / expected_scales[:, :, None]), -7, 7).astype(np.int64)  # (OC, G, g)
    packed = qt.data.T.reshape(3, 2, 16).astype(np.int64)  # (OC, G, g/2)
    low, high = (packed & 15) - 8, (packed >> 4) - 8  # byte j: weight j and weight j + 16 of its group
    assert np.array_equal(low, codes[:, :, :16]) and np.array_equal(high, codes[:, :, 16:])
    err = np.abs(dequantize(qt) - w).T.reshape(3, 2, 32)
    assert (err <= expected_scales[:, :, None] / 2 * (1 + 1e-3)).all(), f"max err {err.max()}"


def test_zero_channels_and_transpose_and_concatenate():
    w = _w((4, 64))
    w[1] = 0.0
    for qt in (quantize_int8(w, out_axis=0), quantize_int4(w, 32, out_axis=0)):
        assert (dequantize(qt)[1] == 0).all() and np.isfinite(dequantize(qt)).all()
        both = np.concatenate([qt, qt])  # what BERT's layer_forward does with query, key and value
        assert both.shape == (8, 64) and np.array_equal(dequantize(both), np.concatenate([dequantize(qt)] * 2))
        assert both.T.shape == (64, 8) and np.array_equal(dequantize(both.T), dequantize(both).T)
        with pytest.raises(ValueError, match="output axis"):
            np.concatenate([qt, qt], axis=1)
        with pytest.raises(TypeError, match="dequantize"):
            np.asarray(qt)


def test_quantize_errors_are_clear():
    with pytest.raises(ValueError, match="does not divide the input dimension C = 48"):
        quantize_int4(_w((48, 4)), group_size=32)
    with pytest.raises(ValueError, match="even integer"):
        quantize_int4(_w((48, 4)), group_size=3)
    with pytest.raises(TypeError, match="2-D float"):
        quantize_int8(np.ones((3, 4), dtype=np.int32))
    with pytest.raises(TypeError, match="2-D float"):
        quantize_int8(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="out_axis"):
        quantize_int8(_w((4, 4)), out_axis=2)
    with pytest.raises(ValueError, match="inf or nan"):
        quantize_int8(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="bits must be 8 or 4"):
        quantize_params(init_params(GPTConfig(vocab_size=11, n_positions=8, n_embd=32, n_layer=1, n_head=2)), 3)


# ----------------------------------------------------------------------------------------
# the numba matmul against its numpy reference


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("shape", [(1, 64, 7), (5, 96, 33), (37, 32, 128), (2, 3, 256, 17)])
def test_quantized_matmul_matches_the_reference(bits, shape):
    *lead, C, OC = shape
    rng = np.random.default_rng(bits + C)
    w = rng.standard_normal((C, OC)).astype(np.float32)
    x = rng.standard_normal((*lead, C)).astype(np.float32)
    qt = quantize_int8(w) if bits == 8 else quantize_int4(w, 32)
    out, ref = quantized_matmul(x, qt), quantized_matmul_reference(x, qt)
    assert out.shape == (*lead, OC) and out.dtype == np.float32
    diff = float(np.abs(out - ref).max())
    print(f"int{bits} {shape}: max abs diff {diff:.2e}")
    # float32 rounding of a C-term sum whose terms are about 1: a few ulps of sqrt(C)-sized values
    assert_close_scaled(out, ref, 2e-6 * np.sqrt(C), f"int{bits} {shape}")
    # and it is the product with the dequantized matrix, which is close to the float one
    rel = np.abs(out - x @ w).max() / np.abs(x @ w).max()
    assert rel < (0.02 if bits == 8 else 0.2), rel


@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_matmul_in_nn_linear_layout_goes_through_the_transpose(bits):
    w = _w((7, 64), seed=3)  # (OC, C), nn.Linear
    qt = quantize_int8(w, out_axis=0) if bits == 8 else quantize_int4(w, 32, out_axis=0)
    x = _w((3, 64), seed=4, scale=1.0)
    with pytest.raises(ValueError, match=r"multiply by qt.T"):
        quantized_matmul(x, qt)
    assert_close_scaled(quantized_matmul(x, qt.T), x @ dequantize(qt).T, 2e-5, "x @ qt.T")


def test_quantized_matmul_errors():
    qt = quantize_int8(_w((64, 4)))
    with pytest.raises(TypeError, match="float32"):
        quantized_matmul(np.ones((2, 64)), qt)  # float64
    with pytest.raises(ValueError, match="C = 64 input features"):
        quantized_matmul(np.ones((2, 63), dtype=np.float32), qt)
    with pytest.raises(TypeError, match="QuantizedTensor"):
        quantized_matmul(np.ones((2, 64), dtype=np.float32), _w((64, 4)))
    bad = QuantizedTensor(4, (64, 4), qt.data, qt.scales, 32, 1)  # int8 codes labelled int4
    with pytest.raises(ValueError, match="inconsistent"):
        quantized_matmul(np.ones((2, 64), dtype=np.float32), bad)


# ----------------------------------------------------------------------------------------
# whole models

GPT_CFG = GPTConfig(vocab_size=40, n_positions=32, n_embd=64, n_layer=2, n_head=4)


def _gpt(seed=0):
    # weights larger than at initialisation, so that the logits are far from uniform
    p = init_params(GPT_CFG, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim == 2 else v
            for k, v in p.items()}


@pytest.mark.parametrize("bits,tied_head", [(8, False), (8, True), (4, False), (4, True)])
def test_greedy_decode_with_quantized_weights_equals_the_dequantized_float_model(bits, tied_head):
    params = _gpt()
    pq = quantize_params(params, bits, tied_head=tied_head)
    kinds = {k: type(v).__name__ for k, v in pq.items()}
    assert kinds["transformer.h.1.mlp.c_fc.weight"] == "QuantizedTensor"
    assert kinds["transformer.wte.weight"] == ("QuantizedTensor" if tied_head else "ndarray")
    assert kinds["transformer.wpe.weight"] == kinds["transformer.h.0.ln_1.weight"] == "ndarray"
    assert kinds["transformer.h.0.attn.c_attn.bias"] == "ndarray"
    prompt = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    out_q = generate(pq, GPT_CFG, prompt, 40, greedy=True, kernels="numba")  # 44 > n_positions: the window slides
    out_f = generate(dequantize_params(pq), GPT_CFG, prompt, 40, greedy=True, kernels="numpy")
    assert np.array_equal(out_q, out_f), f"first difference at {np.argwhere(out_q != out_f)[:1]}"
    # and the cached logits equal the float forward pass of the dequantized weights
    kv = init_kv_cache(GPT_CFG, B=2)
    logits_q = gpt_forward_cached(pq, GPT_CFG, prompt, kv, 0, kernels="numpy")
    logits_f = gpt_forward(dequantize_params(pq), GPT_CFG, prompt)[0]
    print(f"int{bits} tied_head={tied_head}: max abs diff of logits {np.abs(logits_q - logits_f).max():.2e}")
    assert_close_scaled(logits_q, logits_f, 1e-5, "logits")


def test_quantized_weights_refuse_the_uncached_path_and_training():
    pq = quantize_params(_gpt(), 8)
    with pytest.raises(ValueError, match="use_cache=True"):
        generate(pq, GPT_CFG, np.array([[1, 2]]), 3, use_cache=False)
    with pytest.raises(TypeError, match="float32 or float64"):
        gpt_forward(pq, GPT_CFG, np.array([[1, 2]]))


BERT_CFG = BertConfig(vocab_size=13, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=16)


@pytest.mark.parametrize("bits", [8, 4])
def test_bert_encoder_on_quantized_weights_equals_the_dequantized_float_model(bits):
    params = bert_init(BERT_CFG, seed=0)
    pq = quantize_params(params, bits)
    quantized = sorted(k for k, v in pq.items() if isinstance(v, QuantizedTensor))
    assert len(quantized) == 2 * 6 + 1 and "bert.pooler.dense.weight" in quantized  # q k v o fc1 fc2, the pooler
    assert not any("embeddings" in k for k in quantized)
    ids = np.array([[2, 5, 6, 7, 3, 0], [2, 8, 9, 3, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    h_q, pooled_q, _ = encoder_forward(pq, BERT_CFG, ids, attention_mask=mask, kernels="numba")
    h_f, pooled_f, _ = encoder_forward(dequantize_params(pq), BERT_CFG, ids, attention_mask=mask)
    print(f"int{bits}: max abs diff of hidden states {np.abs(h_q - h_f).max():.2e}")
    assert_close_scaled(h_q, h_f, 1e-5, "hidden")
    assert_close_scaled(pooled_q, pooled_f, 1e-5, "pooled")


# ----------------------------------------------------------------------------------------
# checkpoints


@pytest.mark.parametrize("bits,tied_head", [(8, False), (4, True)])
def test_save_and_load_round_trip_gpt(tmp_path, bits, tied_head):
    pq = quantize_params(_gpt(), bits, tied_head=tied_head)
    save_quantized(pq, GPT_CFG, tmp_path)
    back, cfg = load_quantized(tmp_path)
    assert cfg == GPT_CFG and list(back) == list(pq)
    for k, v in pq.items():
        if isinstance(v, QuantizedTensor):
            assert (back[k].bits, back[k].shape, back[k].group_size, back[k].out_axis) == \
                (v.bits, v.shape, v.group_size, v.out_axis)
            assert np.array_equal(back[k].data, v.data) and np.array_equal(back[k].scales, v.scales), k
        else:
            assert np.array_equal(back[k], v), k
    tensors, meta, _ = safetensors.read_header(tmp_path / "model.safetensors")
    assert meta["bits"] == str(bits) and meta["format_version"] == "1"
    assert tensors["transformer.h.0.mlp.c_fc.weight.scales"][0] == ("F32" if bits == 8 else "F16")
    assert tensors["transformer.h.0.mlp.c_fc.weight"][0] == ("I8" if bits == 8 else "U8")
    quant = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert quant["bits"] == bits and quant["tied_head"] == tied_head
    if bits == 8:  # int8 is 1 byte a weight plus 4 per channel; int4 half a byte plus 2 per group of 32
        assert tensors["transformer.h.0.mlp.c_fc.weight"][1] == (64, 256)  # (C, OC), as the float matrix


def test_save_and_load_round_trip_bert(tmp_path):
    params = bert_init(BERT_CFG, seed=0)
    pq = quantize_params(params, 4)
    save_quantized(pq, BERT_CFG, tmp_path)
    back, cfg = load_quantized(tmp_path)
    assert cfg == BERT_CFG
    ids = np.array([[2, 5, 6, 3]])
    assert np.array_equal(encoder_forward(back, cfg, ids)[0], encoder_forward(pq, cfg, ids)[0])


def _rewrite(path, edit_tensors=None, edit_meta=None):
    tensors = safetensors.load(path)
    _, meta, _ = safetensors.read_header(path)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    safetensors.save(tensors, path, metadata=meta)


def _edit_config(directory, edit):
    d = json.loads((directory / "config.json").read_text())
    edit(d)
    (directory / "config.json").write_text(json.dumps(d))


NAME = "transformer.h.0.mlp.c_fc.weight"


@pytest.fixture
def saved(tmp_path):
    folder = tmp_path / "q"
    save_quantized(quantize_params(_gpt(), 4, group_size=32), GPT_CFG, folder)
    return folder


def test_load_refuses_missing_scales(saved):
    _rewrite(saved / "model.safetensors", lambda t: t.pop(NAME + ".scales"))
    with pytest.raises(QuantizedCheckpointError, match=f"missing scales for '{NAME}'"):
        load_quantized(saved)


def test_load_refuses_wrong_scale_shape(saved):
    _rewrite(saved / "model.safetensors", lambda t: t.update({NAME + ".scales": t[NAME + ".scales"][:1].copy()}))
    with pytest.raises(QuantizedCheckpointError, match=r"wrong scale shape .* \(1, 256\), expected float16 \(2, 256\)"):
        load_quantized(saved)


def test_load_refuses_bits_other_than_4_or_8(saved):
    _edit_config(saved, lambda d: d["quantization_config"].update(bits=3))
    with pytest.raises(QuantizedCheckpointError, match="bits = 3; a quantized checkpoint has bits 4 or 8"):
        load_quantized(saved)


def test_load_refuses_a_group_size_mismatch(saved):
    _edit_config(saved, lambda d: d["quantization_config"].update(group_size=16))
    with pytest.raises(QuantizedCheckpointError, match="group size mismatch: '32' in the file, 16 in config.json"):
        load_quantized(saved)


def test_load_refuses_a_bits_mismatch_between_the_files(saved):
    _rewrite(saved / "model.safetensors", edit_meta=lambda m: m.update(bits="8"))
    with pytest.raises(QuantizedCheckpointError, match="bits '8' in the file, 4 in config.json"):
        load_quantized(saved)


def test_load_refuses_a_float_checkpoint_and_the_float_loader_refuses_a_quantized_one(tmp_path, saved):
    save_pretrained(_gpt(), GPT_CFG, tmp_path / "float")
    with pytest.raises(QuantizedCheckpointError, match="no quantization_config: this is a float checkpoint"):
        load_quantized(tmp_path / "float")
    with pytest.raises(ValueError, match="a quantized checkpoint.*quantize.load_quantized"):
        from_pretrained(saved)
    # float weights with a quantized config.json: the two files do not belong together
    (tmp_path / "float" / "config.json").write_text((saved / "config.json").read_text())
    with pytest.raises(QuantizedCheckpointError, match="do not belong together"):
        load_quantized(tmp_path / "float")


def test_load_refuses_codes_of_the_wrong_dtype_and_unknown_methods(saved, tmp_path):
    _rewrite(saved / "model.safetensors", lambda t: t.update({NAME: t[NAME].view(np.int8)}))
    with pytest.raises(QuantizedCheckpointError, match="int4 codes are a 2-D uint8 array"):
        load_quantized(saved)
    _edit_config(saved, lambda d: d["quantization_config"].update(quant_method="gptq"))
    with pytest.raises(QuantizedCheckpointError, match="'gptq' is not this package's"):
        load_quantized(saved)
    with pytest.raises(ValueError, match="hold no QuantizedTensor"):
        save_quantized(_gpt(), GPT_CFG, tmp_path / "x")


def test_safetensors_keeps_int8_and_uint8(tmp_path):
    t = {"codes": np.array([[-127, 0, 127]], dtype=np.int8), "packed": np.array([0, 143, 255], dtype=np.uint8)}
    safetensors.save(t, tmp_path / "m.safetensors")
    header, _, _ = safetensors.read_header(tmp_path / "m.safetensors")
    assert header["codes"][0] == "I8" and header["packed"][0] == "U8"
    back = safetensors.load(tmp_path / "m.safetensors")
    assert all(back[k].dtype == t[k].dtype and np.array_equal(back[k], t[k]) for k in t)


def test_encode_sentences_from_quantized_weights():
    from llm_from_scratch.tokenizers.wordpiece import WordPieceTokenizer

    cfg = BertConfig(vocab_size=10, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16)
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "dog", "bark", "##s", "!"])
    params = bert_init(cfg, seed=0)
    sentences = ["The dog barks!", "dog", "the the dog"]
    ref = encode_sentences(params, cfg, tok, sentences, kernels="numpy")
    for bits in (8, 4):
        emb = encode_sentences(quantize_params(params, bits), cfg, tok, sentences)
        cos = (emb * ref).sum(axis=1)
        print(f"int{bits}: cosine to float32 {cos.round(5)}")
        assert cos.min() > (0.999 if bits == 8 else 0.98), cos


# ----------------------------------------------------------------------------------------
# the command line


def test_cli_quantize_then_generate_and_refuse_requantizing(tmp_path):
    import subprocess
    import sys

    from llm_from_scratch.tokenizers import CharTokenizer

    params = _gpt()
    save_pretrained(params, GPT_CFG, tmp_path / "float")
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz0123456789 .,!")  # 40 characters: V
    assert tok.vocab_size == GPT_CFG.vocab_size
    tok.save(tmp_path / "float" / "tokenizer.json")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "llm_from_scratch.cli", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    done = cli("quantize", tmp_path / "float", "--bits", "8", "--out", tmp_path / "q8")
    assert done.returncode == 0, done.stderr
    assert "8 matrices int8" in done.stdout
    back, cfg = load_quantized(tmp_path / "q8")
    assert cfg == GPT_CFG and (tmp_path / "q8" / "tokenizer.json").is_file()
    assert np.array_equal(back["transformer.h.0.attn.c_attn.weight"].data,
                          quantize_int8(params["transformer.h.0.attn.c_attn.weight"]).data)
    out = cli("generate", tmp_path / "q8", "--prompt", "abc", "--greedy", "--max-new-tokens", "5")
    assert out.returncode == 0, out.stderr
    prompt = np.array([tok.encode("abc")])
    expected = generate(dequantize_params(back), GPT_CFG, prompt, 5, greedy=True)
    assert out.stdout.rstrip("\n") == tok.decode([int(t) for t in expected[0]])
    again = cli("quantize", tmp_path / "q8", "--bits", "4", "--out", tmp_path / "q4")
    assert again.returncode == 2 and "already quantized" in again.stderr


@pytest.mark.parametrize("bits", [8, 4])
def test_bert_word_embeddings_quantized_per_row(tmp_path, bits):
    params = bert_init(BERT_CFG, seed=0)
    pq = quantize_params(params, bits, word_embeddings=True)
    table = pq["bert.embeddings.word_embeddings.weight"]
    assert isinstance(table, QuantizedTensor) and table.shape == (13, 64) and table.out_axis == 0
    assert isinstance(pq["bert.embeddings.position_embeddings.weight"], np.ndarray)
    ids = np.array([[2, 5, 6, 7, 3, 0]])
    h_q = encoder_forward(pq, BERT_CFG, ids, kernels="numba")[0]
    h_f = encoder_forward(dequantize_params(pq), BERT_CFG, ids)[0]
    assert_close_scaled(h_q, h_f, 1e-5, "hidden")
    save_quantized(pq, BERT_CFG, tmp_path)
    back, _ = load_quantized(tmp_path)
    assert np.array_equal(back["bert.embeddings.word_embeddings.weight"].data, table.data)
    with pytest.raises(ValueError, match="tied head"):
        quantize_params(_gpt(), bits, word_embeddings=True)
