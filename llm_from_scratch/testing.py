"""Numerical checks: gradient checking and closeness with a useful failure message.

Every backward pass in this package is checked two ways: against a float64 central-difference
estimate of the gradient (this module), and against PyTorch autograd (in the test suite).

The gradient check works on a scalar made from the op's output and a *random* upstream
gradient ``dout``: ``L = sum(out * dout)``, so ``dL/dx = backward(dout)``. A ``dout`` of all
ones would hide mistakes that swap or sum rows; a random one does not.

For a whole model, ``check_param_gradients`` holds every parameter's gradient to central
differences of the loss. Two more functions the test files share: ``assert_close_scaled``, the
comparison of a fast twin (numba, PyTorch) with its reference at a tolerance relative to the size
of the values, and ``random_params``, parameters with every entry random for gradient and parity
checks.

Central differences have error O(h^2) from truncation plus O(eps / h) from rounding. With
float64 (eps ~ 1e-16) and h = 1e-5 both are ~1e-10 relative, far below the 1e-6 tolerance
(relative to each entry plus the gradient's largest entry, see ``gradcheck``).
In float32 (eps ~ 6e-8) the rounding term alone is ~1e-2: that is why gradient checks run in
float64.

References: CS231n notes, "Gradient checks"; llm.c ``test_gpt2.c`` for the style of report.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["numerical_gradient", "gradcheck", "check_param_gradients", "assert_close", "assert_close_scaled",
           "relative_error", "random_params"]


def relative_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-12) -> float:
    """Largest elementwise ``|a - b| / max(|a|, |b|, floor)``.

    >>> relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.002]))  # doctest: +ELLIPSIS
    0.000999...
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), floor)
    return float(np.max(np.abs(a - b) / scale))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``x`` (modified in place
    and restored).

    Example: for f = sum(x**2) the gradient is 2x.

    >>> x = np.array([1.0, -3.0])
    >>> numerical_gradient(lambda: float(np.sum(x ** 2)), x).round(6)
    array([ 2., -6.])
    """
    if x.dtype != np.float64:
        raise TypeError(f"numerical gradients need float64 inputs, got {x.dtype}: "
                        "float32 rounding error (~1e-2 relative) would swamp the check")
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view: writing to it changes x
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def gradcheck(
    forward: Callable[..., np.ndarray],
    backward: Callable[[np.ndarray], tuple | np.ndarray],
    inputs: dict[str, np.ndarray],
    wrt: list[str] | None = None,
    seed: int = 0,
    h: float = 1e-5,
    tol: float = 1e-6,
) -> dict[str, float]:
    """Check ``backward`` against central differences of ``forward`` in float64.

    ``forward(**inputs)`` returns the output array (or a tuple whose first element is it);
    ``backward(dout)`` returns the gradients for the names in ``wrt``, in that order (a single
    array when there is one name). Each gradient is compared with the numerical gradient of
    ``L = sum(out * dout)`` for a random ``dout`` drawn from ``seed``. Each entry must satisfy
    ``|a - n| <= tol * (|n| + max(1, max|n|))``, a test relative to the entry and to the largest
    entry at once (an entry near 0 is held to the scale of the whole gradient, not to itself).
    Raises ``AssertionError`` naming the input, the max abs and relative error and where, if any
    entry fails; returns ``{name: largest relative error}`` otherwise (for the record: entries
    whose gradient is tiny can have a large relative error and still pass).

    >>> x = np.array([[0.5, -1.0, 2.0]])
    >>> gradcheck(lambda x: np.tanh(x), lambda dout: dout * (1 - np.tanh(x) ** 2), {"x": x})["x"] < 1e-8
    True
    """
    wrt = list(inputs) if wrt is None else list(wrt)
    for name, value in inputs.items():
        if name in wrt and (not isinstance(value, np.ndarray) or value.dtype != np.float64):
            raise TypeError(f"gradcheck input {name!r} must be a float64 array, got "
                            f"{getattr(value, 'dtype', type(value).__name__)}")

    def run() -> np.ndarray:
        out = forward(**inputs)
        return out[0] if isinstance(out, tuple) else out

    out = run()
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(np.shape(out))
    analytic = backward(dout)
    if not isinstance(analytic, (tuple, list)):
        analytic = (analytic,)
    if len(analytic) != len(wrt):
        raise ValueError(f"backward returned {len(analytic)} gradients, expected {len(wrt)} for {wrt}")

    def loss() -> float:
        return float(np.sum(run() * dout))

    errors = {}
    for name, grad in zip(wrt, analytic):
        numeric = numerical_gradient(loss, inputs[name], h=h)
        assert_close(grad, numeric, rtol=tol, atol=tol * max(1.0, float(np.max(np.abs(numeric)))),
                     name=f"gradient of {name}")
        errors[name] = relative_error(grad, numeric, floor=1e-8)
    return errors


def check_param_gradients(params: dict[str, np.ndarray], loss_fn: Callable[[], float],
                          grads: dict[str, np.ndarray], tol: float = 1e-6) -> None:
    """Assert that ``grads[name]`` is the central-difference gradient of the scalar ``loss_fn()``
    with respect to ``params[name]`` (float64, changed in place and restored), for every name,
    within ``tol`` relative to each entry and to the largest.

    >>> w = {"w": np.array([1.0, -2.0])}
    >>> check_param_gradients(w, lambda: float(np.sum(w["w"] ** 3)), {"w": 3 * w["w"] ** 2})
    """
    for name, p in params.items():
        numeric = numerical_gradient(loss_fn, p)
        scale = max(1.0, float(np.abs(numeric).max()))
        assert_close(grads[name], numeric, rtol=tol, atol=tol * scale, name=f"gradient of {name}")


def assert_close(actual, expected, rtol: float = 1e-7, atol: float = 0.0, name: str = "value") -> None:
    """Assert ``|actual - expected| <= atol + rtol * |expected|`` elementwise.

    On failure the message gives the shapes, how many elements differ, the max absolute and max
    relative difference, and the index and both values where the absolute difference is largest.

    >>> assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9]), rtol=1e-6)
    >>> assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.5]), name="y")
    Traceback (most recent call last):
    ...
    AssertionError: y: 1 of 2 elements differ; max abs diff 0.5 at index (1,) (actual 2, expected 2.5); max rel diff 0.2 (rtol 1e-07, atol 0.0)
    """
    a = np.asarray(actual)
    e = np.asarray(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} does not match expected shape {e.shape}")
    a64 = a.astype(np.float64)
    e64 = e.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(e64)
    if np.any(nan_a != nan_e):
        idx = np.unravel_index(int(np.argmax(nan_a != nan_e)), a.shape)
        raise AssertionError(f"{name}: NaN mismatch at index {tuple(int(i) for i in idx)} "
                             f"(actual {a64[idx]}, expected {e64[idx]})")
    with np.errstate(invalid="ignore"):
        diff = np.where(nan_a | (a64 == e64), 0.0, np.abs(a64 - e64))  # equal infinities agree
    bad = diff > atol + rtol * np.abs(e64)
    if np.any(bad):
        i = int(np.argmax(diff))
        idx = np.unravel_index(i, a.shape) if a.ndim else ()
        rel = diff / np.maximum(np.abs(e64), 1e-300)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {a.size} elements differ; max abs diff {diff.max():.6g} at index "
            f"{tuple(int(j) for j in idx)} (actual {a64[idx]:.10g}, expected {e64[idx]:.10g}); "
            f"max rel diff {rel.max():.6g} (rtol {rtol}, atol {atol})"
        )


def assert_close_scaled(actual, expected, tol: float, name: str = "value", dtype=None) -> None:
    """Assert ``|actual - expected| <= tol * (|expected| + max(1, max |expected|))`` elementwise,
    and that ``actual`` has ``dtype`` (by default, the dtype of ``expected``).

    Different summation orders leave errors that grow with the largest value, not with each
    element, so a fast twin is held to ``tol`` relative to the array's scale as well as to each
    element's. ``assert_close`` reports any failure.

    >>> assert_close_scaled(np.array([1000.0, 1e-3]), np.array([1000.0, 0.0]), tol=1e-6)   # 1e-3 <= 1e-6 * 1000
    >>> assert_close_scaled(np.array([1.0], np.float32), np.array([1.0]), tol=1e-6, name="y")
    Traceback (most recent call last):
    ...
    AssertionError: y: dtype float32, expected float64
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    dtype = expected.dtype if dtype is None else np.dtype(dtype)
    if actual.dtype != dtype:
        raise AssertionError(f"{name}: dtype {actual.dtype}, expected {dtype}")
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    assert_close(actual, expected, rtol=tol, atol=tol * scale, name=name)


def _is_layernorm_gain(name: str) -> bool:
    # GPT-2 names its LayerNorms ln_1, ln_2, ln_f; BERT names them LayerNorm
    return name.endswith(".weight") and (".ln_" in name or "LayerNorm" in name)


def random_params(shapes: dict[str, tuple[int, ...]], seed: int = 0, dtype=np.float64,
                  scale: float = 0.3) -> dict[str, np.ndarray]:
    """Parameters of these shapes with every entry random, so that no gradient path hides behind
    a zero bias or a unit gain: ``scale * N(0, 1)`` in order of ``shapes``, plus 1 for the
    LayerNorm gains (``*.ln_*.weight``, ``*.LayerNorm.weight``).

    >>> p = random_params({"h.0.ln_1.weight": (2,), "h.0.ln_1.bias": (2,)}, seed=0)
    >>> {name: value.round(3).tolist() for name, value in p.items()}   # the gain around 1, the bias around 0
    {'h.0.ln_1.weight': [1.038, 0.96], 'h.0.ln_1.bias': [0.192, 0.031]}
    >>> (0.3 * np.random.default_rng(0).standard_normal(4)).round(3).tolist()   # the same draws
    [0.038, -0.04, 0.192, 0.031]
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in shapes.items():
        value = rng.standard_normal(shape) * scale
        if _is_layernorm_gain(name):
            value += 1.0
        params[name] = value.astype(dtype)
    return params
