"""Optimizers, learning-rate schedules and gradient clipping for a flat dict of parameters.

A model's parameters are a flat ``dict[str, ndarray]`` with Hugging Face names
(``transformer.h.0.attn.c_attn.weight``); its gradients are a dict with the same keys and shapes.
An optimizer's ``step(params, grads)`` changes every array of ``params`` *in place*, so a view
of a weight held anywhere else (a layer, a tied embedding) sees the new values. What an optimizer
remembers between steps (momentum, moment estimates) lives in flat dicts keyed like ``params``,
and ``state_dict()`` flattens all of it into arrays and numbers (``exp_avg.transformer.wte.weight``,
``step``, ``lr``), so a checkpoint is one ``np.savez`` with no pickle, and a resumed run continues
bit for bit.

Every update rule follows ``torch.optim`` line for line (the tests hold them to 1e-10 in float64):

- ``SGD``: ``g <- g + wd p``; ``b <- mu b + g``; ``p <- p - lr b`` (heavy ball), or
  ``p <- p - lr (g + mu b)`` (Nesterov).
- ``RMSProp``: ``s <- alpha s + (1 - alpha) g^2``; ``p <- p - lr g / (sqrt(s) + eps)``.
- ``Adam``: first and second moment estimates with bias correction; weight decay is an L2 term
  added to the gradient, so it is rescaled by ``1 / sqrt(v)`` like the rest of the gradient.
- ``AdamW``: the same, but the decay shrinks the weights directly, ``p <- p (1 - lr wd)``, and only
  for the parameters a visible rule ``decays(name, value)`` picks (weight matrices and embeddings,
  never biases or LayerNorm parameters).

Schedules are plain functions of the step number (``constant``, ``step_decay``,
``warmup_cosine``); the training loop sets ``opt.lr = warmup_cosine(step, ...)`` before each
``opt.step``. ``clip_grad_norm`` rescales all gradients together when their global L2 norm is too
large.

Left out: dampening, centered RMSProp, AMSGrad, ``maximize``, Adagrad, Adafactor and Lion;
per-group hyperparameters beyond AdamW's decay rule; fused and multi-tensor kernels;
mixed-precision loss scaling; sharded optimizer state. Each parameter gets its own loop iteration
and numpy temporaries: clear rather than fast (the optimizer is a small share of a step's time).

References:

- B. T. Polyak, "Some methods of speeding up the convergence of iteration methods", 1964
  (the heavy-ball method).
- I. Sutskever, J. Martens, G. Dahl, G. Hinton, "On the importance of initialization and momentum
  in deep learning", ICML 2013, Section 2, eqs. (1)-(4) (classical and Nesterov momentum).
- T. Tieleman, G. Hinton, "Lecture 6.5 - RMSProp", Coursera: Neural Networks for Machine
  Learning, 2012.
- D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1 and
  Section 3 (bias correction).
- I. Loshchilov, F. Hutter, "Decoupled Weight Decay Regularization", ICLR 2019, Algorithm 2
  (AdamW, line 12).
- I. Loshchilov, F. Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017,
  eq. (5) (cosine annealing).
- P. Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017, Section 2.2
  (gradual warmup).
- R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training recurrent neural networks",
  ICML 2013, Section 3.2, Algorithm 1 (gradient norm clipping).
- nanoGPT ``model.py`` ``configure_optimizers`` and BERT ``optimization.py`` (which parameters
  skip weight decay); llm.c ``train_gpt2.py`` ``get_lr`` (the warmup convention used here).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

__all__ = [
    "Optimizer", "SGD", "RMSProp", "Adam", "AdamW",
    "decays", "decay_groups",
    "constant", "step_decay", "warmup_cosine",
    "clip_grad_norm",
]

Params = dict[str, np.ndarray]  # name -> parameter array, e.g. "transformer.wte.weight" -> [V, C]
StateDict = dict[str, "np.ndarray | float | int"]


# ----------------------------------------------------------------------------------------------
# argument checks


def _check_number(name: str, value, low: float, high: float, low_open: bool = False,
                  high_open: bool = True) -> float:
    """Return ``float(value)`` if it lies in the interval, else raise naming the argument."""
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    x = float(value)
    too_low = x <= low if low_open else x < low
    too_high = x >= high if high_open else x > high
    if math.isnan(x) or too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return x


def _check_step(step) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise TypeError(f"step must be an integer (the number of updates done so far), "
                        f"got {type(step).__name__} {step!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0 (the first update is step 0), got {step}")
    return int(step)


def _check_grads(params: Params, grads: Params) -> None:
    """Raise if ``grads`` does not have exactly the keys and shapes of ``params``."""
    for name in params:
        if name not in grads:
            raise ValueError(f"grads has no entry for parameter {name!r}: every parameter needs a "
                             f"gradient under the same key ({len(params)} parameters, "
                             f"{len(grads)} gradients)")
    for name, g in grads.items():
        if name not in params:
            raise ValueError(f"grads has a key {name!r} that is not a parameter: grads must have "
                             f"exactly the keys of params")
        p = params[name]
        if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
            raise TypeError(f"parameter {name!r} must be a floating-point numpy array, got "
                            f"{getattr(p, 'dtype', type(p).__name__)}")
        if not p.flags.writeable:
            raise ValueError(f"parameter {name!r} is read-only; the optimizer updates parameters "
                             f"in place, so pass writeable arrays (e.g. np.array(p, copy=True))")
        if np.shape(g) != p.shape:
            raise ValueError(f"gradient for {name!r} has shape {np.shape(g)} but the parameter has "
                             f"shape {p.shape}: they must match")


# ----------------------------------------------------------------------------------------------
# optimizers


class Optimizer:
    """What every optimizer shares: the learning rate, the step count, per-parameter buffers,
    the input checks and ``state_dict``. Subclasses write the update rule in ``_update``.

    ``settings`` names the numeric hyperparameters fixed at construction (saved in the state
    dict and checked on load); ``buffers`` names the per-parameter state, each an attribute
    holding a ``dict[str, ndarray]`` keyed like ``params`` and filled with zeros at the first
    step.
    """

    settings: tuple[str, ...] = ()

    def __init__(self, lr: float, buffers: tuple[str, ...] = ()):
        self.lr = _check_number("lr", lr, 0.0, math.inf, low_open=True)
        self.t = 0  # number of steps taken; the step being taken is number t (1-based)
        self.buffers = buffers
        for b in buffers:
            setattr(self, b, {})  # name -> array shaped like params[name]

    @property
    def lr(self) -> float:
        """The learning rate of the next step; set it from a schedule before each step. Zero
        is allowed here (a schedule may end at 0), though not in the constructor."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_number("lr", value, 0.0, math.inf)

    def step(self, params: Params, grads: Params) -> None:
        """Update every array of ``params`` in place from ``grads`` (same keys and shapes)."""
        _check_grads(params, grads)
        self._init_state(params)
        self.t += 1
        for name, p in params.items():
            self._update(name, p, np.asarray(grads[name]))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _init_state(self, params: Params) -> None:
        """Create zero buffers at the first step; afterwards check they still fit ``params``."""
        for b in self.buffers:
            state = getattr(self, b)
            if not state:
                state.update({name: np.zeros_like(p) for name, p in params.items()})
                continue
            for name in params:
                if name not in state:
                    raise ValueError(f"optimizer state {b!r} has no entry for parameter {name!r}: "
                                     f"the state was built (or loaded) for different parameters")
            for name, s in state.items():
                if name not in params:
                    raise ValueError(f"optimizer state {b!r} has an entry for {name!r}, which is "
                                     f"not in params: the state was built for different parameters")
                if s.shape != params[name].shape:
                    raise ValueError(f"optimizer state {b}.{name} has shape {s.shape} but the "
                                     f"parameter has shape {params[name].shape}")

    def state_dict(self) -> StateDict:
        """Everything needed to resume, as a flat dict of numbers and array copies.

        >>> opt = SGD(lr=0.1, momentum=0.9)
        >>> opt.step({"w": np.array([1.0])}, {"w": np.array([2.0])})
        >>> opt.state_dict()  # doctest: +NORMALIZE_WHITESPACE
        {'lr': 0.1, 'step': 1, 'momentum': 0.9, 'nesterov': 0, 'weight_decay': 0.0,
         'momentum_buffer.w': array([2.])}
        """
        d: StateDict = {"lr": self.lr, "step": self.t}
        for s in self.settings:
            value = getattr(self, s)
            d[s] = int(value) if isinstance(value, bool) else value
        for b in self.buffers:
            for name, arr in getattr(self, b).items():
                d[f"{b}.{name}"] = arr.copy()
        return d

    def load_state_dict(self, d: StateDict) -> None:
        """Restore ``lr``, the step count and the buffers from ``state_dict()`` (or from an
        ``np.load`` of it, whose numbers are 0-d arrays). The fixed settings (betas, momentum,
        ...) must equal this optimizer's: construct it with the same arguments as the saved one.
        """
        for key in ("lr", "step", *self.settings):
            if key not in d:
                raise ValueError(f"state dict has no {key!r}; was it saved by {type(self).__name__}?")
        for s in self.settings:
            mine = getattr(self, s)
            saved = type(mine)(np.asarray(d[s]).item())
            if saved != mine:
                raise ValueError(f"state dict was saved with {s}={saved!r} but this "
                                 f"{type(self).__name__} has {s}={mine!r}: construct it with the "
                                 f"same settings as the saved run")
        states: dict[str, dict[str, np.ndarray]] = {b: {} for b in self.buffers}
        for key, value in d.items():
            if key in ("lr", "step", *self.settings):
                continue
            buffer, _, name = key.partition(".")
            if buffer not in states or not name:
                expected = ", ".join(f"{b}.<param>" for b in self.buffers) or "no buffers"
                raise ValueError(f"unexpected key {key!r} in state dict for "
                                 f"{type(self).__name__} (expected lr, step, "
                                 f"{', '.join(self.settings)} and {expected})")
            states[buffer][name] = np.array(value, copy=True)
        self.lr = float(np.asarray(d["lr"]).item())
        self.t = int(np.asarray(d["step"]).item())
        for b, state in states.items():
            setattr(self, b, state)


class SGD(Optimizer):
    """Stochastic gradient descent with optional heavy-ball or Nesterov momentum and L2 weight
    decay, as ``torch.optim.SGD`` with ``dampening=0``.

    One step, ``b`` the momentum buffer (zero before the first step)::

        g = grad + weight_decay * p
        b = momentum * b + g
        p -= lr * b                      (heavy ball)
        p -= lr * (g + momentum * b)     (Nesterov)

    This is Sutskever et al. (2013) eqs. (1)-(4) with the learning rate moved out of the buffer:
    the same steps while ``lr`` is constant; with a schedule, the buffer keeps past gradients
    unscaled and today's ``lr`` multiplies all of them.

    Worked example: momentum 0.5, the same gradient 1 twice. Step 1: b = 1, p = 1 - 0.1 = 0.9.
    Step 2: b = 0.5 + 1 = 1.5, p = 0.9 - 0.15 = 0.75.

    >>> params = {"w": np.array([1.0])}
    >>> opt = SGD(lr=0.1, momentum=0.5)
    >>> for _ in range(2):
    ...     opt.step(params, {"w": np.array([1.0])})
    >>> params["w"]
    array([0.75])
    """

    settings = ("momentum", "nesterov", "weight_decay")

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_number("weight_decay", weight_decay, 0.0, math.inf)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        super().__init__(lr, buffers=("momentum_buffer",) if self.momentum else ())

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # every array here has the shape of p
        if self.weight_decay:
            g = g + self.weight_decay * p               # gradient of the L2 term (wd/2)|p|^2
        if self.momentum:
            b = self.momentum_buffer[name]
            b *= self.momentum
            b += g                                      # b_t = mu b_{t-1} + g_t
            g = g + self.momentum * b if self.nesterov else b
        p -= self.lr * g


class RMSProp(Optimizer):
    """RMSProp: divide the gradient by a running root-mean-square of its recent values, as
    ``torch.optim.RMSprop`` (not centered, no weight decay).

    One step, ``s`` and ``b`` zero before the first step::

        s = alpha * s + (1 - alpha) * g**2
        p -= lr * g / (sqrt(s) + eps)                    (momentum = 0)
        b = momentum * b + g / (sqrt(s) + eps); p -= lr * b  (momentum > 0)

    There is no bias correction: ``s`` starts at 0, so the first steps are large (step 1 moves
    each weight by ``lr / sqrt(1 - alpha)``, 10 lr for alpha = 0.99).

    Worked example: alpha 0.75, gradient 2. s = 0.25 * 4 = 1, p = 1 - 0.1 * 2 / 1 = 0.8.

    >>> params = {"w": np.array([1.0])}
    >>> RMSProp(lr=0.1, alpha=0.75, eps=0.0).step(params, {"w": np.array([2.0])})
    >>> params["w"]
    array([0.8])
    """

    settings = ("alpha", "eps", "momentum")

    def __init__(self, lr: float, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0):
        self.alpha = _check_number("alpha", alpha, 0.0, 1.0)
        self.eps = _check_number("eps", eps, 0.0, math.inf)
        self.momentum = _check_number("momentum", momentum, 0.0, 1.0)
        super().__init__(lr, buffers=("square_avg", "momentum_buffer") if self.momentum
                         else ("square_avg",))

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # every array here has the shape of p
        s = self.square_avg[name]
        s *= self.alpha
        s += (1 - self.alpha) * g * g                   # s_t = alpha s_{t-1} + (1 - alpha) g_t^2
        rms = np.sqrt(s) + self.eps
        if self.momentum:
            b = self.momentum_buffer[name]
            b *= self.momentum
            b += g / rms                                # b_t = mu b_{t-1} + g_t / rms_t
            p -= self.lr * b
        else:
            p -= self.lr * (g / rms)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with L2 weight decay added to the gradient, as
    ``torch.optim.Adam``.

    Step t (counting from 1), ``m`` and ``v`` zero before the first step::

        g = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * g          first moment (mean) estimate
        v = beta2 * v + (1 - beta2) * g**2       second moment (uncentered variance) estimate
        m_hat = m / (1 - beta1**t)               bias correction: m, v started at 0 (Section 3)
        v_hat = v / (1 - beta2**t)
        p -= lr * m_hat / (sqrt(v_hat) + eps)

    Worked example: at t = 1 the bias correction undoes the zero start exactly, m_hat = g and
    v_hat = g**2, so every weight moves by lr * sign(g) (up to eps), whatever the gradient's size.

    >>> params = {"w": np.array([1.0, 1.0])}
    >>> Adam(lr=0.1, eps=0.0).step(params, {"w": np.array([3.0, -0.01])})
    >>> params["w"]
    array([0.9, 1.1])
    """

    settings = ("beta1", "beta2", "eps", "weight_decay")

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_number("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_number("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_number("eps", eps, 0.0, math.inf)
        self.weight_decay = _check_number("weight_decay", weight_decay, 0.0, math.inf)
        super().__init__(lr, buffers=("exp_avg", "exp_avg_sq"))

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay:
            g = g + self.weight_decay * p               # L2: rescaled by 1/sqrt(v) below
        self._adam_update(name, p, g)

    def _adam_update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # every array here has the shape of p
        m, v = self.exp_avg[name], self.exp_avg_sq[name]
        m *= self.beta1
        m += (1 - self.beta1) * g                       # m_t = beta1 m_{t-1} + (1 - beta1) g_t
        v *= self.beta2
        v += (1 - self.beta2) * g * g                   # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
        bias1 = 1 - self.beta1 ** self.t                # 1 - beta1^t
        bias2 = 1 - self.beta2 ** self.t                # 1 - beta2^t
        denom = np.sqrt(v) / math.sqrt(bias2) + self.eps  # sqrt(v_hat_t) + eps
        p -= (self.lr / bias1) * (m / denom)            # lr m_hat_t / (sqrt(v_hat_t) + eps)


def decays(name: str, value: np.ndarray) -> bool:
    """The default weight-decay rule: decay weight matrices and embeddings (2-D or more), never
    biases or normalization parameters.

    Decay pulls weights towards 0. That regularizes the matrices that mix features, but a bias
    or a LayerNorm gain pulled to 0 only shifts or silences a unit, so they are left alone
    (nanoGPT's ``configure_optimizers``, BERT's ``exclude_from_weight_decay``). The rule reads
    the name as well as the shape so that a 2-D norm or bias parameter would still be spared.

    >>> w = np.zeros((4, 3)); b = np.zeros(3)
    >>> decays("transformer.h.0.attn.c_attn.weight", w), decays("transformer.wte.weight", w)
    (True, True)
    >>> decays("transformer.h.0.attn.c_attn.bias", b), decays("transformer.ln_f.weight", b)
    (False, False)
    >>> decays("bert.encoder.layer.0.attention.output.LayerNorm.weight", b)
    False
    """
    *modules, leaf = name.split(".")
    is_bias = leaf == "bias" or leaf.endswith("_bias")
    is_norm = any(m == "ln" or m.startswith("ln_") or "norm" in m.lower() for m in modules)
    return np.ndim(value) >= 2 and not is_bias and not is_norm


def decay_groups(params: Params, decay: Callable[[str, np.ndarray], bool] = decays
                 ) -> tuple[list[str], list[str]]:
    """Split parameter names into (decayed, not decayed) by the rule ``decay``, in dict order.

    >>> decay_groups({"transformer.wte.weight": np.zeros((5, 2)), "transformer.ln_f.weight": np.ones(2),
    ...               "transformer.ln_f.bias": np.zeros(2)})
    (['transformer.wte.weight'], ['transformer.ln_f.weight', 'transformer.ln_f.bias'])
    """
    decayed = [name for name, p in params.items() if decay(name, p)]
    kept = [name for name, p in params.items() if not decay(name, p)]
    return decayed, kept


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 2), as
    ``torch.optim.AdamW``, applied only to the parameters for which ``decay(name, value)`` is
    true (by default ``decays``: weight matrices and embeddings, not biases or norms).

    Before the Adam step, each decayed weight shrinks by a fixed fraction::

        p *= 1 - lr * weight_decay
        p -= lr * m_hat / (sqrt(v_hat) + eps)     (Adam, no decay term in g)

    Unlike Adam's L2 term, the decay never passes through ``1 / sqrt(v_hat)``, so every weight
    shrinks at the same rate, however large its gradients. As in PyTorch the decay is scaled by
    ``lr`` (so it follows the schedule); Algorithm 2 line 12 writes it as ``eta_t * lambda`` with
    ``eta_t`` the schedule multiplier and the base rate ``alpha`` left out, so the paper's
    ``lambda`` is ``weight_decay`` times the base ``lr``.

    Worked example: a zero gradient leaves Adam's part at 0 (with m = 0), so the matrix shrinks
    by 1 - 0.1 * 0.5 = 0.95 and the bias does not move.

    >>> params = {"w": np.full((2, 2), 2.0), "b": np.array([2.0])}
    >>> zero = {k: np.zeros_like(p) for k, p in params.items()}
    >>> AdamW(lr=0.1, weight_decay=0.5).step(params, zero)
    >>> params["w"], params["b"]
    (array([[1.9, 1.9],
           [1.9, 1.9]]), array([2.]))
    """

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01,
                 decay: Callable[[str, np.ndarray], bool] = decays):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.decay = decay  # (name, value) -> bool: does this parameter decay?

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        if self.weight_decay and self.decay(name, p):
            p *= 1 - self.lr * self.weight_decay       # decoupled: theta <- theta - lr wd theta
        self._adam_update(name, p, g)


# ----------------------------------------------------------------------------------------------
# learning-rate schedules: step (0 for the first update) -> learning rate


def constant(step: int, lr: float) -> float:
    """The same learning rate at every step.

    >>> constant(0, 3e-4), constant(1000, 3e-4)
    (0.0003, 0.0003)
    """
    _check_step(step)
    return _check_number("lr", lr, 0.0, math.inf, low_open=True)


def step_decay(step: int, lr: float, step_size: int, gamma: float) -> float:
    """``lr * gamma ** (step // step_size)``: multiply the rate by ``gamma`` every ``step_size``
    steps, as ``torch.optim.lr_scheduler.StepLR``.

    >>> [step_decay(s, 1.0, step_size=2, gamma=0.5) for s in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    step = _check_step(step)
    lr = _check_number("lr", lr, 0.0, math.inf, low_open=True)
    if isinstance(step_size, bool) or not isinstance(step_size, (int, np.integer)) or step_size < 1:
        raise ValueError(f"step_size must be a positive integer (steps between decays), "
                         f"got {step_size!r}")
    gamma = _check_number("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False)
    return lr * gamma ** (step // step_size)


def warmup_cosine(step: int, max_lr: float, warmup_steps: int, total_steps: int,
                  min_lr: float = 0.0) -> float:
    """Linear warmup to ``max_lr``, then a half cosine down to ``min_lr`` at ``total_steps``,
    then ``min_lr`` for ever.

    ``step`` counts updates from 0. Warmup: ``max_lr * (step + 1) / warmup_steps`` for
    ``step < warmup_steps``, so the first update already uses ``max_lr / warmup_steps`` (never a
    wasted step at 0) and step ``warmup_steps - 1`` reaches ``max_lr``. This is llm.c's
    ``train_gpt2.py`` convention; nanoGPT divides by ``warmup_iters + 1`` instead and reaches
    the peak one step later. Decay (SGDR eq. 5): with ``progress = (step - warmup_steps) /
    (total_steps - warmup_steps)`` going from 0 to 1,
    ``min_lr + (max_lr - min_lr) * (1 + cos(pi * progress)) / 2``: ``max_lr`` at
    ``step == warmup_steps``, halfway between at the middle, ``min_lr`` at ``total_steps``.

    Worked example: 4 warmup steps, 12 in total, peak 1. Warmup gives 1/4, 2/4, 3/4, 1 at steps
    0-3; step 4 starts the cosine at 1; step 8 is halfway (cos(pi/2) = 0), so 0.5; step 12 is 0.

    >>> [warmup_cosine(s, 1.0, 4, 12) for s in (0, 1, 2, 3, 4, 8, 12, 20)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.0, 0.0]
    >>> warmup_cosine(8, 1.0, 4, 12, min_lr=0.5), warmup_cosine(12, 1.0, 4, 12, min_lr=0.5)
    (0.75, 0.5)
    """
    step = _check_step(step)
    max_lr = _check_number("max_lr", max_lr, 0.0, math.inf, low_open=True)
    min_lr = _check_number("min_lr", min_lr, 0.0, max_lr, high_open=False)
    for arg, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{arg} must be a non-negative integer, got {value!r}")
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must be greater than warmup_steps "
                         f"({warmup_steps}): the cosine decay needs at least one step")
    if step < warmup_steps:
        return max_lr * ((step + 1) / warmup_steps)
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------
# gradient clipping


def clip_grad_norm(grads: Params, max_norm: float) -> float:
    """Scale all gradients in place by ``max_norm / (norm + 1e-6)`` when that factor is below 1,
    where ``norm`` is the L2 norm of all gradients together; return ``norm`` (before clipping).

    Clipping the *global* norm keeps the update's direction and only shortens it (Pascanu et al.
    2013, Algorithm 1), as ``torch.nn.utils.clip_grad_norm_``. The 1e-6 keeps the division safe
    and makes the clipped norm a hair under ``max_norm``.

    Worked example: gradients (3,) and (4,) have global norm sqrt(9 + 16) = 5; with max_norm 1
    both are scaled by about 1/5.

    >>> grads = {"a": np.array([3.0]), "b": np.array([4.0])}
    >>> clip_grad_norm(grads, max_norm=1.0)
    5.0
    >>> grads["a"].round(6), grads["b"].round(6)
    (array([0.6]), array([0.8]))
    """
    max_norm = _check_number("max_norm", max_norm, 0.0, math.inf, low_open=True)
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite norm is reported below
        norms = {name: float(np.linalg.norm(np.ravel(g))) for name, g in grads.items()}
    total = math.sqrt(sum(n * n for n in norms.values()))
    if not math.isfinite(total):
        for name, g in grads.items():
            if not np.all(np.isfinite(g)):
                where = np.unravel_index(int(np.argmin(np.isfinite(g))), np.shape(g))
                raise FloatingPointError(
                    f"gradient {name!r} contains {g[where]} at index {tuple(int(i) for i in where)}; "
                    f"the global gradient norm is {total}. The loss or the backward pass overflowed: "
                    f"lower the learning rate or check the loss for inf/NaN")
        running = 0.0
        for name, n in norms.items():  # finite values, but the sum of squares overflows
            running += n * n
            if not math.isfinite(running):
                raise FloatingPointError(
                    f"the global gradient norm overflows at gradient {name!r} (its own norm is "
                    f"{n:.3g}): the gradients are finite but too large to square and sum; "
                    f"lower the learning rate or check the loss scale")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return total
