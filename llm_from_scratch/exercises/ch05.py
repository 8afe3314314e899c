"""Exercises for chapter 5, gradient descent and its descendants."""

from __future__ import annotations

import math

import numpy as np

from llm_from_scratch import optim
from llm_from_scratch.exercises import Case, Exercise, register


# ---------------------------------------------------------------------------------------------
# momentum_step

def momentum_step(p, g, buf, lr, momentum=0.9, nesterov=False):
    """One step of SGD with heavy-ball or Nesterov momentum on one parameter array.

    ``p`` is the parameter, ``g`` its gradient and ``buf`` the momentum buffer (all of one
    shape; ``buf`` is zeros before the first step). Return ``(new_p, new_buf)`` as new arrays,
    without changing the inputs::

        new_buf = momentum * buf + g
        new_p   = p - lr * new_buf                       (heavy ball)
        new_p   = p - lr * (g + momentum * new_buf)      (Nesterov)

    Example: p = 1, g = 1, buf = 0.5, lr 0.1, momentum 0.5: new_buf = 0.25 + 1 = 1.25; heavy
    ball gives new_p = 1 - 0.125 = 0.875, Nesterov gives 1 - 0.1 * (1 + 0.625) = 0.8375.

    The reference runs the package's ``optim.SGD`` for one step from the given buffer.
    """
    opt = optim.SGD(lr=lr, momentum=momentum, nesterov=nesterov)
    params = {"p": np.array(p, dtype=np.float64)}            # a copy: the input is not changed
    opt.momentum_buffer = {"p": np.array(buf, dtype=np.float64)}
    opt.step(params, {"p": np.asarray(g, dtype=np.float64)})
    return params["p"], opt.momentum_buffer["p"]


def _wrong_momentum_step(p, g, buf, lr, momentum=0.9, nesterov=False):
    # a common slip in Nesterov: look ahead with the OLD buffer instead of the updated one
    new_buf = momentum * buf + g
    step = g + momentum * buf if nesterov else new_buf
    return p - lr * step, new_buf


def _momentum_case(seed, shape, lr, momentum, nesterov):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.standard_normal(shape), rng.standard_normal(shape),
                rng.standard_normal(shape), lr, momentum, nesterov)
    return make


def _momentum_does_not_mutate(fn):
    p, g, buf = np.ones(3), np.ones(3), np.full(3, 0.5)
    fn(p, g, buf, 0.1, 0.5, True)
    if not (np.all(p == 1.0) and np.all(g == 1.0) and np.all(buf == 0.5)):
        return f"an input array was changed: p={p}, g={g}, buf={buf}; return new arrays instead"
    return ""


# ---------------------------------------------------------------------------------------------
# adam_step

def adam_step(p, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam update (Kingma & Ba 2015, Algorithm 1) of one parameter array.

    ``m`` and ``v`` are the first- and second-moment estimates after step ``t - 1`` (zeros
    before the first step); ``t`` is the number of the step being taken, counting from 1.
    Return ``(new_p, new_m, new_v)`` as new arrays, without changing the inputs::

        new_m = beta1 * m + (1 - beta1) * g
        new_v = beta2 * v + (1 - beta2) * g**2
        m_hat = new_m / (1 - beta1**t)          bias correction: m and v started at 0
        v_hat = new_v / (1 - beta2**t)
        new_p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Example: the first step (t = 1, m = v = 0) with g = 2, lr 0.1: new_m = 0.2, new_v = 0.004,
    m_hat = 2, v_hat = 4, so new_p = p - 0.1 * 2 / 2 = p - 0.1 (up to eps): the first step of
    Adam moves every weight by lr, whatever the size of its gradient.

    The reference runs the package's ``optim.Adam`` for one step from the given state.
    """
    if t < 1:
        raise ValueError(f"t is the number of the step being taken and starts at 1, got {t}")
    opt = optim.Adam(lr=lr, betas=(beta1, beta2), eps=eps)
    params = {"p": np.array(p, dtype=np.float64)}            # a copy: the input is not changed
    opt.exp_avg = {"p": np.array(m, dtype=np.float64)}
    opt.exp_avg_sq = {"p": np.array(v, dtype=np.float64)}
    opt.t = t - 1                                            # step() counts this step
    opt.step(params, {"p": np.asarray(g, dtype=np.float64)})
    return params["p"], opt.exp_avg["p"], opt.exp_avg_sq["p"]


def _wrong_adam_step(p, g, m, v, t, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    # a common slip: no bias correction. m and v start at 0, so early on both are too small, and
    # not by the same factor: with the default betas the first step is 3.16 lr instead of lr
    new_m = beta1 * m + (1 - beta1) * g
    new_v = beta2 * v + (1 - beta2) * g * g
    return p - lr * new_m / (np.sqrt(new_v) + eps), new_m, new_v


def _adam_case(seed, shape, t, lr, betas=(0.9, 0.999), eps=1e-8, fresh=False):
    def make():
        rng = np.random.default_rng(seed)
        p, g = rng.standard_normal(shape), rng.standard_normal(shape)
        if fresh:
            m, v = np.zeros(shape), np.zeros(shape)
        else:
            m = 0.1 * rng.standard_normal(shape)
            v = 0.01 * rng.random(shape)
        return (p, g, m, v, t, lr, betas[0], betas[1], eps)
    return make


def _adam_does_not_mutate(fn):
    p, g, m, v = np.ones(3), np.full(3, 2.0), np.zeros(3), np.zeros(3)
    fn(p, g, m, v, 1, 0.1)
    if not (np.all(p == 1.0) and np.all(g == 2.0) and np.all(m == 0.0) and np.all(v == 0.0)):
        return f"an input array was changed: p={p}, g={g}, m={m}, v={v}; return new arrays instead"
    return ""


# ---------------------------------------------------------------------------------------------
# clip_by_global_norm

def clip_by_global_norm(grads, max_norm):
    """Clip a dict of gradients by their global L2 norm; return ``(clipped, norm)``.

    ``norm`` is the L2 norm of all the gradients together,
    ``sqrt(sum over every array of sum(g**2))``, as a float. If ``max_norm / (norm + 1e-6)`` is
    below 1, every gradient is multiplied by that factor; otherwise they are returned unchanged.
    ``clipped`` is a new dict with the same keys; the input dict and its arrays are not changed.

    Example: ``{"a": [3.0], "b": [4.0]}`` has global norm 5; with ``max_norm=1`` the result is
    about ``{"a": [0.6], "b": [0.8]}``: one common factor 1/5, so the direction is kept.

    The reference copies the gradients and calls the package's ``optim.clip_grad_norm``, which
    clips in place.
    """
    clipped = {name: np.array(g, dtype=np.float64) for name, g in grads.items()}  # copies
    norm = optim.clip_grad_norm(clipped, max_norm)
    return clipped, norm


def _wrong_clip_by_global_norm(grads, max_norm):
    # a common slip: clip each gradient by its own norm, which changes the update's direction
    clipped, squares = {}, 0.0
    for name, g in grads.items():
        g = np.asarray(g, dtype=np.float64)
        n = float(np.linalg.norm(g))
        squares += n * n
        clipped[name] = g * min(1.0, max_norm / (n + 1e-6))
    return clipped, math.sqrt(squares)


def _clip_case(seed, shapes, scale, max_norm):
    def make():
        rng = np.random.default_rng(seed)
        grads = {f"g{i}": rng.standard_normal(s) * scale for i, s in enumerate(shapes)}
        return (grads, max_norm)
    return make


def _clip_does_not_mutate(fn):
    grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    fn(grads, 1.0)
    if grads["a"][0] != 3.0 or grads["b"][0] != 4.0:
        return f"the input gradients were changed to {grads}; return new arrays instead"
    return ""


# ---------------------------------------------------------------------------------------------
# warmup_cosine (the package's own schedule is the reference)

def _wrong_warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    # a common slip: measure the cosine's progress from step 0 instead of from the end of warmup
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = step / total_steps
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _schedule_matches(fn):
    """The whole curve, every step of a few schedules, against the reference."""
    for max_lr, warmup, total, min_lr in ((6e-4, 10, 100, 6e-5), (1.0, 0, 7, 0.0), (3e-3, 3, 4, 0.0)):
        for step in range(total + 3):
            got = fn(step, max_lr, warmup, total, min_lr)
            want = optim.warmup_cosine(step, max_lr, warmup, total, min_lr)
            if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
                return (f"at step {step} of warmup_cosine(max_lr={max_lr}, warmup_steps={warmup}, "
                        f"total_steps={total}, min_lr={min_lr}) got {got!r}, expected {want!r}")
    return ""


def adam_uncorrected_step(t, beta1=0.9, beta2=0.999):
    """The length of Adam's step at step ``t``, in units of the learning rate, for a gradient that
    is the same number ``g`` at every step, when the two moving averages are NOT bias-corrected:
    ``|m_t / sqrt(v_t)|`` with ``m_0 = v_0 = 0`` (and ``eps`` = 0).

    Derivation: ``m_t = (1 - beta1) * sum_k beta1^(t-k) g = (1 - beta1^t) g`` and likewise
    ``v_t = (1 - beta2^t) g^2``, so the step is ``(1 - beta1^t) / sqrt(1 - beta2^t)``, whatever g.

    Example: at t = 1, (1 - 0.9) / sqrt(1 - 0.999) = 0.1 / 0.0316 = 3.16.
    """
    return (1 - beta1 ** t) / math.sqrt(1 - beta2 ** t)


def _wrong_adam_uncorrected_step(t, beta1=0.9, beta2=0.999):
    return (1 - beta1 ** t) / (1 - beta2 ** t)  # v_t's factor without its square root


EXERCISES = [
    register(Exercise(
        name="momentum_step", chapter=5, title="one SGD step with heavy-ball or Nesterov momentum",
        reference=momentum_step,
        cases=(
            Case("the worked example, heavy ball", lambda: (np.array([1.0]), np.array([1.0]),
                                                            np.array([0.5]), 0.1, 0.5, False)),
            Case("the worked example, Nesterov", lambda: (np.array([1.0]), np.array([1.0]),
                                                          np.array([0.5]), 0.1, 0.5, True)),
            Case("first step (zero buffer), 3x4, Nesterov",
                 lambda: (np.ones((3, 4)), np.arange(12.0).reshape(3, 4), np.zeros((3, 4)),
                          0.01, 0.9, True)),
            Case("random 5x3 state, heavy ball, momentum 0.9", _momentum_case(0, (5, 3), 0.05, 0.9, False)),
            Case("random 7-vector state, Nesterov, momentum 0.99", _momentum_case(1, (7,), 0.3, 0.99, True)),
        ),
        extra_checks=(("does not change its inputs", _momentum_does_not_mutate),),
        hint="update the buffer first (buf = momentum * buf + g); Nesterov then steps along "
             "g + momentum * (the NEW buffer)",
    )),
    register(Exercise(
        name="adam_step", chapter=5, title="one Adam update with bias correction",
        reference=adam_step,
        cases=(
            Case("the worked example: first step, g = 2", lambda: (np.array([1.0]), np.array([2.0]),
                                                                  np.zeros(1), np.zeros(1), 1, 0.1)),
            Case("first step from zero moments, 4x3", _adam_case(2, (4, 3), 1, 1e-3, fresh=True)),
            Case("step 3 from random moments", _adam_case(3, (6,), 3, 1e-2)),
            Case("step 1000, betas (0.8, 0.99), eps 1e-6", _adam_case(4, (2, 5), 1000, 3e-4,
                                                                      betas=(0.8, 0.99), eps=1e-6)),
        ),
        rtol=1e-7, atol=1e-12,
        extra_checks=(("does not change its inputs", _adam_does_not_mutate),),
        hint="divide m by (1 - beta1**t) and v by (1 - beta2**t) before the update; t starts at 1",
    )),
    register(Exercise(
        name="clip_by_global_norm", chapter=5, title="gradient clipping by the global norm",
        reference=clip_by_global_norm,
        cases=(
            Case("the worked example, norm 5 clipped to 1", lambda: ({"a": np.array([3.0]),
                                                                     "b": np.array([4.0])}, 1.0)),
            Case("small gradients are left alone", _clip_case(5, [(3, 4), (4,)], 0.01, 1.0)),
            Case("three arrays of very different sizes, clipped to 0.5",
                 lambda: ({"w": np.full((2, 2), 10.0), "b": np.array([0.1, -0.1]),
                           "e": np.array([[0.0, 1.0]])}, 0.5)),
            Case("random gradients like a small model's, clipped to 1", _clip_case(6, [(8, 16), (16,), (16, 5), (5,)],
                                                                                   1.0, 1.0)),
        ),
        extra_checks=(("does not change its input", _clip_does_not_mutate),),
        hint="one norm for ALL the gradients, sqrt of the sum of every squared entry, and one common "
             "scale factor max_norm / (norm + 1e-6) applied to every array when it is below 1",
    )),
    register(Exercise(
        name="warmup_cosine", chapter=5, title="linear warmup then cosine decay",
        reference=optim.warmup_cosine,
        cases=tuple(
            Case(f"step {s} of warmup_cosine(max_lr={a}, warmup_steps={w}, total_steps={n}, min_lr={lo})",
                 (lambda s=s, a=a, w=w, n=n, lo=lo: (s, a, w, n, lo)))
            for s, a, w, n, lo in (
                (0, 1.0, 4, 12, 0.0),        # first warmup step: 1/4
                (3, 1.0, 4, 12, 0.0),        # end of warmup: the peak
                (8, 1.0, 4, 12, 0.0),        # halfway through the cosine: 0.5
                (12, 1.0, 4, 12, 0.0),       # the end: min_lr
                (20, 1.0, 4, 12, 0.0),       # after the end: min_lr for ever
                (437, 6e-4, 100, 1000, 6e-5),
                (3, 1.0, 0, 7, 0.0),         # no warmup at all
            )
        ),
        rtol=1e-9, atol=1e-15,
        extra_checks=(("every step of three more schedules", _schedule_matches),),
        hint="warmup: max_lr * (step + 1) / warmup_steps; then progress = (step - warmup_steps) / "
             "(total_steps - warmup_steps) goes from 0 to 1 and lr = min_lr + (max_lr - min_lr) * "
             "(1 + cos(pi * progress)) / 2; min_lr from total_steps on",
    )),
    register(Exercise(
        name="adam_uncorrected_step", chapter=5, title="Adam's step without bias correction (a derivation)",
        reference=adam_uncorrected_step,
        cases=(
            Case("the first step, default betas", lambda: (1,)),
            Case("step 12, default betas", lambda: (12,)),
            Case("step 1,000, default betas", lambda: (1000,)),
            Case("step 5 with beta1 = 0.8, beta2 = 0.99", lambda: (5, 0.8, 0.99)),
            Case("step 300 with beta1 = 0.9, beta2 = 0.95", lambda: (300, 0.9, 0.95)),
        ),
        rtol=1e-12, atol=1e-12,
        hint="unroll m_t = beta1 m_(t-1) + (1 - beta1) g from m_0 = 0: a geometric sum, (1 - beta1^t) g; "
             "the same for v_t with g^2; the step is m_t / sqrt(v_t)",
    )),
]

WRONG = {
    "momentum_step": _wrong_momentum_step,
    "adam_step": _wrong_adam_step,
    "clip_by_global_norm": _wrong_clip_by_global_norm,
    "warmup_cosine": _wrong_warmup_cosine,
    "adam_uncorrected_step": _wrong_adam_uncorrected_step,
}
