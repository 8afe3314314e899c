"""The privacy measurements: the RDP accountant against Google's dp-accounting, exposure on a
hand-built ranking, and the ROC AUC against a hand-worked example and brute-force pair counting."""

import itertools
import math

import numpy as np
import pytest

from llm_from_scratch.privacy import (ORDERS, epsilon, epsilon_from_rdp, exposure, rdp_subsampled_gaussian,
                                      roc_auc, roc_curve, secret_rank)
from tests.conftest import reference

# ----------------------------------------------------------------------------------------
# the accountant


@pytest.mark.parametrize("sigma,q,steps,expected", [(1.1, 0.01, 1000, 1.71177017), (0.8, 0.004, 10000, 3.94048875),
                                                    (2.0, 0.05, 500, 2.76858456)])
def test_epsilon_matches_the_published_test_vectors(sigma, q, steps, expected):
    """dp-accounting 0.6.0's epsilons at delta = 1e-5 (printed to 8 decimals)."""
    got = epsilon(sigma, q, steps, 1e-5)
    assert abs(got - expected) < 5e-8, f"epsilon {got:.10f}, expected {expected}, diff {abs(got - expected):.2e}"


def test_rdp_special_cases_and_composition():
    assert rdp_subsampled_gaussian(1.0, 0.0).max() == 0.0  # nobody sampled: nothing leaks
    full = rdp_subsampled_gaussian(2.0, 1.0, orders=[2, 3.5, 10])
    np.testing.assert_allclose(full, [2 / 8, 3.5 / 8, 10 / 8], rtol=1e-15)  # the plain Gaussian
    assert np.isinf(rdp_subsampled_gaussian(0.0, 0.1, orders=[2])).all()  # no noise, no privacy
    # integer and fractional orders join smoothly: the fractional series near an integer
    near = rdp_subsampled_gaussian(1.0, 0.02, orders=[3, 3.0001])
    assert abs(near[1] - near[0]) < 1e-4 * near[0], f"orders 3 and 3.0001: {near}"
    # subsampling amplifies privacy: at sigma = 1, q = 0.01 costs about q^2 / 0.6 of q = 1 at the
    # orders up to 8 (at higher orders the amplification fades towards q = 1's cost)
    low = [a for a in ORDERS if a <= 8]
    ratio = rdp_subsampled_gaussian(1.0, 0.01, low) / rdp_subsampled_gaussian(1.0, 1.0, low)
    assert (ratio < 3e-4).all(), f"largest ratio {ratio.max():.2e}"
    # composition: epsilon grows with steps, and 0 steps cost nothing
    eps = [epsilon(1.0, 0.01, t, 1e-5) for t in (0, 10, 100, 1000, 10000)]
    assert eps[0] == 0.0 and all(a < b for a, b in zip(eps, eps[1:])), eps
    # the conversion: a tiny divergence gives epsilon 0 (the KL bound), order 1.01 and below are skipped
    assert epsilon_from_rdp([1e-12], 1e-5, orders=[2])[0] == 0.0
    assert epsilon_from_rdp([0.1], 1e-5, orders=[1.005])[0] == math.inf


def test_accountant_errors_are_clear():
    with pytest.raises(ValueError, match="sample_rate is a probability"):
        rdp_subsampled_gaussian(1.0, 1.5)
    with pytest.raises(ValueError, match="noise_multiplier must be non-negative"):
        rdp_subsampled_gaussian(-1.0, 0.1)
    with pytest.raises(ValueError, match="orders must be above 1"):
        rdp_subsampled_gaussian(1.0, 0.1, orders=[0.5])
    with pytest.raises(ValueError, match="delta is a probability"):
        epsilon(1.0, 0.01, 10, delta=0.0)
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        epsilon(1.0, 0.01, 2.5, delta=1e-5)


@pytest.mark.parity
def test_accountant_agrees_with_dp_accounting_within_one_percent():
    """A grid of noise multipliers, sampling rates and step counts: our epsilon within 1% of
    dp-accounting's RdpAccountant (Poisson-sampled Gaussian, delta = 1e-5)."""
    dp = reference("dp_accounting")
    worst = 0.0
    for sigma, q, steps in itertools.product((0.6, 0.8, 1.1, 2.0, 4.0), (0.001, 0.01, 0.05, 0.25),
                                             (1, 100, 10_000)):
        accountant = dp.rdp.RdpAccountant(list(ORDERS))
        accountant.compose(dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(sigma)), steps)
        theirs = accountant.get_epsilon(1e-5)
        ours = epsilon(sigma, q, steps, 1e-5)
        diff = abs(ours - theirs) / max(theirs, 1e-12)
        worst = max(worst, diff)
        assert diff < 0.01, f"sigma {sigma}, q {q}, steps {steps}: ours {ours:.6f}, theirs {theirs:.6f}"
    print(f"largest relative difference from dp-accounting over 60 settings: {worst:.2e}")


# ----------------------------------------------------------------------------------------
# exposure and membership inference


def test_exposure_on_a_hand_built_ranking():
    references = [float(r) for r in range(1, 17)]  # 16 other candidates, log-perplexities 1..16
    assert secret_rank(3.5, references) == 4 and exposure(3.5, references) == 2.0
    assert exposure(0.5, references) == 4.0  # the model's first choice: log2 16
    assert exposure(16.0, references) == pytest.approx(math.log2(16 / 17))  # the last: about 0
    # exhaustive ranking of a space of 10 secrets: the 9 others and space_size 10
    assert exposure(2.5, [1.0, 2.0] + [5.0] * 7, space_size=10) == pytest.approx(math.log2(10 / 3))
    with pytest.raises(ValueError, match="finite"):
        exposure(1.0, [1.0, float("nan")])


def test_auc_by_hand_and_by_counting_pairs():
    # by hand: members 0.9, 0.8, 0.3 against non-members 0.7, 0.2: 5 of the 6 pairs are ordered
    assert roc_auc([0.9, 0.8, 0.3], [0.7, 0.2]) == pytest.approx(5 / 6)
    assert roc_auc([1.0, 2.0], [1.0, 2.0]) == 0.5  # indistinguishable
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = rng.integers(0, 6, rng.integers(1, 12)).astype(float)  # many ties
        neg = rng.integers(0, 6, rng.integers(1, 12)).astype(float)
        pairs = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg])
        assert roc_auc(pos, neg) == pytest.approx(pairs, abs=1e-12)
        fpr, tpr = roc_curve(pos, neg)
        assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
        assert np.trapezoid(tpr, fpr) == pytest.approx(pairs, abs=1e-12)  # the area under the curve is the AUC


# ----------------------------------------------------------------------------------------
# DP-SGD


def _tiny_gpt():
    from llm_from_scratch.models.gpt import GPTConfig, param_shapes
    from llm_from_scratch.testing import random_params
    cfg = GPTConfig(vocab_size=13, n_positions=8, n_embd=12, n_layer=2, n_head=3)
    return cfg, random_params(param_shapes(cfg), seed=3)


def test_per_example_gradients_are_each_examples_gradient_and_sum_to_the_batch_gradient():
    from llm_from_scratch.models.gpt import gpt_backward, gpt_forward
    from llm_from_scratch.privacy import per_example_grads
    cfg, params = _tiny_gpt()
    rng = np.random.default_rng(1)
    B, T = 3, 6
    idx = rng.integers(0, cfg.vocab_size, (B, T))
    targets = rng.integers(0, cfg.vocab_size, (B, T))
    targets[:, 2] = -100  # the same number of targets in every row
    per = per_example_grads(params, cfg, idx, targets)
    batch = gpt_backward(gpt_forward(params, cfg, idx, targets)[2])
    assert list(per) == list(batch)
    for name in batch:
        np.testing.assert_allclose(per[name].sum(axis=0) / B, batch[name], rtol=1e-10, atol=1e-13,
                                   err_msg=f"sum of per-example gradients of {name}")
    for i in range(B):  # each one is that example's own gradient, as a batch of one computes it
        alone = gpt_backward(gpt_forward(params, cfg, idx[i:i + 1], targets[i:i + 1])[2])
        for name in batch:
            np.testing.assert_allclose(per[name][i], alone[name], rtol=1e-10, atol=1e-13,
                                       err_msg=f"example {i}, {name}")
    # rows of different lengths: each example's gradient is still that of its own mean loss
    targets[0, :4] = -100
    per = per_example_grads(params, cfg, idx, targets)
    alone = gpt_backward(gpt_forward(params, cfg, idx[:1], targets[:1])[2])
    for name in batch:
        np.testing.assert_allclose(per[name][0], alone[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_clipping_and_noise():
    from llm_from_scratch.privacy import clip_per_example, dp_sgd_gradient, per_example_grads
    cfg, params = _tiny_gpt()
    rng = np.random.default_rng(2)
    idx = rng.integers(0, cfg.vocab_size, (4, 5))
    per = per_example_grads(params, cfg, idx, rng.integers(0, cfg.vocab_size, (4, 5)))
    clipped, norms = clip_per_example(per, 0.1)
    after = np.sqrt(sum(np.square(g.reshape(4, -1)).sum(axis=1) for g in clipped.values()))
    assert norms.min() > 0.1 and np.all(after <= 0.1 * (1 + 1e-12)), f"norms {norms}, after clipping {after}"
    # noise 0 and no clipping: DP-SGD's gradient is plain SGD's mean gradient
    plain, _ = dp_sgd_gradient(per, np.inf, 0.0, 4, rng)
    for name, g in per.items():
        np.testing.assert_allclose(plain[name], g.mean(axis=0), rtol=1e-12, atol=1e-15)
    # the noise has standard deviation sigma * C / L per entry
    sigma, C, L = 2.0, 0.5, 4
    noisy, _ = dp_sgd_gradient(per, C, sigma, L, np.random.default_rng(0))
    clipped, _ = clip_per_example(per, C)
    noise = np.concatenate([(noisy[n] - clipped[n].sum(axis=0) / L).ravel() for n in per])
    assert abs(noise.std() / (sigma * C / L) - 1) < 0.02, f"noise std {noise.std()}, expected {sigma * C / L}"
