"""BART's configuration: ``BartConfig``, with Hugging Face's field names, read from and written
to ``config.json``.

Reference: Hugging Face ``transformers``, ``models/bart/configuration_bart.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_from_scratch.models.common import read_config, write_json
from llm_from_scratch.ops import GELU_APPROXIMATE

__all__ = ["BartConfig"]


# ----------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BartConfig:
    """The shape and hyperparameters of a BART model, with Hugging Face ``BartConfig``'s field
    names, so ``config.json`` files go both ways. The defaults are bart-large's (406M), dropout
    included (it only acts when a forward pass is given ``train=True``).

    >>> cfg = BartConfig(vocab_size=13, max_position_embeddings=10, d_model=8, encoder_layers=2,
    ...                  encoder_attention_heads=2, decoder_layers=1, decoder_attention_heads=4)
    >>> cfg.d_model // cfg.decoder_attention_heads
    2
    >>> BartConfig(d_model=10, encoder_attention_heads=2, decoder_attention_heads=4)
    Traceback (most recent call last):
    ...
    ValueError: BartConfig: d_model = 10 must be divisible by decoder_attention_heads = 4 (each head gets d_model // heads channels)
    """

    vocab_size: int = 50265  # V: token ids read by both stacks and predicted by the head
    max_position_embeddings: int = 1024  # P: the longest source and the longest target
    d_model: int = 1024  # C: the width of every token's vector, encoder and decoder alike
    encoder_layers: int = 12  # L_enc: encoder layers
    encoder_attention_heads: int = 16  # NH of the encoder's self-attention
    encoder_ffn_dim: int = 4096  # F of the encoder's feed-forward networks
    decoder_layers: int = 12  # L_dec: decoder layers
    decoder_attention_heads: int = 16  # NH of the decoder's self- and cross-attention
    decoder_ffn_dim: int = 4096  # F of the decoder's feed-forward networks
    activation_function: str = "gelu"  # the feed-forward GELU: "gelu" (exact erf) or a tanh form
    dropout: float = 0.1  # dropout on the embeddings and on every residual branch
    attention_dropout: float = 0.0  # dropout on attention weights
    activation_dropout: float = 0.0  # dropout after the feed-forward activation
    init_std: float = 0.02  # std of the normal initialisation of weights and embeddings
    encoder_layerdrop: float = 0.0  # layerdrop: not implemented, must be 0 to train
    decoder_layerdrop: float = 0.0  # layerdrop: not implemented, must be 0 to train
    scale_embedding: bool = False  # multiply the token embeddings by sqrt(d_model)
    pad_token_id: int = 1  # <pad>: its row of shared gets no gradient from the lookups
    bos_token_id: int = 0  # <s>
    eos_token_id: int = 2  # </s>: ends a generated sequence
    decoder_start_token_id: int = 2  # the first decoder input (BART starts with </s>)
    forced_eos_token_id: int | None = 2  # generation: forced as the last token at max_length

    def __post_init__(self):
        for name in ("vocab_size", "max_position_embeddings", "d_model", "encoder_layers", "encoder_attention_heads",
                     "encoder_ffn_dim", "decoder_layers", "decoder_attention_heads", "decoder_ffn_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"BartConfig: {name} must be a positive integer, got {value!r}")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            if self.d_model % getattr(self, name):
                raise ValueError(f"BartConfig: d_model = {self.d_model} must be divisible by {name} = "
                                 f"{getattr(self, name)} (each head gets d_model // heads channels)")
        if self.activation_function not in GELU_APPROXIMATE:
            raise ValueError(f"BartConfig: activation_function {self.activation_function!r} is not supported; "
                             f"expected one of {sorted(GELU_APPROXIMATE)}")
        for name in ("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "decoder_layerdrop"):
            p = getattr(self, name)
            if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
                raise ValueError(f"BartConfig: {name} is a probability in [0, 1), got {p!r}")
        if not (isinstance(self.init_std, (int, float)) and self.init_std >= 0):
            raise ValueError(f"BartConfig: init_std must be a non-negative number, got {self.init_std!r}")
        if not isinstance(self.scale_embedding, bool):
            raise ValueError(f"BartConfig: scale_embedding must be True or False, got {self.scale_embedding!r}")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "forced_eos_token_id"):
            value = getattr(self, name)
            if name == "forced_eos_token_id" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < self.vocab_size:
                raise ValueError(f"BartConfig: {name} must be a token id in [0, vocab_size = {self.vocab_size}), "
                                 f"got {value!r}")

    def to_dict(self) -> dict:
        """The fields as a Hugging Face ``config.json`` dict (``model_type`` "bart"), stating the
        options this model implements (tied embeddings, an encoder-decoder).

        >>> d = BartConfig().to_dict()
        >>> d["model_type"], d["architectures"], d["is_encoder_decoder"], d["d_model"]
        ('bart', ['BartForConditionalGeneration'], True, 1024)
        """
        d = dataclasses.asdict(self)
        d.update({"model_type": "bart", "architectures": ["BartForConditionalGeneration"],
                  "is_encoder_decoder": True, "tie_word_embeddings": True})
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict) -> "BartConfig":
        """Read a Hugging Face BART ``config.json`` dict, refusing options this model does not
        implement. Keys that do not change the computation (``use_cache``, ``id2label``,
        ``classifier_dropout``, task parameters...) are ignored.

        >>> BartConfig.from_dict({"model_type": "bart", "d_model": 8, "encoder_attention_heads": 2,
        ...                       "decoder_attention_heads": 2, "use_cache": True}).d_model
        8
        >>> BartConfig.from_dict({"model_type": "t5"})
        Traceback (most recent call last):
        ...
        ValueError: config has model_type 't5', expected 'bart' (a BART checkpoint)
        """
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        if d.get("model_type", "bart") != "bart":
            raise ValueError(f"config has model_type {d['model_type']!r}, expected 'bart' (a BART checkpoint)")
        if d.get("tie_word_embeddings", True) is not True:
            raise ValueError("config sets tie_word_embeddings = False, which this BART does not implement; the "
                             "encoder, the decoder and the head share model.shared.weight")
        for key in ("eos_token_id", "forced_eos_token_id"):
            if isinstance(d.get(key), list):
                raise ValueError(f"config sets {key} = {d[key]!r}; this BART takes a single token id")
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def to_json(self, path) -> None:
        """Write ``to_dict()`` to ``path`` (a Hugging Face ``config.json``), atomically."""
        write_json(Path(path), self.to_dict())

    @classmethod
    def from_json(cls, path) -> "BartConfig":
        """Read a Hugging Face BART ``config.json`` (see ``from_dict``)."""
        return read_config(path, cls.from_dict)
