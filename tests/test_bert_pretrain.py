"""Masked-LM pretraining (models/bert/pretrain.py) and the committed StoryWorld BERT of chapter 9."""

import json
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch.models import bert
from llm_from_scratch.models.bert.pretrain import (TRAINING_FILE, mlm_evaluate, pretrain_mlm,
                                                   pretrain_storyworld_bert, storyworld_data, trim_batch)

CHECKPOINT = Path(__file__).resolve().parents[1] / "book" / "data" / "bert_storyworld"


def tiny_setup(seed=0):
    cfg = bert.BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, max_position_embeddings=10, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(seed)
    ids = np.zeros((12, 10), dtype=np.int64)
    for i in range(12):
        n = int(rng.integers(4, 9))
        ids[i, 0], ids[i, 1:n + 1], ids[i, n + 1] = 2, 5 + (np.arange(n) + i) % 11, 3   # [CLS] a pattern [SEP]
    enc = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    return cfg, enc


def test_trim_batch_cuts_to_longest_row():
    cfg, enc = tiny_setup()
    b = trim_batch(enc, np.array([0, 3]))
    assert b["input_ids"].shape == (2, int(enc["attention_mask"][[0, 3]].sum(1).max()))
    assert b["attention_mask"][:, -1].max() == 1


def test_pretrain_mlm_learns_and_replays_exactly():
    cfg, enc = tiny_setup()
    params = bert.init_params(cfg, heads=("mlm",), seed=0)
    before = mlm_evaluate(params, cfg, enc, {0, 2, 3}, 4, kernels="numpy")
    history = pretrain_mlm(params, cfg, enc, {0, 2, 3}, 4, steps=200, batch_size=6, lr=1e-2, warmup=5,
                           kernels="numpy")
    after = mlm_evaluate(params, cfg, enc, {0, 2, 3}, 4, kernels="numpy")
    print("MLM loss before", before[0], "after", after[0])
    assert after[0] < 0.75 * before[0]
    # stopping early replays the first steps of the long run bit for bit (same schedule, same draws)
    again = bert.init_params(cfg, heads=("mlm",), seed=0)
    short = pretrain_mlm(again, cfg, enc, {0, 2, 3}, 4, steps=200, batch_size=6, lr=1e-2, warmup=5,
                         kernels="numpy", stop_after=7)
    diff = max(abs(a - b) for a, b in zip(short["loss"], history["loss"][:7]))
    print("max abs difference of the first 7 losses:", diff)
    assert len(short["loss"]) == 7 and short["loss"] == history["loss"][:7]


def test_pretrain_mlm_rejects_bad_arguments():
    cfg, enc = tiny_setup()
    params = bert.init_params(cfg, heads=("mlm",), seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        pretrain_mlm(params, cfg, enc, {0, 2, 3}, 4, steps=5, batch_size=100)
    with pytest.raises(ValueError, match="warmup"):
        pretrain_mlm(params, cfg, enc, {0, 2, 3}, 4, steps=5, batch_size=2, warmup=5)
    with pytest.raises(ValueError, match="input_ids"):
        pretrain_mlm(params, cfg, {"ids": enc["input_ids"]}, {0, 2, 3}, 4, steps=5, batch_size=2)


def test_committed_checkpoint_loads_and_matches_its_record():
    record = json.loads((CHECKPOINT / TRAINING_FILE).read_text(encoding="utf-8"))
    params, cfg = bert.from_pretrained(CHECKPOINT)
    tok = bert.load_wordpiece(CHECKPOINT)
    a = record["arguments"]
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.max_position_embeddings) == (
        a["hidden_size"], a["num_layers"], a["num_heads"], a["max_length"])
    assert "cls.predictions.transform.dense.weight" in params and tok.vocab_size == cfg.vocab_size
    # the vocabulary the command builds today is the committed one, token for token
    _, _, rebuilt = storyworld_data(a["n_train"], 200, a["vocab_size"], a["max_length"])
    assert rebuilt.vocab == tok.vocab


def test_command_reproduces_committed_first_losses():
    record = json.loads((CHECKPOINT / TRAINING_FILE).read_text(encoding="utf-8"))
    first = record["first_losses"]
    assert len(first) >= 3
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)  # the command ran on one thread: the order of every sum is then the same
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            replay = pretrain_storyworld_bert(None, **record["arguments"], stop_after=len(first),
                                              record_steps=len(first))
    finally:
        numba.set_num_threads(before)
    diff = max(abs(a - b) for a, b in zip(replay["first_losses"], first))
    print("committed first losses", first, "\nreplayed", replay["first_losses"], "\nmax abs difference", diff)
    assert replay["first_losses"] == first
