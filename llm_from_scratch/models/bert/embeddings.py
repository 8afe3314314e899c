"""Sentence embeddings from a BERT encoder, the way sentence-transformers computes them.

``encode_sentences`` turns sentences into vectors as sentence-transformers does for
all-MiniLM-L6-v2 (mean of the token vectors over real tokens, then L2 normalisation), and
``read_sentence_options`` reads those settings from a sentence-transformers folder; the
checkpoint itself is found by ``llm_from_scratch.checkpoints``.

References: N. Reimers, I. Gurevych, "Sentence-BERT", EMNLP 2019, section 3 (mean pooling);
sentence-transformers ``models/Pooling.py`` and ``models/Normalize.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llm_from_scratch.models.bert.checkpoint import read_json
from llm_from_scratch.models.bert.encoder import BertConfig, encoder_forward, init_params  # noqa: F401
from llm_from_scratch.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["POOLING", "read_sentence_options", "encode_sentences"]

POOLING = ("mean", "cls")  # the supported values of the ``pooling`` option


def read_sentence_options(directory) -> dict:
    """How a sentence-transformers folder turns token vectors into a sentence vector, as keyword
    arguments of ``encode_sentences``: ``pooling`` ("mean" or "cls", from ``1_Pooling/config.json``),
    ``normalize`` (whether ``modules.json`` lists a ``Normalize`` module) and ``max_length``
    (``max_seq_length`` of ``sentence_bert_config.json``). A plain Hugging Face folder gives mean
    pooling without normalisation, as sentence-transformers does for one; a module this code does
    not implement (a ``Dense`` projection, say) raises.
    """
    directory = Path(directory)
    options = {"pooling": "mean", "normalize": False}
    modules = read_json(directory / "modules.json")
    if modules is None:
        return options
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            settings = read_json(directory / module.get("path", "") / "sentence_bert_config.json", {})
            if isinstance(settings.get("max_seq_length"), int):
                options["max_length"] = settings["max_seq_length"]
        elif kind == "Pooling":
            pooling = read_json(directory / module.get("path", "") / "config.json", {})
            modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True]
            names = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
            if len(modes) != 1 or modes[0] not in names:
                raise ValueError(f"{directory}: the pooling module asks for {modes or 'no mode'}; supported is "
                                 f"exactly one of {sorted(names)}")
            options["pooling"] = names[modes[0]]
        elif kind == "Normalize":
            options["normalize"] = True
        else:
            raise ValueError(f"{directory}: modules.json lists a {module.get('type')!r} module, which this code "
                             "does not implement (supported: Transformer, Pooling, Normalize)")
    return options


def encode_sentences(params: dict[str, np.ndarray], config: BertConfig, tokenizer: WordPieceTokenizer,
                     sentences: Sequence[str], batch_size: int = 32, max_length: int | None = 256,
                     kernels: str = "numba", pooling: str = "mean", normalize: bool = True) -> np.ndarray:
    """Sentence embeddings (N, C) float32, the way sentence-transformers computes them for
    all-MiniLM-L6-v2 (whose settings are the defaults; ``read_sentence_options`` reads a folder's):

    - each sentence becomes ``[CLS] tokens [SEP]``, truncated to ``max_length`` tokens (None: the
      model's ``max_position_embeddings``; never more than that);
    - sentences are sorted by length and run in batches of ``batch_size``, each padded to its
      longest member (so little work goes to padding), with the padding masked;
    - ``pooling="mean"`` averages the last hidden states over the real tokens,
      ``sum_t mask_t h_t / sum_t mask_t``; ``"cls"`` takes the [CLS] vector;
    - ``normalize`` divides each vector by its L2 norm, so a dot product is a cosine similarity.

    Rows come back in the order of ``sentences``.

    >>> cfg = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=16)
    >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "dog", "bark", "##s", "!"])
    >>> emb = encode_sentences(init_params(cfg), cfg, tok, ["The dog barks!", "dog"], kernels="numpy")
    >>> emb.shape, emb.dtype, np.linalg.norm(emb, axis=1).round(4)
    ((2, 8), dtype('float32'), array([1., 1.], dtype=float32))
    """
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of strings; for one sentence pass [sentence]")
    sentences = list(sentences)
    bad = next((i for i, s in enumerate(sentences) if not isinstance(s, str)), None)
    if bad is not None:
        raise TypeError(f"sentences must all be strings, got {type(sentences[bad]).__name__} at index {bad}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    P = config.max_position_embeddings
    max_length = P if max_length is None else min(int(max_length), P)
    if max_length < 2:
        raise ValueError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model reads only "
                         f"{config.vocab_size}: they do not belong together")
    C = config.hidden_size
    out = np.zeros((len(sentences), C), dtype=np.float32)  # (N, C)
    ids = [tokenizer.encode(s, max_length=max_length).input_ids for s in sentences]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first
    pad = tokenizer.vocab[tokenizer.pad_token]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        T = max(len(ids[i]) for i in rows)
        input_ids = np.full((len(rows), T), pad, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
        for r, i in enumerate(rows):
            input_ids[r, :len(ids[i])] = ids[i]
            mask[r, :len(ids[i])] = 1
        hidden, _, _ = encoder_forward(params, config, input_ids, None, mask, kernels, pool=False,
                                       inference=True)  # (B, T, C)
        if pooling == "mean":
            m = mask[:, :, None].astype(hidden.dtype)  # (B, T, 1)
            vectors = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # (B, C)
        else:
            vectors = hidden[:, 0]  # (B, C)
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (B, C)
        out[rows] = vectors
    return out
