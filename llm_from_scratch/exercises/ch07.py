"""Exercises for chapter 7, the Transformer block.

The references are the package's own code: ``ops.layernorm_forward`` without its cache,
``models.gpt.block_forward``, the pre-LayerNorm block that ``models.gpt.gpt_forward`` loops over
(a check runs the submission inside a one-block GPT and compares the logits with
``gpt_forward``'s), and ``models.gpt.num_params`` and
``models.gpt.flops_per_token``. Each wrapper imports what it calls inside its body, so its source,
copied into a file on its own, still runs.
"""

from __future__ import annotations

import numpy as np

from llm_from_scratch.exercises import Case, Exercise, register

BLOCK_KEYS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
              "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
              "mlp.c_proj.weight", "mlp.c_proj.bias")


# ---------------------------------------------------------------------------------------------
# layernorm_forward

def layernorm_forward(x, w, b, eps=1e-5):
    """LayerNorm over the last axis: every row of C features is normalised on its own.

    ``x`` has shape ``(..., C)`` (say ``(B, T, C)``); ``w`` and ``b`` have shape ``(C,)``.
    With the mean and the *biased* variance (divide by C) of each row,
    ``out = (x - mean) / sqrt(var + eps) * w + b``. Return ``out``, the shape of ``x``.

    Example: the row [1, 3] has mean 2 and variance 1, so it normalises to [-1, 1] (up to eps);
    w = [2, 1] and b = [0, 10] then give [-2, 11].

    The reference is the package's ``ops.layernorm_forward``, without its cache.
    """
    from llm_from_scratch import ops

    out, _ = ops.layernorm_forward(x, w, b, eps)
    return out


def _wrong_layernorm_forward(x, w, b, eps=1e-5):
    # BatchNorm's statistics: one mean and variance per channel, over every row of the batch
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    mean = rows.mean(axis=0)
    var = rows.var(axis=0)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _layernorm_case(seed, shape, shift, eps=1e-5):
    def make():
        rng = np.random.default_rng(seed)
        C = shape[-1]
        return (shift + 2 * rng.standard_normal(shape), 1 + 0.3 * rng.standard_normal(C),
                0.5 * rng.standard_normal(C), eps)
    return make


def _leaves_inputs_alone(fn, make_args):
    args = make_args()
    before = [{k: np.array(v, copy=True) for k, v in a.items()} if isinstance(a, dict) else np.array(a, copy=True)
              for a in args]
    fn(*args)
    for i, (a, kept) in enumerate(zip(args, before)):
        same = (all(np.array_equal(a[k], kept[k]) for k in kept) if isinstance(a, dict)
                else np.array_equal(np.asarray(a), kept))
        if not same:
            return f"argument {i} was changed; return a new array and leave the inputs alone"
    return ""


# ---------------------------------------------------------------------------------------------
# block_forward

def block_forward(x, block, n_head, eps=1e-5):
    """One GPT-2 Transformer block (pre-LayerNorm) applied to ``x`` of shape ``(B, T, C)``.

    ``block`` holds the block's parameters under GPT-2's names without the
    ``transformer.h.{i}.`` prefix: ``ln_1.weight``, ``ln_1.bias``, ``attn.c_attn.weight`` (C, 3C),
    ``attn.c_attn.bias``, ``attn.c_proj.weight`` (C, C), ``attn.c_proj.bias``, ``ln_2.weight``,
    ``ln_2.bias``, ``mlp.c_fc.weight`` (C, 4C), ``mlp.c_fc.bias``, ``mlp.c_proj.weight`` (4C, C),
    ``mlp.c_proj.bias``. Return the new residual stream, shape ``(B, T, C)``::

        x = x + attn(ln_1(x))       causal multi-head self-attention with n_head heads
        x = x + mlp(ln_2(x))        mlp(h) = gelu_tanh(h @ W_fc + b_fc) @ W_proj + b_proj

    The LayerNorms use ``eps``; the GELU is the tanh approximation (GPT-2's).

    Example: if both ``c_proj`` weights and biases are zero, both branches add 0 and the block
    returns ``x`` unchanged, whatever the other parameters are.

    The reference is the package's ``models.gpt.block_forward``, the block ``gpt_forward``
    loops over, run on a one-block config.
    """
    from llm_from_scratch.kernels.backend import get_ops
    from llm_from_scratch.models.gpt import GPTConfig
    from llm_from_scratch.models.gpt import block_forward as gpt_block_forward

    B, T, C = x.shape
    config = GPTConfig(vocab_size=1, n_positions=T, n_embd=C, n_layer=1, n_head=n_head, layer_norm_epsilon=eps)
    params = {"transformer.h.0." + name: value for name, value in block.items()}  # the package's names
    y, _ = gpt_block_forward(x, params, 0, config, get_ops("numpy"))  # (B, T, C)
    return y


def _wrong_block_forward(x, block, n_head, eps=1e-5):
    # post-LN, the original Transformer's wiring: normalise after the residual add
    from llm_from_scratch import ops
    from llm_from_scratch.attention import mha_forward

    p = block
    a, _ = mha_forward(x, p["attn.c_attn.weight"], p["attn.c_attn.bias"], p["attn.c_proj.weight"],
                       p["attn.c_proj.bias"], n_head, causal=True)
    x, _ = ops.layernorm_forward(x + a, p["ln_1.weight"], p["ln_1.bias"], eps)
    u, _ = ops.linear_forward(x, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])
    g, _ = ops.gelu_forward(u, approximate="tanh")
    m, _ = ops.linear_forward(g, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])
    x, _ = ops.layernorm_forward(x + m, p["ln_2.weight"], p["ln_2.bias"], eps)
    return x


def _random_block(rng, C, scale=0.3):
    """Every entry random, biases and LayerNorm gains too, so no term hides behind a 0 or a 1."""
    shapes = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
              "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
              "ln_2.weight": (C,), "ln_2.bias": (C,), "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,),
              "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,)}
    block = {}
    for name in BLOCK_KEYS:
        value = scale * rng.standard_normal(shapes[name])
        block[name] = value + 1.0 if name.startswith("ln_") and name.endswith(".weight") else value
    return block


def _block_case(seed, B, T, C, n_head, eps=1e-5):
    def make():
        rng = np.random.default_rng(seed)
        return (rng.standard_normal((B, T, C)), _random_block(rng, C), n_head, eps)
    return make


def _zero_projections_case():
    rng = np.random.default_rng(10)
    block = _random_block(rng, 6)
    for name in ("attn.c_proj.weight", "attn.c_proj.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
        block[name] = np.zeros_like(block[name])
    return (rng.standard_normal((1, 3, 6)), block, 2)


def _matches_gpt_forward(fn):
    """Embed, one block (the submission), ln_f and the tied head must give gpt_forward's logits."""
    from llm_from_scratch import ops
    from llm_from_scratch.models.gpt import GPTConfig, gpt_forward, param_shapes

    cfg = GPTConfig(vocab_size=13, n_positions=9, n_embd=12, n_layer=1, n_head=3)
    rng = np.random.default_rng(11)
    params = {name: 0.3 * rng.standard_normal(shape) for name, shape in param_shapes(cfg).items()}
    idx = rng.integers(0, cfg.vocab_size, size=(2, 7))  # (B, T)
    expected, _, _ = gpt_forward(params, cfg, idx)  # (B, T, V)
    h = "transformer.h.0."
    block = {name[len(h):]: value for name, value in params.items() if name.startswith(h)}
    x = params["transformer.wte.weight"][idx] + params["transformer.wpe.weight"][:7]  # (B, T, C)
    x = np.asarray(fn(x, block, cfg.n_head, cfg.layer_norm_epsilon))  # (B, T, C)
    xf, _ = ops.layernorm_forward(x, params["transformer.ln_f.weight"], params["transformer.ln_f.bias"])
    logits = xf @ params["transformer.wte.weight"].T  # (B, T, V)
    diff = float(np.max(np.abs(logits - expected)))
    return "" if diff < 1e-9 else (f"inside a one-block GPT the logits differ from gpt_forward's by up to {diff:.3g}; "
                                   "is the block pre-LN, causal, with the tanh GELU?")


# ---------------------------------------------------------------------------------------------
# gpt_num_params

def gpt_num_params(vocab_size, n_positions, n_embd, n_layer, non_embedding=False):
    """How many numbers a GPT-2 with these sizes holds, the tied output head counted once.

    Count every weight matrix, every bias, every LayerNorm gain and shift, the token table
    ``wte`` (V, C) and the position table ``wpe`` (P, C); with ``non_embedding=True`` leave out
    ``wte`` and ``wpe`` (Kaplan et al.'s N). The number of heads does not change the count.

    Example: vocab_size 11, n_positions 8, n_embd 8, n_layer 1: one block holds
    12 * 8^2 + 13 * 8 = 872, the final LayerNorm 2 * 8 = 16, the tables 11 * 8 + 8 * 8 = 152,
    1040 in all (888 without the tables).

    The reference is the package's ``models.gpt.num_params``.
    """
    from llm_from_scratch.models.gpt import GPTConfig, num_params

    config = GPTConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=1)
    return num_params(config, non_embedding=non_embedding)


def _wrong_gpt_num_params(vocab_size, n_positions, n_embd, n_layer, non_embedding=False):
    # counts the four weight matrices of each block (12 C^2) and the tables, but forgets the
    # biases and the LayerNorms: 13 C per block and 2 C for ln_f
    blocks = n_layer * 12 * n_embd * n_embd
    return blocks if non_embedding else blocks + (vocab_size + n_positions) * n_embd


# ---------------------------------------------------------------------------------------------
# train_flops_per_token

def train_flops_per_token(vocab_size, n_positions, n_embd, n_layer, T):
    """FLOPs of one training step (forward and backward) per token, for sequences of length T.

    Use ``6 N + 12 L C T`` (PaLM, appendix B): ``N`` is every parameter except the position table
    (``wpe`` is only looked up, never multiplied), the tied ``wte`` counted once (it is the output
    head's matrix); ``12 L C T`` is the attention's two (T x HS) products per head, q k^T and p v,
    forward (4 T C per block) and backward (twice that). ``T`` is at most ``n_positions``.

    Example: vocab_size 11, n_positions 8, n_embd 8, n_layer 2, T = 5: N = 1912 - 8 * 8 = 1848,
    so 6 * 1848 + 12 * 2 * 8 * 5 = 11088 + 960 = 12048.

    The reference is the package's ``models.gpt.flops_per_token``.
    """
    from llm_from_scratch.models.gpt import GPTConfig, flops_per_token

    config = GPTConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=1)
    return flops_per_token(config, T)


def _wrong_train_flops_per_token(vocab_size, n_positions, n_embd, n_layer, T):
    # the "6 N" rule of thumb alone: right for large models, but it leaves out attention, which is
    # a large share of a small model's compute at a long context
    C, L = n_embd, n_layer
    N = L * (12 * C * C + 13 * C) + 2 * C + vocab_size * C
    return 6 * N


def _sizes_case(*args):
    return lambda: args


# ---------------------------------------------------------------------------------------------
# layernorm_dx (a derivation)

def layernorm_dx(dout, x, w, eps=1e-5):
    """The gradient of a loss with respect to LayerNorm's input ``x`` (shape ``(..., C)``), given
    the gradient ``dout`` of its output ``w * xhat + b``.

    Derivation, per row: with ``g = w * dout``, ``xhat = (x - mu) / s`` and ``s = sqrt(var + eps)``,
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) / s``: the mean term because every ``x_i``
    moves ``mu``, the ``xhat`` term because every ``x_i`` moves ``s``.

    Example: C = 2, x = [0, 2], w = [1, 1], dout = [1, 0], eps = 0: mu = 1, s = 1, xhat = [-1, 1],
    g = [1, 0], mean(g) = 0.5, mean(g * xhat) = -0.5, dx = [1 - 0.5 - 0.5, 0 - 0.5 + 0.5] = [0, 0]
    (with two channels the output is +-1 whatever x is, so no input change moves it).

    The reference is ``ops.layernorm_backward``.
    """
    from llm_from_scratch import ops

    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    _, cache = ops.layernorm_forward(x, w, np.zeros_like(w), eps)
    dx, _, _ = ops.layernorm_backward(np.asarray(dout, dtype=np.float64), cache)
    return dx


def _wrong_layernorm_dx(dout, x, w, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(dout, dtype=np.float64) * w
    s = np.sqrt(x.var(-1, keepdims=True) + eps)
    return (g - g.mean(-1, keepdims=True)) / s  # the standard deviation treated as a constant


def _layernorm_dx_case(seed, shape, scale):
    def make():
        rng = np.random.default_rng(seed)
        C = shape[-1]
        return (rng.standard_normal(shape), scale * rng.standard_normal(shape) + 1.0,
                1.0 + 0.3 * rng.standard_normal(C))
    return make


EXERCISES = [
    register(Exercise(
        name="layernorm_forward", chapter=7, title="LayerNorm over the channels of each token",
        reference=layernorm_forward,
        cases=(
            Case("the worked example in the docstring",
                 lambda: (np.array([[1.0, 3.0]]), np.array([2.0, 1.0]), np.array([0.0, 10.0]))),
            Case("B, T, C = 2, 3, 5", _layernorm_case(0, (2, 3, 5), 0.0)),
            Case("rows far from zero (x around 100), N, C = 4, 6", _layernorm_case(1, (4, 6), 100.0)),
            Case("eps = 0.1 changes the scale", _layernorm_case(2, (3, 4), 0.0, eps=0.1)),
            Case("one token of C = 16", _layernorm_case(3, (1, 1, 16), -3.0)),
        ),
        rtol=1e-9, atol=1e-12,
        extra_checks=(("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _layernorm_case(4, (2, 5), 1.0))),),
        hint="normalise each row over its own C features (axis=-1, keepdims=True), with the biased "
             "variance (divide by C, numpy's default), eps inside the square root",
    )),
    register(Exercise(
        name="block_forward", chapter=7, title="one pre-LayerNorm Transformer block",
        reference=block_forward,
        cases=(
            Case("zero projections: the block is the identity", _zero_projections_case),
            Case("B, T, C = 2, 5, 8 with 2 heads", _block_case(0, 2, 5, 8, 2)),
            Case("one token, C = 12 with 3 heads", _block_case(1, 1, 1, 12, 3)),
            Case("B, T, C = 3, 7, 6 with 1 head", _block_case(2, 3, 7, 6, 1)),
            Case("eps = 0.01, B, T, C = 1, 4, 16 with 4 heads", _block_case(3, 1, 4, 16, 4, eps=0.01)),
        ),
        rtol=1e-9, atol=1e-10,
        extra_checks=(("a one-block GPT built on it gives gpt_forward's logits", _matches_gpt_forward),
                      ("does not change its inputs",
                       lambda fn: _leaves_inputs_alone(fn, _block_case(5, 1, 3, 4, 2)))),
        hint="GPT-2 normalises BEFORE each branch and adds the branch to the un-normalised stream: "
             "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)); attention is causal, the GELU is the tanh form",
    )),
    register(Exercise(
        name="gpt_num_params", chapter=7, title="the parameter count of a GPT-2",
        reference=gpt_num_params,
        cases=(
            Case("the worked example: V, P, C, L = 11, 8, 8, 1", _sizes_case(11, 8, 8, 1)),
            Case("the worked example without the tables", _sizes_case(11, 8, 8, 1, True)),
            Case("GPT-2 small (124M)", _sizes_case(50257, 1024, 768, 12)),
            Case("GPT-2 medium (355M), non-embedding", _sizes_case(50257, 1024, 1024, 24, True)),
            Case("a small StoryWorld model: V, P, C, L = 512, 256, 128, 4", _sizes_case(512, 256, 128, 4)),
        ),
        hint="per block 12 C^2 in the matrices (3C^2 + C^2 + 4C^2 + 4C^2) plus 13 C in biases "
             "(3C + C + 4C + C) and two LayerNorms (2C each); then ln_f (2C), wte (V C), wpe (P C)",
    )),
    register(Exercise(
        name="train_flops_per_token", chapter=7, title="training FLOPs per token, attention included",
        reference=train_flops_per_token,
        cases=(
            Case("the worked example: V, P, C, L = 11, 8, 8, 2 at T = 5", _sizes_case(11, 8, 8, 2, 5)),
            Case("GPT-2 small at T = 1024", _sizes_case(50257, 1024, 768, 12, 1024)),
            Case("a small model at a long context: C = 64, T = 512", _sizes_case(512, 512, 64, 4, 512)),
            Case("a small model at T = 1", _sizes_case(512, 512, 64, 4, 1)),
        ),
        hint="6 FLOPs per parameter that is multiplied (every one but wpe; the tied wte once), "
             "plus 12 L C T for the attention scores q k^T and the weighted sum p v",
    )),
]

EXERCISES.append(register(Exercise(
    name="layernorm_dx", chapter=7, title="LayerNorm's input gradient (a derivation)",
    reference=layernorm_dx,
    cases=(
        Case("the docstring's example, eps = 0", lambda: (np.array([1.0, 0.0]), np.array([0.0, 2.0]),
                                                        np.ones(2), 0.0)),
        Case("one row of 5 channels", _layernorm_dx_case(0, (5,), 1.0)),
        Case("(B, T, C) = (2, 3, 8), rows of scale 3", _layernorm_dx_case(1, (2, 3, 8), 3.0)),
        Case("(4, 16), small rows where eps matters", _layernorm_dx_case(2, (4, 16), 0.001)),
    ),
    rtol=1e-7, atol=1e-9,
    hint="differentiate out = w * (x - mu) / s with respect to every x_j: x_j enters directly, through "
         "mu (a 1/C share) and through s (d s / d x_j = xhat_j / C)",
)))

WRONG = {
    "layernorm_dx": _wrong_layernorm_dx,
    "layernorm_forward": _wrong_layernorm_forward,
    "block_forward": _wrong_block_forward,
    "gpt_num_params": _wrong_gpt_num_params,
    "train_flops_per_token": _wrong_train_flops_per_token,
}
