"""BERT's task heads, as Hugging Face's ``BertForMaskedLM``, ``BertForSequenceClassification``
and ``BertForQuestionAnswering``, on top of the encoder (``models.bert.encoder``):

    MLM:            logits = LN(gelu(W_t x + b_t)) word^T + b       (B, T, V); the decoder is the
                    loss = mean cross-entropy where labels != -100   word embedding (tied)
    classification: logits = W_c dropout(pooled) + b_c             (B, K) for K = num_labels classes
    QA:             start, end = W_qa x + b_qa                      (B, T) each: where the answer span
                    loss = (CE(start, start_pos) + CE(end, end_pos)) / 2          starts and ends

Every ``bert_*_forward`` returns a named cache and its ``bert_*_backward(cache)`` returns
``grads`` with the keys (and order) of ``params``; parameters a head does not use get zero
gradients. The word embedding feeds the lookup and the MLM decoder, so its two gradients add.
A loss whose labels are all ignored is 0.0 (PyTorch gives NaN); QA logits at padded positions
are not masked, as in Hugging Face.

Left out: the next-sentence-prediction head (its weights in a ``BertForPreTraining`` checkpoint
are skipped when loading), regression and multi-label classification.

References: J. Devlin et al., "BERT", NAACL 2019, sections 3.1 (masked LM), 4.1 (classification
on [CLS]) and 4.2 (SQuAD span start/end vectors); Hugging Face ``transformers``,
``models/bert/modeling_bert.py``.
"""

from __future__ import annotations

import math  # noqa: F401  (used by the doctests)
from typing import NamedTuple

import numpy as np

from llm_from_scratch.models.bert.encoder import (BertConfig, EncoderCache, all_grads, check_train,
                                                  classifier_dropout, dense_backward, dense_forward,
                                                  encoder_backward, encoder_forward, init_params)
from llm_from_scratch.models.common import maybe_dropout_backward, maybe_dropout_forward
from llm_from_scratch.ops import GELU_APPROXIMATE

__all__ = ["MLMCache", "ClassifierCache", "QACache", "bert_mlm_forward", "bert_mlm_backward",
           "bert_classify_forward", "bert_classify_backward", "bert_qa_forward", "bert_qa_backward"]


class MLMCache(NamedTuple):
    """What ``bert_mlm_backward`` needs from ``bert_mlm_forward``."""
    enc: EncoderCache
    t_dense: tuple  # W_t x + b_t
    t_gelu: tuple  # gelu
    t_ln: tuple  # LayerNorm
    decoder: tuple  # @ word^T + b
    ce: tuple | None  # the cross-entropy, None without labels


class ClassifierCache(NamedTuple):
    """What ``bert_classify_backward`` needs from ``bert_classify_forward``."""
    enc: EncoderCache
    drop: np.ndarray | None  # dropout on the pooled vector
    cls: tuple  # W_c z + b_c
    ce: tuple | None  # the cross-entropy, None without labels


class QACache(NamedTuple):
    """What ``bert_qa_backward`` needs from ``bert_qa_forward``."""
    enc: EncoderCache
    qa: tuple  # W_qa x + b_qa
    ce_start: tuple | None  # the start positions' cross-entropy, None without positions
    ce_end: tuple | None  # the end positions' cross-entropy


def _check_labels(labels, shape: tuple, what: str) -> None:
    if not isinstance(labels, np.ndarray) or not np.issubdtype(labels.dtype, np.integer) or labels.shape != shape:
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ValueError(f"{what} must be an integer numpy array of shape {shape}, got {got}")


def bert_mlm_forward(params: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                     labels: np.ndarray | None = None, token_type_ids: np.ndarray | None = None,
                     attention_mask: np.ndarray | None = None, kernels: str = "numpy", train: bool = False,
                     rng: np.random.Generator | None = None):
    """Masked language modelling, as ``BertForMaskedLM``: logits (B, T, V) for the token at every
    position; with ``labels`` (B, T; the original token where one was masked, -100 elsewhere) also
    the mean cross-entropy over the labelled positions only. Returns ``(logits, loss, cache)``.

    The head is ``LN(gelu(W_t x + b_t)) @ word^T + b``: its decoder is the word embedding.

    Example: at initialisation the logits are near 0, so the loss is near log V = log 13 = 2.565.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> params = init_params(cfg, heads=("mlm",), seed=0, dtype=np.float64)
    >>> ids = np.array([[2, 5, 4, 7, 3]])                  # [CLS] a [MASK] b [SEP]
    >>> labels = np.array([[-100, -100, 6, -100, -100]])   # only the masked position counts
    >>> logits, loss, cache = bert_mlm_forward(params, cfg, ids, labels)
    >>> logits.shape, round(float(loss), 1)
    ((1, 5, 13), 2.6)
    >>> grads = bert_mlm_backward(cache)
    >>> list(grads) == list(params)
    True
    """
    check_train(config, train, rng)
    if not isinstance(params, dict) or "cls.predictions.bias" not in params:
        raise KeyError("params has no MLM head (cls.predictions.*); build them with init_params(config, "
                       "heads=('mlm',)) or load a BertForMaskedLM checkpoint")
    x, _, enc = encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng,
                                 pool=False)
    if labels is not None:
        _check_labels(labels, input_ids.shape, "labels")
    K, p, c = enc.ops, params, "cls.predictions."
    # the head: transform = LN(gelu(W_t x + b_t)), then the tied decoder
    t, t_dense = dense_forward(K, x, p[c + "transform.dense.weight"], p[c + "transform.dense.bias"])  # (B, T, C)
    t, t_gelu = K.gelu_forward(t, approximate=GELU_APPROXIMATE[config.hidden_act])  # (B, T, C)
    t, t_ln = K.layernorm_forward(t, p[c + "transform.LayerNorm.weight"], p[c + "transform.LayerNorm.bias"],
                                  config.layer_norm_eps)  # (B, T, C)
    logits, decoder = dense_forward(K, t, p["bert.embeddings.word_embeddings.weight"], p[c + "bias"])  # (B, T, V)
    loss, ce = None, None
    if labels is not None:
        loss, ce = K.cross_entropy_forward(logits, labels)  # scalar, mean over labels != -100
    return logits, loss, MLMCache(enc, t_dense, t_gelu, t_ln, decoder, ce)


def bert_mlm_backward(cache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the MLM loss (scaled by ``dloss``), or of ``sum(logits * dlogits)`` when
    ``dlogits`` (B, T, V) is given, with respect to every parameter.

    Example: see ``bert_mlm_forward``.
    """
    enc, t_dense, t_gelu, t_ln, decoder, ce = cache
    K, c = enc.ops, "cls.predictions."
    grads = {}
    if dlogits is None:
        if ce is None:
            raise ValueError("bert_mlm_backward needs the cache of a forward pass given labels, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, ce)  # (B, T, V)
    # in the forward pass this was: logits = t @ word^T + b, so now
    dt, dword, grads[c + "bias"] = dense_backward(K, dlogits, decoder)  # (B, T, C), (V, C), (V,)
    # t = LN(gelu(W_t x + b_t))
    dt, grads[c + "transform.LayerNorm.weight"], grads[c + "transform.LayerNorm.bias"] = \
        K.layernorm_backward(dt, t_ln)  # (B, T, C)
    dt = K.gelu_backward(dt, t_gelu)  # (B, T, C)
    dx, grads[c + "transform.dense.weight"], grads[c + "transform.dense.bias"] = dense_backward(K, dt, t_dense)
    grads.update(encoder_backward(enc, dx, None))
    # the word embedding is used twice, by the lookup and by the decoder: the two gradients add
    grads["bert.embeddings.word_embeddings.weight"] += dword  # (V, C)
    return all_grads(grads, enc)


def bert_classify_forward(params: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                          labels: np.ndarray | None = None, token_type_ids: np.ndarray | None = None,
                          attention_mask: np.ndarray | None = None, kernels: str = "numpy", train: bool = False,
                          rng: np.random.Generator | None = None):
    """Sequence classification, as ``BertForSequenceClassification``: logits (B, K) from the pooled
    [CLS] vector; with ``labels`` (B,) in [0, K) (or -100 to skip a sequence) also the mean
    cross-entropy. Needs the "pooler" and "classifier" heads. Returns ``(logits, loss, cache)``.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10, num_labels=3)
    >>> params = init_params(cfg, heads=("pooler", "classifier"), seed=0, dtype=np.float64)
    >>> logits, loss, cache = bert_classify_forward(params, cfg, np.array([[2, 5, 3], [2, 6, 3]]), np.array([0, 2]))
    >>> logits.shape, round(float(loss), 1)  # about log 3 = 1.1
    ((2, 3), 1.1)
    """
    check_train(config, train, rng, classifier=True)
    if not isinstance(params, dict) or "classifier.weight" not in params:
        raise KeyError("params has no classifier head (classifier.*); build them with init_params(config, "
                       "heads=('pooler', 'classifier'))")
    _, pooled, enc = encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train,
                                      rng, pool=True)
    if labels is not None:
        _check_labels(labels, (input_ids.shape[0],), "labels")
    K = enc.ops
    z, drop = maybe_dropout_forward(K, pooled, classifier_dropout(config), rng, train)  # (B, C)
    logits, cls = dense_forward(K, z, params["classifier.weight"], params["classifier.bias"])  # (B, K)
    loss, ce = None, None
    if labels is not None:
        loss, ce = K.cross_entropy_forward(logits, labels)  # scalar
    return logits, loss, ClassifierCache(enc, drop, cls, ce)


def bert_classify_backward(cache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the classification loss (or of ``sum(logits * dlogits)``) for every parameter."""
    enc, drop, cls, ce = cache
    K = enc.ops
    grads = {}
    if dlogits is None:
        if ce is None:
            raise ValueError("bert_classify_backward needs the cache of a forward pass given labels, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, ce)  # (B, K)
    # in the forward pass this was: logits = W_c dropout(pooled) + b_c, so now
    dz, grads["classifier.weight"], grads["classifier.bias"] = dense_backward(K, dlogits, cls)  # (B, C)
    dpooled = maybe_dropout_backward(K, dz, drop)  # (B, C)
    grads.update(encoder_backward(enc, None, dpooled))
    return all_grads(grads, enc)


def bert_qa_forward(params: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                    start_positions: np.ndarray | None = None, end_positions: np.ndarray | None = None,
                    token_type_ids: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                    kernels: str = "numpy", train: bool = False, rng: np.random.Generator | None = None):
    """Extractive question answering, as ``BertForQuestionAnswering``: for every token a score for
    "the answer starts here" and one for "it ends here", ``start_logits`` and ``end_logits`` (B, T).
    With ``start_positions`` and ``end_positions`` (B,) the loss is the mean of the two
    cross-entropies over positions. As in Hugging Face, positions are clipped to [0, T] and a
    position of T (an answer cut off by truncation) is ignored. Returns
    ``(start_logits, end_logits, loss, cache)``.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> params = init_params(cfg, heads=("qa",), seed=0, dtype=np.float64)
    >>> start, end, loss, cache = bert_qa_forward(params, cfg, np.array([[2, 5, 3, 6, 7, 3]]),
    ...                                           np.array([3]), np.array([4]))
    >>> start.shape, abs(float(loss) - math.log(6)) < 0.1  # near-uniform over the 6 positions
    ((1, 6), True)
    """
    check_train(config, train, rng)
    if not isinstance(params, dict) or "qa_outputs.weight" not in params:
        raise KeyError("params has no QA head (qa_outputs.*); build them with init_params(config, heads=('qa',))")
    if (start_positions is None) != (end_positions is None):
        raise ValueError("give both start_positions and end_positions, or neither")
    x, _, enc = encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng,
                                 pool=False)
    B, T = input_ids.shape
    K = enc.ops
    logits, qa = dense_forward(K, x, params["qa_outputs.weight"], params["qa_outputs.bias"])  # (B, T, 2)
    start_logits = np.ascontiguousarray(logits[..., 0])  # (B, T)
    end_logits = np.ascontiguousarray(logits[..., 1])  # (B, T)
    loss, ce_start, ce_end = None, None, None
    if start_positions is not None:
        _check_labels(start_positions, (B,), "start_positions")
        _check_labels(end_positions, (B,), "end_positions")
        # clip to [0, T]; T means "outside the sequence" and is ignored
        starts = np.clip(start_positions, 0, T)  # (B,)
        ends = np.clip(end_positions, 0, T)  # (B,)
        starts, ends = np.where(starts == T, -100, starts), np.where(ends == T, -100, ends)  # (B,) each
        loss_start, ce_start = K.cross_entropy_forward(start_logits, starts)  # scalar, over T positions
        loss_end, ce_end = K.cross_entropy_forward(end_logits, ends)  # scalar
        loss = (loss_start + loss_end) / 2
    return start_logits, end_logits, loss, QACache(enc, qa, ce_start, ce_end)


def bert_qa_backward(cache, dloss: float = 1.0, dstart: np.ndarray | None = None,
                     dend: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the QA loss (or, when ``dstart`` and ``dend`` (B, T) are given, of
    ``sum(start_logits * dstart + end_logits * dend)``) for every parameter."""
    enc, qa, ce_start, ce_end = cache
    K = enc.ops
    grads = {}
    if dstart is None or dend is None:
        if dstart is not None or dend is not None:
            raise ValueError("give both dstart and dend, or neither (then the loss is differentiated)")
        if ce_start is None:
            raise ValueError("bert_qa_backward needs the cache of a forward pass given positions, or dstart and dend")
        # in the forward pass this was: loss = (loss_start + loss_end) / 2, so now
        dstart = K.cross_entropy_backward(dloss / 2, ce_start)  # (B, T)
        dend = K.cross_entropy_backward(dloss / 2, ce_end)  # (B, T)
    dlogits = np.stack([dstart, dend], axis=-1).astype(enc.dtype, copy=False)  # (B, T, 2)
    # logits = W_qa x + b_qa
    dx, grads["qa_outputs.weight"], grads["qa_outputs.bias"] = dense_backward(K, dlogits, qa)  # (B, T, C)
    grads.update(encoder_backward(enc, dx, None))
    return all_grads(grads, enc)
