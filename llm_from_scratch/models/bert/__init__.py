"""BERT: a bidirectional transformer encoder, every forward and backward line written out.

The package is split along its seams; everything is importable from here
(``from llm_from_scratch.models import bert``; ``bert.bert_forward(...)``):

- ``encoder``: ``BertConfig``, the parameters (Hugging Face names and layouts), the encoder layer
  (``layer_forward``/``layer_backward``, and ``layer_inference`` without a cache) and the whole
  encoder (``bert_forward``/``bert_backward``);
- ``heads``: masked LM, sequence classification and extractive question answering;
- ``checkpoint``: Hugging Face folders (``from_pretrained``/``save_pretrained``) and their
  WordPiece vocabulary (``load_wordpiece``/``save_wordpiece``);
- ``embeddings``: sentence embeddings as sentence-transformers computes them.

Each module's docstring gives its equations, what it leaves out, and its references.
"""

from llm_from_scratch.models.bert.checkpoint import from_pretrained, load_wordpiece, save_pretrained, save_wordpiece
from llm_from_scratch.models.bert.embeddings import POOLING, encode_sentences, read_sentence_options
from llm_from_scratch.models.bert.encoder import (HEADS, KERNELS, BertConfig, EncoderCache, LayerCache, bert_backward,
                                                  bert_forward, check_params, encoder_backward, encoder_forward,
                                                  heads_of, init_params, layer_backward, layer_forward,
                                                  layer_inference, num_params, param_shapes)
from llm_from_scratch.models.bert.heads import (ClassifierCache, MLMCache, QACache, bert_classify_backward,
                                                bert_classify_forward, bert_mlm_backward, bert_mlm_forward,
                                                bert_qa_backward, bert_qa_forward)

__all__ = ["BertConfig", "KERNELS", "HEADS", "param_shapes", "heads_of", "num_params", "init_params",
           "check_params", "LayerCache", "layer_forward", "layer_backward", "layer_inference", "EncoderCache",
           "encoder_forward", "encoder_backward", "bert_forward", "bert_backward", "MLMCache", "ClassifierCache", "QACache",
           "bert_mlm_forward", "bert_mlm_backward", "bert_classify_forward", "bert_classify_backward",
           "bert_qa_forward", "bert_qa_backward", "save_pretrained", "from_pretrained", "load_wordpiece",
           "save_wordpiece", "POOLING", "read_sentence_options", "encode_sentences"]
