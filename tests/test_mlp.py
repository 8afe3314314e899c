import numpy as np

from llm_from_scratch.models.mlp import (MLPConfig, context_windows, evaluate, init_params, mlp_backward,
                                         mlp_forward, mlp_sample, train_mlp)
from llm_from_scratch.testing import numerical_gradient, relative_error


def test_whole_model_gradient_check_float64():
    cfg = MLPConfig(vocab_size=7, context=3, n_embd=5, n_hidden=6)
    params = init_params(cfg, seed=1, dtype=np.float64)
    params["head.weight"] *= 50  # not nearly-uniform predictions: a harder check
    rng = np.random.default_rng(2)
    x = rng.integers(0, 7, (4, 3))
    y = rng.integers(0, 7, 4)
    _, loss, cache = mlp_forward(params, x, y)
    grads = mlp_backward(cache)
    for name, value in params.items():
        numeric = numerical_gradient(lambda: float(mlp_forward(params, x, y)[1]), value)
        assert relative_error(grads[name], numeric, floor=1e-8) < 1e-6, name
        assert np.abs(grads[name]).max() > 0, name


def test_initial_loss_is_close_to_log_vocab():
    cfg = MLPConfig(vocab_size=50, context=4)
    params = init_params(cfg)
    tokens = np.random.default_rng(0).integers(0, 50, 2000)
    assert abs(evaluate(params, tokens, 4) - np.log(50)) < 0.05


def test_training_learns_a_deterministic_sequence():
    # a repeating pattern that needs 2 tokens of context to predict: loss must fall to ~0
    pattern = np.array([0, 1, 0, 2, 3, 1, 3, 2])
    tokens = np.tile(pattern, 300)
    cfg = MLPConfig(vocab_size=4, context=3, n_embd=4, n_hidden=32)
    params = init_params(cfg, seed=0)
    hist = train_mlp(params, cfg, tokens, tokens[:400], steps=300, batch_size=64, lr=1e-2,
                     eval_every=100, progress=False)
    assert hist["val_loss"][0] < np.log(4)
    assert hist["val_loss"][-1] < 0.05
    assert len(hist["train_loss"]) == 300


def test_context_windows_shapes_and_errors():
    x, y = context_windows(np.arange(10), 3, np.array([3, 9]))
    assert x.tolist() == [[0, 1, 2], [6, 7, 8]] and y.tolist() == [3, 9]
    import pytest
    with pytest.raises(ValueError, match="longer than the context"):
        context_windows(np.arange(3), 3)


def test_sample_is_seeded_and_continues_a_learned_pattern():
    pattern = np.array([0, 1, 0, 2, 3, 1, 3, 2])
    tokens = np.tile(pattern, 300)
    cfg = MLPConfig(vocab_size=4, context=3, n_embd=4, n_hidden=32)
    params = init_params(cfg, seed=0)
    train_mlp(params, cfg, tokens, tokens[:400], steps=300, batch_size=64, lr=1e-2, eval_every=300,
              progress=False)
    a = mlp_sample(params, tokens[:3], 40, np.random.default_rng(5))
    b = mlp_sample(params, tokens[:3], 40, np.random.default_rng(5))
    assert a == b and len(a) == 40
    # the trained model continues the cycle almost surely (the loss is below 0.05 nats)
    assert a == np.tile(pattern, 6)[3:43].tolist()
    # a low temperature is (nearly) greedy, a high one (nearly) uniform on an untrained model
    untrained = init_params(cfg, seed=1)
    hot = mlp_sample(untrained, [0, 0, 0], 2000, np.random.default_rng(0), temperature=100.0)
    assert np.abs(np.bincount(hot, minlength=4) / 2000 - 0.25).max() < 0.05


def test_sample_rejects_a_short_prompt_and_bad_temperature():
    import pytest
    params = init_params(MLPConfig(vocab_size=5, context=3, n_embd=2, n_hidden=4))
    with pytest.raises(ValueError, match="at least K=3"):
        mlp_sample(params, [0, 1], 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="temperature"):
        mlp_sample(params, [0, 1, 2], 5, np.random.default_rng(0), temperature=0.0)
