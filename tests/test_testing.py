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
