"""The committed quantization measurements (book/data/quant/results.json): they load, hang
together, and a small piece of them reproduces when re-run here: the chapter-8 GPT's bits per
character on 8 validation windows, and MiniLM's cosine similarities on 8 sentences."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from llm_from_scratch.quantize import load_results, quantize_params
from llm_from_scratch.quantize.measure import (GPT_CHECKPOINT, MINILM_VARIANTS, VAL_CHARS, VARIANTS, gpt_val_bpc,
                                               minilm_embeddings, sentence_set)

RESULTS = Path(__file__).resolve().parents[1] / "book" / "data" / "quant" / "results.json"


@pytest.fixture(scope="module")
def results():
    return load_results(RESULTS)


def test_results_hang_together(results):
    gpt, minilm, speed = results["gpt"]["variants"], results["minilm"]["variants"], results["gpt_speed"]["variants"]
    for variants in (gpt, minilm):
        base = variants["float32"]["bytes"]
        for name, v in variants.items():
            assert math.isclose(v["size_ratio"], base / v["bytes"], rel_tol=1e-12), name
        # fewer bits, fewer bytes: int4 < int8 < float32, and quantizing the embedding table too saves more
        assert variants["int4"]["bytes"] < variants["int8"]["bytes"] < base
    assert gpt["int8_tied_head"]["bytes"] < gpt["int8"]["bytes"]
    assert minilm["int8_word_embeddings"]["bytes"] < minilm["int8"]["bytes"]
    for name, v in gpt.items():
        assert math.isclose(v["bpc_change"], v["val_bpc"] - gpt["float32"]["val_bpc"], abs_tol=1e-12), name
    for name, v in minilm.items():
        cos = np.array(v["cosine"])
        assert len(cos) == results["minilm"]["sentences"] and np.all(cos <= 1 + 1e-6)
        assert math.isclose(v["cosine_mean"], cos.mean(), rel_tol=1e-12) and v["cosine_min"] == cos.min()
    assert minilm["float32"]["cosine_min"] > 1 - 1e-6  # the reference against itself
    assert minilm["int4"]["cosine_mean"] < minilm["int8"]["cosine_mean"]  # coarser codes, larger error
    assert set(speed) == set(VARIANTS) and set(minilm) == set(MINILM_VARIANTS)
    assert results["gpt"]["val_chars"] == VAL_CHARS


def test_load_results_names_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="measure --out"):
        load_results(tmp_path / "missing.json")
    bad = json.loads(RESULTS.read_text())
    del bad["minilm"]["variants"]["int4"]
    (tmp_path / "r.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"minilm variants \['int4'\] are missing"):
        load_results(tmp_path / "r.json")


def test_gpt_bpc_on_eight_windows_reproduces(results):
    from llm_from_scratch.data.storyworld import StoryWorld
    from llm_from_scratch.pretrain import load_run

    params, config, tok = load_run(GPT_CHECKPOINT)
    text = StoryWorld().corpus("val", n_chars=VAL_CHARS, seed=0)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    for name in ("float32", "int8", "int4_tied_head"):
        bits, tied = VARIANTS[name]
        p = params if bits is None else quantize_params(params, bits, tied_head=tied)
        bpc = gpt_val_bpc(p, config, ids, len(text) / len(ids), windows=8)
        committed = results["gpt"]["variants"][name]["check_bpc_8_windows"]
        print(f"{name}: bpc on 8 windows {bpc:.6f}, committed {committed:.6f}, diff {abs(bpc - committed):.2e}")
        assert abs(bpc - committed) < 1e-5, name


def test_minilm_cosine_on_eight_sentences_reproduces(results):
    from llm_from_scratch.checkpoints import CheckpointNotInstalled, checkpoint_dir
    from llm_from_scratch.models import bert

    try:
        folder = checkpoint_dir()
    except CheckpointNotInstalled as exc:
        if os.environ.get("CI") or os.environ.get("LLM_SCRATCH_REQUIRE_REFERENCE") == "1":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    params, config = bert.from_pretrained(folder)
    tok, options = bert.load_wordpiece(folder), bert.read_sentence_options(folder)
    sentences = sentence_set()[:8]
    ref = minilm_embeddings(params, config, tok, options, sentences)  # (8, C)
    for name in ("int8", "int4"):
        emb = minilm_embeddings(quantize_params(params, MINILM_VARIANTS[name][0]), config, tok, options, sentences)
        cos = (emb.astype(np.float64) * ref).sum(axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        committed = np.array(results["minilm"]["variants"][name]["cosine"][:8])
        print(f"{name}: cosine {cos.round(5)}, max diff from the committed {np.abs(cos - committed).max():.2e}")
        assert np.abs(cos - committed).max() < 1e-5, name
