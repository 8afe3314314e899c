import numpy as np
import pytest

from llm_from_scratch.testing import assert_close, gradcheck, numerical_gradient, relative_error


def test_numerical_gradient_matches_analytic_derivative():
    x = np.array([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]])
    g = numerical_gradient(lambda: float(np.sum(np.sin(x) * x)), x)
    assert_close(g, np.cos(x) * x + np.sin(x), rtol=1e-8, atol=1e-10)


def test_numerical_gradient_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))


def test_gradcheck_passes_a_correct_backward_and_catches_a_wrong_one():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5))
    w = rng.standard_normal((5, 4))
    err = gradcheck(lambda x, w: x @ w, lambda d: (d @ w.T, np.einsum("btc,btk->ck", x, d)), {"x": x, "w": w})
    assert err["x"] < 1e-7 and err["w"] < 1e-7
    # forgetting to sum the weight gradient over the time axis is the classic mistake
    with pytest.raises(AssertionError, match="gradient of w"):
        gradcheck(lambda x, w: x @ w, lambda d: (d @ w.T, x[:, 0].T @ d[:, 0]), {"x": x, "w": w})


def test_assert_close_message_reports_max_difference_and_location():
    a = np.zeros((2, 3))
    b = a.copy()
    b[1, 2] = 0.25
    with pytest.raises(AssertionError) as info:
        assert_close(a, b, name="logits")
    msg = str(info.value)
    assert "logits: 1 of 6 elements differ" in msg
    assert "max abs diff 0.25 at index (1, 2)" in msg
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros(3), np.zeros(4))
    with pytest.raises(AssertionError, match="NaN mismatch"):
        assert_close(np.array([np.nan]), np.array([0.0]))
    assert_close(np.array([np.inf, -np.inf, np.nan]), np.array([np.inf, -np.inf, np.nan]))


def test_relative_error():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert abs(relative_error(np.array([1.0]), np.array([1.1])) - 0.1 / 1.1) < 1e-15


def test_assert_close_scaled_uses_the_scale_of_the_values():
    from llm_from_scratch.testing import assert_close_scaled

    expected = np.array([100.0, 0.0, -3.0])
    assert_close_scaled(expected + 99e-6, expected, tol=1e-6)  # 99e-6 <= 1e-6 * (|e| + 100)
    with pytest.raises(AssertionError, match=r"1 of 3 elements differ; max abs diff 0.00011"):
        assert_close_scaled(expected + np.array([0.0, 1.1e-4, 0.0]), expected, tol=1e-6)
    with pytest.raises(AssertionError, match="dtype float32, expected float64"):
        assert_close_scaled(expected.astype(np.float32), expected, tol=1e-3)
    assert_close_scaled(expected.astype(np.float32), expected, tol=1e-3, dtype=np.float32)
    assert_close_scaled(np.zeros((0, 3)), np.zeros((0, 3)), tol=1e-6)  # empty: nothing to compare


def test_random_params_is_the_copy_the_model_tests_use():
    """The same numbers as the loops the GPT and BERT tests write out: scale * N(0, 1) in order,
    +1 on the LayerNorm gains only (GPT-2's ``ln_*.weight``, BERT's ``LayerNorm.weight``)."""
    from llm_from_scratch.testing import random_params

    shapes = {"transformer.wte.weight": (7, 4), "transformer.h.0.ln_1.weight": (4,),
              "transformer.h.0.ln_1.bias": (4,), "transformer.h.0.attn.c_attn.weight": (4, 12),
              "transformer.ln_f.weight": (4,), "bert.embeddings.LayerNorm.weight": (4,),
              "bert.encoder.layer.0.output.LayerNorm.bias": (4,), "cls.predictions.transform.LayerNorm.weight": (4,),
              "cls.predictions.transform.dense.weight": (4, 4)}
    gains = {"transformer.h.0.ln_1.weight", "transformer.ln_f.weight", "bert.embeddings.LayerNorm.weight",
             "cls.predictions.transform.LayerNorm.weight"}
    rng = np.random.default_rng(5)
    expected = {name: (rng.standard_normal(shape) * 0.3 + (1.0 if name in gains else 0.0)).astype(np.float32)
                for name, shape in shapes.items()}
    got = random_params(shapes, seed=5, dtype=np.float32)
    assert list(got) == list(shapes)
    for name in got:
        assert got[name].dtype == np.float32 and np.array_equal(got[name], expected[name]), name
    assert abs(float(got["transformer.ln_f.weight"].mean()) - 1) < 0.5  # the gains sit around 1


def test_check_param_gradients_catches_a_wrong_gradient():
    from llm_from_scratch.testing import check_param_gradients

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    x = rng.standard_normal((4, 3))

    def loss():
        return float(np.sum(np.tanh(x @ params["w"] + params["b"]) ** 2))

    h = np.tanh(x @ params["w"] + params["b"])  # (4, 2)
    dz = 2 * h * (1 - h ** 2)  # (4, 2)
    grads = {"w": x.T @ dz, "b": dz.sum(axis=0)}
    check_param_gradients(params, loss, grads)
    wrong = {"w": grads["w"], "b": grads["b"] * 1.001}
    with pytest.raises(AssertionError, match="gradient of b"):
        check_param_gradients(params, loss, wrong)
