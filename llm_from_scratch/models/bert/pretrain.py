"""Masked-language-model pretraining of a BERT, and the StoryWorld BERT that chapter 9 loads.

``pretrain_mlm`` is the training loop: each epoch shuffles the sequences, each batch is cut to its
longest real sequence, ``mask_tokens`` draws fresh masks (dynamic masking), and AdamW follows a
warmup-cosine learning rate with the gradient norm clipped at 1. ``mlm_evaluate`` scores a whole
set with masks from a fixed seed. ``pretrain_storyworld_bert`` runs the whole recipe of chapter 9
(stories, WordPiece vocabulary, a tiny encoder, the loop above) and writes a Hugging Face folder:
``config.json`` and ``model.safetensors`` (``save_pretrained``), ``vocab.txt`` and
``tokenizer_config.json`` (``save_wordpiece``), and ``training.json`` with the arguments, the loss
of the first steps, the validation scores, the run time and the machine. The command line's
``llm-scratch pretrain-bert`` calls it.

    >>> from llm_from_scratch.models.bert.encoder import BertConfig, init_params
    >>> cfg = BertConfig(vocab_size=12, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=16, max_position_embeddings=8)
    >>> ids = np.array([[2, 5, 6, 7, 8, 9, 3, 0], [2, 6, 7, 8, 9, 10, 11, 3]])   # [CLS] ... [SEP] [PAD]
    >>> enc = {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}
    >>> params = init_params(cfg, heads=("mlm",), seed=0)
    >>> history = pretrain_mlm(params, cfg, enc, {0, 2, 3}, 4, steps=3, batch_size=2, warmup=1, kernels="numpy")
    >>> len(history["loss"]), history["loss"][0] > 2.0   # about log 12 = 2.5 at the start
    (3, True)

Left out: next-sentence prediction (RoBERTa showed masked LM alone does as well), whole-word
masking, dropout (the loop works with any config; chapter 9 switches dropout off).

References: Devlin et al., "BERT" (2019), section 3.1 and appendix A.2 (masking, optimizer);
Liu et al., "RoBERTa" (2019), section 4.1 (dynamic masking, no next-sentence prediction).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

from llm_from_scratch.data.bert import encode_batch, mask_tokens
from llm_from_scratch.models.bert.checkpoint import save_pretrained, save_wordpiece
from llm_from_scratch.models.bert.encoder import BertConfig, init_params
from llm_from_scratch.models.bert.heads import bert_mlm_backward, bert_mlm_forward
from llm_from_scratch.models.common import write_json
from llm_from_scratch.optim import AdamW, clip_grad_norm, warmup_cosine

__all__ = ["trim_batch", "pretrain_mlm", "mlm_evaluate", "pretrain_storyworld_bert", "TRAINING_FILE"]

TRAINING_FILE = "training.json"  # what pretrain_storyworld_bert records beside the checkpoint


def trim_batch(enc: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The rows ``idx`` of an encoded set (a dict of (N, T) arrays), cut to the longest real sequence
    among them, so no compute goes to columns that are padding in every row.

    >>> enc = {"input_ids": np.array([[2, 7, 3, 0], [2, 3, 0, 0]]), "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]])}
    >>> trim_batch(enc, np.array([1]))["input_ids"]
    array([[2, 3]])
    """
    width = int(enc["attention_mask"][idx].sum(axis=1).max())
    return {k: v[idx, :width] for k, v in enc.items() if v.ndim == 2}


def _check_enc(enc) -> int:
    if not isinstance(enc, dict) or "input_ids" not in enc or "attention_mask" not in enc:
        raise ValueError("enc must be a dict with 'input_ids' and 'attention_mask' arrays of shape (N, T), "
                         "as encode_batch returns")
    if enc["input_ids"].ndim != 2 or enc["input_ids"].shape != enc["attention_mask"].shape:
        raise ValueError(f"enc['input_ids'] and enc['attention_mask'] must be (N, T) arrays of the same shape, "
                         f"got {enc['input_ids'].shape} and {enc['attention_mask'].shape}")
    return len(enc["input_ids"])


def pretrain_mlm(params: dict[str, np.ndarray], config: BertConfig, enc: dict[str, np.ndarray], special_ids,
                 mask_id: int, steps: int, batch_size: int = 32, lr: float = 2e-3, warmup: int = 20,
                 min_lr: float | None = None, weight_decay: float = 0.01, mask_prob: float = 0.15, seed: int = 0,
                 kernels: str = "numba", stop_after: int | None = None) -> dict[str, list[float]]:
    """Train ``params`` (with the "mlm" head) in place by masked-language modelling on ``enc``.

    The learning rate warms up for ``warmup`` steps to ``lr`` and follows a cosine down to
    ``min_lr`` (default ``lr / 10``) at ``steps``; ``stop_after`` ends the loop early without
    changing that schedule, so the first steps of a long run can be replayed exactly. One
    generator seeded with ``seed`` draws the epoch orders and the masks. Returns the history:
    ``{"loss": [...], "acc": [...]}``, the masked-LM loss and masked-token accuracy of each batch.
    """
    n = _check_enc(enc)
    if steps < 1 or batch_size < 1 or batch_size > n:
        raise ValueError(f"need steps >= 1 and 1 <= batch_size <= {n} sequences, got steps={steps}, "
                         f"batch_size={batch_size}")
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup must be in [0, steps) = [0, {steps}), got {warmup}")
    min_lr = lr / 10 if min_lr is None else min_lr
    vocab = config.vocab_size
    opt, rng = AdamW(lr, weight_decay=weight_decay), np.random.default_rng(seed)
    per_epoch = n // batch_size
    history = {"loss": [], "acc": []}
    for step in range(steps if stop_after is None else min(steps, stop_after)):
        if step % per_epoch == 0:
            order = rng.permutation(n)  # a new epoch: a new order, and new masks below
        b = trim_batch(enc, order[(step % per_epoch) * batch_size:(step % per_epoch + 1) * batch_size])  # (B, T')
        ids, labels = mask_tokens(b["input_ids"], b["attention_mask"], special_ids, mask_id, vocab, rng,
                                  mask_prob=mask_prob)  # (B, T'), (B, T')
        logits, loss, cache = bert_mlm_forward(params, config, ids, labels, attention_mask=b["attention_mask"],
                                               kernels=kernels)  # (B, T', V)
        grads = bert_mlm_backward(cache)
        clip_grad_norm(grads, 1.0)
        opt.lr = warmup_cosine(step, lr, warmup, steps, min_lr=min_lr)
        opt.step(params, grads)
        chosen = labels != -100  # (B, T')
        history["loss"].append(float(loss))
        history["acc"].append(float(np.mean(logits.argmax(-1)[chosen] == labels[chosen])))
    return history


def mlm_evaluate(params: dict[str, np.ndarray], config: BertConfig, enc: dict[str, np.ndarray], special_ids,
                 mask_id: int, seed: int = 0, batch_size: int = 100, mask_prob: float = 0.15,
                 kernels: str = "numba") -> tuple[float, float]:
    """Masked-LM loss (nats per chosen token) and masked-token accuracy on a whole set, with masks
    drawn from a generator seeded with ``seed`` (the same seed gives the same masks)."""
    n = _check_enc(enc)
    rng = np.random.default_rng(seed)
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, n, batch_size):
        b = trim_batch(enc, np.arange(start, min(start + batch_size, n)))
        ids, labels = mask_tokens(b["input_ids"], b["attention_mask"], special_ids, mask_id, config.vocab_size, rng,
                                  mask_prob=mask_prob)
        logits, loss, _ = bert_mlm_forward(params, config, ids, labels, attention_mask=b["attention_mask"],
                                           kernels=kernels)  # (B, T', V)
        chosen = labels != -100
        total_loss += float(loss) * int(chosen.sum())
        correct += int((logits.argmax(-1)[chosen] == labels[chosen]).sum())
        count += int(chosen.sum())
    return total_loss / count, correct / count


def storyworld_data(n_train: int = 3000, n_val: int = 200, vocab_size: int = 300, max_length: int = 96):
    """Chapter 9's StoryWorld splits and WordPiece vocabulary: ``(train_stories, val_stories, tokenizer)``,
    the training stories drawn with seed 0 and the validation stories with seed 1."""
    from llm_from_scratch.data import StoryWorld
    from llm_from_scratch.tokenizers import train_wordpiece

    world = StoryWorld()
    train = world.stories("train", n_train, seed=0)
    val = world.stories("val", n_val, seed=1)
    return train, val, train_wordpiece([s.text for s in train], vocab_size=vocab_size)


def pretrain_storyworld_bert(out, steps: int = 1200, n_train: int = 3000, vocab_size: int = 300,
                             hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, max_length: int = 96,
                             batch_size: int = 32, lr: float = 2e-3, warmup: int = 20, seed: int = 0,
                             kernels: str = "numba", stop_after: int | None = None, record_steps: int = 5) -> dict:
    """Pretrain chapter 9's tiny BERT on StoryWorld and write it to the folder ``out``.

    Returns the record written to ``out/training.json``: the command and its arguments,
    ``first_losses`` (the loss of each of the first ``record_steps`` steps, as Python floats, so a
    replay can be compared exactly), the seconds spent training, the validation loss and accuracy,
    the ``history`` of every step's loss and accuracy, and the machine.
    With ``stop_after`` the loop stops early, nothing is written and the record is only returned.
    """
    if steps < 1 or record_steps < 0:
        raise ValueError(f"need steps >= 1 and record_steps >= 0, got steps={steps}, record_steps={record_steps}")
    args = dict(steps=steps, n_train=n_train, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                num_heads=num_heads, max_length=max_length, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
                kernels=kernels)
    train, val, tok = storyworld_data(n_train, 200, vocab_size, max_length)
    special = sorted(tok.vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]"))
    mask_id = tok.vocab["[MASK]"]
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
                        max_position_embeddings=max_length, num_labels=4, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, pad_token_id=tok.vocab["[PAD]"])
    train_enc = encode_batch(tok, [s.text for s in train], max_length)  # dict of (N, T) arrays
    params = init_params(config, heads=("mlm",), seed=seed)
    start = time.perf_counter()
    history = pretrain_mlm(params, config, train_enc, special, mask_id, steps, batch_size, lr, warmup, seed=seed,
                           kernels=kernels, stop_after=stop_after)
    seconds = time.perf_counter() - start
    record = {"command": "llm-scratch pretrain-bert --out DIR " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in args.items()),
              "arguments": args, "first_losses": history["loss"][:record_steps], "seconds": round(seconds, 1)}
    if stop_after is not None:
        return record
    val_loss, val_acc = mlm_evaluate(params, config, encode_batch(tok, [s.text for s in val], max_length), special,
                                     mask_id, kernels=kernels)
    record.update(val_loss=val_loss, val_acc=val_acc, history=history,
                  machine={"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "python": sys.version.split()[0], "numpy": np.__version__})
    out = Path(out)
    save_pretrained(params, config, out)
    save_wordpiece(tok, out)
    write_json(out / TRAINING_FILE, record)
    return record
