"""Exercises for chapter 3, neural networks and backpropagation.

Each exercise but the last asks for the backward pass of one op, given plain arrays rather than a
cache. The references call the package's own ``ops`` functions, so a passing solution agrees with
the code the rest of the book trains with. The last, ``central_difference_best_step``, is a
derivation whose answer is a pair of numbers: the step that minimises the error of a central
difference, and the error there.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch import ops
from llm_from_scratch.exercises import Case, Exercise, register


# ----------------------------------------------------------------------------------------------
# linear

def linear_backward(dout, x, w):
    """Gradients of ``out = x @ w + b`` with respect to ``x``, ``w`` and ``b``.

    ``x`` has shape ``(N, C)``, ``w`` has shape ``(C, OC)``, ``b`` has shape ``(OC,)`` and
    ``dout`` (the gradient of the loss with respect to ``out``) has shape ``(N, OC)``. Return
    ``(dx, dw, db)`` with the shapes of ``x``, ``w`` and ``b``.

    Example: x = [[1, 2], [3, 4]], w = [[10], [1]], dout = [[1], [-1]] give
    dx = dout @ w.T = [[10, 1], [-10, -1]], dw = x.T @ dout = [[-2], [-2]] and
    db = dout summed over the rows = [0].
    """
    _, cache = ops.linear_forward(x, w, np.zeros(w.shape[1], dtype=w.dtype))
    return ops.linear_backward(dout, cache)


def _wrong_linear_backward(dout, x, w):
    # averages the bias gradient over the rows instead of summing it
    return dout @ w.T, x.T @ dout, dout.mean(axis=0)


def _linear_case(seed, N, C, OC):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.standard_normal((N, OC)), rng.standard_normal((N, C)), rng.standard_normal((C, OC)))
    return make


# ----------------------------------------------------------------------------------------------
# embedding

def embedding_backward(dout, idx, vocab_size):
    """Gradient of the embedding table for ``out = wte[idx]``.

    ``idx`` is an integer array of any shape (say ``(B, T)``), ``dout`` has shape
    ``idx.shape + (C,)``. Return ``dwte`` of shape ``(vocab_size, C)``: row ``v`` is the sum of
    the ``dout`` rows at every position where ``idx == v`` (zeros for a token that never
    appears). A token used twice must receive both of its gradients.

    Example: idx = [[2, 0, 2]], dout = [[[1, 1], [2, 2], [3, 3]]], vocab_size 3 give
    dwte = [[2, 2], [0, 0], [4, 4]] (row 2 gets 1 + 3).
    """
    C = dout.shape[-1]
    _, cache = ops.embedding_forward(np.asarray(idx), np.zeros((vocab_size, C), dtype=dout.dtype))
    return ops.embedding_backward(dout, cache)


def _wrong_embedding_backward(dout, idx, vocab_size):
    # an assignment instead of a scatter-add: a repeated token keeps only its last gradient
    C = dout.shape[-1]
    dwte = np.zeros((vocab_size, C), dtype=dout.dtype)
    dwte[np.asarray(idx).reshape(-1)] = dout.reshape(-1, C)
    return dwte


def _embedding_case(seed, shape, V, C):
    def make():
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, V, shape)
        return (rng.standard_normal(shape + (C,)), idx, V)
    return make


# ----------------------------------------------------------------------------------------------
# softmax

def softmax_backward(p, dout):
    """Gradient of ``p = softmax(x)`` (over the last axis) with respect to ``x``.

    ``p`` is the softmax output, any shape ``(..., V)``; ``dout`` is the gradient of the loss
    with respect to ``p``, same shape. Return ``dx``, same shape. Do not build the ``V x V``
    Jacobian: its product with ``dout`` has a closed form.

    Example: p = [0.25, 0.75], dout = [1, 0]: the weighted mean sum(p * dout) is 0.25, so
    dx = p * (dout - 0.25) = [0.1875, -0.1875].
    """
    return ops.softmax_backward(dout, p)


def _wrong_softmax_backward(p, dout):
    # forgets the subtracted term: differentiates exp(x_i) but not the shared denominator
    return p * dout


def _softmax_case(seed, shape, scale):
    def make():
        rng = np.random.default_rng(seed)
        p, _ = ops.softmax_forward(scale * rng.standard_normal(shape))
        return (p, rng.standard_normal(shape))
    return make


# ----------------------------------------------------------------------------------------------
# LayerNorm

def layernorm_backward(dout, x, w, eps=1e-5):
    """Gradients of LayerNorm over the last axis with respect to ``x``, ``w`` and ``b``.

    The forward pass is ``xhat = (x - mean) / sqrt(var + eps)`` (mean and biased variance over
    the last axis, of size C) and ``out = xhat * w + b``, with ``w`` and ``b`` of shape ``(C,)``.
    ``dout`` has the shape of ``x``. Return ``(dx, dw, db)``; ``dw`` and ``db`` are summed over
    every leading axis. Remember that the mean and the variance depend on ``x`` too.

    Example: x = [[1, 3]] normalises to xhat = [[-1, 1]] (up to eps); with w = [2, 1] and
    dout = [[1, 1]], dw = dout * xhat = [-1, 1] and db = [1, 1].
    """
    _, cache = ops.layernorm_forward(x, w, np.zeros_like(w), eps)
    return ops.layernorm_backward(dout, cache)


def _wrong_layernorm_backward(dout, x, w, eps=1e-5):
    # treats the mean and the standard deviation as constants: dx = dxhat / sigma
    C = x.shape[-1]
    mean = x.mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    return dout * w * rstd, (dout * xhat).reshape(-1, C).sum(0), dout.reshape(-1, C).sum(0)


def _layernorm_case(seed, shape, shift):
    def make():
        rng = np.random.default_rng(seed)
        C = shape[-1]
        return (rng.standard_normal(shape), shift + 2 * rng.standard_normal(shape),
                1 + 0.3 * rng.standard_normal(C))
    return make


def _leaves_inputs_alone(fn, make_args):
    args = make_args()
    before = [np.array(a, copy=True) for a in args]
    fn(*args)
    for i, (a, b) in enumerate(zip(args, before)):
        if not np.array_equal(np.asarray(a), b):
            return f"argument {i} was changed; a backward pass must return fresh arrays"
    return ""


# ----------------------------------------------------------------------------------------------
# the best step of a central difference (a derivation)

def central_difference_best_step(eps, f_abs, f3_abs):
    """The step ``h`` that minimises the error model of a central difference, and the error
    there, as ``(h_star, error_star)``.

    The central difference ``(f(x + h) - f(x - h)) / 2h`` has a truncation error of about
    ``|f'''| h^2 / 6`` and a rounding error of about ``eps |f| / h``, so its error is about
    ``E(h) = f3_abs h^2 / 6 + eps f_abs / h``. Setting ``E'(h) = f3_abs h / 3 - eps f_abs / h^2``
    to zero gives ``h_star = (3 eps f_abs / f3_abs) ** (1/3)``, and there the rounding term is
    twice the truncation term, so ``E(h_star) = f3_abs h_star^2 / 2``.

    Example: eps = 1, |f| = 9, |f'''| = 1: h_star = 27^(1/3) = 3, E = 9/6 + 9/3 = 4.5.
    """
    h = (3.0 * eps * f_abs / f3_abs) ** (1.0 / 3.0)
    error = f3_abs * h ** 2 / 6.0 + eps * f_abs / h       # E(h) at the minimum
    return float(h), float(error)


def _wrong_central_difference_best_step(eps, f_abs, f3_abs):
    # a common slip: differentiate h^2 / 6 to h / 6 (the 2 forgotten), so h^3 = 6 eps |f| / |f'''|
    h = (6.0 * eps * f_abs / f3_abs) ** (1.0 / 3.0)
    return float(h), float(f3_abs * h ** 2 / 6.0 + eps * f_abs / h)


EXERCISES = [
    register(Exercise(
        name="linear_backward", chapter=3, title="the backward pass of a linear layer",
        reference=linear_backward,
        cases=(
            Case("the worked example in the docstring",
                 lambda: (np.array([[1.0], [-1.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]),
                          np.array([[10.0], [1.0]]))),
            Case("random N, C, OC = 5, 3, 4", _linear_case(0, 5, 3, 4)),
            Case("one row, square weight", _linear_case(1, 1, 6, 6)),
            Case("many rows, C, OC = 7, 2", _linear_case(2, 40, 7, 2)),
        ),
        extra_checks=(("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _linear_case(3, 4, 3, 2))),),
        hint="out[n, j] = sum_i x[n, i] w[i, j] + b[j]: b[j] is added to every row, so its "
             "gradient collects dout[n, j] from every row n (a sum, not a mean)",
    )),
    register(Exercise(
        name="embedding_backward", chapter=3, title="the backward pass of an embedding lookup",
        reference=embedding_backward,
        cases=(
            Case("the worked example in the docstring",
                 lambda: (np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]]), np.array([[2, 0, 2]]), 3)),
            Case("B, T = 2, 3 over V = 4 (repeats are likely)", _embedding_case(0, (2, 3), 4, 5)),
            Case("a long sequence over V = 3", _embedding_case(1, (1, 50), 3, 2)),
            Case("no repeats: each id at most once", lambda: (np.arange(12.0).reshape(1, 4, 3),
                                                             np.array([[3, 0, 5, 1]]), 7)),
        ),
        hint="row v of the table was read at every position where idx == v, so it receives the "
             "sum of all those dout rows: add them up (np.add.at, or a loop), don't assign",
    )),
    register(Exercise(
        name="softmax_backward", chapter=3, title="the softmax Jacobian-vector product",
        reference=softmax_backward,
        cases=(
            Case("the worked example in the docstring",
                 lambda: (np.array([0.25, 0.75]), np.array([1.0, 0.0]))),
            Case("B, T, V = 2, 3, 5", _softmax_case(0, (2, 3, 5), 1.0)),
            Case("peaked rows (logits scaled by 8)", _softmax_case(1, (4, 7), 8.0)),
            Case("a single row of V = 11", _softmax_case(2, (11,), 2.0)),
        ),
        extra_checks=(("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _softmax_case(3, (3, 4), 1.0))),),
        hint="dp_i/dx_j = p_i (delta_ij - p_j): every x_j moves every p_i through the shared "
             "denominator, so dx_j = p_j (dout_j - sum_i p_i dout_i)",
    )),
    register(Exercise(
        name="layernorm_backward", chapter=3, title="the backward pass of LayerNorm",
        reference=layernorm_backward,
        rtol=1e-6, atol=1e-8,
        cases=(
            Case("the worked example in the docstring",
                 lambda: (np.array([[1.0, 1.0]]), np.array([[1.0, 3.0]]), np.array([2.0, 1.0]))),
            Case("B, T, C = 2, 3, 5", _layernorm_case(0, (2, 3, 5), 0.0)),
            Case("rows far from zero (x around 100)", _layernorm_case(1, (4, 6), 100.0)),
            Case("eps = 0.1 changes the scale", lambda: (*_layernorm_case(2, (3, 4), 0.0)(), 0.1)),
        ),
        extra_checks=(("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _layernorm_case(4, (2, 5), 1.0))),),
        hint="the mean and the variance depend on x too: with dxhat = dout * w, "
             "dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var + eps), means over C",
    )),
    register(Exercise(
        name="central_difference_best_step", chapter=3,
        title="the best step of a central difference, and the error there (a derivation)",
        reference=central_difference_best_step,
        rtol=1e-10, atol=0.0,
        cases=(
            Case("the docstring's example: eps 1, |f| 9, |f'''| 1", lambda: (1.0, 9.0, 1.0)),
            Case("float64, |f| = |f'''| = 1", lambda: (float(np.finfo(np.float64).eps), 1.0, 1.0)),
            Case("float32, |f| = |f'''| = 1", lambda: (float(np.finfo(np.float32).eps), 1.0, 1.0)),
            Case("float64, a large loss (|f| = 300) and |f'''| = 0.02",
                 lambda: (float(np.finfo(np.float64).eps), 300.0, 0.02)),
            Case("bfloat16's epsilon, |f| = 2, |f'''| = 50", lambda: (2.0 ** -7, 2.0, 50.0)),
        ),
        hint="differentiate E(h) = f3 h^2 / 6 + eps f / h and set it to zero: f3 h / 3 = eps f / h^2",
    )),
]

WRONG = {
    "linear_backward": _wrong_linear_backward,
    "embedding_backward": _wrong_embedding_backward,
    "softmax_backward": _wrong_softmax_backward,
    "layernorm_backward": _wrong_layernorm_backward,
    "central_difference_best_step": _wrong_central_difference_best_step,
}
