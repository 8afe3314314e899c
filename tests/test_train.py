"""The training loop: learning, metrics, atomic checkpoints, bit-identical resume, divergence."""

import json

import numpy as np
import pytest

from llm_from_scratch import ops
from llm_from_scratch.train import (TrainConfig, TrainingDiverged, latest_checkpoint, load_checkpoint, read_metrics,
                                    train)

V = 6


def _bigram_model():
    """A bigram model: logits = W[x]. Small, fast, and fully deterministic."""
    def loss_and_grads(params, x, y):
        logits, emb_cache = ops.embedding_forward(x, params["w"])
        loss, ce_cache = ops.cross_entropy_forward(logits, y)
        dlogits = ops.cross_entropy_backward(1.0, ce_cache)
        return loss, {"w": ops.embedding_backward(dlogits, emb_cache)}

    def loss_fn(params, x, y):
        return loss_and_grads(params, x, y)[0]

    return loss_and_grads, loss_fn


def _data(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(V, 0.2), size=V)
    out = [0]
    for _ in range(n - 1):
        out.append(int(rng.choice(V, p=table[out[-1]])))
    return np.array(out)


def _params():
    return {"w": np.random.default_rng(1).standard_normal((V, V)) * 0.1}


CFG = TrainConfig(steps=40, batch_size=8, block_size=16, lr=0.1, min_lr=0.01, warmup_steps=5,
                  eval_every=10, eval_batches=2, checkpoint_every=10, seed=3)


def test_training_lowers_the_loss_and_writes_metrics(tmp_path):
    lg, lf = _bigram_model()
    data = _data()
    res = train(lg, lf, _params(), data[:4000], data[4000:], CFG, out_dir=tmp_path, progress=False)
    assert res.history["val_loss"][-1] < min(np.log(V) - 0.4, res.history["val_loss"][0] - 0.1)
    m = read_metrics(tmp_path / "metrics.jsonl")
    assert m["step"] == list(range(40)) and m["val_step"] == [10, 20, 30, 40]
    assert all(t > 0 for t in m["tokens_per_s"])
    assert latest_checkpoint(tmp_path).name == "step_0000040"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000030", "step_0000040"]  # keeps 2
    assert not list(tmp_path.glob(".*tmp"))


def test_resume_is_bit_identical(tmp_path):
    lg, lf = _bigram_model()
    data = _data()
    full = train(lg, lf, _params(), data[:4000], data[4000:], CFG, out_dir=tmp_path / "a", progress=False)
    part = train(lg, lf, _params(), data[:4000], data[4000:], CFG, out_dir=tmp_path / "b", progress=False,
                 stop_after=20)
    assert part.step == 20
    rest = train(lg, lf, _params(), data[:4000], data[4000:], CFG, out_dir=tmp_path / "b", progress=False,
                 resume=True)
    assert rest.history["step"][0] == 20
    assert part.history["loss"] + rest.history["loss"] == full.history["loss"]  # exact equality
    assert np.array_equal(rest.params["w"], full.params["w"])
    a = (tmp_path / "a" / "metrics.jsonl").read_text()
    b = (tmp_path / "b" / "metrics.jsonl").read_text()
    strip = lambda t: [{k: v for k, v in json.loads(l).items() if k != "tokens_per_s"} for l in t.splitlines()]
    assert strip(a) == strip(b)


def test_divergence_stops_with_step_and_tensor(tmp_path):
    lg, lf = _bigram_model()

    def exploding(params, x, y):
        loss, grads = lg(params, x, y)
        if exploding.calls == 7:
            grads["w"][2, 3] = np.nan
        exploding.calls += 1
        return loss, grads
    exploding.calls = 0
    params = _params()
    with pytest.raises(TrainingDiverged, match=r"step 7: the gradient of w is nan at index \(2, 3\)") as info:
        train(exploding, lf, params, _data(), None, CFG, progress=False)
    assert info.value.step == 7 and np.all(np.isfinite(params["w"]))


def test_checkpoint_contents_load_without_pickle(tmp_path):
    lg, lf = _bigram_model()
    data = _data()
    train(lg, lf, _params(), data, None, CFG, out_dir=tmp_path, progress=False)
    params, opt_state, state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 40 and params["w"].shape == (V, V)
    assert "exp_avg.w" in opt_state and opt_state["step"] == 40
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(lg, lf, _params(), data, None, CFG, out_dir=tmp_path / "empty", resume=True, progress=False)


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


def test_a_gradient_norm_that_overflows_is_reported_as_divergence():
    lg, lf = _bigram_model()

    def huge(params, x, y):
        loss, grads = lg(params, x, y)
        grads["w"] = np.full_like(grads["w"], 1e200)  # finite, but its squared norm is not
        return loss, grads
    with pytest.raises(TrainingDiverged, match="step 0: the global gradient norm is not finite"):
        train(huge, lf, _params(), _data(), None, CFG, progress=False)
