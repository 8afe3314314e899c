"""BERT checkpoints in Hugging Face's format: ``config.json`` + ``model.safetensors``, and the
WordPiece vocabulary beside them (``vocab.txt`` + ``tokenizer_config.json``).

``from_pretrained`` copies a Hugging Face file's tensors into our parameter dict (names with or
without the ``bert.`` prefix, old ``gamma``/``beta`` LayerNorm names, the tied MLM decoder
checked and dropped); ``save_pretrained`` writes folders that ``transformers`` loads.
``load_wordpiece``/``save_wordpiece`` read and write the tokenizer of such a folder (the
JSON tokenizer files of ``llm-scratch train`` are ``tokenizers.load_tokenizer``'s).

Reference: Hugging Face ``transformers``, ``modeling_utils.py`` (``save_pretrained``,
``from_pretrained``) and ``models/bert/tokenization_bert.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llm_from_scratch import safetensors
from llm_from_scratch.models.bert.encoder import BertConfig, check_params, heads_of, param_shapes
from llm_from_scratch.models.common import (cast_params, check_checkpoint, load_tensors, read_checkpoint_config,
                                            write_json)
from llm_from_scratch.tokenizers.wordpiece import WordPieceTokenizer

__all__ = ["save_pretrained", "from_pretrained", "read_json", "load_wordpiece", "save_wordpiece"]

# tensors of a Hugging Face file that are not parameters of this model, and why they are skipped
_SKIPPED = {
    "bert.embeddings.position_ids": "a buffer (0, 1, ..., P-1)",
    "bert.embeddings.token_type_ids": "a buffer of zeros",
    "cls.seq_relationship.weight": "the next-sentence head of BertForPreTraining, not implemented",
    "cls.seq_relationship.bias": "the next-sentence head of BertForPreTraining, not implemented",
}
_BASE_PREFIXES = ("embeddings.", "encoder.", "pooler.")  # names of a BertModel file, without "bert."


def _architectures(heads: tuple[str, ...]) -> list[str]:
    names = {"mlm": "BertForMaskedLM", "classifier": "BertForSequenceClassification",
             "qa": "BertForQuestionAnswering"}
    return [names[h] for h in heads if h in names] or ["BertModel"]


def save_pretrained(params: dict[str, np.ndarray], config: BertConfig, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` as Hugging Face does, so
    that ``transformers`` loads the model with the class named in ``architectures``.

    Parameters without a task head are written as ``BertModel`` writes them, without the ``bert.``
    prefix; with a head, with it. The tied MLM decoder is not written (Hugging Face rebuilds it from
    the word embedding). Both files go through a temporary file and a rename.
    """
    dtype = check_params(params, config)
    heads = heads_of(params)
    if "qa" in heads and config.num_labels != 2:
        raise ValueError(f"Hugging Face's BertForQuestionAnswering sizes qa_outputs by num_labels, so a checkpoint "
                         f"with the QA head needs num_labels = 2 (start, end), got {config.num_labels}; save with "
                         "dataclasses.replace(config, num_labels=2)")
    task = any(h != "pooler" for h in heads)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {(name if task else name.removeprefix("bert.")): params[name] for name in param_shapes(config, heads)}
    safetensors.save(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    write_json(directory / "config.json", {**config.to_dict(_architectures(heads)), "dtype": str(dtype)})


def from_pretrained(directory, dtype=None, config: BertConfig | None = None
                    ) -> tuple[dict[str, np.ndarray], BertConfig]:
    """Load a Hugging Face BERT checkpoint directory (``config.json`` + ``model.safetensors``)
    into ``(params, config)``; the heads are whatever the file holds (see ``heads_of``).

    Names may carry the ``bert.`` prefix (``BertForMaskedLM`` and the other task models) or not
    (``BertModel``, such as all-MiniLM-L6-v2). Old names ``LayerNorm.gamma``/``beta`` are read as
    ``weight``/``bias``. Skipped: the ``position_ids``/``token_type_ids`` buffers and the
    next-sentence head. A ``cls.predictions.decoder.weight`` must equal the word embedding (the tie)
    and a ``cls.predictions.decoder.bias`` must equal ``cls.predictions.bias``. ``dtype`` None keeps
    float32/float64 as stored (float16/bfloat16 become float32); otherwise every tensor is cast.
    ``config``, if given, must equal the checkpoint's. Raises naming missing tensors, unexpected
    ones, and wrong shapes (with both shapes).
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory, BertConfig, config)
    tensors, decoder = {}, {}
    for name, value in load_tensors(directory).items():
        key = "bert." + name if name.startswith(_BASE_PREFIXES) else name
        if "LayerNorm." in key:
            key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if key in _SKIPPED:
            continue
        if key.startswith("cls.predictions.decoder."):
            decoder[key.rsplit(".", 1)[1]] = value
            continue
        if key in tensors:
            raise ValueError(f"{directory}: tensor {key!r} appears both with and without the 'bert.' prefix")
        tensors[key] = value
    if "bias" in decoder and "cls.predictions.bias" not in tensors:
        tensors["cls.predictions.bias"] = decoder.pop("bias")  # files where only the decoder holds the bias
    heads = heads_of(tensors)
    shapes = param_shapes(config, heads)
    check_checkpoint(directory, tensors, shapes, f"a BERT with this config.json and heads {heads}",
                     f"num_hidden_layers = {config.num_hidden_layers}")
    for part, tied_to in (("weight", "bert.embeddings.word_embeddings.weight"), ("bias", "cls.predictions.bias")):
        if part in decoder and (tied_to not in tensors or decoder[part].shape != tensors[tied_to].shape
                                or not np.array_equal(decoder[part], tensors[tied_to])):
            raise ValueError(f"{directory}: cls.predictions.decoder.{part} differs from {tied_to}; this model ties "
                             "the MLM decoder to the word embedding (an untied decoder is not implemented)")
    params = cast_params(tensors, shapes, dtype)
    check_params(params, config)
    return params, config


def read_json(path: Path, default=None):
    """The JSON in ``path``, or ``default`` when there is no such file; invalid JSON names the file."""
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def load_wordpiece(directory) -> WordPieceTokenizer:
    """The WordPiece tokenizer of a checkpoint folder: ``vocab.txt``, with the options of
    ``tokenizer_config.json`` when present (``do_lower_case``, ``strip_accents``,
    ``tokenize_chinese_chars`` and the special tokens); without it, BERT's uncased defaults."""
    directory = Path(directory)
    vocab = directory / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(f"{directory}: no vocab.txt (BERT's vocabulary, one token per line)")
    options = read_json(directory / "tokenizer_config.json", {})
    kwargs = {k: options[k] for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars") if k in options}
    for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        token = options.get(k)
        if isinstance(token, dict):  # newer files store {"content": "[UNK]", ...}
            token = token.get("content")
        if isinstance(token, str):
            kwargs[k] = token
    return WordPieceTokenizer.from_vocab_file(vocab, **kwargs)


def save_wordpiece(tokenizer: WordPieceTokenizer, directory) -> None:
    """Write ``vocab.txt`` and a ``tokenizer_config.json`` that Hugging Face's ``BertTokenizer``
    and ``load_wordpiece`` read."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_vocab(directory / "vocab.txt")
    write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": tokenizer.do_lower_case,
        "strip_accents": tokenizer.strip_accents, "tokenize_chinese_chars": tokenizer.tokenize_chinese_chars,
        "unk_token": tokenizer.unk_token, "sep_token": tokenizer.sep_token, "pad_token": tokenizer.pad_token,
        "cls_token": tokenizer.cls_token, "mask_token": tokenizer.mask_token})
