"""Exercises for chapter 13, data and privacy.

``exposure_from_rank`` is the Secret Sharer's exposure (``privacy.memorization.exposure`` computes
it from scores); ``clip_gradients`` is DP-SGD's per-example clipping (``privacy.dpsgd.
clip_per_example`` is the reference); ``gaussian_rdp_steps`` is a derivation whose answer is a
number: the Rényi divergence of T compositions of the plain Gaussian mechanism
(``privacy.accountant.rdp_subsampled_gaussian`` with q = 1). Each wrapper imports what it calls
inside its body, so its source, copied into a file on its own, still runs.
"""

from __future__ import annotations

import math

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def exposure_from_rank(rank, space_size):
    """The exposure of a secret that the model ranks ``rank``-th (1 = most likely) among
    ``space_size`` possible secrets: ``log2(space_size) - log2(rank)``.

    Example: a 4-digit PIN (10,000 candidates) ranked 1st has exposure log2(10,000) = 13.29;
    ranked 5,000th, exposure 1.

    The reference gives the rank to ``privacy.memorization.exposure`` as scores.
    """
    from llm_from_scratch.privacy.memorization import exposure

    # rank - 1 references more likely than the secret (score 0 < 1), the others less (score 2)
    references = [0.0] * (int(rank) - 1) + [2.0] * (int(space_size) - int(rank))
    return exposure(1.0, references, space_size=int(space_size))


def _wrong_exposure_from_rank(rank, space_size):
    return math.log2(space_size / (space_size - rank + 1))  # ranks counted from the wrong end


def clip_gradients(grads, max_norm):
    """Clip each example's gradient to L2 norm at most ``max_norm``: ``grads`` is (B, P), one row
    per example; return ``g_i / max(1, ||g_i|| / C)`` for every row.

    Example: the rows [3, 4] and [0.3, 0.4] with C = 1 become [0.6, 0.8] and [0.3, 0.4].

    The reference is the package's ``privacy.dpsgd.clip_per_example``.
    """
    from llm_from_scratch.privacy.dpsgd import clip_per_example

    clipped, _ = clip_per_example({"g": np.asarray(grads, dtype=np.float64)}, max_norm)
    return clipped["g"]


def _wrong_clip_gradients(grads, max_norm):
    g = np.asarray(grads, dtype=np.float64)
    return g / max(1.0, np.linalg.norm(g) / max_norm)  # one norm for the whole batch, not per example


def gaussian_rdp_steps(noise_multiplier, steps, order):
    """The Rényi divergence of order ``order`` after ``steps`` releases of the Gaussian mechanism
    with noise ``noise_multiplier`` times the sensitivity, without subsampling.

    One release: the Rényi divergence of N(0, sigma^2) from N(1, sigma^2) at order alpha is
    alpha / (2 sigma^2); composition adds it up over the steps: T alpha / (2 sigma^2).

    Example: sigma = 2, 100 steps, alpha = 8: 100 * 8 / 8 = 100.
    """
    from llm_from_scratch.privacy.accountant import rdp_subsampled_gaussian

    return float(rdp_subsampled_gaussian(noise_multiplier, 1.0, orders=[order])[0] * steps)


def _wrong_gaussian_rdp_steps(noise_multiplier, steps, order):
    return math.sqrt(steps) * order / (2 * noise_multiplier ** 2)  # composition is not a square root in RDP


def _grads_case(seed, shape, scale, max_norm):
    def make():
        rng = np.random.default_rng(seed)
        return (scale * rng.standard_normal(shape), max_norm)
    return make


EXERCISES = [
    register(Exercise(
        name="exposure_from_rank", chapter=13, title="exposure of a secret from its rank",
        reference=exposure_from_rank,
        cases=(
            Case("a PIN ranked first among 10,000", lambda: (1, 10_000)),
            Case("ranked 5,000th among 10,000", lambda: (5_000, 10_000)),
            Case("ranked last among 16", lambda: (16, 16)),
            Case("ranked 4th among 16 (the facts' test vector)", lambda: (4, 16)),
        ),
        rtol=1e-12, atol=1e-12,
        hint="rank 1 is the model's favourite; exposure is log2 of the number of candidates minus log2 of the rank",
    )),
    register(Exercise(
        name="clip_gradients", chapter=13, title="per-example gradient clipping",
        reference=clip_gradients,
        cases=(
            Case("the docstring's example", lambda: (np.array([[3.0, 4.0], [0.3, 0.4]]), 1.0)),
            Case("8 examples of 20 numbers, C = 1", _grads_case(0, (8, 20), 1.0, 1.0)),
            Case("small gradients are left alone, C = 100", _grads_case(1, (4, 6), 1.0, 100.0)),
            Case("one example", _grads_case(2, (1, 5), 3.0, 0.5)),
        ),
        rtol=1e-12, atol=1e-12,
        hint="one norm per row (np.linalg.norm(g, axis=1)); divide each row by max(1, its norm / C)",
    )),
    register(Exercise(
        name="gaussian_rdp_steps", chapter=13, title="composing the Gaussian mechanism in Rényi DP",
        reference=gaussian_rdp_steps,
        cases=(
            Case("the docstring's example: sigma 2, 100 steps, order 8", lambda: (2.0, 100, 8)),
            Case("one step, sigma 1, order 2", lambda: (1.0, 1, 2)),
            Case("sigma 0.8, 1,000 steps, order 3.5", lambda: (0.8, 1000, 3.5)),
        ),
        rtol=1e-12, atol=1e-12,
        hint="one Gaussian release costs alpha / (2 sigma^2) at order alpha; Rényi divergences of "
             "independent releases add",
    )),
]

WRONG = {
    "exposure_from_rank": _wrong_exposure_from_rank,
    "clip_gradients": _wrong_clip_gradients,
    "gaussian_rdp_steps": _wrong_gaussian_rdp_steps,
}
