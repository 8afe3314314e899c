"""Tests for llm_from_scratch.optim: optimizers, schedules and clipping against torch, resume from a
state dict bit for bit, in-place updates, and the error messages."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from llm_from_scratch.optim import (SGD, AdamW, Adam, RMSProp, clip_grad_norm, constant,
                                    decay_groups, decays, step_decay, warmup_cosine)
from llm_from_scratch.testing import assert_close

C = 4  # embedding width
V = 7  # vocabulary size
SHAPES = {
    "transformer.wte.weight": (V, C),
    "transformer.h.0.attn.c_attn.weight": (C, 3 * C),
    "transformer.h.0.attn.c_attn.bias": (3 * C,),
    "transformer.h.0.ln_1.weight": (C,),
    "transformer.ln_f.bias": (C,),
}
N_STEPS = 10


def make_params(seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}


def make_grads(n_steps: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
            for _ in range(n_steps)]


def lr_at(step: int, base: float) -> float:
    """A learning rate that changes every step, so the parity tests also check how each rule
    uses the current lr (momentum buffers, Adam's step size, AdamW's decay)."""
    return base * (0.5 + 0.1 * step)


def run_ours(opt, params, grad_seq, base_lr, first_step=0):
    for i, grads in enumerate(grad_seq):
        opt.lr = lr_at(first_step + i, base_lr)
        opt.step(params, {k: g.copy() for k, g in grads.items()})
    return params


def run_torch(torch, make_torch_opt, params, grad_seq, base_lr):
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = make_torch_opt(tparams)
    for i, grads in enumerate(grad_seq):
        for group in opt.param_groups:
            group["lr"] = lr_at(i, base_lr)
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        opt.step()
    return {k: p.detach().numpy() for k, p in tparams.items()}


def adamw_groups(tparams, weight_decay):
    """torch param groups that apply our ``decays`` rule: decay on one group, none on the other."""
    decayed, kept = decay_groups({k: p.detach().numpy() for k, p in tparams.items()})
    return [{"params": [tparams[k] for k in decayed], "weight_decay": weight_decay},
            {"params": [tparams[k] for k in kept], "weight_decay": 0.0}]


# name: (base lr, our optimizer, torch optimizer from a dict of torch params)
CASES = {
    "sgd": (0.1, lambda: SGD(lr=0.1),
            lambda t, tp: t.optim.SGD(tp.values(), lr=0.1)),
    "sgd_heavy_ball": (0.1, lambda: SGD(lr=0.1, momentum=0.9),
                       lambda t, tp: t.optim.SGD(tp.values(), lr=0.1, momentum=0.9)),
    "sgd_nesterov": (0.1, lambda: SGD(lr=0.1, momentum=0.9, nesterov=True),
                     lambda t, tp: t.optim.SGD(tp.values(), lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": (0.1, lambda: SGD(lr=0.1, momentum=0.8, weight_decay=0.05),
                         lambda t, tp: t.optim.SGD(tp.values(), lr=0.1, momentum=0.8,
                                                   weight_decay=0.05)),
    "rmsprop": (0.01, lambda: RMSProp(lr=0.01),
                lambda t, tp: t.optim.RMSprop(tp.values(), lr=0.01, alpha=0.99, eps=1e-8)),
    "rmsprop_momentum": (0.01, lambda: RMSProp(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.8),
                         lambda t, tp: t.optim.RMSprop(tp.values(), lr=0.01, alpha=0.9, eps=1e-6,
                                                       momentum=0.8)),
    "adam": (0.01, lambda: Adam(lr=0.01, betas=(0.9, 0.95)),
             lambda t, tp: t.optim.Adam(tp.values(), lr=0.01, betas=(0.9, 0.95))),
    "adam_weight_decay": (0.01, lambda: Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                             weight_decay=0.1),
                          lambda t, tp: t.optim.Adam(tp.values(), lr=0.01, betas=(0.8, 0.99),
                                                     eps=1e-6, weight_decay=0.1)),
    "adamw_no_decay_rule": (0.01, lambda: AdamW(lr=0.01, betas=(0.9, 0.95), weight_decay=0.5),
                            lambda t, tp: t.optim.AdamW(adamw_groups(tp, 0.5), lr=0.01,
                                                        betas=(0.9, 0.95))),
    "adamw_decay_all": (0.01, lambda: AdamW(lr=0.01, weight_decay=0.5, decay=lambda n, v: True),
                        lambda t, tp: t.optim.AdamW(tp.values(), lr=0.01, weight_decay=0.5)),
}


@pytest.mark.parity
@pytest.mark.parametrize("case", CASES)
def test_matches_torch_optim(torch, case):
    base_lr, ours, theirs = CASES[case]
    grad_seq = make_grads(N_STEPS)
    expected = run_torch(torch, lambda tp: theirs(torch, tp), make_params(), grad_seq, base_lr)
    actual = run_ours(ours(), make_params(), grad_seq, base_lr)
    for name in SHAPES:
        assert_close(actual[name], expected[name], rtol=0.0, atol=1e-10, name=f"{case} {name}")
    moved = max(float(np.max(np.abs(actual[k] - p))) for k, p in make_params().items())
    assert moved > 1e-3, f"{case}: parameters barely moved ({moved}); the test would prove nothing"


def test_adamw_rule_spares_biases_and_norms():
    grad_seq = make_grads(3)
    with_rule = run_ours(AdamW(lr=0.01, weight_decay=0.5), make_params(), grad_seq, 0.01)
    decay_all = run_ours(AdamW(lr=0.01, weight_decay=0.5, decay=lambda n, v: True),
                         make_params(), grad_seq, 0.01)
    no_decay = run_ours(Adam(lr=0.01), make_params(), grad_seq, 0.01)
    for name in SHAPES:
        if len(SHAPES[name]) >= 2:  # matrices: decayed, so they differ from plain Adam
            assert np.array_equal(with_rule[name], decay_all[name]), name
            assert not np.allclose(with_rule[name], no_decay[name], rtol=0, atol=1e-6), name
        else:  # biases and LayerNorm: exactly plain Adam
            assert np.array_equal(with_rule[name], no_decay[name]), name


def test_decays_rule_and_groups():
    w, b = np.zeros((3, 2)), np.zeros(2)
    assert decays("transformer.wte.weight", w)
    assert decays("transformer.wpe.weight", w)
    assert decays("transformer.h.11.mlp.c_proj.weight", w)
    assert decays("bert.encoder.layer.0.attention.self.query.weight", w)
    assert not decays("transformer.h.0.mlp.c_fc.bias", b)
    assert not decays("transformer.h.0.ln_2.weight", b)
    assert not decays("transformer.ln_f.bias", b)
    assert not decays("bert.encoder.layer.0.attention.output.LayerNorm.weight", b)
    assert not decays("bert.embeddings.LayerNorm.bias", b)
    # the name alone spares norms and biases, whatever their shape
    assert not decays("transformer.ln_f.weight", w)
    assert not decays("model.layers.0.input_layernorm.weight", w)
    assert not decays("head.bias", w)
    decayed, kept = decay_groups(make_params())
    assert decayed == ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"]
    assert kept == ["transformer.h.0.attn.c_attn.bias", "transformer.h.0.ln_1.weight",
                    "transformer.ln_f.bias"]
    decayed, kept = decay_groups(make_params(), decay=lambda name, v: "wte" in name)
    assert decayed == ["transformer.wte.weight"] and len(kept) == 4


# ----------------------------------------------------------------------------------------------
# state dict and in-place updates

RESUME_CASES = {
    "sgd": lambda: SGD(lr=0.1),
    "sgd_nesterov": lambda: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "rmsprop_momentum": lambda: RMSProp(lr=0.01, momentum=0.5),
    "adam": lambda: Adam(lr=0.01, weight_decay=0.1),
    "adamw": lambda: AdamW(lr=0.01, betas=(0.9, 0.95)),
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_state_dict_resume_is_bit_identical(case):
    grad_seq = make_grads(10)
    opt = RESUME_CASES[case]()
    params = run_ours(opt, make_params(), grad_seq[:5], 0.01)

    buffer = io.BytesIO()  # a checkpoint on disk: arrays and numbers only, no pickle
    np.savez(buffer, **opt.state_dict())
    saved_params = {k: v.copy() for k, v in params.items()}
    saved_lr = opt.lr

    straight = run_ours(opt, params, grad_seq[5:], 0.01, first_step=5)

    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    resumed_opt = RESUME_CASES[case]()
    resumed_opt.load_state_dict(loaded)
    assert resumed_opt.t == 5 and resumed_opt.lr == saved_lr
    resumed = run_ours(resumed_opt, saved_params, grad_seq[5:], 0.01, first_step=5)

    for name in SHAPES:
        assert np.array_equal(straight[name], resumed[name]), f"{case}: {name} differs after resume"
    a, b = opt.state_dict(), resumed_opt.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), f"{case}: state {key} differs after resume"


def test_state_dict_names_and_copies():
    opt = Adam(lr=0.01)
    params = make_params()
    run_ours(opt, params, make_grads(2), 0.01)
    d = opt.state_dict()
    assert d["step"] == 2 and isinstance(d["step"], int)
    assert set(d) == {"lr", "step", "beta1", "beta2", "eps", "weight_decay",
                      *(f"exp_avg.{k}" for k in SHAPES), *(f"exp_avg_sq.{k}" for k in SHAPES)}
    assert all(isinstance(v, (int, float, np.ndarray)) for v in d.values())
    before = d["exp_avg.transformer.wte.weight"].copy()
    run_ours(opt, params, make_grads(1), 0.01)
    assert np.array_equal(d["exp_avg.transformer.wte.weight"], before), "state_dict must copy"


def test_load_state_dict_errors():
    opt = Adam(lr=0.01)
    params = make_params()
    run_ours(opt, params, make_grads(1), 0.01)
    d = opt.state_dict()
    with pytest.raises(ValueError, match=r"saved with beta2=0.999 but this Adam has beta2=0.95"):
        Adam(lr=0.01, betas=(0.9, 0.95)).load_state_dict(d)
    with pytest.raises(ValueError, match="has no 'momentum'"):
        SGD(lr=0.01, momentum=0.9).load_state_dict(d)
    with pytest.raises(ValueError, match="unexpected key 'exp_avgg.x'"):
        Adam(lr=0.01).load_state_dict({**d, "exp_avgg.x": np.zeros(1)})
    fresh = Adam(lr=0.01)
    fresh.load_state_dict(d)
    other = {k: v for k, v in params.items() if k != "transformer.ln_f.bias"}
    with pytest.raises(ValueError, match="has an entry for 'transformer.ln_f.bias'"):
        fresh.step(other, {k: np.zeros_like(v) for k, v in other.items()})


def test_step_updates_in_place():
    params = make_params()
    arrays = dict(params)
    row = params["transformer.wte.weight"][2]  # a view, e.g. a tied output embedding row
    before = row.copy()
    grads = make_grads(1)[0]
    Adam(lr=0.1).step(params, grads)
    assert all(params[k] is arrays[k] for k in params), "step must not replace the arrays"
    assert not np.array_equal(row, before)
    assert np.array_equal(row, params["transformer.wte.weight"][2])


def test_float32_params_keep_their_dtype():
    params = make_params(dtype=np.float32)
    opt = AdamW(lr=0.01)
    run_ours(opt, params, make_grads(2), 0.01)
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(m.dtype == np.float32 for m in opt.exp_avg.values())


def test_grads_must_match_params():
    params = make_params()
    grads = make_grads(1)[0]
    opt = SGD(lr=0.1)
    missing = {k: v for k, v in grads.items() if k != "transformer.ln_f.bias"}
    with pytest.raises(ValueError, match="grads has no entry for parameter 'transformer.ln_f.bias'"):
        opt.step(params, missing)
    with pytest.raises(ValueError, match="grads has a key 'lm_head.weight' that is not a parameter"):
        opt.step(params, {**grads, "lm_head.weight": np.zeros((V, C))})
    wrong = {**grads, "transformer.wte.weight": np.zeros((C, V))}
    with pytest.raises(ValueError, match=r"'transformer.wte.weight' has shape \(4, 7\) but the "
                                         r"parameter has shape \(7, 4\)"):
        opt.step(params, wrong)
    frozen = {**params, "transformer.ln_f.bias": np.zeros(C)}
    frozen["transformer.ln_f.bias"].flags.writeable = False
    with pytest.raises(ValueError, match="'transformer.ln_f.bias' is read-only"):
        opt.step(frozen, grads)


@pytest.mark.parametrize("make, message", [
    (lambda: SGD(lr=0.0), r"lr must be in \(0.0, inf\), got 0.0"),
    (lambda: Adam(lr=-1e-3), r"lr must be in \(0.0, inf\)"),
    (lambda: AdamW(lr=float("nan")), r"lr must be in"),
    (lambda: Adam(lr=1e-3, betas=(1.0, 0.999)), r"betas\[0\] must be in \[0.0, 1.0\), got 1.0"),
    (lambda: AdamW(lr=1e-3, betas=(0.9, -0.1)), r"betas\[1\] must be in \[0.0, 1.0\)"),
    (lambda: Adam(lr=1e-3, betas=(0.9,)), r"betas must be a pair"),
    (lambda: SGD(lr=0.1, nesterov=True), r"nesterov=True needs momentum > 0"),
    (lambda: SGD(lr=0.1, momentum=-0.5), r"momentum must be in \[0.0, 1.0\)"),
    (lambda: SGD(lr=0.1, weight_decay=-1.0), r"weight_decay must be in"),
    (lambda: RMSProp(lr=0.1, alpha=1.0), r"alpha must be in \[0.0, 1.0\)"),
    (lambda: Adam(lr=0.1, eps=-1e-8), r"eps must be in"),
])
def test_invalid_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_lr_setter():
    opt = Adam(lr=1e-3)
    opt.lr = 0.0  # a schedule may end at 0
    assert opt.lr == 0.0
    with pytest.raises(ValueError, match="lr must be in"):
        opt.lr = -1e-4
    with pytest.raises(TypeError, match="lr must be a number"):
        opt.lr = "3e-4"  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------------
# schedules


def test_constant_and_step_decay_by_hand():
    assert [constant(s, 0.3) for s in (0, 1, 10_000)] == [0.3, 0.3, 0.3]
    assert [step_decay(s, 2.0, step_size=3, gamma=0.1) for s in (0, 2, 3, 5)] == [2.0, 2.0, 0.2, 0.2]
    assert step_decay(6, 2.0, step_size=3, gamma=0.1) == pytest.approx(0.02, rel=1e-15)
    assert step_decay(7, 1.0, step_size=1, gamma=1.0) == 1.0


@pytest.mark.parity
def test_step_decay_matches_torch_steplr(torch):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7)
    for step in range(20):
        assert step_decay(step, 0.5, 3, 0.7) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()


def test_warmup_cosine_by_hand():
    max_lr, min_lr, w, total = 6e-4, 6e-5, 10, 110
    lr = [warmup_cosine(s, max_lr, w, total, min_lr) for s in range(total + 20)]
    assert lr[0] == pytest.approx(max_lr / w, rel=1e-15)  # (step + 1) / warmup: never 0
    assert lr[4] == pytest.approx(max_lr / 2, rel=1e-15)
    assert lr[w - 1] == max_lr and lr[w] == max_lr  # warmup ends at the peak, cosine starts there
    assert lr[60] == pytest.approx((max_lr + min_lr) / 2, rel=1e-15)  # halfway: cos(pi/2) = 0
    assert lr[35] == pytest.approx(min_lr + (max_lr - min_lr) * (1 + math.sqrt(0.5)) / 2, rel=1e-15)
    assert lr[total] == min_lr and all(x == min_lr for x in lr[total:])
    # the shape a plot shows: up to the peak, down to the floor, never outside [0, max_lr]
    assert max(lr) == max_lr and int(np.argmax(lr)) == w - 1
    assert all(a < b for a, b in zip(lr[:w - 1], lr[1:w]))
    assert all(a > b for a, b in zip(lr[w:total], lr[w + 1:total + 1]))
    assert all(min_lr <= x <= max_lr for x in lr[w:])
    # no warmup: the first step is the peak
    assert warmup_cosine(0, 1.0, 0, 10) == 1.0 and warmup_cosine(5, 1.0, 0, 10) == pytest.approx(0.5)


@pytest.mark.parity
def test_warmup_cosine_matches_torch_linear_then_cosine(torch):
    max_lr, min_lr, w, total = 0.3, 0.01, 5, 40
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=max_lr)
    lr_sched = torch.optim.lr_scheduler
    sched = lr_sched.SequentialLR(opt, [
        lr_sched.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w - 1),
        lr_sched.CosineAnnealingLR(opt, T_max=total - w, eta_min=min_lr)], milestones=[w])
    for step in range(total + 1):  # torch's cosine restarts after T_max; ours stays at min_lr
        assert_close(warmup_cosine(step, max_lr, w, total, min_lr), opt.param_groups[0]["lr"],
                     rtol=1e-12, name=f"lr at step {step}")
        opt.step()
        sched.step()


@pytest.mark.parametrize("call, error, message", [
    (lambda: warmup_cosine(-1, 1.0, 2, 10), ValueError, r"step must be >= 0"),
    (lambda: warmup_cosine(1.0, 1.0, 2, 10), TypeError, r"step must be an integer"),
    (lambda: warmup_cosine(0, 0.0, 2, 10), ValueError, r"max_lr must be in \(0.0, inf\)"),
    (lambda: warmup_cosine(0, 1.0, 2, 10, min_lr=2.0), ValueError, r"min_lr must be in \[0.0, 1.0\]"),
    (lambda: warmup_cosine(0, 1.0, 10, 10), ValueError, r"total_steps \(10\) must be greater than"),
    (lambda: warmup_cosine(0, 1.0, -1, 10), ValueError, r"warmup_steps must be a non-negative"),
    (lambda: step_decay(0, 1.0, 0, 0.5), ValueError, r"step_size must be a positive integer"),
    (lambda: step_decay(0, 1.0, 2, 0.0), ValueError, r"gamma must be in \(0.0, 1.0\]"),
    (lambda: constant(0, -1.0), ValueError, r"lr must be in"),
])
def test_schedule_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ----------------------------------------------------------------------------------------------
# gradient clipping


@pytest.mark.parity
def test_clip_grad_norm_matches_torch(torch):
    grads = {k: 3.0 * g for k, g in make_grads(1)[0].items()}
    tparams = {k: torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
               for k, g in grads.items()}
    for k, p in tparams.items():
        p.grad = torch.tensor(grads[k])
    expected_norm = float(torch.nn.utils.clip_grad_norm_(list(tparams.values()), max_norm=1.0))
    norm = clip_grad_norm(grads, max_norm=1.0)
    assert_close(norm, expected_norm, rtol=1e-13, name="global norm")
    assert norm > 1.0
    for k in grads:
        assert_close(grads[k], tparams[k].grad.numpy(), rtol=0.0, atol=1e-12, name=f"clipped {k}")
    after = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
    assert after == pytest.approx(1.0, abs=1e-5)


def test_clip_grad_norm_below_threshold_is_a_no_op():
    grads = make_grads(1)[0]
    arrays = dict(grads)
    before = {k: g.copy() for k, g in grads.items()}
    norm = clip_grad_norm(grads, max_norm=1e3)
    assert norm == pytest.approx(math.sqrt(sum(float(np.sum(g * g)) for g in before.values())))
    assert all(grads[k] is arrays[k] and np.array_equal(grads[k], before[k]) for k in grads)


def test_clip_grad_norm_non_finite():
    grads = make_grads(1)[0]
    grads["transformer.h.0.ln_1.weight"][2] = np.nan
    grads["transformer.ln_f.bias"][0] = np.inf
    with pytest.raises(FloatingPointError, match=r"gradient 'transformer.h.0.ln_1.weight' contains "
                                                 r"nan at index \(2,\)"):
        clip_grad_norm(grads, 1.0)
    huge = {"a": np.full(3, 1e200), "b": np.ones(2)}
    with pytest.raises(FloatingPointError, match="overflows at gradient 'a'"):
        clip_grad_norm(huge, 1.0)
    with pytest.raises(ValueError, match=r"max_norm must be in \(0.0, inf\)"):
        clip_grad_norm(make_grads(1)[0], 0.0)
