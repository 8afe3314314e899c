"""Exercises for chapter 11, scaling laws against a known floor.

``training_flops`` is the 6ND rule (``scaling.fit.training_flops`` is the reference);
``power_law_fit`` fits ``y = k x^p`` by least squares in log space (``scaling.fit.fit_power_law``);
``compute_optimal_split`` is the closed-form compute-optimal N and D of a Chinchilla law
(``scaling.fit.ChinchillaFit.compute_optimal``); and ``reducible_share`` is a derivation whose
answer is a number: the fraction of a model's loss that more parameters and data could still
remove. Each wrapper imports what it calls inside its body, so its source, copied into a file on
its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


def training_flops(N, D):
    """The floating-point operations of training a model of ``N`` parameters on ``D`` tokens:
    ``6 N D`` (2 per parameter and token in the forward pass, 4 in the backward).

    Example: GPT-3, N = 175e9 and D = 300e9, took about 6 * 175e9 * 300e9 = 3.15e23 FLOPs.

    The reference is the package's ``scaling.fit.training_flops``.
    """
    from llm_from_scratch.scaling.fit import training_flops as reference

    return reference(N, D)


def _wrong_training_flops(N, D):
    return 2 * N * D  # the forward pass only


def power_law_fit(x, y):
    """``(k, p)`` of the power law ``y = k x^p`` that best fits the points, by least squares on
    ``log y = log k + p log x`` (a straight line in log-log coordinates).

    Example: the points (1, 2), (10, 20), (100, 200) give k = 2, p = 1.

    The reference is the package's ``scaling.fit.fit_power_law``.
    """
    from llm_from_scratch.scaling.fit import fit_power_law

    return fit_power_law(x, y)


def _wrong_power_law_fit(x, y):
    # a straight line through the raw points: not a power law
    p, c = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(c), float(p)


def compute_optimal_split(C, A, B, alpha, beta):
    """``(N*, D*)``: the model size and token count that minimise ``A / N^alpha + B / D^beta``
    under the budget ``C = 6 N D`` (Hoffmann et al. 2022, approach 3).

    Substituting ``D = C / (6N)`` and setting the derivative in N to zero gives
    ``alpha A / N^alpha = beta B / D^beta``, so ``N* = G (C/6)^(beta/(alpha+beta))`` and
    ``D* = (C/6)^(alpha/(alpha+beta)) / G`` with ``G = (alpha A / (beta B))^(1/(alpha+beta))``.

    Example: with A = B and alpha = beta the optimum is N* = D* = sqrt(C / 6).

    The reference is the package's ``scaling.fit.ChinchillaFit.compute_optimal``.
    """
    from llm_from_scratch.scaling.fit import ChinchillaFit

    law = ChinchillaFit(E=0.0, A=A, B=B, alpha=alpha, beta=beta)
    N, D = law.compute_optimal(C)
    return float(N), float(D)


def _wrong_compute_optimal_split(C, A, B, alpha, beta):
    # splits the budget evenly whatever the law: N = D = sqrt(C / 6)
    n = float(np.sqrt(C / 6))
    return n, n


def reducible_share(N, D, E, A, B, alpha, beta):
    """The share of the predicted loss ``L(N, D) = E + A/N^alpha + B/D^beta`` that is reducible,
    ``(L - E) / L``: what more parameters and more data could still remove.

    Example: E = 1, A/N^alpha = 0.5 and B/D^beta = 0.5 give L = 2 and a reducible share of 0.5.
    """
    reducible = A / N ** alpha + B / D ** beta
    return reducible / (E + reducible)


def _wrong_reducible_share(N, D, E, A, B, alpha, beta):
    return (A / N ** alpha + B / D ** beta) / E  # relative to the floor, not to the loss


CHINCHILLA = (406.4, 410.7, 0.34, 0.28)  # A, B, alpha, beta of Hoffmann et al. (2022), eq. 10

EXERCISES = [
    register(Exercise(
        name="training_flops", chapter=11, title="training FLOPs of a run (6ND)",
        reference=training_flops,
        cases=(
            Case("GPT-3: N = 175e9, D = 300e9", lambda: (175e9, 300e9)),
            Case("Chinchilla: N = 70e9, D = 1.4e12", lambda: (70e9, 1.4e12)),
            Case("a StoryWorld run: N = 105k, D = 2^20", lambda: (105_000, 2 ** 20)),
            Case("arrays of runs", lambda: (np.array([1e4, 1e5, 1e6]), np.array([1e6, 1e7, 1e8]))),
        ),
        rtol=1e-12, atol=0.0,
        hint="two FLOPs per parameter and token forward (a multiply and an add), four backward: 6 N D",
    )),
    register(Exercise(
        name="power_law_fit", chapter=11, title="fitting a power law in log space",
        reference=power_law_fit,
        cases=(
            Case("the docstring's example", lambda: (np.array([1.0, 10.0, 100.0]), np.array([2.0, 20.0, 200.0]))),
            Case("N* = 0.3 C^0.5 on 6 budgets", lambda: (np.geomspace(1e10, 1e15, 6), 0.3 * np.geomspace(1e10, 1e15, 6) ** 0.5)),
            Case("a decreasing law with noise", lambda: (np.geomspace(1e3, 1e6, 8),
                                                         5.0 * np.geomspace(1e3, 1e6, 8) ** -0.3
                                                         * np.exp(0.01 * np.random.default_rng(0).standard_normal(8)))),
        ),
        rtol=1e-8, atol=1e-12,
        hint="fit a straight line to (log x, log y) with least squares (np.polyfit of degree 1): the "
             "slope is p and exp(intercept) is k",
    )),
    register(Exercise(
        name="compute_optimal_split", chapter=11, title="the compute-optimal split of a budget",
        reference=compute_optimal_split,
        cases=(
            Case("A = B, alpha = beta: N* = D*", lambda: (6e12, 100.0, 100.0, 0.3, 0.3)),
            Case("Chinchilla's law at 5.8e23 FLOPs", lambda: (5.8e23, *CHINCHILLA)),
            Case("Chinchilla's law at 1e20 FLOPs", lambda: (1e20, *CHINCHILLA)),
            Case("a law with alpha > beta at 1e15", lambda: (1e15, 50.0, 300.0, 0.5, 0.25)),
        ),
        rtol=1e-8, atol=0.0,
        hint="write D = C / (6N), differentiate A N^-alpha + B (C/(6N))^-beta in N and set it to 0: "
             "alpha A / N^alpha = beta B / D^beta; solve for N",
    )),
    register(Exercise(
        name="reducible_share", chapter=11, title="the reducible share of a model's loss",
        reference=reducible_share,
        cases=(
            Case("the docstring's example", lambda: (1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0)),
            Case("Chinchilla's law at Chinchilla's size", lambda: (70e9, 1.4e12, 1.69, *CHINCHILLA)),
            Case("Chinchilla's law at GPT-3's size", lambda: (175e9, 300e9, 1.69, *CHINCHILLA)),
            Case("a small StoryWorld model", lambda: (1e5, 1e6, 0.29, 20.0, 30.0, 0.4, 0.35)),
        ),
        rtol=1e-10, atol=0.0,
        hint="the loss is E plus the two power-law terms; the reducible part is the two terms; divide "
             "it by the whole loss",
    )),
]

WRONG = {
    "training_flops": _wrong_training_flops,
    "power_law_fit": _wrong_power_law_fit,
    "compute_optimal_split": _wrong_compute_optimal_split,
    "reducible_share": _wrong_reducible_share,
}
