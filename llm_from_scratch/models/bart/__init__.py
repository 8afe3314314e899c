"""BART: an encoder-decoder transformer, every forward and backward line written out.

The package is split along its seams; everything is importable from here
(``from llm_from_scratch.models import bart``; ``bart.bart_forward(...)``):

- ``config``: ``BartConfig``, Hugging Face's field names, ``config.json`` both ways;
- ``model``: the parameters (Hugging Face names and layouts, one shared embedding), the encoder
  and decoder layers (``encoder_layer_forward``/``decoder_layer_forward`` and their backward
  passes, cross-attention included) and the whole model (``bart_forward``/``bart_backward``);
- ``decoding``: the encoder once, then the decoder one step at a time with a key/value cache and
  the cross-attention's keys and values computed once (``encode``, ``start_decoding``,
  ``decode_step``, ``reorder_state``); greedy and beam search are ``llm_from_scratch.seq2seq``;
- ``checkpoint``: Hugging Face folders (``from_pretrained``/``save_pretrained``).

Each module's docstring gives its equations, what it leaves out, and its references.
"""

from llm_from_scratch.models.bart.checkpoint import from_pretrained, save_pretrained
from llm_from_scratch.models.bart.config import BartConfig
from llm_from_scratch.models.bart.decoding import DecoderState, decode_step, encode, reorder_state, start_decoding
from llm_from_scratch.models.bart.model import (KERNELS, LAYER_NORM_EPS, POSITION_OFFSET, BartCache,
                                                DecoderLayerCache, EncoderLayerCache, bart_backward, bart_forward,
                                                check_params, decoder_layer_backward, decoder_layer_forward,
                                                decoder_logits, encoder_layer_backward, encoder_layer_forward,
                                                init_params, num_params, param_shapes, shift_tokens_right)

__all__ = ["BartConfig", "KERNELS", "POSITION_OFFSET", "LAYER_NORM_EPS", "param_shapes", "num_params",
           "init_params", "check_params", "shift_tokens_right", "EncoderLayerCache", "encoder_layer_forward",
           "encoder_layer_backward", "DecoderLayerCache", "decoder_layer_forward", "decoder_layer_backward",
           "BartCache", "bart_forward", "bart_backward", "decoder_logits", "encode", "DecoderState",
           "start_decoding", "decode_step", "reorder_state", "save_pretrained", "from_pretrained"]
