"""BART checkpoints in Hugging Face's format: ``config.json`` + ``model.safetensors``.

``from_pretrained`` copies a ``BartForConditionalGeneration`` file's tensors into our parameter
dict (the tied copies of ``model.shared.weight`` checked and dropped); ``save_pretrained`` writes
folders that ``transformers`` loads.

Reference: Hugging Face ``transformers``, ``modeling_utils.py`` (``save_pretrained``,
``from_pretrained``, tied weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llm_from_scratch.models import common
from llm_from_scratch.models.bart.config import BartConfig
from llm_from_scratch.models.bart.model import check_params, param_shapes
from llm_from_scratch.models.common import cast_params, check_checkpoint, load_tensors, read_checkpoint_config

__all__ = ["save_pretrained", "from_pretrained"]


_TIED = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")
_SKIPPED = ("model.encoder.version", "model.decoder.version")  # fairseq buffers some old files hold


def save_pretrained(params: dict[str, np.ndarray], config: BartConfig, directory) -> None:
    """Write ``config.json`` and ``model.safetensors`` into ``directory`` as
    ``BartForConditionalGeneration.save_pretrained`` does (without the tied copies of
    ``model.shared.weight``, which Hugging Face rebuilds), so that
    ``BartForConditionalGeneration.from_pretrained(directory)`` loads the model. Both files go
    through a temporary file and a rename."""
    dtype = check_params(params, config)
    common.write_checkpoint(directory, {name: params[name] for name in param_shapes(config)},
                            {**config.to_dict(), "dtype": str(dtype)})


def from_pretrained(directory, dtype=None, config: BartConfig | None = None
                    ) -> tuple[dict[str, np.ndarray], BartConfig]:
    """Load a Hugging Face BART checkpoint directory (``config.json`` + ``model.safetensors``)
    into ``(params, config)``.

    The tied copies (``model.encoder.embed_tokens.weight``, ``model.decoder.embed_tokens.weight``,
    ``lm_head.weight``), when a file holds them, must equal ``model.shared.weight`` and are
    dropped; fairseq's ``version`` buffers are skipped; a file without ``final_logits_bias``
    gets zeros (Hugging Face does the same). ``dtype`` None keeps float32/float64 as stored
    (float16/bfloat16 become float32); otherwise every tensor is cast. ``config``, if given, must
    equal the checkpoint's. Raises naming missing tensors, unexpected ones, and wrong shapes.
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory, BartConfig, config)
    tensors, tied = {}, {}
    for name, value in load_tensors(directory).items():
        if name in _SKIPPED:
            continue
        (tied if name in _TIED else tensors)[name] = value
    if "final_logits_bias" not in tensors and "model.shared.weight" in tensors:
        tensors["final_logits_bias"] = np.zeros((1, config.vocab_size), dtype=tensors["model.shared.weight"].dtype)
    if "model.shared.weight" not in tensors and tied:  # files that kept only a copy
        tensors["model.shared.weight"] = tied[next(iter(tied))]
    shapes = param_shapes(config)
    check_checkpoint(directory, tensors, shapes, "a BART with this config.json",
                     f"encoder_layers = {config.encoder_layers} / decoder_layers = {config.decoder_layers}")
    shared = tensors["model.shared.weight"]
    for name, value in tied.items():
        if value.shape != shared.shape or not np.array_equal(value, shared):
            raise ValueError(f"{directory}: {name} differs from model.shared.weight; this model ties the encoder's "
                             "and decoder's embeddings and the output head (untied weights are not implemented)")
    params = cast_params(tensors, shapes, dtype)
    check_params(params, config)
    return params, config
