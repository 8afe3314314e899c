"""How private is DP-SGD? A Rényi-DP accountant for the subsampled Gaussian mechanism.

One step of DP-SGD (Abadi et al. 2016) samples each training example with probability ``q``
(Poisson sampling), clips every sampled example's gradient to norm ``C``, adds Gaussian noise of
standard deviation ``sigma * C`` to their sum, and steps. The accountant answers: after ``T``
such steps, which (epsilon, delta) differential-privacy guarantee holds?

Rényi differential privacy (Mironov 2017) measures a mechanism by the Rényi divergence of order
alpha between its output distributions on neighbouring datasets, and it composes by addition:
``T`` steps cost ``T`` times one step, at every order. For the Poisson-subsampled Gaussian
(Mironov, Talwar & Zhang 2019, section 3), with ``mu0 = N(0, sigma^2)`` and
``mu = (1 - q) mu0 + q N(1, sigma^2)``, the divergence of order alpha is ``log(A_alpha) / (alpha - 1)``
with ``A_alpha = E_{z ~ mu0} [(mu(z) / mu0(z))^alpha]``. For an integer alpha the binomial
expansion gives a finite sum (their equation 3.3),

    A_alpha = sum_{i=0}^{alpha} C(alpha, i) (1 - q)^(alpha - i) q^i exp((i^2 - i) / (2 sigma^2)),

and for a fractional alpha the integral splits at ``z0 = sigma^2 log(1/q - 1) + 1/2`` into two
series of binomial terms times Gaussian tail masses (``erfc``), summed until their terms are
negligible (section 3.3). Everything is computed in log space, so a sum of terms of 1e300 and
1e-300 stays exact.

An RDP curve becomes an (epsilon, delta) guarantee by the conversion of Canonne, Kamath & Steinke
(2020, proposition 12), minimised over the orders:

    epsilon = min_alpha  rdp(alpha) + log(1 - 1/alpha) - log(delta * alpha) / (alpha - 1).

``ORDERS`` are the orders Google's ``dp-accounting`` tries by default, so the two agree (the test
holds them within 1% on a grid of noise multipliers, sampling rates and step counts).

    >>> round(epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=1000, delta=1e-5), 4)
    1.7118

Left out: sampling without replacement, other mechanisms (Laplace, tree aggregation), privacy
loss distributions (tighter than RDP), and accounting for hyperparameter search.

References:

- M. Abadi et al., "Deep Learning with Differential Privacy", CCS 2016 (DP-SGD).
- I. Mironov, "Rényi Differential Privacy", CSF 2017 (definition, composition).
- I. Mironov, K. Talwar, L. Zhang, "Rényi Differential Privacy of the Sampled Gaussian
  Mechanism", 2019, arXiv 1908.10530, section 3.
- C. Canonne, G. Kamath, T. Steinke, "The Discrete Gaussian for Differential Privacy",
  NeurIPS 2020, proposition 12 (the RDP to (epsilon, delta) conversion).
- Google, ``dp-accounting``, ``rdp/rdp_privacy_accountant.py`` (the default orders).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["ORDERS", "rdp_subsampled_gaussian", "epsilon_from_rdp", "epsilon"]

# Rényi orders tried: 1.1, 1.2, ..., 10.9, then 11 ... 63, 128, 256, 512, 1024
ORDERS = tuple([1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024])


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _log_comb(n: float, k: int) -> float:
    """log of the binomial coefficient C(n, k), for a real n and an integer k >= 0."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _log_erfc(x: float) -> float:
    """log(erfc(x)), also where erfc(x) underflows (x > ~26): the asymptotic series
    erfc(x) ~ exp(-x^2) / (x sqrt(pi)) (1 - 1/(2x^2) + 3/(4x^4) - ...), in log form."""
    r = math.erfc(x)
    if r > 0.0:
        return math.log(r)
    return (-math.log(math.pi) / 2 - math.log(x) - x * x - 0.5 * x ** -2 + 0.625 * x ** -4
            - 37.0 / 24.0 * x ** -6 + 353.0 / 64.0 * x ** -8)


def _log_a_integer(q: float, sigma: float, alpha: int) -> float:
    """log A_alpha for an integer alpha: the finite binomial sum of the module docstring."""
    log_a = -math.inf
    for i in range(alpha + 1):
        term = (_log_comb(alpha, i) + i * math.log(q) + (alpha - i) * math.log1p(-q)
                + (i * i - i) / (2 * sigma ** 2))
        log_a = _log_add(log_a, term)
    return log_a


def _log_a_fractional(q: float, sigma: float, alpha: float, max_terms: int = 1000) -> float:
    """log A_alpha for a fractional alpha: the two series split at z0 (Mironov et al. 2019,
    section 3.3), summed until both are decreasing and 30 nats below the total."""
    z0 = sigma ** 2 * math.log(1 / q - 1) + 0.5
    log_a0 = log_a1 = last0 = last1 = -math.inf
    for i in range(max_terms):
        j = alpha - i
        log_coef = _log_comb(alpha, i)
        s0 = (log_coef + i * math.log(q) + j * math.log1p(-q) + (i * i - i) / (2 * sigma ** 2)
              + math.log(0.5) + _log_erfc((i - z0) / (math.sqrt(2) * sigma)))
        s1 = (log_coef + j * math.log(q) + i * math.log1p(-q) + (j * j - j) / (2 * sigma ** 2)
              + math.log(0.5) + _log_erfc((z0 - j) / (math.sqrt(2) * sigma)))
        log_a0, log_a1 = _log_add(log_a0, s0), _log_add(log_a1, s1)
        total = _log_add(log_a0, log_a1)
        if s0 < last0 and s1 < last1 and max(s0, s1) < total - 30:
            return total
        last0, last1 = s0, s1
    return math.inf  # did not converge: this order gives no bound


def rdp_subsampled_gaussian(noise_multiplier: float, sample_rate: float,
                            orders: Sequence[float] = ORDERS) -> np.ndarray:
    """Rényi DP of ONE step of the Poisson-subsampled Gaussian mechanism at each order.

    ``noise_multiplier`` is sigma, the noise's standard deviation over the clipping norm;
    ``sample_rate`` is q. No sampling (q = 1) gives the plain Gaussian's alpha / (2 sigma^2).

    >>> rdp_subsampled_gaussian(2.0, 1.0, orders=[2, 3]).tolist()   # alpha / (2 sigma^2)
    [0.25, 0.375]
    """
    if not 0 <= sample_rate <= 1:
        raise ValueError(f"sample_rate is a probability in [0, 1], got {sample_rate}")
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be non-negative, got {noise_multiplier}")
    out = []
    for alpha in orders:
        if alpha <= 1:
            raise ValueError(f"Rényi orders must be above 1, got {alpha}")
        if sample_rate == 0:
            out.append(0.0)
        elif noise_multiplier == 0 or math.isinf(alpha):
            out.append(math.inf)
        elif sample_rate == 1:
            out.append(alpha / (2 * noise_multiplier ** 2))
        elif float(alpha).is_integer():
            out.append(_log_a_integer(sample_rate, noise_multiplier, int(alpha)) / (alpha - 1))
        else:
            out.append(_log_a_fractional(sample_rate, noise_multiplier, alpha) / (alpha - 1))
    return np.array(out)


def epsilon_from_rdp(rdp: Sequence[float], delta: float, orders: Sequence[float] = ORDERS
                     ) -> tuple[float, float]:
    """``(epsilon, best order)`` for an RDP curve and a target ``delta``, by the conversion of
    Canonne, Kamath & Steinke (2020, proposition 12), minimised over the orders.

    Where ``delta^2 > 1 - exp(-rdp)``, the divergence is small enough that epsilon 0 holds (a
    bound through the KL divergence); orders at or below 1.01 are skipped (the formula is
    unstable there).

    >>> eps, order = epsilon_from_rdp([0.25, 0.375], delta=1e-5, orders=[2, 3])
    >>> round(eps, 4), order   # 0.375 + log(2/3) - log(3e-5) / 2 at order 3
    (5.1767, 3)
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta is a probability in (0, 1), got {delta}")
    if len(rdp) != len(orders):
        raise ValueError(f"rdp has {len(rdp)} values for {len(orders)} orders")
    best = (math.inf, orders[0])
    for alpha, r in zip(orders, rdp):
        if r < 0:
            raise ValueError(f"a Rényi divergence cannot be negative, got {r} at order {alpha}")
        if delta ** 2 + math.expm1(-r) > 0:
            eps = 0.0
        elif alpha > 1.01:
            eps = r + math.log1p(-1 / alpha) - math.log(delta * alpha) / (alpha - 1)
        else:
            eps = math.inf
        if eps < best[0]:
            best = (eps, alpha)
    return max(0.0, float(best[0])), best[1]


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
            orders: Sequence[float] = ORDERS) -> float:
    """The epsilon of ``steps`` DP-SGD steps at this noise and sampling rate, for ``delta``:
    one step's RDP times ``steps`` (composition), converted by ``epsilon_from_rdp``.

    >>> epsilon(1.1, 0.01, 1000, 1e-5) < epsilon(1.1, 0.01, 4000, 1e-5)   # more steps, less privacy
    True
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if steps == 0:
        return 0.0  # nothing released, nothing spent
    rdp = rdp_subsampled_gaussian(noise_multiplier, sample_rate, orders) * steps
    return float(epsilon_from_rdp(rdp, delta, orders)[0])
