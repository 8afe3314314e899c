"""Fitting scaling laws: the Chinchilla law, bootstrap intervals, IsoFLOP profiles, predictions.

The law (Hoffmann et al. 2022, equation 2) writes the final loss of a model with ``N`` parameters
trained on ``D`` tokens as an irreducible part and two power laws that vanish as N and D grow:

    L(N, D) = E + A / N^alpha + B / D^beta.

``E`` is the loss of an infinitely large model trained on infinite data: for a source with a
known entropy rate it should be that entropy (chapter 11 checks it against StoryWorld's floor).

How it is fitted (their appendix D.2): with ``A = e^a``, ``B = e^b``, ``E = e^e`` the law is
``log L = LSE(a - alpha log N, b - beta log D, e)``, where ``LSE`` is the log-sum-exp of chapter 4.
Fitting the log of the loss weights every run by its relative error. The objective is the Huber
loss (``delta = 1e-3``) of the residuals ``LSE(...) - log L_i``, summed over runs, so one bad run
cannot drag the fit; it is minimised with L-BFGS from a grid of starting points and the best
minimum is kept, because the objective has flat valleys and local minima.

The rest of the module:

- ``bootstrap_chinchilla``: resample the runs with replacement and refit, for percentile
  intervals on E, alpha, beta (seeded);
- ``ChinchillaFit.compute_optimal``: the closed-form compute-optimal split under ``C = 6 N D``
  (their approach 3): ``N*(C) = G (C/6)^a``, ``D*(C) = (C/6)^b / G``, ``a = beta/(alpha+beta)``,
  ``b = alpha/(alpha+beta)``, ``G = (alpha A / (beta B))^(1/(alpha+beta))``;
- ``isoflop_profiles``: their approach 2, a parabola of loss against ``log N`` per compute
  budget and its minimum ``N*(C)``, from a grid of runs that is not exactly iso-FLOP;
- ``fit_power_law``: ``y = k x^p`` by least squares in log space, for ``N*(C) ∝ C^a``;
- ``ChinchillaFit.gain``: the loss that 10x or 100x more compute buys at the optimal split.

Left out: Kaplan et al.'s L(N, D) form (it has no irreducible term), approach 1 (the envelope of
training curves; our runs record the final loss only), and fitting the learning-rate schedule.

References: Hoffmann et al., "Training Compute-Optimal Large Language Models" (2022, arXiv
2203.15556), section 3 and appendix D.2; Besiroglu et al., "Chinchilla Scaling: A replication
attempt" (2024, arXiv 2404.10102); Kaplan et al., "Scaling Laws for Neural Language Models" (2020,
arXiv 2001.08361).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

__all__ = ["ChinchillaFit", "chinchilla_loss", "huber", "chinchilla_objective", "fit_chinchilla",
           "Bootstrap", "bootstrap_chinchilla", "fit_power_law", "IsoFLOPProfile",
           "fit_parabola", "isoflop_profiles", "training_flops", "DEFAULT_GRID"]

N_PARAMS = 5  # E, A, B, alpha, beta

# starting points: Hoffmann et al. used alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1},
# a, b in {0, 5, ..., 25}; ours is smaller (128 starts, a few seconds for 50 runs) and e reaches
# lower, because losses in bits per character are below 1
DEFAULT_GRID = dict(a=(0.0, 5.0, 10.0, 20.0), b=(0.0, 5.0, 10.0, 20.0),
                    e=(-1.5, 0.0), alpha=(0.25, 0.75), beta=(0.25, 0.75))


def training_flops(N, D):
    """Training compute ``C = 6 N D``: 2 FLOPs per parameter per token forward, 4 backward.

    >>> float(training_flops(1e6, 2e7))
    120000000000000.0
    """
    return 6.0 * np.asarray(N, dtype=np.float64) * np.asarray(D, dtype=np.float64)


def chinchilla_loss(N, D, E, A, B, alpha, beta):
    """``L(N, D) = E + A / N^alpha + B / D^beta``, elementwise over arrays.

    Chinchilla's fitted law (nats per token) at GPT-3's size, 175e9 parameters and 300e9 tokens:

    >>> round(float(chinchilla_loss(175e9, 300e9, 1.69, 406.4, 410.7, 0.34, 0.28)), 4)
    2.0023
    """
    N = np.asarray(N, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    return E + A / N ** alpha + B / D ** beta


def huber(r, delta: float = 1e-3):
    """The Huber loss and its derivative: ``r^2/2`` for ``|r| <= delta``, else ``delta (|r| - delta/2)``.

    >>> h, dh = huber(np.array([0.0005, -0.01]), 1e-3)
    >>> h.tolist(), dh.tolist()
    ([1.25e-07, 9.5e-06], [0.0005, -0.001])
    """
    r = np.asarray(r, dtype=np.float64)
    small = np.abs(r) <= delta
    h = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    dh = np.where(small, r, delta * np.sign(r))
    return h, dh


def chinchilla_objective(theta, logN, logD, logL, delta: float = 1e-3):
    """Sum of Huber losses of the log-residuals, and its gradient, at ``theta = (a, b, e, alpha, beta)``.

    ``r_i = LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i``. With ``w`` the softmax of the
    three terms (their shares of the predicted loss), ``dr/da = w_1``, ``dr/db = w_2``,
    ``dr/de = w_3``, ``dr/dalpha = -w_1 log N``, ``dr/dbeta = -w_2 log D``.
    """
    a, b, e, alpha, beta = theta
    z = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])  # (3, n)
    m = z.max(axis=0)                                                        # (n,)
    ez = np.exp(z - m)                                                       # (3, n)
    s = ez.sum(axis=0)                                                       # (n,)
    r = m + np.log(s) - logL                                                 # (n,) residuals
    w = ez / s                                                               # (3, n)
    h, dh = huber(r, delta)                                                  # (n,), (n,)
    grad = np.array([np.sum(dh * w[0]), np.sum(dh * w[1]), np.sum(dh * w[2]),
                     -np.sum(dh * w[0] * logN), -np.sum(dh * w[1] * logD)])  # (5,)
    return float(h.sum()), grad


@dataclass(frozen=True)
class ChinchillaFit:
    """A fitted law ``L = E + A/N^alpha + B/D^beta`` and what follows from it.

    ``objective`` is the Huber objective at the minimum, ``n_runs`` the number of runs fitted,
    ``n_starts`` the number of starting points tried.

    >>> law = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    >>> [round(x, 3) for x in law.exponents]        # N* ∝ C^a, D* ∝ C^b
    [0.452, 0.548]
    >>> N, D = law.compute_optimal(5.76e23)          # Chinchilla's compute budget
    >>> f"{float(N):.3g} parameters, {float(D):.3g} tokens"
    '3.22e+10 parameters, 2.98e+12 tokens'
    """
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = float("nan")
    n_runs: int = 0
    n_starts: int = 0

    @property
    def theta(self) -> np.ndarray:
        """The fitted parameters as ``(a, b, e, alpha, beta)`` with ``A = e^a`` and so on."""
        return np.array([math.log(self.A), math.log(self.B), math.log(self.E), self.alpha, self.beta])

    def predict(self, N, D):
        """The law's loss at ``N`` parameters and ``D`` tokens (arrays broadcast)."""
        return chinchilla_loss(N, D, self.E, self.A, self.B, self.alpha, self.beta)

    def reducible(self, N, D):
        """The part of the loss that more parameters and data remove: ``A/N^alpha + B/D^beta``."""
        return self.predict(N, D) - self.E

    @property
    def exponents(self) -> tuple[float, float]:
        """``(a, b)`` of the compute-optimal allocation ``N* ∝ C^a``, ``D* ∝ C^b``; ``a + b = 1``
        (both NaN when alpha = beta = 0: then no split is better than another)."""
        s = self.alpha + self.beta
        if s <= 0:
            return float("nan"), float("nan")
        return self.beta / s, self.alpha / s

    def compute_optimal(self, C):
        """``(N*, D*)`` minimising the law subject to ``6 N D = C`` (Hoffmann et al., equation 4).

        Setting the derivative of ``A/N^alpha + B (6N/C)^beta`` to zero gives
        ``alpha A N^-alpha = beta B D^-beta``, whose solution is ``N* = G (C/6)^a`` with
        ``G = (alpha A / (beta B))^(1/(alpha+beta))`` and ``D* = C / (6 N*)``.
        """
        C = np.asarray(C, dtype=np.float64)
        if np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise ValueError(f"compute budgets must be positive and finite, got {C}")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"a compute-optimal split needs alpha > 0 and beta > 0, got alpha={self.alpha:.4g}, "
                             f"beta={self.beta:.4g}")
        a, b = self.exponents
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        N = G * (C / 6.0) ** a
        return N, C / (6.0 * N)

    def optimal_loss(self, C):
        """The law's loss at the compute-optimal split of budget ``C``."""
        N, D = self.compute_optimal(C)
        return self.predict(N, D)

    def gain(self, C, factors=(10.0, 100.0)) -> list[dict]:
        """What ``factor`` times more compute buys at the optimal split, for each factor.

        Each entry: ``factor``, ``C``, ``N``, ``D``, ``loss``, ``reducible`` (``loss - E``) and
        ``fraction_removed``, the share of the reducible loss at budget ``C`` that the larger
        budget removes.
        """
        base = float(self.optimal_loss(C))
        out = []
        for f in (1.0, *factors):
            N, D = self.compute_optimal(C * f)
            loss = float(self.predict(N, D))
            out.append(dict(factor=float(f), C=float(C * f), N=float(N), D=float(D), loss=loss,
                            reducible=loss - self.E,
                            fraction_removed=(base - loss) / (base - self.E)))
        return out

    def as_dict(self) -> dict:
        return dict(E=self.E, A=self.A, B=self.B, alpha=self.alpha, beta=self.beta)


def _check_runs(N, D, L, minimum: int = N_PARAMS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = []
    for name, x in (("N", N), ("D", D), ("L", L)):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of one value per run, got shape {x.shape}")
        arrays.append(x)
    N, D, L = arrays
    if not len(N) == len(D) == len(L):
        raise ValueError(f"N, D and L must have one value per run each, got lengths {len(N)}, {len(D)}, {len(L)}")
    if len(N) < minimum:
        raise ValueError(f"need at least {minimum} runs to fit {N_PARAMS} parameters "
                         f"(E, A, B, alpha, beta), got {len(N)}")
    for name, x in (("N", N), ("D", D), ("L", L)):
        bad = ~np.isfinite(x) | (x <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must be positive and finite for every run, got {float(x[i])!r} at run {i}")
    return N, D, L


def _grid(grid: dict) -> list[np.ndarray]:
    keys = ("a", "b", "e", "alpha", "beta")
    missing = [k for k in keys if k not in grid]
    if missing:
        raise ValueError(f"the starting grid needs values for {keys}, missing {missing}")
    return [np.array(p, dtype=np.float64) for p in itertools.product(*(grid[k] for k in keys))]


def fit_chinchilla(N, D, L, *, delta: float = 1e-3, grid: dict | None = None, starts=None) -> ChinchillaFit:
    """Fit ``L = E + A/N^alpha + B/D^beta`` to runs as Hoffmann et al. (2022, appendix D.2) did.

    ``N`` (parameters), ``D`` (tokens) and ``L`` (final losses, all positive) hold one value per
    run. Minimises ``chinchilla_objective`` with L-BFGS from every point of ``grid`` (a dict of
    values for ``a, b, e, alpha, beta``; ``DEFAULT_GRID`` if None), or from the explicit list
    ``starts`` of ``(a, b, e, alpha, beta)`` vectors, and keeps the lowest minimum. Unlike Hoffmann
    et al. the search is boxed: exponents in [0, 3] and E at least e^-20, so a fit that finds no
    floor ends visibly on the bound instead of overflowing.

    Example: six runs on the exact Chinchilla law give its constants back.

    >>> N = np.array([1e8, 1e8, 1e9, 1e9, 1e10, 1e10, 3e8, 3e9])
    >>> D = np.array([1e9, 1e11, 1e10, 1e12, 1e11, 1e9, 3e10, 3e11])
    >>> L = chinchilla_loss(N, D, 1.69, 406.4, 410.7, 0.34, 0.28)
    >>> law = fit_chinchilla(N, D, L, grid=dict(a=(5, 10), b=(5, 10), e=(0,), alpha=(0.5,), beta=(0.5,)))
    >>> round(law.E, 3), round(law.alpha, 3), round(law.beta, 3)
    (1.69, 0.34, 0.28)
    """
    N, D, L = _check_runs(N, D, L)
    if starts is None:
        starts = _grid(DEFAULT_GRID if grid is None else grid)
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    # The optimizer works in centred coordinates a' = a - alpha mean(log N), b' = b - beta mean(log D):
    # the same law and the same minimum, but a and alpha are no longer almost collinear, so L-BFGS
    # needs fewer steps. Starting points are given (and results returned) in (a, b, e, alpha, beta).
    mN, mD = float(logN.mean()), float(logD.mean())

    def centred(t):
        a_, b_, e, alpha, beta = t
        value, g = chinchilla_objective(np.array([a_ + alpha * mN, b_ + beta * mD, e, alpha, beta]),
                                        logN, logD, logL, delta)
        return value, np.array([g[0], g[1], g[2], g[3] + g[0] * mN, g[4] + g[1] * mD])

    best, best_x = None, None
    # one BLAS thread: L-BFGS works on vectors of 5 numbers, and scipy's OpenBLAS spinning up two
    # threads for each of them made the fit 100x slower on a busy two-core machine
    with threadpool_limits(limits=1, user_api="blas"):
        results = [_minimize_from(centred, x0, mN, mD) for x0 in starts]
    for res in results:
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
            best_x = np.array([res.x[0] + res.x[3] * mN, res.x[1] + res.x[4] * mD, *res.x[2:]])
    if best is None:
        raise RuntimeError("no starting point gave a finite fit; check the runs for extreme values")
    a, b, e, alpha, beta = best_x
    return ChinchillaFit(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha),
                         beta=float(beta), objective=float(best.fun), n_runs=len(N), n_starts=len(starts))


# Box for L-BFGS-B (Hoffmann et al. did not bound their fit): exponents in [0, 3], E = e^e at least
# e^-20 (about 2e-9, in effect zero). Without it, data with no visible floor can send e to -inf and
# A or B to overflow; with it, such a fit ends on the bound, where it can be seen.
E_MIN_LOG = -20.0
ALPHA_BOUNDS = (0.0, 3.0)


def _minimize_from(objective, x0, mN, mD):
    a, b, e, alpha, beta = np.asarray(x0, dtype=np.float64)
    bounds = [(None, None), (None, None), (E_MIN_LOG, None), ALPHA_BOUNDS, ALPHA_BOUNDS]
    return minimize(objective, np.array([a - alpha * mN, b - beta * mD, e, alpha, beta]), jac=True,
                    method="L-BFGS-B", bounds=bounds, options=dict(maxiter=1000, ftol=1e-13, gtol=1e-10))


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap refits: ``samples[name]`` holds one value per resample for E, A, B, alpha, beta,
    a and b (the compute-optimal exponents); ``interval(name)`` is the percentile interval."""
    fit: ChinchillaFit
    samples: dict
    level: float

    def interval(self, name: str) -> tuple[float, float]:
        if name not in self.samples:
            raise KeyError(f"no bootstrap samples for {name!r}; have {sorted(self.samples)}")
        tail = 50.0 * (1.0 - self.level)
        lo, hi = np.nanpercentile(self.samples[name], [tail, 100.0 - tail])
        return float(lo), float(hi)


def bootstrap_chinchilla(N, D, L, *, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                         delta: float = 1e-3, fit: ChinchillaFit | None = None) -> Bootstrap:
    """Percentile bootstrap for the law's parameters: resample the runs with replacement, refit.

    Each refit starts from the full-data fit (``fit``, computed if None) and from 4 more points
    with other exponents, rather than the whole ``DEFAULT_GRID``: the resampled
    data are close to the original, so their minimum is close to its minimum, and the whole grid
    would cost ~25x more per resample. Resamples with fewer than 5 distinct runs are drawn again.
    """
    N, D, L = _check_runs(N, D, L)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    fit = fit_chinchilla(N, D, L, delta=delta) if fit is None else fit
    starts = [fit.theta] + [np.array([fit.theta[0], fit.theta[1], fit.theta[2], al, be])
                            for al in (0.25, 0.75) for be in (0.25, 0.75)]
    rng = np.random.default_rng(seed)
    names = ("E", "A", "B", "alpha", "beta", "a", "b")
    samples = {k: [] for k in names}
    n = len(N)
    while len(samples["E"]) < n_boot:
        idx = rng.integers(0, n, n)
        if len(np.unique(idx)) < N_PARAMS:
            continue
        f = fit_chinchilla(N[idx], D[idx], L[idx], delta=delta, starts=starts)
        a, b = f.exponents
        for k, v in zip(names, (f.E, f.A, f.B, f.alpha, f.beta, a, b)):
            samples[k].append(v)
    return Bootstrap(fit=fit, samples={k: np.array(v) for k, v in samples.items()}, level=level)


def fit_power_law(x, y) -> tuple[float, float]:
    """``(k, p)`` with ``y ≈ k x^p``: a straight line ``log y = log k + p log x`` by least squares.

    >>> k, p = fit_power_law([1, 10, 100], [3, 30, 300])
    >>> round(k, 6), round(p, 6)
    (3.0, 1.0)
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"need at least 2 distinct x values to fit a power law, got {len(np.unique(x))}")
    if np.any(~np.isfinite(x)) or np.any(x <= 0) or np.any(~np.isfinite(y)) or np.any(y <= 0):
        raise ValueError("a power law is fitted in log space: x and y must be positive and finite")
    p, logk = np.polyfit(np.log(x), np.log(y), 1)
    return float(np.exp(logk)), float(p)


def fit_parabola(logN, L) -> np.ndarray:
    """Coefficients ``(c2, c1, c0)`` of ``L ≈ c2 u^2 + c1 u + c0`` with ``u = log N`` (least squares)."""
    logN = np.asarray(logN, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    if len(np.unique(logN)) < 3:
        raise ValueError(f"a parabola needs at least 3 distinct model sizes, got {len(np.unique(logN))}")
    return np.polyfit(logN, L, 2)


@dataclass(frozen=True)
class IsoFLOPProfile:
    """Runs at (nearly) one compute budget ``C``, the parabola through their loss against ``log N``,
    and its minimum. ``L`` holds the losses as fitted (moved to ``C`` exactly when a law was given);
    ``interior`` is True when the minimum lies inside the sampled range of N (a minimum at the edge
    says the grid missed the optimum and ``N_star`` is an extrapolation)."""
    C: float
    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    L_measured: np.ndarray
    coef: np.ndarray
    N_star: float
    L_star: float
    interior: bool

    @property
    def D_star(self) -> float:
        return self.C / (6.0 * self.N_star)

    def curve(self, n_points: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """``(N, L)`` along the parabola across the profile's range of N, for plotting."""
        u = np.linspace(np.log(self.N.min()), np.log(self.N.max()), n_points)
        return np.exp(u), np.polyval(self.coef, u)


def isoflop_profiles(N, D, L, *, bins_per_decade: float = 2.0, law: ChinchillaFit | None = None,
                     min_sizes: int = 3) -> list[IsoFLOPProfile]:
    """IsoFLOP profiles (Hoffmann et al., approach 2) from a grid of runs over N and D.

    A grid over N and D is not iso-FLOP: ``C = 6 N D`` differs from run to run. The runs are
    binned by ``log10 C`` (``bins_per_decade`` bins per factor of 10, edges at multiples of
    ``1/bins_per_decade``), and each bin's budget is the geometric mean of its runs' compute.
    Runs in a bin differ in compute by up to the bin width, which tilts the parabola (a larger
    model in the bin may simply have had more compute). With ``law`` given, each run's loss is
    moved along the fitted law to the bin's budget at its own N:
    ``L_i + law(N_i, C/(6 N_i)) - law(N_i, D_i)``. That keeps each run's measured deviation from
    the law and corrects only the small compute difference, so the parabolas stay measurements
    (with ``law=None`` they are the raw binned losses). For each bin with at least ``min_sizes``
    distinct N, a parabola in ``log N`` gives ``N*`` at its vertex (when it opens upwards).
    """
    N, D, L = _check_runs(N, D, L, minimum=3)
    if bins_per_decade <= 0:
        raise ValueError(f"bins_per_decade must be positive, got {bins_per_decade}")
    C = training_flops(N, D)
    key = np.round(np.log10(C) * bins_per_decade).astype(np.int64)   # bin index per run
    out = []
    for k in np.unique(key):
        m = key == k
        if len(np.unique(N[m])) < max(3, min_sizes):
            continue
        Cb = float(np.exp(np.mean(np.log(C[m]))))
        Nb, Db, Lb = N[m], D[m], L[m]
        Lfit = Lb if law is None else Lb + law.predict(Nb, Cb / (6.0 * Nb)) - law.predict(Nb, Db)
        coef = fit_parabola(np.log(Nb), Lfit)
        if coef[0] <= 0:
            continue   # opens downwards: no minimum
        u_star = -coef[1] / (2.0 * coef[0])
        interior = bool(np.log(Nb.min()) <= u_star <= np.log(Nb.max()))
        order = np.argsort(Nb)
        out.append(IsoFLOPProfile(C=Cb, N=Nb[order], D=Db[order], L=Lfit[order], L_measured=Lb[order],
                                  coef=coef, N_star=float(np.exp(u_star)),
                                  L_star=float(np.polyval(coef, u_star)), interior=interior))
    return out
