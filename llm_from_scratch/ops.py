"""Neural-network ops as forward/backward pairs of pure numpy functions.

Every op is two functions side by side. ``out, cache = op_forward(...)`` computes the output
and keeps only what the backward pass needs; ``dx, ... = op_backward(dout, cache)`` turns the
gradient of the loss with respect to ``out`` into gradients with respect to the inputs.
Backward never changes its arguments and always returns fresh arrays; the caller adds them
into its ``grads``. Ops keep the dtype they are given: float32 for training, float64 for
gradient checks.

Scope: linear, embedding lookup, ReLU, tanh, GELU (exact and tanh approximation), softmax
(with an optional mask), log-softmax, cross-entropy from logits (``ignore_index``, label
smoothing), LayerNorm, dropout and the residual add. Softmax, log-softmax and cross-entropy
subtract the row maximum before exponentiating (the log-sum-exp trick), so logits of +-1e4
give finite losses and gradients.

Left out: attention (its own module), loss reductions other than the mean, class weights,
layouts other than "features on the last axis", in-place variants. The numba twins of the hot
ops (same names, same signatures, same caches) are in ``llm_from_scratch.kernels.ops``.

Where these ops differ from PyTorch on purpose:

- a softmax row whose mask excludes every entry gives all zeros and a zero gradient
  (PyTorch gives NaN);
- a cross-entropy batch whose targets are all ``ignore_index`` gives loss 0.0 and a zero
  gradient (PyTorch gives NaN).

References:

- A. Karpathy, llm.c: ``train_gpt2.c`` and ``doc/layernorm/layernorm.py`` (the
  forward/backward contract, the LayerNorm backward).
- D. Hendrycks, K. Gimpel, "Gaussian Error Linear Units (GELUs)", 2016, section 2 (GELU and
  its tanh approximation).
- J. L. Ba, J. R. Kiros, G. E. Hinton, "Layer Normalization", 2016, section 3, eq. (4).
- N. Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
  JMLR 2014 (we use the "inverted" form that scales at training time).
- C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016,
  section 7 (label smoothing).
- A. Radford et al., "Language Models are Unsupervised Multitask Learners", 2019, and Hugging
  Face ``transformers`` ``Conv1D`` (the ``(C, OC)`` weight layout of GPT-2).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "linear_forward", "linear_backward",
    "embedding_forward", "embedding_backward",
    "relu_forward", "relu_backward",
    "tanh_forward", "tanh_backward",
    "gelu_forward", "gelu_backward",
    "softmax_forward", "softmax_backward",
    "log_softmax_forward", "log_softmax_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "layernorm_forward", "layernorm_backward",
    "dropout_forward", "dropout_backward",
    "residual_forward", "residual_backward",
]

# Dimension letters, the same in every shape comment of this file:
#   B  batch size              T  sequence length (time)
#   C  channels (features)     OC output channels of a linear layer
#   V  vocabulary size; for softmax, the size of whatever last axis it normalises
#   N  rows: the product of all leading dimensions, B*T for a (B, T, C) tensor
#   "..." stands for any leading dimensions, e.g. (B, T).

GELU_K = math.sqrt(2.0 / math.pi)  # sqrt(2/pi), the scale in the tanh approximation of GELU
GELU_A = 0.044715  # the cubic coefficient in the tanh approximation of GELU

# math.erf applied elementwise. numpy has no erf and scipy is not a dependency; this is a
# Python-level loop (~0.1 us per element), fine for teaching and checking, too slow for
# training: the numba twin in kernels.ops is the fast exact GELU.
_erf = np.vectorize(math.erf, otypes=[np.float64])


# ----------------------------------------------------------------------------------------
# input checks shared by the ops (and by their numba twins)

def _check_float(name: str, a) -> None:
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.floating):
        got = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise TypeError(f"{name} must be a float32 or float64 numpy array, got {got}; "
                        f"convert it with np.asarray({name}, dtype=np.float32)")


def _check_same_dtype(**arrays) -> None:
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} is {dt}" for name, dt in dtypes.items())
        raise TypeError(f"dtypes differ ({listed}); cast them all to float32 (training) "
                        "or float64 (gradient checks)")


def _check_ids(ids, V: int, what: str, ignore_index: int | None = None) -> None:
    """Raise a readable error unless every id is in [0, V) (or equals ``ignore_index``)."""
    if not isinstance(ids, np.ndarray) or not np.issubdtype(ids.dtype, np.integer):
        got = ids.dtype if isinstance(ids, np.ndarray) else type(ids).__name__
        raise TypeError(f"{what} must be an integer numpy array, got {got}")
    bad = (ids < 0) | (ids >= V)  # same shape as ids
    if ignore_index is not None:
        bad &= ids != ignore_index
    if np.any(bad):
        pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), ids.shape))
        where = pos[0] if len(pos) == 1 else pos
        allowed = f"[0, {V})" if ignore_index is None else f"[0, {V}) or ignore_index {ignore_index}"
        raise ValueError(f"expected {what} in {allowed}, got {ids[pos]} at position {where}; "
                         f"is the vocabulary size {V} smaller than the tokenizer's?")


def _check_mask(mask, shape: tuple) -> np.ndarray:
    """Return the boolean ``mask`` broadcast (as a view) to ``shape``."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = mask.dtype if isinstance(mask, np.ndarray) else type(mask).__name__
        raise TypeError(f"mask must be a boolean numpy array (True = keep, False = exclude), got {got}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to the input shape {shape}; "
                         "a causal mask for (B, NH, T, T) scores has shape (T, T)") from None


def _check_cross_entropy(logits, targets, ignore_index: int, label_smoothing: float) -> None:
    _check_float("logits", logits)
    if logits.ndim not in (2, 3):
        raise ValueError(f"logits must have shape (N, V) or (B, T, V), got {logits.shape}")
    if not isinstance(targets, np.ndarray) or targets.shape != logits.shape[:-1]:
        got = targets.shape if isinstance(targets, np.ndarray) else type(targets).__name__
        raise ValueError(f"targets must have shape {logits.shape[:-1]} to match logits {logits.shape}, "
                         f"got {got}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    _check_ids(targets, logits.shape[-1], "targets", ignore_index=ignore_index)


def _check_layernorm(x, w, b) -> None:
    _check_float("x", x)
    C = x.shape[-1] if x.ndim else None
    for name, p in (("w", w), ("b", b)):
        _check_float(name, p)
        if p.shape != (C,):
            raise ValueError(f"layernorm: {name} must have shape (C,) = ({C},) to match x {x.shape}, "
                             f"got {p.shape}")
    _check_same_dtype(x=x, w=w, b=b)


def _check_gelu(x, approximate: str) -> None:
    _check_float("x", x)
    if approximate not in ("none", "tanh"):
        raise ValueError(f'approximate must be "none" (exact, erf) or "tanh", got {approximate!r}')


# ----------------------------------------------------------------------------------------
# linear

def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None):
    """Affine map of the last axis: ``out = x @ w + b``.

    ``w`` has shape ``(C, OC)``: GPT-2's ``Conv1D`` layout, the transpose of PyTorch's
    ``nn.Linear`` weight ``(OC, C)``, so Hugging Face GPT-2 weights load without a transpose.
    ``b`` (shape ``(OC,)``) is optional; the cache is ``(x, w, has_bias)``.

    Example, two rows, two features in, one out: 1*10 + 2*1 + 0.5 = 12.5.

    >>> x = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> w = np.array([[10.0], [1.0]])
    >>> out, cache = linear_forward(x, w, np.array([0.5]))
    >>> out
    array([[12.5],
           [34.5]])
    >>> dx, dw, db = linear_backward(np.array([[1.0], [-1.0]]), cache)
    >>> dx  # dout @ w.T
    array([[ 10.,   1.],
           [-10.,  -1.]])
    >>> dw  # x.T @ dout = [[1 - 3], [2 - 4]]
    array([[-2.],
           [-2.]])
    >>> db  # dout summed over rows
    array([0.])
    """
    _check_float("x", x)
    _check_float("w", w)
    if w.ndim != 2 or x.ndim == 0 or x.shape[-1] != w.shape[0]:
        C = x.shape[-1] if x.ndim else "C"
        raise ValueError(f"linear: x {x.shape} has C = {C} features on its last axis, so w must have "
                         f"shape (C, OC) = ({C}, OC), got {w.shape} (PyTorch's nn.Linear stores (OC, C): "
                         "pass its weight.T)")
    if b is not None:
        _check_float("b", b)
        if b.shape != (w.shape[1],):
            raise ValueError(f"linear: b must have shape (OC,) = ({w.shape[1]},), got {b.shape}")
    _check_same_dtype(x=x, w=w, b=b)
    out = x @ w  # (..., C) @ (C, OC) -> (..., OC)
    if b is not None:
        out += b  # (..., OC)
    return out, (x, w, b is not None)


def linear_backward(dout: np.ndarray, cache):
    """Gradients of ``linear_forward``: returns ``(dx, dw, db)``; ``db`` is None without bias.

    Example: see ``linear_forward``.
    """
    x, w, has_bias = cache
    C, OC = w.shape
    # in the forward pass this was: out = x @ w + b, so now
    dx = dout @ w.T  # (..., OC) @ (OC, C) -> (..., C)
    dw = x.reshape(-1, C).T @ dout.reshape(-1, OC)  # (C, N) @ (N, OC) -> (C, OC)
    db = dout.reshape(-1, OC).sum(axis=0) if has_bias else None  # (OC,)
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# embedding

def embedding_forward(idx: np.ndarray, wte: np.ndarray):
    """Look up rows of a table: ``out[b, t] = wte[idx[b, t]]``.

    ``idx`` is an integer array of any shape (usually ``(B, T)``), ``wte`` is ``(V, C)``; the
    output has shape ``idx.shape + (C,)``. The cache is ``(idx, V)``.

    Example, V = 3 rows of C = 2; row 2 is used twice, so its gradient is 1 + 3.

    >>> wte = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    >>> out, cache = embedding_forward(np.array([[2, 0, 2]]), wte)
    >>> out
    array([[[4., 5.],
            [0., 1.],
            [4., 5.]]])
    >>> embedding_backward(np.array([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]]), cache)
    array([[2., 2.],
           [0., 0.],
           [4., 4.]])
    """
    _check_float("wte", wte)
    if wte.ndim != 2:
        raise ValueError(f"embedding table wte must have shape (V, C), got {wte.shape}")
    _check_ids(idx, wte.shape[0], "token ids")
    out = wte[idx]  # (B, T) -> (B, T, C)
    return out, (idx, wte.shape[0])


def embedding_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of the table: each ``dout`` row is added into the row it was read from.

    A token that appears k times receives the sum of its k upstream gradients, which is why
    this is a scatter-add (``np.add.at``) and not an assignment ``dwte[idx] = dout`` (that
    would keep only the last one). ``np.add.at`` is slow; the numba twin is a plain loop.

    Example: see ``embedding_forward``.
    """
    idx, V = cache
    C = dout.shape[-1]
    # in the forward pass this was: out = wte[idx], so now
    dwte = np.zeros((V, C), dtype=dout.dtype)  # (V, C)
    np.add.at(dwte, idx.reshape(-1), dout.reshape(-1, C))  # (N,), (N, C) -> (V, C)
    return dwte


# ----------------------------------------------------------------------------------------
# pointwise nonlinearities

def relu_forward(x: np.ndarray):
    """``out = max(x, 0)`` elementwise; the cache is ``out``.

    The gradient at exactly 0 is taken as 0, as in PyTorch.

    >>> out, cache = relu_forward(np.array([-2.0, 0.0, 3.0]))
    >>> out
    array([0., 0., 3.])
    >>> relu_backward(np.array([5.0, 5.0, 5.0]), cache)
    array([0., 0., 5.])
    """
    _check_float("x", x)
    out = np.maximum(x, 0)  # same shape as x
    return out, out


def relu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``relu_forward``: ``dout`` where the output was positive, else 0."""
    out = cache
    # in the forward pass this was: out = max(x, 0), so now
    dx = dout * (out > 0)  # same shape as x
    return dx


def tanh_forward(x: np.ndarray):
    """``out = tanh(x)`` elementwise; the cache is ``out`` (the derivative is 1 - out**2).

    >>> out, cache = tanh_forward(np.array([0.0, 1.0]))
    >>> out.round(4)
    array([0.    , 0.7616])
    >>> tanh_backward(np.array([2.0, 1.0]), cache).round(4)  # 2 * (1 - 0), 1 - 0.7616**2
    array([2.  , 0.42])
    """
    _check_float("x", x)
    out = np.tanh(x)  # same shape as x
    return out, out


def tanh_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``tanh_forward``."""
    out = cache
    # in the forward pass this was: out = tanh(x), so now
    dx = dout * (1 - out * out)  # same shape as x
    return dx


# Hugging Face's ``activation_function`` / ``hidden_act`` names -> the ``approximate`` argument below
GELU_APPROXIMATE = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


def gelu_forward(x: np.ndarray, approximate: str = "none"):
    """GELU, ``x * Phi(x)`` with ``Phi`` the standard normal CDF; the cache is ``(x, approximate)``.

    ``approximate="none"`` is the exact form ``0.5 x (1 + erf(x / sqrt 2))``;
    ``approximate="tanh"`` is ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, the form
    GPT-2 was trained with. The argument means the same as in ``torch.nn.functional.gelu``.

    Example: Phi(1) = 0.8413 and Phi(-1) = 0.1587, so GELU(1) = 0.8413 and GELU(-1) = -0.1587.

    >>> out, cache = gelu_forward(np.array([0.0, 1.0, -1.0]))
    >>> out.round(4)
    array([ 0.    ,  0.8413, -0.1587])
    >>> gelu_forward(np.array([0.0, 1.0, -1.0]), approximate="tanh")[0].round(4)
    array([ 0.    ,  0.8412, -0.1588])
    >>> gelu_backward(np.array([1.0, 1.0, 1.0]), cache).round(4)  # Phi(x) + x phi(x)
    array([ 0.5   ,  1.0833, -0.0833])
    """
    _check_gelu(x, approximate)
    if approximate == "tanh":
        u = GELU_K * (x + GELU_A * x * x * x)  # same shape as x
        out = 0.5 * x * (1 + np.tanh(u))  # same shape as x
    else:
        cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)  # same shape as x, Phi(x)
        out = x * cdf  # same shape as x
    return out, (x, approximate)


def gelu_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``gelu_forward``.

    Exact: d/dx [x Phi(x)] = Phi(x) + x phi(x), with phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    Tanh form, with t = tanh(u) and u = k (x + a x^3):
    0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 a x^2).
    """
    x, approximate = cache
    if approximate == "tanh":
        # in the forward pass this was: out = 0.5 * x * (1 + tanh(k * (x + a * x**3))), so now
        t = np.tanh(GELU_K * (x + GELU_A * x * x * x))  # same shape as x
        du = GELU_K * (1 + 3 * GELU_A * x * x)  # same shape as x, du/dx
        dx = dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)  # same shape as x
    else:
        # in the forward pass this was: out = x * Phi(x), so now
        cdf = (0.5 * (1.0 + _erf(x / math.sqrt(2.0)))).astype(x.dtype)  # same shape as x, Phi(x)
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # same shape as x, phi(x)
        dx = dout * (cdf + x * pdf)  # same shape as x
    return dx


# ----------------------------------------------------------------------------------------
# softmax, log-softmax, cross-entropy

def softmax_forward(x: np.ndarray, mask: np.ndarray | None = None):
    """Softmax over the last axis: ``out = exp(x - max) / sum(exp(x - max))``; the cache is ``out``.

    Subtracting the row maximum changes nothing mathematically (it cancels) but keeps every
    exponent <= 0, so ``exp`` cannot overflow. ``mask`` is an optional boolean array that
    broadcasts to ``x.shape``: False excludes an entry (probability 0). A row whose entries are
    all excluded gives all zeros -- PyTorch gives NaN there; zeros let such a row (say, padding)
    pass through without poisoning the batch.

    Example: logits log 1 and log 3 give probabilities 1/4 and 3/4.

    >>> out, cache = softmax_forward(np.log(np.array([[1.0, 3.0], [2.0, 2.0]])))
    >>> out
    array([[0.25, 0.75],
           [0.5 , 0.5 ]])
    >>> m = np.array([[True, True, False], [False, False, False]])
    >>> softmax_forward(np.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]]), mask=m)[0]
    array([[0.5, 0.5, 0. ],
           [0. , 0. , 0. ]])
    >>> softmax_backward(np.array([[1.0, 0.0], [0.0, 0.0]]), cache)  # p * (dout - sum(dout * p))
    array([[ 0.1875, -0.1875],
           [ 0.    ,  0.    ]])
    """
    _check_float("x", x)
    if mask is None:
        xmax = x.max(axis=-1, keepdims=True)  # (..., 1)
        e = np.exp(x - xmax)  # (..., V)
        out = e / e.sum(axis=-1, keepdims=True)  # (..., V)
    else:
        mask = _check_mask(mask, x.shape)  # (..., V)
        xm = np.where(mask, x, -np.inf)  # (..., V) excluded entries become -inf
        xmax = xm.max(axis=-1, keepdims=True)  # (..., 1), -inf on a fully masked row
        xmax = np.where(np.isfinite(xmax), xmax, 0)  # (..., 1) any finite shift will do there
        e = np.exp(xm - xmax)  # (..., V), exp(-inf) = 0
        s = e.sum(axis=-1, keepdims=True)  # (..., 1), 0 on a fully masked row
        out = e / np.where(s > 0, s, 1)  # (..., V), 0 / 1 = 0 on a fully masked row
    return out, out


def softmax_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``softmax_forward``: ``dx = p * (dout - sum(dout * p))`` row by row.

    Excluded entries have p = 0 and so get gradient 0; a fully masked row gets zeros.
    """
    p = cache
    # in the forward pass this was: p = exp(x - max) / sum(exp(x - max)), whose Jacobian is
    # dp_i/dx_j = p_i (delta_ij - p_j); so now
    dx = p * (dout - (dout * p).sum(axis=-1, keepdims=True))  # (..., V)
    return dx


def log_softmax_forward(x: np.ndarray):
    """``out = x - logsumexp(x)`` over the last axis; the cache is ``out``.

    Computed as ``x - max - log(sum(exp(x - max)))``, never as ``log(softmax(x))``, which
    gives -inf once a probability underflows to 0.

    Example: four equal logits give log(1/4) = -1.3863 each.

    >>> out, cache = log_softmax_forward(np.zeros((1, 4)))
    >>> out.round(4)
    array([[-1.3863, -1.3863, -1.3863, -1.3863]])
    >>> log_softmax_backward(np.array([[1.0, 0.0, 0.0, 0.0]]), cache)  # dout - p * sum(dout)
    array([[ 0.75, -0.25, -0.25, -0.25]])
    """
    _check_float("x", x)
    xmax = x.max(axis=-1, keepdims=True)  # (..., 1)
    shifted = x - xmax  # (..., V), all <= 0
    out = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (..., V)
    return out, out


def log_softmax_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``log_softmax_forward``: ``dx = dout - softmax(x) * sum(dout)``."""
    out = cache
    # in the forward pass this was: out = x - logsumexp(x), and d logsumexp / dx = softmax(x), so now
    dx = dout - np.exp(out) * dout.sum(axis=-1, keepdims=True)  # (..., V)
    return dx


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100,
                          label_smoothing: float = 0.0):
    """Mean cross-entropy between ``softmax(logits)`` and integer targets.

    ``logits`` is ``(N, V)`` or ``(B, T, V)`` and ``targets`` is ``(N,)`` or ``(B, T)``. With
    ``eps = label_smoothing``, the target distribution of row i is ``y_i = (1 - eps) onehot(t_i)
    + eps / V`` and its loss is ``-sum_j y_ij log p_ij = (1 - eps) (lse_i - x_i[t_i]) + eps
    (lse_i - mean_j x_ij)``, where ``lse_i = log sum_j exp(x_ij)``: PyTorch's definition. The
    result is the mean over rows whose target is not ``ignore_index``. If every target is
    ignored the loss is 0.0 and the gradient zero (PyTorch gives NaN).

    Returns ``(loss, cache)`` with ``loss`` a scalar of the logits' dtype. The cache is
    ``(logits, targets, xmax, logsum, ignore_index, label_smoothing)`` where, per row,
    ``lse = xmax + logsum`` with ``logsum = log sum_j exp(x_j - xmax)``: backward recomputes the
    probabilities from these two (N,) arrays rather than keeping an (N, V) one. Keeping the two
    parts apart, as PyTorch does, matters in float32: with logits near 1e4, ``xmax + logsum``
    would round ``logsum`` to ~1e-3 before it is used.

    Example: uniform logits over V = 4 give p = 1/4 and loss log 4; the second row is ignored.

    >>> loss, cache = cross_entropy_forward(np.zeros((2, 4)), np.array([1, -100]))
    >>> round(float(loss), 6)
    1.386294
    >>> cross_entropy_backward(1.0, cache)  # (p - y) / n with n = 1 counted row
    array([[ 0.25, -0.75,  0.25,  0.25],
           [ 0.  ,  0.  ,  0.  ,  0.  ]])
    """
    _check_cross_entropy(logits, targets, ignore_index, label_smoothing)
    V = logits.shape[-1]
    x = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    xmax = x.max(axis=1)  # (N,)
    logsum = np.log(np.exp(x - xmax[:, None]).sum(axis=1))  # (N,) lse - xmax, lse = log sum_j exp(x_j)
    target_logit = x[np.arange(len(t)), np.where(valid, t, 0)]  # (N,) x[i, t_i]
    nll = logsum - (target_logit - xmax)  # (N,) -log p[t_i] = lse - x[t_i]
    per_row = nll  # (N,)
    if label_smoothing > 0:  # (skipped at 0: a -inf logit would give 0 * inf = NaN)
        smooth = logsum - (x.mean(axis=1) - xmax)  # (N,) mean_j -log p_j = lse - mean_j x_j
        per_row = (1 - label_smoothing) * nll + label_smoothing * smooth  # (N,)
    n = int(valid.sum())
    loss = x.dtype.type(per_row[valid].sum() / n if n else 0.0)
    return loss, (logits, targets, xmax, logsum, ignore_index, label_smoothing)


def cross_entropy_backward(dloss, cache) -> np.ndarray:
    """Gradient of ``cross_entropy_forward``: ``dlogits = dloss * (p - y) / n`` on counted rows.

    ``dloss`` is the scalar upstream gradient (1.0 when the loss is the final output). Ignored
    rows get 0; ``n`` is the number of counted rows.
    """
    logits, targets, xmax, logsum, ignore_index, eps = cache
    if np.ndim(dloss) != 0:
        raise ValueError(f"dloss must be a scalar (the loss is a mean), got shape {np.shape(dloss)}")
    V = logits.shape[-1]
    x = logits.reshape(-1, V)  # (N, V)
    t = targets.reshape(-1)  # (N,)
    valid = t != ignore_index  # (N,)
    n = max(int(valid.sum()), 1)
    # in the forward pass this was: loss = sum_i valid_i * (-sum_j y_ij log p_ij) / n, so now
    dx = np.exp((x - xmax[:, None]) - logsum[:, None])  # (N, V) p = softmax(x) = exp(x - lse)
    dx -= eps / V  # (N, V) p - eps / V
    dx[np.arange(len(t)), np.where(valid, t, 0)] -= 1 - eps  # (N, V) p - y
    dx *= float(dloss) / n  # (N, V)
    dx[~valid] = 0  # (N, V) ignored rows contribute nothing
    return dx.reshape(logits.shape)


# ----------------------------------------------------------------------------------------
# LayerNorm

def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5):
    """Normalise the last axis to mean 0 and variance 1, then scale by ``w`` and shift by ``b``.

    ``out = (x - mean) / sqrt(var + eps) * w + b`` with the biased variance (divide by C), as
    PyTorch. The cache is ``(x, w, mean, rstd)`` with ``rstd = 1 / sqrt(var + eps)``, as llm.c.

    Example: [1, 3] has mean 2 and variance 1, so it normalises to [-1, 1] (up to eps);
    then w = [2, 1], b = [0, 10] give [-2, 11].

    >>> out, cache = layernorm_forward(np.array([[1.0, 3.0]]), np.array([2.0, 1.0]), np.array([0.0, 10.0]))
    >>> out.round(4)
    array([[-2., 11.]])
    >>> dx, dw, db = layernorm_backward(np.array([[1.0, 1.0]]), cache)
    >>> dw.round(4), db  # dout * norm, dout
    (array([-1.,  1.]), array([1., 1.]))
    """
    _check_layernorm(x, w, b)
    eps = float(eps)
    mean = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mean  # (..., C)
    var = (xc * xc).mean(axis=-1, keepdims=True)  # (..., 1)
    rstd = 1 / np.sqrt(var + eps)  # (..., 1)
    out = xc * rstd * w + b  # (..., C)
    return out, (x, w, mean, rstd)


def layernorm_backward(dout: np.ndarray, cache):
    """Gradients of ``layernorm_forward``: returns ``(dx, dw, db)``.

    With ``norm = (x - mean) * rstd`` and ``dnorm = dout * w``:
    ``dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))`` (means over the last
    axis): the two subtracted terms are the gradient flowing through ``mean`` and ``rstd``.
    """
    x, w, mean, rstd = cache
    C = x.shape[-1]
    # in the forward pass this was: out = (x - mean) * rstd * w + b, so now
    norm = (x - mean) * rstd  # (..., C), recomputed rather than cached
    db = dout.reshape(-1, C).sum(axis=0)  # (C,)
    dw = (dout * norm).reshape(-1, C).sum(axis=0)  # (C,)
    dnorm = dout * w  # (..., C)
    dx = rstd * (dnorm - dnorm.mean(axis=-1, keepdims=True)
                 - norm * (dnorm * norm).mean(axis=-1, keepdims=True))  # (..., C)
    return dx, dw, db


# ----------------------------------------------------------------------------------------
# dropout and the residual add

def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator, train: bool = True):
    """Zero each entry with probability ``p`` and scale the survivors by ``1 / (1 - p)``.

    The scaling ("inverted" dropout) keeps the expected value of every entry unchanged, so
    nothing needs rescaling at evaluation time. The mask is drawn from ``rng`` (a
    ``np.random.Generator``): the same seed gives the same mask, for float32 and float64
    alike. With ``p == 0`` or ``train=False`` the output is a copy of ``x`` and ``rng`` is not
    used. ``p == 1`` drops everything. The cache is the scaled mask (None for the identity).

    Example: with p = 0.5 each entry becomes 0 or 1 / (1 - 0.5) = 2.

    >>> x = np.ones((2, 4))
    >>> out, cache = dropout_forward(x, 0.5, np.random.default_rng(0))
    >>> out
    array([[2., 0., 0., 0.],
           [2., 2., 2., 2.]])
    >>> dropout_backward(np.full((2, 4), 3.0), cache)
    array([[6., 0., 0., 0.],
           [6., 6., 6., 6.]])
    """
    _check_float("x", x)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}; "
                        "pass np.random.default_rng(seed)")
    if not train or p == 0:
        return x.copy(), None
    if p == 1:
        mask = np.zeros(x.shape, dtype=x.dtype)  # same shape as x, everything dropped
    else:
        keep = rng.random(x.shape) >= p  # same shape as x, True with probability 1 - p
        mask = keep * x.dtype.type(1 / (1 - p))  # same shape as x, 0 or 1 / (1 - p)
    out = x * mask  # same shape as x
    return out, mask


def dropout_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of ``dropout_forward``: the same mask and scale applied to ``dout``."""
    mask = cache
    if mask is None:
        return dout.copy()
    # in the forward pass this was: out = x * mask, so now
    dx = dout * mask  # same shape as x
    return dx


def residual_forward(x: np.ndarray, y: np.ndarray):
    """The residual connection ``out = x + y`` (same shapes, no broadcasting); no cache.

    >>> out, cache = residual_forward(np.array([1.0, 2.0]), np.array([10.0, 20.0]))
    >>> out
    array([11., 22.])
    >>> residual_backward(np.array([0.5, -1.0]), cache)  # the gradient reaches both branches whole
    (array([ 0.5, -1. ]), array([ 0.5, -1. ]))
    """
    _check_float("x", x)
    _check_float("y", y)
    if x.shape != y.shape:
        raise ValueError(f"residual: x {x.shape} and y {y.shape} must have the same shape")
    _check_same_dtype(x=x, y=y)
    out = x + y  # same shape as x
    return out, None


def residual_backward(dout: np.ndarray, cache):
    """Gradients of ``residual_forward``: ``(dx, dy)``, two fresh copies of ``dout``."""
    # in the forward pass this was: out = x + y, so now
    dx = dout.copy()  # same shape as x
    dy = dout.copy()  # same shape as y
    return dx, dy
