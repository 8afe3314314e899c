"""A multilayer-perceptron language model in the style of Bengio et al. (2003).

The model predicts token ``t`` from the ``K`` tokens before it:

    e   = concat(wte[x_{t-K}], ..., wte[x_{t-1}])        look up and concatenate, (B, K*C)
    h   = tanh(e @ W1 + b1)                              hidden layer,           (B, H)
    z   = h @ W2 + b2                                    logits,                 (B, V)
    L   = cross_entropy(z, x_t)

Unlike an n-gram model, it *shares* what it learns between contexts: tokens that behave alike
get nearby embedding vectors, so a context never seen in training still gets a sensible
prediction. Every backward line is written out below, the whole model is gradient-checked in
float64 (``tests/test_mlp.py``), and ``train_mlp`` trains it with AdamW.

``mlp_sample`` draws text from a trained model one token at a time.

Left out: Bengio's direct input-to-output connections, dropout, and weight tying; the context is
a fixed window, so anything more than ``K`` tokens back is invisible to the model.

Reference: Y. Bengio, R. Ducharme, P. Vincent, C. Jauvin, "A Neural Probabilistic Language
Model", JMLR 3 (2003), section 2, equation (1) (without the direct connections W).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from llm_from_scratch import ops
from llm_from_scratch.optim import AdamW, clip_grad_norm, warmup_cosine

# Dimension letters: B batch, K context length (tokens), C embedding width, H hidden width,
# V vocabulary size.

__all__ = ["MLPConfig", "init_params", "mlp_forward", "mlp_backward", "context_windows",
           "evaluate", "train_mlp", "mlp_sample"]


@dataclass(frozen=True)
class MLPConfig:
    vocab_size: int = 64   # V: number of distinct tokens
    context: int = 16      # K: how many previous tokens the model sees
    n_embd: int = 24       # C: width of each token's embedding
    n_hidden: int = 512    # H: width of the tanh hidden layer

    def __post_init__(self):
        for name in ("vocab_size", "context", "n_embd", "n_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"MLPConfig.{name} must be a positive integer, got {getattr(self, name)}")


def init_params(config: MLPConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """Initial parameters: N(0, 1) embeddings, Xavier-scaled hidden weights (std 1/sqrt(fan_in),
    which keeps tanh in its working range), a small output layer so the first predictions are
    nearly uniform (initial loss close to ln V), zero biases.

    >>> p = init_params(MLPConfig(vocab_size=5, context=3, n_embd=2, n_hidden=4))
    >>> {k: v.shape for k, v in p.items()}
    {'wte.weight': (5, 2), 'hidden.weight': (6, 4), 'hidden.bias': (4,), 'head.weight': (4, 5), 'head.bias': (5,)}
    """
    rng = np.random.default_rng(seed)
    V, K, C, H = config.vocab_size, config.context, config.n_embd, config.n_hidden
    params = {
        "wte.weight": rng.standard_normal((V, C)),                          # (V, C)
        "hidden.weight": rng.standard_normal((K * C, H)) / np.sqrt(K * C),  # (K*C, H)
        "hidden.bias": np.zeros(H),                                         # (H,)
        "head.weight": rng.standard_normal((H, V)) * 0.01,                  # (H, V)
        "head.bias": np.zeros(V),                                           # (V,)
    }
    return {k: v.astype(dtype) for k, v in params.items()}


def mlp_forward(params: dict[str, np.ndarray], idx: np.ndarray, targets: np.ndarray | None = None):
    """Logits for the next token after each row of ``idx`` (B, K); the mean cross-entropy when
    ``targets`` (B,) is given. Returns ``(logits, loss, cache)``; ``loss`` is None without targets.
    """
    if idx.ndim != 2:
        raise ValueError(f"idx must be a (B, K) array of token ids, got shape {idx.shape}")
    B, K = idx.shape
    emb, emb_cache = ops.embedding_forward(idx, params["wte.weight"])          # (B, K, C)
    e = emb.reshape(B, -1)                                                       # (B, K*C)
    a, hid_cache = ops.linear_forward(e, params["hidden.weight"], params["hidden.bias"])  # (B, H)
    h, tanh_cache = ops.tanh_forward(a)                                          # (B, H)
    logits, head_cache = ops.linear_forward(h, params["head.weight"], params["head.bias"])  # (B, V)
    loss, ce_cache = (None, None)
    if targets is not None:
        loss, ce_cache = ops.cross_entropy_forward(logits, targets)
    cache = (emb.shape, emb_cache, hid_cache, tanh_cache, head_cache, ce_cache)
    return logits, loss, cache


def mlp_backward(cache, dloss: float = 1.0) -> dict[str, np.ndarray]:
    """Gradients of the mean loss with respect to every parameter (same keys as ``params``)."""
    emb_shape, emb_cache, hid_cache, tanh_cache, head_cache, ce_cache = cache
    if ce_cache is None:
        raise ValueError("mlp_backward needs the cache of a forward pass that was given targets")
    grads = {}
    # loss = cross_entropy(logits, targets)
    dlogits = ops.cross_entropy_backward(dloss, ce_cache)                        # (B, V)
    # logits = h @ W2 + b2
    dh, grads["head.weight"], grads["head.bias"] = ops.linear_backward(dlogits, head_cache)  # (B, H)
    # h = tanh(a)
    da = ops.tanh_backward(dh, tanh_cache)                                       # (B, H)
    # a = e @ W1 + b1
    de, grads["hidden.weight"], grads["hidden.bias"] = ops.linear_backward(da, hid_cache)    # (B, K*C)
    # e = concat(wte[idx]): the reshape is undone, then the lookup scatters back into the table
    grads["wte.weight"] = ops.embedding_backward(de.reshape(emb_shape), emb_cache)  # (V, C)
    return {k: grads[k] for k in ("wte.weight", "hidden.weight", "hidden.bias", "head.weight", "head.bias")}


def context_windows(tokens: np.ndarray, K: int, positions: np.ndarray | None = None):
    """The (K previous tokens, next token) pairs at ``positions`` (default: every t >= K).

    >>> x, y = context_windows(np.array([5, 6, 7, 8]), 2)
    >>> x.tolist(), y.tolist()
    ([[5, 6], [6, 7]], [7, 8])
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size <= K:
        raise ValueError(f"need a 1-D token array longer than the context K={K}, got shape {tokens.shape}")
    if positions is None:
        positions = np.arange(K, tokens.size)
    x = tokens[positions[:, None] + np.arange(-K, 0)[None, :]]  # (B, K)
    y = tokens[positions]                                       # (B,)
    return x.astype(np.int64), y.astype(np.int64)


def evaluate(params, tokens: np.ndarray, K: int, batch_size: int = 4096) -> float:
    """Mean cross-entropy in nats over every position t >= K of ``tokens``."""
    positions = np.arange(K, len(tokens))
    total = 0.0
    for start in range(0, positions.size, batch_size):
        x, y = context_windows(tokens, K, positions[start:start + batch_size])
        _, loss, _ = mlp_forward(params, x, y)
        total += float(loss) * x.shape[0]
    return total / positions.size


def train_mlp(params, config: MLPConfig, train_tokens: np.ndarray, val_tokens: np.ndarray, steps: int = 2000,
              batch_size: int = 256, lr: float = 3e-3, weight_decay: float = 0.01, warmup: int = 100,
              eval_every: int = 250, clip: float = 1.0, seed: int = 0, progress: bool = True,
              stop_after: int | None = None) -> dict:
    """Train with AdamW, linear warmup then cosine decay, and gradient clipping.

    Minibatches are random positions of ``train_tokens``; every ``eval_every`` steps (and at the
    end) the full validation loss is measured. Returns a history dict with the steps, training
    losses (per step), validation losses (per evaluation) and the wall time. ``stop_after`` ends
    the run after that many steps of the ``steps``-step schedule (the first part of a long run,
    step for step the same), e.g. to check a committed run without repeating all of it.
    """
    if stop_after is not None and not 0 < stop_after <= steps:
        raise ValueError(f"stop_after must be in [1, steps={steps}], got {stop_after}")
    rng = np.random.default_rng(seed)
    K = config.context
    opt = AdamW(lr=lr, weight_decay=weight_decay)
    history = {"step": [], "train_loss": [], "val_step": [], "val_loss": [], "seconds": 0.0}
    start = time.perf_counter()
    if progress:
        from tqdm.auto import tqdm  # imported only when asked for: it warns in a notebook without ipywidgets
        bar = tqdm(range(steps), desc="MLP", mininterval=1.0)
    else:
        bar = range(steps)
    for step in bar:
        if stop_after is not None and step == stop_after:
            break
        positions = rng.integers(K, len(train_tokens), batch_size)
        x, y = context_windows(train_tokens, K, positions)
        _, loss, cache = mlp_forward(params, x, y)
        grads = mlp_backward(cache)
        clip_grad_norm(grads, clip)
        opt.lr = warmup_cosine(step, lr, warmup, steps, min_lr=lr / 10)
        opt.step(params, grads)
        history["step"].append(step)
        history["train_loss"].append(float(loss))
        if (step + 1) % eval_every == 0 or step == steps - 1:
            history["val_step"].append(step + 1)
            history["val_loss"].append(evaluate(params, val_tokens, K))
            if progress:
                bar.set_postfix(train=f"{float(loss):.3f}", val=f"{history['val_loss'][-1]:.3f}")
    history["seconds"] = time.perf_counter() - start
    return history


def mlp_sample(params, prompt, n: int, rng: np.random.Generator, temperature: float = 1.0) -> list[int]:
    """Sample ``n`` token ids after ``prompt``, one at a time, each from the model's distribution
    given the ``K`` tokens before it.

    ``prompt`` (token ids) must hold at least ``K`` tokens; for StoryWorld, ``K`` newlines are a
    natural start, since a story begins after a newline. ``temperature`` divides the logits
    (1.0 samples the model's own distribution, smaller values sharpen it). The same ``rng`` seed
    gives the same text.

    >>> cfg = MLPConfig(vocab_size=5, context=3, n_embd=2, n_hidden=4)
    >>> out = mlp_sample(init_params(cfg), [0, 0, 0], 6, np.random.default_rng(0))
    >>> len(out), all(0 <= t < 5 for t in out)
    (6, True)
    """
    wte = params["wte.weight"]                                   # (V, C)
    K = params["hidden.weight"].shape[0] // wte.shape[1]
    out = [int(t) for t in prompt]
    if len(out) < K:
        raise ValueError(f"the prompt must hold at least K={K} token ids (the model's context), got {len(out)}; "
                         f"pad it on the left, e.g. with newlines")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    for _ in range(n):
        idx = np.array([out[-K:]], dtype=np.int64)               # (1, K)
        logits, _, _ = mlp_forward(params, idx)                  # (1, V)
        z = logits[0].astype(np.float64) / temperature           # (V,)
        p = np.exp(z - z.max())                                  # (V,)
        out.append(int(rng.choice(p.size, p=p / p.sum())))
    return out[len(prompt):]
