"""``llm-scratch train`` / ``generate`` end to end on a tiny model, and the pretraining glue."""

import json

import numpy as np
import pytest

from llm_from_scratch.cli import main
from llm_from_scratch.pretrain import bits_per_char, build_tokenizer, load_corpus, load_run, pretrain_gpt
from llm_from_scratch.train import TrainConfig

TINY = ["--n-chars", "20000", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-every", "2", "--checkpoint-every", "2", "--kernels", "numpy"]


def test_train_resume_and_generate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "4", *TINY]) == 0
    assert "bits/char" in capsys.readouterr().out
    assert (out / "latest").read_text().strip() == "step_0000004"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"):
        assert (out / "step_0000004" / name).is_file(), name
    cfg = json.loads((out / "step_0000004" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["n_embd"] == 16
    # an interrupted run resumed with --resume ends where an uninterrupted one does
    out2 = tmp_path / "run2"
    tc = TrainConfig(steps=4, batch_size=4, block_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=3, eval_every=2,
                     checkpoint_every=2)
    pretrain_gpt(out2, n_chars=20000, n_layer=1, n_head=2, n_embd=16, train_config=tc, kernels="numpy",
                 progress=False, stop_after=2)
    assert (out2 / "latest").read_text().strip() == "step_0000002"
    assert main(["train", "--out", str(out2), "--steps", "4", "--resume", *TINY]) == 0
    params_a, _, _ = load_run(out)
    params_b, _, _ = load_run(out2)
    assert all(np.array_equal(params_a[k], params_b[k]) for k in params_a)  # bit-identical


def test_train_refuses_bad_input(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), "--data", str(tmp_path / "missing.txt"), *TINY]) == 2
    assert "neither" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y"), "--tokenizer", "bpe", "--vocab-size", "100", *TINY]) == 2
    assert "more than the 256 bytes" in capsys.readouterr().err


def test_corpus_and_tokenizer_helpers(tmp_path):
    train, val = load_corpus("storyworld", 5000, seed=1)
    assert 0 < len(train) <= 5000 and 0 < len(val) <= 500 and not set(train.split("\n")) & set(val.split("\n")) - {""}
    path = tmp_path / "mine.txt"
    path.write_text("hello world\n" * 100, encoding="utf-8")
    train, val = load_corpus(str(path), 10_000)
    assert len(train) == 1080 and train + val == path.read_text()
    tok = build_tokenizer("char", train)
    assert tok.decode(tok.encode("hello")) == "hello"
    assert abs(bits_per_char(np.log(2) * 3, 3.0) - 1.0) < 1e-12
    with pytest.raises(ValueError, match="unknown tokenizer"):
        build_tokenizer("words", train)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nothing")


def test_generate_command_prints_a_continuation(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "2", *TINY]) == 0
    capsys.readouterr()
    args = ["generate", str(out), "--prompt", "Mia", "--max-new-tokens", "12", "--seed", "3", "--kernels", "numpy"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("Mia") and len(first.rstrip("\n")) == 3 + 12
    assert main(args + ["--no-cache"]) == 0
    assert capsys.readouterr().out == first  # the cache changes speed, never the text
    assert main(["generate", str(out), "--prompt", "", "--kernels", "numpy"]) == 2
    assert "prompt is empty" in capsys.readouterr().err


def test_train_flags_are_the_train_config_fields(capsys):
    import dataclasses

    from llm_from_scratch.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "x"])
    for f in dataclasses.fields(TrainConfig):  # every field is a flag, with the field's default
        assert getattr(args, f.name) == f.default, f.name
    assert TrainConfig().min_lr == 1e-4 and TrainConfig(lr=0.5).min_lr == 0.05  # lr / 10 unless given
    assert TrainConfig().checkpoint_every == 200
    args = parser.parse_args(["train", "--out", "x", "--warmup", "7", "--betas", "0.8", "0.9", "--min-lr", "0",
                              "--grad-clip", "0.5", "--keep-checkpoints", "3"])
    assert (args.warmup_steps, args.betas, args.min_lr, args.grad_clip, args.keep_checkpoints) == \
        (7, [0.8, 0.9], 0.0, 0.5, 3)
    assert args.warmup_steps == parser.parse_args(["train", "--out", "x", "--warmup-steps", "7"]).warmup_steps
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS optimizer steps in the whole run (default: 1000)" in help_text
    assert "--min-lr MIN_LR learning rate at the end of the cosine decay (default: lr / 10) --" in help_text


def test_train_flags_reach_the_run(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "3", "--lr", "0.002", "--betas", "0.8", "0.99",
                 "--eval-batches", "1", *TINY]) == 0
    saved = json.loads((out / "step_0000003" / "trainer_state.json").read_text())["train_config"]
    assert saved["lr"] == 0.002 and saved["min_lr"] == 0.002 / 10 and saved["betas"] == [0.8, 0.99]
    assert saved["warmup_steps"] == 2 and saved["eval_batches"] == 1  # warmup shortened to fit 3 steps
