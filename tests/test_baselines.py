"""The committed baselines reproduce: the first steps of chapter 3's MLP run, re-run, give the
committed validation curve (book/data/baselines/mlp_storyworld.json, written by
``llm-scratch baseline mlp``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm_from_scratch.baselines import MLP_SETTINGS, mlp_baseline, read_baseline

ROOT = Path(__file__).resolve().parent.parent
MLP_RECORD = ROOT / "book" / "data" / "baselines" / "mlp_storyworld.json"


def test_the_committed_mlp_record_is_a_complete_run_with_chapter_3s_settings():
    record = read_baseline(MLP_RECORD)
    assert record["settings"] == MLP_SETTINGS, (f"the committed record was made with other settings; "
                                                f"re-run: llm-scratch baseline mlp --out {MLP_RECORD}")
    assert record["steps_trained"] == MLP_SETTINGS["steps"]
    steps = [step for step, _ in record["val_curve"]]
    assert steps == list(range(300, 3001, 300)), steps
    curve = np.array([bpc for _, bpc in record["val_curve"]])
    # the curve falls (to within the noise of 25,000 characters) and ends near the full-text score
    assert curve[-1] < curve[0] - 0.05, curve
    assert abs(record["val_bpc"] - curve[-1]) < 0.02, (record["val_bpc"], curve[-1])


def test_the_first_300_steps_reproduce_the_committed_curve():
    from threadpoolctl import threadpool_limits

    record = read_baseline(MLP_RECORD)
    with threadpool_limits(limits=1, user_api="blas"):   # the command ran on one thread
        short = mlp_baseline(stop_after=300)
    (step, bpc), = short["val_curve"]
    committed_step, committed = record["val_curve"][0]
    print(f"step {step}: re-run {bpc:.6f} bits per character, committed {committed:.6f}, "
          f"abs difference {abs(bpc - committed):.2e}")
    assert step == committed_step == 300
    assert short["val_bpc"] is None and short["steps_trained"] == 300
    assert abs(bpc - committed) < 1e-4, (f"the first 300 steps give {bpc:.6f} bits per character, the "
                                         f"committed record {committed:.6f}; abs difference {abs(bpc - committed):.2e}")


def test_chapter_3_still_trains_the_mlp_with_the_recorded_settings():
    """The record stands for chapter 3's MLP only while chapter 3 trains it the same way: if the
    chapter's settings change, re-run ``llm-scratch baseline mlp`` (and update MLP_SETTINGS)."""
    import json
    import re

    cells = json.loads((ROOT / "book" / "03_neural_networks.ipynb").read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    s = MLP_SETTINGS
    expected = {
        "K": rf"^K = {s['context']}\b",
        "config": rf"MLPConfig\(vocab_size=V, context=K, n_embd={s['n_embd']}, n_hidden={s['n_hidden']}\)",
        "init": rf"init_params\(config, seed={s['init_seed']}\)",
        "train_mlp": (rf"train_mlp\(params, config, train_ids, val_ids\[:{s['eval_chars']:_}\], steps={s['steps']}, "
                      rf"batch_size={s['batch_size']},\s*lr=3e-3, warmup={s['warmup']}, "
                      rf"eval_every={s['eval_every']}, seed={s['seed']}"),
        "train text": rf'world.corpus\("train", n_chars={s["train_chars"]:_}, seed={s["data_seed"]}\)',
        "val text": rf'world.corpus\("val", n_chars={s["val_chars"]:_}, seed={s["data_seed"]}\)',
    }
    assert s["lr"] == 3e-3 and s["weight_decay"] == 0.01 and s["clip"] == 1.0   # train_mlp's defaults in chapter 3
    missing = [name for name, pattern in expected.items() if not re.search(pattern, code, re.MULTILINE)]
    assert not missing, (f"chapter 3 no longer trains its MLP as {MLP_RECORD.name} records ({missing} changed); "
                         f"update llm_from_scratch.baselines.MLP_SETTINGS and re-run: "
                         f"llm-scratch baseline mlp --out {MLP_RECORD}")


GPT_TRIALS = ROOT / "book" / "data" / "baselines" / "gpt_trials.json"


def _shape(trial: dict) -> tuple:
    return tuple(trial["shape"][k] for k in ("n_layer", "n_embd", "batch_size", "block_size"))


def test_the_committed_gpt_trials_cover_every_shape_with_the_current_settings():
    from llm_from_scratch.baselines import GPT_TRIAL_SETTINGS, GPT_TRIAL_SHAPES

    record = read_baseline(GPT_TRIALS, kind="gpt-trials")
    assert record["settings"] == GPT_TRIAL_SETTINGS, (f"the committed trials were made with other settings; "
                                                      f"re-run: llm-scratch baseline gpt-trials --out {GPT_TRIALS}")
    shapes = [_shape(t) for t in record["trials"]]
    assert shapes == [tuple(s) for s in GPT_TRIAL_SHAPES], shapes
    for t in record["trials"]:
        assert t["steps_trained"] == t["steps"] >= 10, t
        # each run was sized to the budget from its timed steps, and took about that long
        budget = GPT_TRIAL_SETTINGS["budget_seconds"]
        assert t["steps"] == max(10, int(budget / t["step_seconds_timed"]) // 10 * 10), t
        assert 0.5 * budget < t["seconds"] < 2.0 * budget, t
        curve = np.array([loss for _, loss in t["loss_curve"]])
        assert curve[-1] < curve[0] - 1.0, curve          # nats per character: every run learned
        assert 0.287 < t["val_bpc"] < 1.5, t             # above StoryWorld's entropy floor


def test_the_first_steps_of_a_committed_gpt_trial_reproduce():
    """The smallest trial's first 30 steps, re-run with the committed step count (the schedule
    depends on it), give the committed training losses."""
    from llm_from_scratch.baselines import gpt_trial, one_thread

    record = read_baseline(GPT_TRIALS, kind="gpt-trials")
    trial = min(record["trials"], key=lambda t: t["n_params"] * t["shape"]["batch_size"] * t["shape"]["block_size"])
    shape = _shape(trial)
    with one_thread():   # as the command ran
        short = gpt_trial(shape, steps=trial["steps"], stop_after=30)
    assert short["val_bpc"] is None and short["steps_trained"] == 30
    rerun, committed = np.array(short["loss_curve"]), np.array(trial["loss_curve"][:3])
    print(f"{shape}: re-run losses {rerun[:, 1]}, committed {committed[:, 1]}")
    assert np.array_equal(rerun[:, 0], committed[:, 0])
    np.testing.assert_allclose(rerun[:, 1], committed[:, 1], rtol=0, atol=1e-6)
