"""DP-SGD by hand: per-example gradients from the model's own backward pass, clipping, noise.

Differentially private SGD (Abadi et al. 2016, algorithm 1) changes one thing in a training step:
no single example may move the model much, and the little it moves it is hidden in noise.

    g_i = grad of example i's loss                    per example, not summed over the batch
    g_i <- g_i / max(1, ||g_i|| / C)                  clip every example's gradient to norm <= C
    g   = (sum_i g_i + N(0, sigma^2 C^2 I)) / L       add noise scaled to the clipping norm,
                                                      divide by the expected batch size L
    theta <- optimizer step with g

``llm_from_scratch.privacy.accountant`` turns (sigma, the sampling rate q = L / N, the steps)
into an (epsilon, delta) guarantee.

Per-example gradients, batched. The backward pass of a batch already computes every activation
gradient example by example (examples never mix in a GPT: every op works along its own row, and
attention stays inside a sequence); only the *parameter* gradients sum over the batch. So a batch
gives per-example gradients if those sums are left out, which is what ``per_example_ops`` does to
the ops namespace the model runs with:

- linear ``out = x @ w + b``: ``dw_i = x_i^T dout_i`` (one (C, OC) product per example, an
  ``einsum`` over the batch), ``db_i = sum_t dout_i``;
- LayerNorm: ``dw_i = sum_t dout_i * norm_i``, ``db_i = sum_t dout_i``;
- embedding lookup: a scatter-add per example into its own (V, C) table;
- the position table and the tied head (``models.gpt.gpt_backward`` checks ``ops.per_example``).

Activation gradients are computed exactly as in the batch, so one forward and one backward pass
give all B gradients; the cost is the memory of B copies of every parameter gradient. (Ops with
no parameters, such as attention, GELU and the cross-entropy, need nothing.) Each example's
gradient is that of its own mean loss: the cross-entropy's gradient is rescaled row by row from
the batch's count of targets to the example's (when all examples have as many targets, the B
gradients sum to B times the batch gradient: a test).

    >>> from llm_from_scratch.models.gpt import GPTConfig, init_params
    >>> cfg = GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> idx = np.array([[1, 2, 3], [4, 5, 6]])
    >>> g = per_example_grads(params, cfg, idx, np.array([[2, 3, 4], [5, 6, 7]]))
    >>> g["transformer.h.0.mlp.c_fc.weight"].shape   # (B, C, 4C)
    (2, 8, 32)

Left out: ghost clipping (norms without materialising per-example gradients, Li et al. 2022),
per-layer clipping, numba twins of the per-example ops, and other models than the GPT.

References:

- M. Abadi, A. Chu, I. Goodfellow, H. B. McMahan, I. Mironov, K. Talwar, L. Zhang, "Deep
  Learning with Differential Privacy", CCS 2016, algorithm 1.
- I. Goodfellow, "Efficient Per-Example Gradient Computations", 2015, arXiv 1510.01799 (the
  outer-product form of a linear layer's per-example gradient).
- A. Yousefpour et al., "Opacus: User-Friendly Differential Privacy Library in PyTorch", 2021
  (per-example gradients from the batch's activations and output gradients).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from llm_from_scratch.kernels.backend import get_ops

__all__ = ["per_example_ops", "per_example_grads", "clip_per_example", "dp_sgd_gradient"]


def per_example_ops(B: int, ops: SimpleNamespace | None = None) -> SimpleNamespace:
    """A copy of the ops namespace ``ops`` (default: numpy's) whose parameter gradients keep the
    batch axis: ``linear_backward`` gives dw (B, C, OC) and db (B, OC), ``layernorm_backward``
    dw and db (B, C), ``embedding_backward`` (B, V, C). Every array they see has ``B`` examples
    along its first axis (flattened rows, (B*T, C), are split back into (B, T, C)).

    >>> K = per_example_ops(2)
    >>> _, cache = K.linear_forward(np.ones((2, 3, 4)), np.ones((4, 5)), np.zeros(5))
    >>> [a.shape for a in K.linear_backward(np.ones((2, 3, 5)), cache)]
    [(2, 3, 4), (2, 4, 5), (2, 5)]
    """
    base = ops if ops is not None else get_ops("numpy")

    def rows(a: np.ndarray) -> np.ndarray:
        return a.reshape(B, -1, a.shape[-1])  # (B, rows per example, features)

    def linear_backward(dout, cache):
        x, w, has_bias = cache
        # in the forward pass this was: out = x @ w + b, so now, per example
        dx = dout @ w.T  # (..., OC) @ (OC, C) -> (..., C), as in the batch
        dw = np.einsum("btc,bto->bco", rows(x), rows(dout))  # (B, C, OC): x_i^T dout_i
        db = rows(dout).sum(axis=1) if has_bias else None  # (B, OC)
        return dx, dw, db

    def layernorm_backward(dout, cache):
        x, w, mean, rstd = cache
        dx, _, _ = base.layernorm_backward(dout, cache)  # (..., C), as in the batch
        norm = (x - mean) * rstd  # (..., C)
        return dx, rows(dout * norm).sum(axis=1), rows(dout).sum(axis=1)  # (B, C), (B, C)

    def embedding_backward(dout, cache):
        idx, V = cache
        dwte = np.zeros((B, V, dout.shape[-1]), dtype=dout.dtype)  # (B, V, C)
        for i in range(B):  # each example scatters into its own table
            np.add.at(dwte[i], idx[i].reshape(-1), rows(dout)[i])
        return dwte

    functions = dict(vars(base))
    functions.update(name=f"{base.name}, per example", per_example=True, linear_backward=linear_backward,
                     layernorm_backward=layernorm_backward, embedding_backward=embedding_backward)
    return SimpleNamespace(**functions)


def per_example_grads(params: dict[str, np.ndarray], config, idx: np.ndarray, targets: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Every example's gradient of its own mean loss (over its targets that are not -100): a dict
    with the keys of ``params``, each array with a leading batch axis, from one forward and one
    backward pass of the GPT. An example with no target gets a zero gradient.

    The batch's cross-entropy gradient is divided by the number of targets in the whole batch;
    row i is rescaled to divide by its own count instead, so each example weighs the same
    whatever its length (a short story is one example, as a long one is).
    """
    from llm_from_scratch.models.gpt import gpt_backward, gpt_logits

    B = idx.shape[0]
    counts = (targets != -100).sum(axis=1)  # (B,)
    K = per_example_ops(B)
    logits, cache = gpt_logits(params, config, idx, K)
    _, ce = K.cross_entropy_forward(logits, targets)
    dlogits = K.cross_entropy_backward(1.0, ce)  # (B, T, V), each row divided by counts.sum()
    dlogits *= (counts.sum() / np.maximum(counts, 1)).astype(dlogits.dtype)[:, None, None]  # by its own count
    dtype = next(iter(params.values())).dtype
    return gpt_backward(cache._replace(dtype=dtype, ce=ce), dlogits=dlogits)


def clip_per_example(grads: dict[str, np.ndarray], max_norm: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scale each example's gradient (all parameters together) to L2 norm at most ``max_norm``:
    ``g_i / max(1, ||g_i|| / C)``. Returns ``(clipped, norms before clipping)``; ``max_norm``
    may be ``inf`` (no clipping).

    >>> clipped, norms = clip_per_example({"w": np.array([[3.0, 4.0], [0.3, 0.4]])}, 1.0)
    >>> clipped["w"].round(12).tolist(), norms.tolist()
    ([[0.6, 0.8], [0.3, 0.4]], [5.0, 0.5])
    """
    if not max_norm > 0:
        raise ValueError(f"the clipping norm C must be positive, got {max_norm}")
    B = next(iter(grads.values())).shape[0]
    squares = sum(np.square(g.reshape(B, -1), dtype=np.float64).sum(axis=1) for g in grads.values())  # (B,)
    norms = np.sqrt(squares)  # (B,)
    scale = 1.0 / np.maximum(1.0, norms / max_norm)  # (B,)
    clipped = {name: g * scale.reshape((B,) + (1,) * (g.ndim - 1)).astype(g.dtype) for name, g in grads.items()}
    return clipped, norms


def dp_sgd_gradient(grads: dict[str, np.ndarray], max_norm: float, noise_multiplier: float, expected_batch: float,
                    rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The noisy gradient of one DP-SGD step from per-example gradients (leading batch axis):
    clip each to ``max_norm``, sum, add N(0, (noise_multiplier * max_norm)^2) to every entry, and
    divide by ``expected_batch`` (L, the expected number of sampled examples). Returns
    ``(gradient, norms before clipping)``. With noise 0 and no clipping it is the sum over
    ``expected_batch``: plain SGD's mean gradient when L is the batch size.
    """
    if noise_multiplier < 0 or expected_batch <= 0:
        raise ValueError(f"need noise_multiplier >= 0 and expected_batch > 0, got {noise_multiplier}, "
                         f"{expected_batch}")
    clipped, norms = clip_per_example(grads, max_norm)
    out = {}
    for name, g in clipped.items():
        total = g.sum(axis=0)  # (...): the clipped gradients summed over the batch
        if noise_multiplier > 0:
            total = total + rng.normal(0.0, noise_multiplier * max_norm, size=total.shape).astype(g.dtype)
        out[name] = total / g.dtype.type(expected_batch)
    return out, norms
