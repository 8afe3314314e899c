"""The scaling-law fit recovers known laws; the upper bounds behave on texts whose answer we know."""

import math

import numpy as np
import pytest

from llm_from_scratch.scaling.bounds import (compress, compressed_bits_per_char, ngram_bits_per_char,
                                             upper_bounds)
from llm_from_scratch.scaling.fit import (ChinchillaFit, bootstrap_chinchilla, chinchilla_loss,
                                          chinchilla_objective, fit_chinchilla, fit_power_law, huber,
                                          isoflop_profiles, training_flops)

# a law in the range of the book's runs: losses in bits per character, a floor near 0.3
TRUE = dict(E=0.30, A=25.0, B=60.0, alpha=0.45, beta=0.38)
SMALL_GRID = dict(a=(0.0, 5.0), b=(0.0, 5.0), e=(-1.5,), alpha=(0.3, 0.7), beta=(0.5,))


def _grid_runs(noise=0.01, seed=0, n_sizes=7, n_tokens=7):
    """A grid over N and D like a sweep's, losses from the true law with multiplicative noise."""
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(2e4, 2e6, n_sizes), np.geomspace(1e6, 1e9, n_tokens))
    N, D = N.ravel(), D.ravel()
    L = chinchilla_loss(N, D, **TRUE) * np.exp(rng.normal(0.0, noise, N.size))
    return N, D, L


def test_objective_gradient_matches_central_differences():
    N, D, L = _grid_runs(n_sizes=4, n_tokens=3)
    args = (np.log(N), np.log(D), np.log(L), 0.05)   # a wide delta: both Huber branches are hit
    theta = np.array([2.9, 4.2, -1.1, 0.43, 0.40])
    _, grad = chinchilla_objective(theta, *args)
    num = np.zeros(5)
    for i in range(5):
        step = np.zeros(5)
        step[i] = 1e-6
        num[i] = (chinchilla_objective(theta + step, *args)[0] - chinchilla_objective(theta - step, *args)[0]) / 2e-6
    diff = np.max(np.abs(grad - num))
    assert diff < 1e-7 * max(1.0, np.max(np.abs(num))), f"max abs difference {diff:.3g}"


def test_huber_is_quadratic_then_linear():
    h, dh = huber(np.array([-3e-3, -1e-3, 0.0, 5e-4, 2e-3]), 1e-3)
    expected = np.array([2.5e-6, 5e-7, 0.0, 1.25e-7, 1.5e-6])
    assert np.max(np.abs(h - expected)) < 1e-18, f"max abs difference {np.max(np.abs(h - expected)):.3g}"
    assert dh.tolist() == [-1e-3, -1e-3, 0.0, 5e-4, 1e-3]


def test_fit_recovers_exact_law():
    N, D, L = _grid_runs(noise=0.0, n_sizes=4, n_tokens=4)
    fit = fit_chinchilla(N, D, L, grid=SMALL_GRID)
    for k, v in TRUE.items():
        err = abs(getattr(fit, k) - v) / v
        assert err < 1e-4, f"{k}: fitted {getattr(fit, k):.6g}, true {v}, relative error {err:.2g}"


def test_fit_recovers_noisy_law_within_tolerance():
    # 1% noise on each of 49 runs: E within 2%, exponents within 0.05 (over noise seeds 0-5, five
    # fits are within 1.5% and seed 0 is 5% high: the noise can mimic curvature)
    N, D, L = _grid_runs(noise=0.01, seed=1)
    fit = fit_chinchilla(N, D, L, grid=SMALL_GRID)
    print(f"E {fit.E:.4f} (true 0.30), alpha {fit.alpha:.3f} (0.45), beta {fit.beta:.3f} (0.38)")
    assert abs(fit.E - TRUE["E"]) / TRUE["E"] < 0.02, fit
    assert abs(fit.alpha - TRUE["alpha"]) < 0.05, fit
    assert abs(fit.beta - TRUE["beta"]) < 0.05, fit
    assert fit.n_runs == 49 and fit.n_starts == 8


def test_default_grid_finds_the_same_minimum_as_a_good_start():
    N, D, L = _grid_runs(noise=0.01, seed=2, n_sizes=4, n_tokens=4)
    fit = fit_chinchilla(N, D, L)
    near = fit_chinchilla(N, D, L, starts=[np.array([math.log(25), math.log(60), math.log(0.3), 0.45, 0.38])])
    assert fit.objective <= near.objective * (1 + 1e-9), (fit.objective, near.objective)


def test_bootstrap_intervals_cover_the_truth_and_are_seeded():
    N, D, L = _grid_runs(noise=0.01, seed=3, n_sizes=5, n_tokens=5)
    fit = fit_chinchilla(N, D, L, grid=SMALL_GRID)
    boot = bootstrap_chinchilla(N, D, L, n_boot=30, seed=0, fit=fit)
    for k in ("E", "alpha", "beta"):
        lo, hi = boot.interval(k)
        print(f"{k}: [{lo:.4f}, {hi:.4f}], true {TRUE[k]}")
        assert lo <= TRUE[k] <= hi, (k, lo, hi)
        assert hi - lo < 0.5 * TRUE[k], (k, lo, hi)   # informative, not just wide
    again = bootstrap_chinchilla(N, D, L, n_boot=5, seed=0, fit=fit)
    assert np.array_equal(again.samples["E"], boot.samples["E"][:5])


def test_compute_optimal_split_is_the_minimum_along_the_budget():
    law = ChinchillaFit(**TRUE)
    C = 1e15
    N_opt, D_opt = law.compute_optimal(C)
    assert abs(training_flops(N_opt, D_opt) - C) / C < 1e-12
    N = N_opt * np.geomspace(0.5, 2.0, 41)                   # along the budget, around the optimum
    losses = law.predict(N, C / (6 * N))
    assert np.argmin(losses) == 20 and losses[20] == pytest.approx(law.optimal_loss(C), rel=1e-12)
    a, b = law.exponents
    assert a == pytest.approx(0.38 / 0.83) and a + b == pytest.approx(1.0)
    # N* grows as C^a
    N10, _ = law.compute_optimal(10 * C)
    assert N10 / N_opt == pytest.approx(10 ** a, rel=1e-12)


def test_gain_from_more_compute():
    law = ChinchillaFit(**TRUE)
    g = law.gain(1e15, factors=(10, 100))
    assert [x["factor"] for x in g] == [1.0, 10.0, 100.0]
    assert g[0]["fraction_removed"] == 0.0
    assert g[0]["loss"] > g[1]["loss"] > g[2]["loss"] > TRUE["E"]
    assert 0 < g[1]["fraction_removed"] < g[2]["fraction_removed"] < 1
    assert g[2]["reducible"] == pytest.approx(g[2]["loss"] - TRUE["E"])


def test_isoflop_exponent_recovered_from_exact_isoflop_runs():
    law = ChinchillaFit(**TRUE)
    budgets = np.geomspace(1e13, 1e17, 5)
    N, D = [], []
    for C in budgets:
        n_opt, _ = law.compute_optimal(C)
        n = n_opt * np.geomspace(1 / 8, 8, 9)
        N.extend(n)
        D.extend(C / (6 * n))
    N, D = np.array(N), np.array(D)
    L = law.predict(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.002, N.size))
    profiles = isoflop_profiles(N, D, L, bins_per_decade=1)
    assert len(profiles) == 5 and all(p.interior for p in profiles)
    _, a = fit_power_law([p.C for p in profiles], [p.N_star for p in profiles])
    _, b = fit_power_law([p.C for p in profiles], [p.D_star for p in profiles])
    print(f"IsoFLOP a = {a:.3f}, b = {b:.3f}; true {law.exponents}")
    assert abs(a - law.exponents[0]) < 0.05 and abs(b - law.exponents[1]) < 0.05


def test_isoflop_from_a_grid_with_the_law_correction():
    # a grid over N and D (not iso-FLOP): binning by compute, moved along the law to each budget
    N, D, L = _grid_runs(noise=0.0, n_sizes=13, n_tokens=13)
    law = ChinchillaFit(**TRUE)
    profiles = isoflop_profiles(N, D, L, bins_per_decade=2, law=law)
    inner = [p for p in profiles if p.interior]
    assert len(inner) >= 3
    for p in inner:
        n_true, _ = law.compute_optimal(p.C)
        assert abs(math.log(p.N_star / n_true)) < 0.2, (p.C, p.N_star, n_true)
        assert np.allclose(law.predict(p.N, p.C / (6 * p.N)), p.L)   # on the law at the budget


def test_fit_power_law():
    x = np.geomspace(1, 1e4, 9)
    k, p = fit_power_law(x, 0.2 * x ** 0.73)
    assert k == pytest.approx(0.2, rel=1e-10) and p == pytest.approx(0.73, rel=1e-10)


@pytest.mark.parametrize("args, message", [
    (([1e6] * 4, [1e7] * 4, [1.0] * 4), "need at least 5 runs"),
    (([1e6] * 6, [1e7] * 6, [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]), "L must be positive and finite for every run, got 0.0 at run 2"),
    (([1e6] * 6, [1e7] * 5, [1.0] * 6), "got lengths 6, 5, 6"),
    (([1e6] * 6, [1e7] * 6, [1.0, np.nan, 1, 1, 1, 1]), "L must be positive and finite"),
    (([-1e6] + [1e6] * 5, [1e7] * 6, [1.0] * 6), "N must be positive"),
])
def test_bad_input_is_one_clear_line(args, message):
    with pytest.raises(ValueError, match=message) as err:
        fit_chinchilla(*args)
    assert "\n" not in str(err.value)


def test_compute_optimal_rejects_bad_budgets():
    with pytest.raises(ValueError, match="positive and finite"):
        ChinchillaFit(**TRUE).compute_optimal(-1.0)
    with pytest.raises(ValueError, match="alpha > 0 and beta > 0"):
        ChinchillaFit(E=0.3, A=1, B=1, alpha=-0.1, beta=0.3).compute_optimal(1e15)


# ---- upper bounds -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gzip", "bz2", "lzma"])
def test_compressors_on_repeated_and_random_text(method):
    repeated = "the cat sat on the mat. " * 2000
    bpc = compressed_bits_per_char(repeated, method)
    assert bpc < 0.1, f"{method}: {bpc:.4f} bits per character on a repeated string"
    # uniformly random ASCII characters (one UTF-8 byte each) carry log2(128) = 7 bits apiece
    rng = np.random.default_rng(0)
    random_text = bytes(rng.integers(0, 128, 50_000).astype(np.uint8)).decode("ascii")
    bpc = compressed_bits_per_char(random_text, method)
    assert 7.0 <= bpc < 7.3, f"{method}: {bpc:.4f} bits per character on random 7-bit text"


def test_random_bytes_do_not_compress():
    data = np.random.default_rng(1).bytes(100_000)
    for m in ("gzip", "bz2", "lzma"):
        bits_per_byte = 8 * len(compress(data, m)) / len(data)
        assert 8.0 <= bits_per_byte < 8.1, f"{m}: {bits_per_byte:.4f} bits per byte"


def test_context_helps_the_compressor():
    rng = np.random.default_rng(2)
    chunk = bytes(rng.integers(97, 123, 20_000).astype(np.uint8)).decode("ascii")
    # the validation text is the training text again: with it as context it costs almost nothing
    alone = compressed_bits_per_char(chunk, "lzma")
    after = compressed_bits_per_char(chunk, "lzma", context=chunk)
    assert alone > 4.5 and after < 0.05, (alone, after)


def test_ngram_bound_on_a_markov_text():
    # an order-2 source over 4 letters with known entropy: each letter is one of two equally likely
    # letters given the previous one, so 1 bit per character
    rng = np.random.default_rng(0)
    nxt = {"a": "bc", "b": "cd", "c": "da", "d": "ab"}
    out = ["a"]
    for bit in rng.integers(0, 2, 60_000):
        out.append(nxt[out[-1]][bit])
    text = "".join(out)
    r = ngram_bits_per_char(text[:50_000], text[50_000:], orders=(1, 2, 3))
    print(r)
    assert r["bits_per_char"][0] == pytest.approx(2.0, abs=0.01)
    assert r["best"] == pytest.approx(1.0, abs=0.02) and r["best_order"] in (2, 3)


def test_upper_bounds_and_errors():
    text = "def f(x):\n    return x + 1\n" * 300
    b = upper_bounds(text[:6000], text[6000:], orders=(1, 2, 3))
    assert set(b) == {"gzip", "gzip alone", "bz2", "bz2 alone", "lzma", "lzma alone", "n-gram", "n-gram order"}
    assert all(0 < b[k] < 1.0 for k in ("gzip", "lzma", "n-gram")), b
    with pytest.raises(ValueError, match="unknown compressor 'zip'"):
        compressed_bits_per_char("abc", "zip")
    with pytest.raises(ValueError, match="empty"):
        compressed_bits_per_char("", "gzip")
    with pytest.raises(ValueError, match="orders must lie in 1..7"):
        ngram_bits_per_char("abc", "abc", orders=(8,))
