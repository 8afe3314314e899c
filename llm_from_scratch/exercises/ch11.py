"""Exercises for chapter 11, scaling laws against a known floor."""

from __future__ import annotations

import math

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register


# ---------------------------------------------------------------------------------------------
# training_flops

def training_flops(n_params, n_tokens):
    """The compute of a training run, ``C = 6 N D`` floating-point operations.

    ``n_params`` is the number of parameters N, ``n_tokens`` the number of training tokens D
    (numbers or arrays). Each parameter costs 2 FLOPs per token in the forward pass (a multiply
    and an add) and 4 in the backward pass (the gradient with respect to the input and with
    respect to the weight), so 6 in all. Return ``6 * N * D`` as a float (or an array).

    Example: a model of 1 million parameters trained on 20 million tokens takes
    6 * 1e6 * 2e7 = 1.2e14 FLOPs.
    """
    return 6.0 * np.asarray(n_params, dtype=np.float64) * np.asarray(n_tokens, dtype=np.float64)


def _wrong_training_flops(n_params, n_tokens):
    # counts the forward pass only: 2 FLOPs per parameter per token
    return 2.0 * np.asarray(n_params, dtype=np.float64) * np.asarray(n_tokens, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# fit_power_law

def fit_power_law(x, y):
    """Fit ``y = k * x**p`` by least squares on a straight line in log space; return ``(k, p)``.

    Taking logs turns the power law into a line, ``log y = log k + p log x``: fit the slope p and
    the intercept ``log k`` with ``np.polyfit(np.log(x), np.log(y), 1)`` (or by hand), then undo
    the log of the intercept with the *same* base. ``x`` and ``y`` are 1-D arrays of positive
    numbers. Return two Python floats.

    Example: the points (1, 3), (10, 30), (100, 300) lie on ``y = 3 x``: ``(3.0, 1.0)``.
    """
    p, log_k = np.polyfit(np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64)), 1)
    return float(np.exp(log_k)), float(p)


def _wrong_fit_power_law(x, y):
    # fits in base 10 but undoes the intercept with exp: the slope is right, k is not
    p, log_k = np.polyfit(np.log10(x), np.log10(y), 1)
    return float(np.exp(log_k)), float(p)


def _power_law_case(seed, n, k, p, noise):
    def make():
        rng = np.random.default_rng(seed)
        x = np.sort(np.exp(rng.uniform(0.0, 12.0, n)))                     # (n,)
        y = k * x ** p * np.exp(rng.normal(0.0, noise, n))                 # (n,)
        return (x, y)
    return make


# ---------------------------------------------------------------------------------------------
# compute_optimal_split

def compute_optimal_split(C, A, B, alpha, beta):
    """The parameters and tokens ``(N, D)`` that minimise ``A/N**alpha + B/D**beta`` with ``6 N D = C``.

    On the budget, ``D = C / (6N)``. Setting the derivative with respect to N to zero gives
    ``alpha A / N**alpha = beta B / D**beta``: at the optimum the two terms shrink at rates in
    proportion. Solve it for N: ``N = G (C/6)**(beta/(alpha+beta))`` with
    ``G = (alpha A / (beta B))**(1/(alpha+beta))``, and ``D = C / (6N)``. Return two floats.

    Example: with A = B and alpha = beta the two terms are symmetric, so N = D = sqrt(C/6):
    ``compute_optimal_split(6e10, 1.0, 1.0, 0.5, 0.5)`` is ``(1e5, 1e5)``.
    """
    a = beta / (alpha + beta)
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    N = G * (C / 6.0) ** a
    return float(N), float(C / (6.0 * N))


def _wrong_compute_optimal_split(C, A, B, alpha, beta):
    # the rule of thumb "20 tokens per parameter" whatever the law says
    N = math.sqrt(C / (6.0 * 20.0))
    return float(N), float(20.0 * N)


def _split_is_the_minimum(fn):
    """Along the budget, the loss at the submitted split is below its neighbours'."""
    C, A, B, alpha, beta = 3e16, 25.0, 60.0, 0.45, 0.38
    N, D = fn(C, A, B, alpha, beta)
    if not abs(6 * N * D - C) <= 1e-9 * C:
        return f"6 N D = {6 * N * D:.6g}, expected the budget C = {C:.6g}"
    loss = lambda n: A / n ** alpha + B / (C / (6 * n)) ** beta
    for f in (0.9, 1.1):
        if loss(N * f) < loss(N):
            return f"moving to N = {N * f:.6g} lowers the loss from {loss(N):.8g} to {loss(N * f):.8g}"
    return ""


# ---------------------------------------------------------------------------------------------
# optimal_size_growth (a derivation whose answer is a number)

def optimal_size_growth(alpha, beta, compute_factor):
    """By what factor should the model grow when the compute budget grows by ``compute_factor``?

    Derive it from ``compute_optimal_split``: ``N*`` is proportional to ``C**a`` with
    ``a = beta / (alpha + beta)``, so multiplying C by f multiplies N* by ``f**a`` (and D* by
    ``f**(1 - a)``). Return the number ``f**a``.

    Example: with Chinchilla's alpha = 0.34, beta = 0.28, 10x more compute should go into a
    model 10**(0.28/0.62) = 2.83 times larger, trained on 3.53 times more tokens.
    """
    return float(compute_factor ** (beta / (alpha + beta)))


def _wrong_optimal_size_growth(alpha, beta, compute_factor):
    # swaps the exponents: a = alpha / (alpha + beta) is D*'s exponent, not N*'s
    return float(compute_factor ** (alpha / (alpha + beta)))


EXERCISES = [
    register(Exercise(
        name="training_flops", chapter=11, title="the training compute of a run, 6ND",
        reference=training_flops,
        cases=(
            Case("the worked example: 1M parameters, 20M tokens", lambda: (1e6, 2e7)),
            Case("GPT-3: 175B parameters, 300B tokens", lambda: (175e9, 300e9)),
            Case("the smallest run of the chapter's grid", lambda: (6592, 262144)),
            Case("arrays of runs", lambda: (np.array([6592.0, 24832.0, 397312.0]),
                                            np.array([2.0 ** 18, 2.0 ** 20, 2.0 ** 22]))),
        ),
        hint="forward pass 2 FLOPs per parameter per token, backward pass 4: C = 6 N D",
    )),
    register(Exercise(
        name="fit_power_law", chapter=11, title="fitting a power law as a line in log space",
        reference=fit_power_law,
        cases=(
            Case("the worked example y = 3x", lambda: (np.array([1.0, 10.0, 100.0]), np.array([3.0, 30.0, 300.0]))),
            Case("an exact law y = 0.2 x^0.73", lambda: (np.geomspace(1.0, 1e6, 7), 0.2 * np.geomspace(1.0, 1e6, 7) ** 0.73)),
            Case("a decreasing law with 2% noise", _power_law_case(0, 20, 40.0, -0.35, 0.02)),
            Case("a steep law with 10% noise", _power_law_case(1, 12, 1e-3, 1.6, 0.1)),
        ),
        hint="fit log y = log k + p log x and return k = exp(intercept) when the logs are natural "
             "(10**intercept if you used log10)",
    )),
    register(Exercise(
        name="compute_optimal_split", chapter=11, title="the compute-optimal split of a budget",
        reference=compute_optimal_split,
        rtol=1e-9,
        cases=(
            Case("the worked example: a symmetric law", lambda: (6e10, 1.0, 1.0, 0.5, 0.5)),
            Case("Chinchilla's law at Chinchilla's budget 5.76e23", lambda: (5.76e23, 406.4, 410.7, 0.34, 0.28)),
            Case("Epoch AI's refit at 1e21", lambda: (1e21, 482.01, 2085.43, 0.3478, 0.3658)),
            Case("a small law at 1e14 FLOPs", lambda: (1e14, 25.0, 60.0, 0.45, 0.38)),
        ),
        extra_checks=(("the split spends the budget and is a minimum along it", _split_is_the_minimum),),
        hint="set the derivative of A/N^alpha + B (6N/C)^beta to zero: alpha A N^-alpha = beta B D^-beta; "
             "then N = G (C/6)^(beta/(alpha+beta)) with G = (alpha A / (beta B))^(1/(alpha+beta))",
    )),
    register(Exercise(
        name="optimal_size_growth", chapter=11, title="how much larger the model, for 10x the compute",
        reference=optimal_size_growth,
        cases=(
            Case("Chinchilla's exponents, 10x compute", lambda: (0.34, 0.28, 10.0)),
            Case("equal exponents, 100x compute: 10x larger", lambda: (0.3, 0.3, 100.0)),
            Case("a law where data matter more (beta < alpha), 1000x", lambda: (0.5, 0.2, 1000.0)),
        ),
        hint="N* is proportional to C^(beta/(alpha+beta)): the exponent of N* is the data exponent over the sum",
    )),
]

WRONG = {
    "training_flops": _wrong_training_flops,
    "fit_power_law": _wrong_fit_power_law,
    "compute_optimal_split": _wrong_compute_optimal_split,
    "optimal_size_growth": _wrong_optimal_size_growth,
}
