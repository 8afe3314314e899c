"""The package's GPT against Hugging Face's ``GPT2LMHeadModel``: the largest differences, as numbers.

Chapter 7 compares logits, loss and the gradient of every parameter of a small random GPT-2 in
both precisions. PyTorch and ``transformers`` are test-only references (``pip install -r
requirements-reference.txt``), so the comparison cannot run on every reader's machine;
``llm-scratch parity --out book/data/parity/gpt2_transformers.json`` writes its figures as a
small JSON file that the chapter shows when the references are missing, and
``tests/test_parity_record.py`` re-runs the comparison and checks that the committed figures still
hold. Nothing here is needed to train or run a model.

Reference: llm.c's ``test_gpt2.c`` (the same comparison against PyTorch, in C).
"""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path

import numpy as np

from llm_from_scratch.fileio import atomic_write

# the model and the batch of the comparison
HF_CONFIG = dict(vocab_size=50, n_positions=32, n_embd=24, n_layer=3, n_head=4)
BATCH = (3, 20)   # (B, T)


def _references():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(f"the parity comparison needs PyTorch and transformers ({exc}); install them with: "
                          f"pip install -r requirements-reference.txt") from exc
    return torch, transformers


def gpt2_transformers_parity(precision: str) -> dict:
    """Compare ``gpt_forward``/``gpt_backward`` with ``transformers.GPT2LMHeadModel`` in ``precision``.

    The model has random weights (every bias and LayerNorm perturbed too), is saved with Hugging
    Face's own ``save_pretrained`` and loaded with the package's ``from_pretrained``; both run the
    same batch with next-token targets. Returns the number of parameters on both sides, the loss,
    and the largest absolute difference of the logits, the loss and each parameter's gradient
    (``gradients``, by name), with the worst and the median gradient difference.
    """
    from llm_from_scratch.models.gpt import from_pretrained, gpt_backward, gpt_forward, num_params

    if precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    torch, transformers = _references()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(**HF_CONFIG, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                        bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(hf_config)          # float32
    with torch.no_grad():
        for p in model.parameters():                          # biases and LayerNorms random too
            p.add_(0.1 * torch.randn_like(p))
    model = model.to(getattr(torch, precision)).eval()        # the same weights in both precisions
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        params, config = from_pretrained(folder)

    rng = np.random.default_rng(0)
    V = config.vocab_size
    B, T = BATCH
    idx = rng.integers(0, V, size=(B, T))                                   # (B, T)
    targets = np.concatenate([idx[:, 1:], np.full((B, 1), -100)], axis=1)   # (B, T) none after the last
    logits, loss, cache = gpt_forward(params, config, idx, targets)
    grads = gpt_backward(cache)

    hf_logits = model(torch.tensor(idx)).logits                             # (B, T, V)
    # Hugging Face shifts the labels inside the model and its own loss upcasts to float32, so we
    # take its logits and shift them ourselves
    hf_loss = torch.nn.functional.cross_entropy(hf_logits[:, :-1].reshape(-1, V),
                                                torch.tensor(idx[:, 1:]).reshape(-1))
    hf_loss.backward()
    hf_params = dict(model.named_parameters())                              # no lm_head: it is wte
    if set(hf_params) != set(grads):
        raise AssertionError(f"parameter names differ: {sorted(set(hf_params) ^ set(grads))}")
    diffs = {name: float(np.abs(g - hf_params[name].grad.numpy()).max()) for name, g in grads.items()}
    worst = max(diffs, key=diffs.get)
    return {
        "precision": precision,
        "parameters": num_params(config),
        "parameters_transformers": int(model.num_parameters()),
        "loss": float(loss),
        "logits": float(np.abs(logits - hf_logits.detach().numpy()).max()),
        "loss_diff": abs(float(loss) - hf_loss.item()),
        "gradient_worst": diffs[worst],
        "gradient_worst_name": worst,
        "gradient_median": float(np.median(list(diffs.values()))),
        "gradients": diffs,
    }


def parity_record() -> dict:
    """Both precisions, with the versions and the machine."""
    torch, transformers = _references()
    return {"config": HF_CONFIG, "batch": list(BATCH),
            "results": {p: gpt2_transformers_parity(p) for p in ("float32", "float64")},
            "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "machine": f"{platform.machine()}, Python {platform.python_version()}"}


def write_parity_record(path) -> dict:
    record = parity_record()
    atomic_write(Path(path), json.dumps(record, indent=1) + "\n")
    return record


def read_parity_record(path) -> dict:
    """A committed parity record, checked for the fields chapter 7 reads."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no parity record at {path}; write it with: llm-scratch parity --out {path}")
    record = json.loads(path.read_text(encoding="utf-8"))
    missing = [p for p in ("float32", "float64") if p not in record.get("results", {})]
    if missing:
        raise ValueError(f"{path} has no results for {missing}; expected a record written by llm-scratch parity")
    return record
