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
