"""BERT: a bidirectional transformer encoder, every forward and backward line written out.

The model reads token ids ``input_ids`` (B, T), segment ids ``token_type_ids`` (B, T) and an
``attention_mask`` (B, T) that is 1 for real tokens and 0 for padding, and gives a vector for
every token and one for the whole sequence:

    x = LN(word[ids] + type[token_type_ids] + pos[0:T])   embeddings, LayerNorm, dropout   (B, T, C)
    for each of the L layers:                              post-LayerNorm blocks
        x = LN(x + attn(x))                                every token sees every real token (B, T, C)
        x = LN(x + W_2 gelu(W_1 x + b_1) + b_2)            the feed-forward network, width F
    pooled = tanh(W_p x[:, 0] + b_p)                       the pooler, on the [CLS] token     (B, C)

and three task heads on top, as Hugging Face's ``BertForMaskedLM``, ``BertForSequenceClassification``
and ``BertForQuestionAnswering``:

    MLM:            logits = LN(gelu(W_t x + b_t)) word^T + b       (B, T, V); the decoder is the
                    loss = mean cross-entropy where labels != -100   word embedding (tied)
    classification: logits = W_c dropout(pooled) + b_c             (B, K) for K = num_labels classes
    QA:             start, end = W_qa x + b_qa                      (B, T) each: where the answer span
                    loss = (CE(start, start_pos) + CE(end, end_pos)) / 2          starts and ends

Unlike GPT (``llm_from_scratch.models.gpt``), attention is not causal, the LayerNorm comes
*after* each residual add (Devlin et al. kept the original Transformer's order), GELU is the
exact erf form, there is a third embedding table for the segment (sentence A or B), and padded
keys are masked out of every softmax.

Parameters are a flat ``dict[str, ndarray]`` with Hugging Face BERT's names *and layouts*:
``bert.encoder.layer.0.attention.self.query.weight`` is PyTorch ``nn.Linear``'s (C_out, C_in),
the transpose of what ``ops.linear_forward`` takes, so each dense layer here multiplies by a
transposed view (``x @ w.T``) and transposes its weight gradient back. A checkpoint loads by
copying arrays. Which heads a dict holds is read off its names (``heads_of``): "pooler",
"mlm", "classifier", "qa" (``HEADS``). Query, key and value stay three separate matrices in the
dict; each forward pass stacks them into one (3C, C) matrix, so that q, k and v come out of one
matmul (GPT-2's fused ``c_attn``), and the backward pass splits its gradient back into three.

Every ``*_forward`` returns a cache and its ``*_backward(cache)`` returns ``grads`` with the
keys (and order) of ``params``; parameters a head does not use get zero gradients. Gradients
accumulate with ``+=`` wherever a value feeds two places: the residual stream and the tied word
embedding. ``kernels="numba"`` swaps the numpy ops for their twins in ``llm_from_scratch.kernels.ops``
(LayerNorm, the exact GELU, cross-entropy, the embedding scatter-add, ...) and the attention for
the numba kernel with its padding mask; results agree with the numpy path to float rounding. ``train=True`` applies the
config's dropout (embeddings, attention probabilities, both residual branches, the classifier's
input), with masks drawn from ``rng``: the same seed gives the same masks. Dropout on attention
probabilities runs the numpy attention (the numba kernel never holds the probabilities).

``encode_sentences`` turns sentences into sentence embeddings the way sentence-transformers'
all-MiniLM-L6-v2 does (mean of the token vectors over real tokens, then L2 normalisation); the
checkpoint itself is found by ``llm_from_scratch.checkpoints``.

Deliberate differences from Hugging Face: a sequence whose attention mask is all zeros gets
all-zero attention outputs (Hugging Face averages over the padding); a loss whose labels are all
ignored is 0.0 (PyTorch gives NaN). As in Hugging Face, the padding row of the word embedding
(``pad_token_id``) receives no gradient from the lookup (PyTorch's ``padding_idx``), only from the
tied MLM decoder, and QA logits at padded positions are not masked.

Left out: the next-sentence-prediction head (its weights in a ``BertForPreTraining`` checkpoint are
skipped when loading), regression and multi-label classification, relative position embeddings,
decoder use (causal masks, cross-attention, key/value caches), ``head_mask``, mixed precision.

References:

- J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep Bidirectional
  Transformers for Language Understanding", NAACL 2019, sections 3, 3.1 (masked LM), 4.1
  (classification on [CLS]) and 4.2 (SQuAD span start/end vectors); google-research/bert
  ``modeling.py``.
- A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3 (post-LN residuals).
- D. Hendrycks, K. Gimpel, "Gaussian Error Linear Units (GELUs)", 2016.
- N. Reimers, I. Gurevych, "Sentence-BERT", EMNLP 2019, section 3 (mean pooling).
- Hugging Face ``transformers``, ``models/bert/modeling_bert.py`` and ``configuration_bert.py``;
  sentence-transformers ``models/Pooling.py`` and ``models/Normalize.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_from_scratch import ops, safetensors
from llm_from_scratch.attention import attention_backward, attention_forward, merge_heads, split_heads
from llm_from_scratch.models.common import check_arrays, check_checkpoint, load_tensors, read_config, write_json
from llm_from_scratch.tokenizers.wordpiece import WordPieceTokenizer

# Dimension letters, the same in every shape comment of this file:
#   B  batch size          T  sequence length         C  channels, hidden_size
#   V  vocabulary size     NH heads                   HS head size, C // NH
#   F  feed-forward width, intermediate_size          L  number of layers
#   P  max_position_embeddings                        S  type_vocab_size (segments)
#   K  num_labels, the classes of the classifier head

__all__ = ["BertConfig", "KERNELS", "HEADS", "param_shapes", "heads_of", "num_params", "init_params",
           "check_params", "bert_forward", "bert_backward", "bert_mlm_forward", "bert_mlm_backward",
           "bert_classify_forward", "bert_classify_backward", "bert_qa_forward", "bert_qa_backward",
           "save_pretrained", "from_pretrained", "load_tokenizer", "save_tokenizer",
           "read_sentence_options", "encode_sentences"]

KERNELS = ("numpy", "numba")  # the values of the ``kernels`` option
HEADS = ("pooler", "mlm", "classifier", "qa")  # the optional parts of a parameter dict, in state-dict order

# hidden_act values of Hugging Face configs -> the ``approximate`` argument of gelu_forward
_ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


# ----------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BertConfig:
    """The shape and hyperparameters of a BERT model, with Hugging Face ``BertConfig``'s field
    names, so ``config.json`` files go both ways. The defaults are BERT-base (110M), dropout
    included (it only acts when a forward pass is given ``train=True``).

    >>> BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2).head_size
    4
    >>> BertConfig(hidden_size=10, num_attention_heads=4)
    Traceback (most recent call last):
    ...
    ValueError: BertConfig: hidden_size = 10 must be divisible by num_attention_heads = 4 (each head gets hidden_size // num_attention_heads channels)
    """

    vocab_size: int = 30522  # V: how many token ids the model reads (and the MLM head predicts)
    hidden_size: int = 768  # C: the width of every token's vector
    num_hidden_layers: int = 12  # L: how many encoder layers are stacked
    num_attention_heads: int = 12  # NH: attention heads per layer; each gets HS = C // NH channels
    intermediate_size: int = 3072  # F: the width of the feed-forward network inside each layer
    hidden_act: str = "gelu"  # the feed-forward and MLM-head activation: "gelu" is the exact erf form
    hidden_dropout_prob: float = 0.1  # dropout on the embeddings and on both residual branches
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention probabilities
    max_position_embeddings: int = 512  # P: the longest sequence, the rows of the position table
    type_vocab_size: int = 2  # S: segment ids, 0 for sentence A and 1 for sentence B
    initializer_range: float = 0.02  # std of the normal initialisation of weights and embeddings
    layer_norm_eps: float = 1e-12  # added to the variance inside every LayerNorm
    pad_token_id: int | None = 0  # the [PAD] id; its word-embedding row gets no gradient from the lookup
    num_labels: int = 2  # K: classes of the classification head (Hugging Face stores id2label)
    classifier_dropout: float | None = None  # dropout before the classifier; None means hidden_dropout_prob

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"BertConfig: {name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"BertConfig: hidden_size = {self.hidden_size} must be divisible by "
                             f"num_attention_heads = {self.num_attention_heads} (each head gets "
                             f"hidden_size // num_attention_heads channels)")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not supported; expected one of "
                             f"{sorted(_ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            p = getattr(self, name)
            if name == "classifier_dropout" and p is None:
                continue
            if isinstance(p, bool) or not (isinstance(p, (int, float)) and 0.0 <= p < 1.0):
                raise ValueError(f"BertConfig: {name} is a dropout probability in [0, 1), got {p!r}")
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ValueError(f"BertConfig: layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}")
        if not (isinstance(self.initializer_range, (int, float)) and self.initializer_range >= 0):
            raise ValueError(f"BertConfig: initializer_range must be a non-negative number, got "
                             f"{self.initializer_range!r}")
        if self.pad_token_id is not None and not (isinstance(self.pad_token_id, (int, np.integer))
                                                  and 0 <= self.pad_token_id < self.vocab_size):
            raise ValueError(f"BertConfig: pad_token_id must be None or an id in [0, vocab_size = "
                             f"{self.vocab_size}), got {self.pad_token_id!r}")

    @property
    def head_size(self) -> int:
        """HS = hidden_size // num_attention_heads, the channels of one attention head."""
        return self.hidden_size // self.num_attention_heads

    def to_dict(self, architectures: Sequence[str] = ("BertModel",)) -> dict:
        """The fields as a Hugging Face ``config.json`` dict (``model_type`` "bert").

        ``num_labels`` is written the way Hugging Face writes it, as ``id2label``/``label2id``;
        the options this model implements are stated (absolute positions, an encoder).

        >>> d = BertConfig(num_labels=3).to_dict()
        >>> d["model_type"], d["id2label"], "num_labels" in d
        ('bert', {'0': 'LABEL_0', '1': 'LABEL_1', '2': 'LABEL_2'}, False)
        """
        d = dataclasses.asdict(self)
        K = d.pop("num_labels")
        d.update({"model_type": "bert", "architectures": list(architectures),
                  "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
                  "id2label": {str(i): f"LABEL_{i}" for i in range(K)},
                  "label2id": {f"LABEL_{i}": i for i in range(K)}})
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        """Read a Hugging Face BERT ``config.json`` dict, refusing options this model does not
        implement. Keys that do not change the computation (``use_cache``, ``gradient_checkpointing``,
        ``transformers_version``...) are ignored.

        >>> BertConfig.from_dict({"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2,
        ...                       "id2label": {"0": "neg", "1": "neu", "2": "pos"}}).num_labels
        3
        >>> BertConfig.from_dict({"model_type": "gpt2"})
        Traceback (most recent call last):
        ...
        ValueError: config has model_type 'gpt2', expected 'bert' (a BERT checkpoint)
        """
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"config has model_type {d['model_type']!r}, expected 'bert' (a BERT checkpoint)")
        unsupported = {
            "position_embedding_type": (d.get("position_embedding_type", "absolute") != "absolute", "'absolute'"),
            "is_decoder": (d.get("is_decoder", False) is not False, "False"),
            "add_cross_attention": (d.get("add_cross_attention", False) is not False, "False"),
            "problem_type": (d.get("problem_type") not in (None, "single_label_classification"),
                             "None or 'single_label_classification'"),
        }
        for key, (bad, expected) in unsupported.items():
            if bad:
                raise ValueError(f"config sets {key} = {d[key]!r}, which this BERT does not implement; "
                                 f"expected {expected}")
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        if isinstance(d.get("id2label"), dict) and d["id2label"]:
            kwargs["num_labels"] = len(d["id2label"])
        return cls(**kwargs)

    def to_json(self, path, architectures: Sequence[str] = ("BertModel",)) -> None:
        """Write ``to_dict()`` to ``path`` (a Hugging Face ``config.json``), atomically."""
        write_json(Path(path), self.to_dict(architectures))

    @classmethod
    def from_json(cls, path) -> "BertConfig":
        """Read a Hugging Face BERT ``config.json`` (see ``from_dict``)."""
        return read_config(path, cls.from_dict)


# ----------------------------------------------------------------------------------------
# parameters: names, shapes, counts, initialisation


def _head_shapes(config: BertConfig, head: str) -> dict[str, tuple[int, ...]]:
    C, V, K = config.hidden_size, config.vocab_size, config.num_labels
    if head == "pooler":
        return {"bert.pooler.dense.weight": (C, C), "bert.pooler.dense.bias": (C,)}
    if head == "mlm":  # the decoder weight is bert.embeddings.word_embeddings.weight (tied)
        return {"cls.predictions.bias": (V,),
                "cls.predictions.transform.dense.weight": (C, C), "cls.predictions.transform.dense.bias": (C,),
                "cls.predictions.transform.LayerNorm.weight": (C,),
                "cls.predictions.transform.LayerNorm.bias": (C,)}
    if head == "classifier":
        return {"classifier.weight": (K, C), "classifier.bias": (K,)}
    if head == "qa":
        return {"qa_outputs.weight": (2, C), "qa_outputs.bias": (2,)}
    raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def _check_heads(heads) -> tuple[str, ...]:
    if isinstance(heads, str):
        heads = (heads,)
    unknown = [h for h in heads if h not in HEADS]
    if unknown:
        raise ValueError(f"unknown heads {unknown}; expected a tuple drawn from {HEADS}")
    return tuple(h for h in HEADS if h in heads)


def param_shapes(config: BertConfig, heads: Sequence[str] = ("pooler",)) -> dict[str, tuple[int, ...]]:
    """Every parameter's Hugging Face name and (PyTorch) shape, in state-dict order: the encoder,
    then the chosen ``heads`` (a subset of ``HEADS``). The default, the encoder and the pooler, is
    Hugging Face's ``BertModel``; ``BertForMaskedLM`` is ``("mlm",)``,
    ``BertForSequenceClassification`` ``("pooler", "classifier")`` and ``BertForQuestionAnswering``
    ``("qa",)``.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> shapes = param_shapes(cfg)
    >>> len(shapes), shapes["bert.encoder.layer.0.intermediate.dense.weight"]  # nn.Linear: (F, C)
    (23, (12, 8))
    >>> list(param_shapes(cfg, heads=("qa",)))[-2:]
    ['qa_outputs.weight', 'qa_outputs.bias']
    """
    heads = _check_heads(heads)
    V, C, F = config.vocab_size, config.hidden_size, config.intermediate_size
    P, S = config.max_position_embeddings, config.type_vocab_size
    shapes = {"bert.embeddings.word_embeddings.weight": (V, C),
              "bert.embeddings.position_embeddings.weight": (P, C),
              "bert.embeddings.token_type_embeddings.weight": (S, C),
              "bert.embeddings.LayerNorm.weight": (C,), "bert.embeddings.LayerNorm.bias": (C,)}
    for i in range(config.num_hidden_layers):
        h = f"bert.encoder.layer.{i}."
        shapes.update({
            h + "attention.self.query.weight": (C, C), h + "attention.self.query.bias": (C,),
            h + "attention.self.key.weight": (C, C), h + "attention.self.key.bias": (C,),
            h + "attention.self.value.weight": (C, C), h + "attention.self.value.bias": (C,),
            h + "attention.output.dense.weight": (C, C), h + "attention.output.dense.bias": (C,),
            h + "attention.output.LayerNorm.weight": (C,), h + "attention.output.LayerNorm.bias": (C,),
            h + "intermediate.dense.weight": (F, C), h + "intermediate.dense.bias": (F,),
            h + "output.dense.weight": (C, F), h + "output.dense.bias": (C,),
            h + "output.LayerNorm.weight": (C,), h + "output.LayerNorm.bias": (C,),
        })
    for head in heads:
        shapes.update(_head_shapes(config, head))
    return shapes


def heads_of(params: dict) -> tuple[str, ...]:
    """Which optional parts a parameter dict holds, read off its names.

    >>> heads_of({"bert.pooler.dense.weight": None, "qa_outputs.bias": None})
    ('pooler', 'qa')
    """
    prefixes = {"pooler": "bert.pooler.", "mlm": "cls.predictions.", "classifier": "classifier.",
                "qa": "qa_outputs."}
    return tuple(h for h in HEADS if any(name.startswith(prefixes[h]) for name in params))


def num_params(config: BertConfig, heads: Sequence[str] = ("pooler",)) -> int:
    """How many numbers the model holds; the tied MLM decoder is counted once (it is the word
    embedding), its bias is counted.

    Per layer: 4 C^2 + 2 C F weights and 9 C + F biases and LayerNorm entries; the embeddings are
    (V + P + S) C + 2 C. BERT-base (``BertModel``, with the pooler):

    >>> num_params(BertConfig())
    109482240
    """
    return sum(math.prod(shape) for shape in param_shapes(config, heads).values())


def init_params(config: BertConfig, heads: Sequence[str] = ("pooler",), seed: int = 0,
                dtype=np.float32) -> dict[str, np.ndarray]:
    """Hugging Face BERT's initialisation: weights and embeddings N(0, initializer_range), the
    ``pad_token_id`` row of the word embedding 0, biases 0, LayerNorm weights 1.

    Draws happen in float64 in ``param_shapes`` order and are then cast, so float32 and float64
    parameters from the same seed agree to float32 rounding.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> p = init_params(cfg, heads=("mlm",))
    >>> p["bert.embeddings.word_embeddings.weight"][0], p["cls.predictions.bias"][:3]  # [PAD] = 0
    (array([0., 0., 0., 0., 0., 0., 0., 0.], dtype=float32), array([0., 0., 0.], dtype=float32))
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 (training) or float64 (gradient checks), got {dtype}")
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(config, heads).items():
        if "LayerNorm" in name:
            value = np.ones(shape) if name.endswith(".weight") else np.zeros(shape)  # (C,)
        elif name.endswith("bias"):
            value = np.zeros(shape)  # (OC,) or (V,)
        else:
            value = rng.standard_normal(shape) * config.initializer_range  # (OC, C), (V, C), (P, C), (S, C)
        if name == "bert.embeddings.word_embeddings.weight" and config.pad_token_id is not None:
            value[config.pad_token_id] = 0.0  # (C,) PyTorch's padding_idx row starts at zero
        params[name] = value.astype(dtype)
    return params


def check_params(params: dict[str, np.ndarray], config: BertConfig) -> np.dtype:
    """Raise a readable error unless ``params`` has exactly the names and shapes of
    ``param_shapes(config, heads_of(params))``, all float32 or all float64; return that dtype."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of name -> numpy array, got {type(params).__name__}")
    heads = heads_of(params)
    shapes = param_shapes(config, heads)
    missing = [name for name in shapes if name not in params]
    if missing:
        raise KeyError(f"params lacks {len(missing)} of the {len(shapes)} tensors of this config with heads "
                       f"{heads}, e.g. {missing[:3]}; build them with init_params(config, heads) or "
                       f"from_pretrained(...)")
    extra = [name for name in params if name not in shapes]
    if extra:
        hint = (" (the MLM decoder is tied to bert.embeddings.word_embeddings.weight and its bias is "
                "cls.predictions.bias: drop the cls.predictions.decoder entries)"
                if any(n.startswith("cls.predictions.decoder") for n in extra) else "")
        raise KeyError(f"params has tensors this config does not use: {extra[:3]}{hint}")
    return check_arrays(params, shapes)


# ----------------------------------------------------------------------------------------
# kernels, dropout, and the dense layer in PyTorch's layout


def _backend(kernels: str):
    """(ops module, attention (forward, backward) pair): numpy's, or the numba twins."""
    if kernels == "numpy":
        return ops, (attention_forward, attention_backward)
    if kernels == "numba":
        from llm_from_scratch.kernels import attention as numba_attention
        from llm_from_scratch.kernels import ops as numba_ops
        return numba_ops, (numba_attention.attention_forward, numba_attention.attention_backward)
    raise ValueError(f"kernels must be one of {KERNELS}, got {kernels!r}")


def _dropout_forward(K, x, p, rng, train):
    """``K.dropout_forward`` when it does something; ``(x, None)`` (no copy) when it does not."""
    if not train or p == 0:
        return x, None
    return K.dropout_forward(x, p, rng, train=True)


def _dropout_backward(K, dout, cache):
    return dout if cache is None else K.dropout_backward(dout, cache)


def _dense_forward(K, x, w, b):
    """PyTorch's ``nn.Linear``: ``out = x @ w.T + b`` with ``w`` stored (OC, C), as Hugging Face does.
    ``w.T`` is a view: nothing is copied, BLAS reads the matrix transposed. The rows are flattened
    first: numpy multiplies a (B, T, C) array by a matrix as B separate products, which was 1.2 to
    1.7x slower than one (B*T, C) product at (32, 24, 384) @ (384, 1536)."""
    C = x.shape[-1]
    out, cache = K.linear_forward(x.reshape(-1, C), w.T, b)  # (B*T, C) @ (C, OC) -> (B*T, OC)
    return out.reshape(x.shape[:-1] + (w.shape[0],)), cache  # (..., OC)


def _dense_backward(K, dout, cache):
    """Gradients of ``_dense_forward``: ``(dx, dw, db)`` with ``dw`` in the (OC, C) layout of ``w``."""
    x2 = cache[0]  # (B*T, C)
    dx, dw_t, db = K.linear_backward(dout.reshape(-1, dout.shape[-1]), cache)  # (B*T, C), (C, OC), (OC,)
    return dx.reshape(dout.shape[:-1] + (x2.shape[1],)), np.ascontiguousarray(dw_t.T), db  # dw: (OC, C)


def _self_attention_forward(K, attention, x, p, s, o, NH, key_mask):
    """BERT's self-attention with the query, key and value layers of prefix ``s`` and the output
    dense layer of prefix ``o``: the three (C, C) weights are stacked into one (3C, C) matrix so
    that q, k and v come out of one matmul.

        q, k, v = x W_q^T + b_q, x W_k^T + b_k, x W_v^T + b_v      each split into NH heads
        y = softmax(q k^T / sqrt(HS) + mask) v                      heads merged back
        out = y W_o^T + b_o
    """
    w_qkv = np.concatenate([p[s + "query.weight"], p[s + "key.weight"], p[s + "value.weight"]])  # (3C, C)
    b_qkv = np.concatenate([p[s + "query.bias"], p[s + "key.bias"], p[s + "value.bias"]])  # (3C,)
    qkv, qkv_cache = _dense_forward(K, x, w_qkv, b_qkv)  # (B, T, 3C)
    q, k, v = np.split(qkv, 3, axis=2)  # 3 x (B, T, C)
    q, k, v = (np.ascontiguousarray(split_heads(a, NH)) for a in (q, k, v))  # 3 x (B, NH, T, HS)
    y, att = attention[0](q, k, v, causal=False, key_mask=key_mask)  # (B, NH, T, HS)
    out, out_cache = _dense_forward(K, merge_heads(y), p[o + "weight"], p[o + "bias"])  # (B, T, C)
    return out, (qkv_cache, att, out_cache, NH, attention)


def _self_attention_backward(K, dout, cache):
    """Gradients of ``_self_attention_forward``: ``(dx, dw_qkv (3C, C), db_qkv (3C,), dw_o, db_o)``."""
    qkv_cache, att, out_cache, NH, attention = cache
    # in the forward pass this was: out = y W_o^T + b_o, so now
    dy, dw_o, db_o = _dense_backward(K, dout, out_cache)  # (B, T, C)
    # y = merge_heads(attention(q, k, v))
    dq, dk, dv = attention[1](np.ascontiguousarray(split_heads(dy, NH)), att)  # 3 x (B, NH, T, HS)
    # q, k, v = split(qkv): the gradients concatenate back along the channels
    dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=2)  # (B, T, 3C)
    # qkv = x W_qkv^T + b_qkv
    dx, dw_qkv, db_qkv = _dense_backward(K, dqkv, qkv_cache)  # (B, T, C), (3C, C), (3C,)
    return dx, dw_qkv, db_qkv, dw_o, db_o


def _attention_with_dropout(p: float, rng: np.random.Generator):
    """An ``(attention_forward, attention_backward)`` pair: the numpy reference
    of ``llm_from_scratch.attention`` with dropout on the probabilities, as BERT trains.

        P = softmax(q k^T / sqrt(HS) + mask);   out = dropout(P) @ v
    """

    def attention_forward(q, k, v, causal=False, key_mask=None):
        B, NH, T, HS = q.shape
        scale = 1.0 / math.sqrt(HS)
        att = (q @ k.transpose(0, 1, 3, 2)) * q.dtype.type(scale)  # (B, NH, T, T)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        probs, _ = ops.softmax_forward(att, mask)  # (B, NH, T, T)
        dropped, drop = ops.dropout_forward(probs, p, rng)  # (B, NH, T, T)
        out = dropped @ v  # (B, NH, T, T) @ (B, NH, T, HS) -> (B, NH, T, HS)
        return out, (q, k, v, probs, dropped, drop, scale)

    def attention_backward(dout, cache):
        q, k, v, probs, dropped, drop, scale = cache
        # in the forward pass this was: out = dropout(P) @ v, so now
        ddropped = dout @ v.transpose(0, 1, 3, 2)  # (B, NH, T, T)
        dv = dropped.transpose(0, 1, 3, 2) @ dout  # (B, NH, T, HS)
        dprobs = ops.dropout_backward(ddropped, drop)  # (B, NH, T, T)
        datt = ops.softmax_backward(dprobs, probs)  # (B, NH, T, T), masked entries get 0
        datt *= datt.dtype.type(scale)  # att = q k^T * scale
        dq = datt @ k  # (B, NH, T, HS)
        dk = datt.transpose(0, 1, 3, 2) @ q  # (B, NH, T, HS)
        return dq, dk, dv

    return attention_forward, attention_backward


# ----------------------------------------------------------------------------------------
# the encoder: embeddings, L post-LN layers, the pooler


def _check_inputs(config: BertConfig, input_ids, token_type_ids, attention_mask):
    """Validate the three (B, T) inputs; return ``(token_type_ids, key_mask)`` with defaults filled
    in and ``key_mask`` None when nothing is padded."""
    if not isinstance(input_ids, np.ndarray) or not np.issubdtype(input_ids.dtype, np.integer) or input_ids.ndim != 2:
        got = f"{input_ids.dtype} {input_ids.shape}" if isinstance(input_ids, np.ndarray) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a (B, T) integer numpy array of token ids, got {got}; "
                         f"a single sequence is input_ids[None, :]")
    B, T = input_ids.shape
    P = config.max_position_embeddings
    if not 1 <= T <= P:
        raise ValueError(f"sequence length T = {T} must be in [1, max_position_embeddings = {P}], the number of "
                         f"learned positions; truncate the inputs (tokenizer.encode(..., max_length={P}))")
    if token_type_ids is None:
        token_type_ids = np.zeros((B, T), dtype=np.int64)  # (B, T) every token in segment 0
    elif not isinstance(token_type_ids, np.ndarray) or token_type_ids.shape != (B, T):
        got = token_type_ids.shape if isinstance(token_type_ids, np.ndarray) else type(token_type_ids).__name__
        raise ValueError(f"token_type_ids must have the shape of input_ids {(B, T)}, got {got}")
    key_mask = None
    if attention_mask is not None:
        if not isinstance(attention_mask, np.ndarray) or attention_mask.shape != (B, T):
            got = attention_mask.shape if isinstance(attention_mask, np.ndarray) else type(attention_mask).__name__
            raise ValueError(f"attention_mask must have the shape of input_ids {(B, T)} (1 for real tokens, 0 for "
                             f"padding), got {got}")
        if attention_mask.dtype != np.bool_ and not np.all((attention_mask == 0) | (attention_mask == 1)):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token), got values "
                             f"{sorted(set(np.unique(attention_mask).tolist()))[:5]}")
        key_mask = np.ascontiguousarray(attention_mask, dtype=np.bool_)  # (B, T)
        if key_mask.all():
            key_mask = None  # nothing to hide: skip the masking work
    return token_type_ids, key_mask


def _check_train(config: BertConfig, train: bool, rng, classifier: bool = False) -> None:
    rates = [config.hidden_dropout_prob, config.attention_probs_dropout_prob]
    if classifier:
        rates.append(_classifier_dropout(config))
    if train and any(rates) and not isinstance(rng, np.random.Generator):
        raise ValueError("train=True with dropout needs rng=np.random.default_rng(seed) to draw the masks "
                         "(or set the config's dropout probabilities to 0)")


def _classifier_dropout(config: BertConfig) -> float:
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


def _encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng, pool):
    """Hidden states (B, T, C), the pooled [CLS] vector (B, C) or None, and the cache of both."""
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
    K, attention = _backend(kernels)
    dtype = check_params(params, config)
    token_type_ids, key_mask = _check_inputs(config, input_ids, token_type_ids, attention_mask)
    if pool and "bert.pooler.dense.weight" not in params:
        raise KeyError("params has no pooler (bert.pooler.dense.*); build them with init_params(config, "
                       "heads=('pooler', ...)) or load a checkpoint that has one")
    T = input_ids.shape[1]
    NH, eps = config.num_attention_heads, config.layer_norm_eps
    p_hidden, p_attn = config.hidden_dropout_prob, config.attention_probs_dropout_prob
    approximate = _ACTIVATIONS[config.hidden_act]
    if train and p_attn > 0:
        attention = _attention_with_dropout(p_attn, rng)  # the numpy attention, with dropout on P
    p = params

    # embeddings: word + segment + position, then LayerNorm and dropout
    e = "bert.embeddings."
    word, word_cache = K.embedding_forward(input_ids, p[e + "word_embeddings.weight"])  # (B, T) -> (B, T, C)
    seg, seg_cache = K.embedding_forward(token_type_ids, p[e + "token_type_embeddings.weight"])  # (B, T, C)
    x = word + seg + p[e + "position_embeddings.weight"][:T]  # (B, T, C) + (B, T, C) + (T, C) -> (B, T, C)
    x, ln_e = K.layernorm_forward(x, p[e + "LayerNorm.weight"], p[e + "LayerNorm.bias"], eps)  # (B, T, C)
    x, drop_e = _dropout_forward(K, x, p_hidden, rng, train)  # (B, T, C)

    layers = []
    for i in range(config.num_hidden_layers):
        h = f"bert.encoder.layer.{i}."
        # attention sub-block: x = LN(x + dropout(attn(x)))
        a, attn = _self_attention_forward(K, attention, x, p, h + "attention.self.", h + "attention.output.dense.",
                                          NH, key_mask)  # (B, T, C)
        a, drop_a = _dropout_forward(K, a, p_hidden, rng, train)  # (B, T, C)
        x, ln_a = K.layernorm_forward(x + a, p[h + "attention.output.LayerNorm.weight"],
                                      p[h + "attention.output.LayerNorm.bias"], eps)  # (B, T, C)
        # feed-forward sub-block: x = LN(x + dropout(W_2 gelu(W_1 x + b_1) + b_2))
        u, fc1 = _dense_forward(K, x, p[h + "intermediate.dense.weight"], p[h + "intermediate.dense.bias"])  # (B, T, F)
        g, gelu = K.gelu_forward(u, approximate=approximate)  # (B, T, F)
        m, fc2 = _dense_forward(K, g, p[h + "output.dense.weight"], p[h + "output.dense.bias"])  # (B, T, C)
        m, drop_m = _dropout_forward(K, m, p_hidden, rng, train)  # (B, T, C)
        x, ln_m = K.layernorm_forward(x + m, p[h + "output.LayerNorm.weight"], p[h + "output.LayerNorm.bias"],
                                      eps)  # (B, T, C)
        layers.append((attn, drop_a, ln_a, fc1, gelu, fc2, drop_m, ln_m))

    pooled, pool_cache = None, None
    if pool:
        # pooler: tanh(W_p x[:, 0] + b_p), the [CLS] token's vector
        z, pool_dense = _dense_forward(K, x[:, 0], p["bert.pooler.dense.weight"], p["bert.pooler.dense.bias"])  # (B, C)
        pooled, pool_tanh = K.tanh_forward(z)  # (B, C)
        pool_cache = (pool_dense, pool_tanh)
    cache = (config, kernels, dtype, list(param_shapes(config, heads_of(params))), input_ids.shape,
             word_cache, seg_cache, ln_e, drop_e, layers, pool_cache)
    return x, pooled, cache


def _encoder_backward(cache, dx, dpooled):
    """Gradients of the encoder (and pooler) parameters from ``dx`` (B, T, C) and ``dpooled`` (B, C)."""
    config, kernels, dtype, names, (B, T), word_cache, seg_cache, ln_e, drop_e, layers, pool_cache = cache
    K, _ = _backend(kernels)
    grads = {}
    dx = np.zeros((B, T, config.hidden_size), dtype=dtype) if dx is None else dx.astype(dtype, copy=True)  # (B, T, C)
    if dpooled is not None:
        if pool_cache is None:
            raise ValueError("dpooled given, but the forward pass computed no pooled output (params without a pooler)")
        pool_dense, pool_tanh = pool_cache
        # in the forward pass this was: pooled = tanh(z), z = W_p x[:, 0] + b_p, so now
        dz = K.tanh_backward(dpooled, pool_tanh)  # (B, C)
        dcls, grads["bert.pooler.dense.weight"], grads["bert.pooler.dense.bias"] = _dense_backward(K, dz, pool_dense)
        dx[:, 0] += dcls  # (B, C): only the [CLS] position fed the pooler

    for i in reversed(range(config.num_hidden_layers)):
        h = f"bert.encoder.layer.{i}."
        attn, drop_a, ln_a, fc1, gelu, fc2, drop_m, ln_m = layers[i]
        # x = LN(x_a + m): the gradient of the sum reaches x_a (the residual) and m whole
        ds, grads[h + "output.LayerNorm.weight"], grads[h + "output.LayerNorm.bias"] = \
            K.layernorm_backward(dx, ln_m)  # (B, T, C)
        dm = _dropout_backward(K, ds, drop_m)  # (B, T, C)
        # m = W_2 g + b_2
        dg, grads[h + "output.dense.weight"], grads[h + "output.dense.bias"] = _dense_backward(K, dm, fc2)  # (B, T, F)
        # g = gelu(u)
        du = K.gelu_backward(dg, gelu)  # (B, T, F)
        # u = W_1 x_a + b_1: x_a fed the residual and the FFN, so their gradients add
        dx_a, grads[h + "intermediate.dense.weight"], grads[h + "intermediate.dense.bias"] = \
            _dense_backward(K, du, fc1)  # (B, T, C)
        dx_a += ds  # (B, T, C)
        # x_a = LN(x + a)
        ds, grads[h + "attention.output.LayerNorm.weight"], grads[h + "attention.output.LayerNorm.bias"] = \
            K.layernorm_backward(dx_a, ln_a)  # (B, T, C)
        da = _dropout_backward(K, ds, drop_a)  # (B, T, C)
        # a = attn(x): the stacked (3C, C) weight's gradient splits back into query, key, value
        o = h + "attention.output.dense."
        dx_attn, dw_qkv, db_qkv, grads[o + "weight"], grads[o + "bias"] = \
            _self_attention_backward(K, da, attn)  # (B, T, C), (3C, C), (3C,)
        for j, part in enumerate(("query", "key", "value")):
            rows = slice(j * config.hidden_size, (j + 1) * config.hidden_size)
            grads[h + f"attention.self.{part}.weight"] = dw_qkv[rows]  # (C, C)
            grads[h + f"attention.self.{part}.bias"] = db_qkv[rows]  # (C,)
        dx = dx_attn + ds  # (B, T, C): the residual and the attention both read x

    # x = dropout(LN(word[ids] + type[tt] + pos[:T]))
    e = "bert.embeddings."
    dx = _dropout_backward(K, dx, drop_e)  # (B, T, C)
    dsum, grads[e + "LayerNorm.weight"], grads[e + "LayerNorm.bias"] = K.layernorm_backward(dx, ln_e)  # (B, T, C)
    dpos = np.zeros((config.max_position_embeddings, config.hidden_size), dtype=dtype)  # (P, C)
    dpos[:T] = dsum.sum(axis=0)  # (B, T, C) -> (T, C): every sequence used the same positions
    grads[e + "position_embeddings.weight"] = dpos
    grads[e + "token_type_embeddings.weight"] = K.embedding_backward(dsum, seg_cache)  # (S, C)
    dword = K.embedding_backward(dsum, word_cache)  # (V, C)
    if config.pad_token_id is not None:
        dword[config.pad_token_id] = 0  # (C,) PyTorch's padding_idx: the [PAD] row is not trained by the lookup
    grads[e + "word_embeddings.weight"] = dword
    return grads


def _all_grads(grads: dict, names: list[str], config: BertConfig, dtype) -> dict[str, np.ndarray]:
    """``grads`` in the order of ``names``, with zeros for the parameters no path reached."""
    shapes = param_shapes(config, HEADS)
    return {name: grads[name] if name in grads else np.zeros(shapes[name], dtype=dtype) for name in names}


def bert_forward(params: dict[str, np.ndarray], config: BertConfig, input_ids: np.ndarray,
                 token_type_ids: np.ndarray | None = None, attention_mask: np.ndarray | None = None,
                 kernels: str = "numpy", train: bool = False, rng: np.random.Generator | None = None):
    """The encoder, as Hugging Face's ``BertModel``: hidden states (B, T, C) of ``input_ids``
    (B, T), and the pooled [CLS] vector (B, C) when ``params`` has the pooler (else None).

    ``token_type_ids`` (B, T) default to 0; ``attention_mask`` (B, T) is 1 for real tokens and 0
    for padding (default: all real). Returns ``(hidden, pooled, cache)``. ``train=True`` applies
    the config's dropout with masks drawn from ``rng``; ``kernels`` is "numpy" or "numba".

    Example: a sequence padded with two [PAD] tokens gives, at its real tokens, the same vectors
    as the sequence alone: the padding is masked out of every attention.

    >>> cfg = BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...                  intermediate_size=12, max_position_embeddings=10)
    >>> params = init_params(cfg, seed=0, dtype=np.float64)
    >>> hidden, pooled, cache = bert_forward(params, cfg, np.array([[2, 5, 6, 3]]))
    >>> padded, _, _ = bert_forward(params, cfg, np.array([[2, 5, 6, 3, 0, 0]]),
    ...                             attention_mask=np.array([[1, 1, 1, 1, 0, 0]]))
    >>> hidden.shape, pooled.shape, bool(np.allclose(padded[:, :4], hidden))
    ((1, 4, 8), (1, 8), True)
    >>> grads = bert_backward(cache, dhidden=np.ones_like(hidden))
    >>> list(grads) == list(params), bool(grads["bert.pooler.dense.weight"].any())  # the pooler was not used
    (True, False)
    """
    _check_train(config, train, rng)
    pool = isinstance(params, dict) and "bert.pooler.dense.weight" in params
    hidden, pooled, cache = _encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels,
                                             train, rng, pool)
    return hidden, pooled, cache


def bert_backward(cache, dhidden: np.ndarray | None = None, dpooled: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Gradients of every parameter given the gradients of the hidden states ``dhidden`` (B, T, C)
    and of the pooled output ``dpooled`` (B, C) (either may be None: zero). A dict with the keys
    and order of ``params``; heads get zeros.

    Example: see ``bert_forward``.
    """
    config, kernels, dtype, names = cache[:4]
    grads = _encoder_backward(cache, dhidden, dpooled)
    return _all_grads(grads, names, config, dtype)


# ----------------------------------------------------------------------------------------
# heads: masked LM, sequence classification, question answering


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
    _check_train(config, train, rng)
    if not isinstance(params, dict) or "cls.predictions.bias" not in params:
        raise KeyError("params has no MLM head (cls.predictions.*); build them with init_params(config, "
                       "heads=('mlm',)) or load a BertForMaskedLM checkpoint")
    x, _, enc = _encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng,
                                 pool=False)
    if labels is not None:
        _check_labels(labels, input_ids.shape, "labels")
    K, _ = _backend(kernels)
    p, c = params, "cls.predictions."
    # the head: transform = LN(gelu(W_t x + b_t)), then the tied decoder
    t, t_dense = _dense_forward(K, x, p[c + "transform.dense.weight"], p[c + "transform.dense.bias"])  # (B, T, C)
    t, t_gelu = K.gelu_forward(t, approximate=_ACTIVATIONS[config.hidden_act])  # (B, T, C)
    t, t_ln = K.layernorm_forward(t, p[c + "transform.LayerNorm.weight"], p[c + "transform.LayerNorm.bias"],
                                  config.layer_norm_eps)  # (B, T, C)
    logits, decoder = _dense_forward(K, t, p["bert.embeddings.word_embeddings.weight"], p[c + "bias"])  # (B, T, V)
    loss, ce = None, None
    if labels is not None:
        loss, ce = K.cross_entropy_forward(logits, labels)  # scalar, mean over labels != -100
    return logits, loss, (enc, t_dense, t_gelu, t_ln, decoder, ce)


def bert_mlm_backward(cache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the MLM loss (scaled by ``dloss``), or of ``sum(logits * dlogits)`` when
    ``dlogits`` (B, T, V) is given, with respect to every parameter.

    Example: see ``bert_mlm_forward``.
    """
    enc, t_dense, t_gelu, t_ln, decoder, ce = cache
    config, kernels, dtype, names = enc[:4]
    K, _ = _backend(kernels)
    c = "cls.predictions."
    grads = {}
    if dlogits is None:
        if ce is None:
            raise ValueError("bert_mlm_backward needs the cache of a forward pass given labels, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, ce)  # (B, T, V)
    # in the forward pass this was: logits = t @ word^T + b, so now
    dt, dword, grads[c + "bias"] = _dense_backward(K, dlogits, decoder)  # (B, T, C), (V, C), (V,)
    # t = LN(gelu(W_t x + b_t))
    dt, grads[c + "transform.LayerNorm.weight"], grads[c + "transform.LayerNorm.bias"] = \
        K.layernorm_backward(dt, t_ln)  # (B, T, C)
    dt = K.gelu_backward(dt, t_gelu)  # (B, T, C)
    dx, grads[c + "transform.dense.weight"], grads[c + "transform.dense.bias"] = _dense_backward(K, dt, t_dense)
    grads.update(_encoder_backward(enc, dx, None))
    # the word embedding is used twice, by the lookup and by the decoder: the two gradients add
    grads["bert.embeddings.word_embeddings.weight"] += dword  # (V, C)
    return _all_grads(grads, names, config, dtype)


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
    _check_train(config, train, rng, classifier=True)
    if not isinstance(params, dict) or "classifier.weight" not in params:
        raise KeyError("params has no classifier head (classifier.*); build them with init_params(config, "
                       "heads=('pooler', 'classifier'))")
    _, pooled, enc = _encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train,
                                      rng, pool=True)
    if labels is not None:
        _check_labels(labels, (input_ids.shape[0],), "labels")
    K, _ = _backend(kernels)
    z, drop = _dropout_forward(K, pooled, _classifier_dropout(config), rng, train)  # (B, C)
    logits, cls = _dense_forward(K, z, params["classifier.weight"], params["classifier.bias"])  # (B, K)
    loss, ce = None, None
    if labels is not None:
        loss, ce = K.cross_entropy_forward(logits, labels)  # scalar
    return logits, loss, (enc, drop, cls, ce)


def bert_classify_backward(cache, dloss: float = 1.0, dlogits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the classification loss (or of ``sum(logits * dlogits)``) for every parameter."""
    enc, drop, cls, ce = cache
    config, kernels, dtype, names = enc[:4]
    K, _ = _backend(kernels)
    grads = {}
    if dlogits is None:
        if ce is None:
            raise ValueError("bert_classify_backward needs the cache of a forward pass given labels, or dlogits")
        dlogits = K.cross_entropy_backward(dloss, ce)  # (B, K)
    # in the forward pass this was: logits = W_c dropout(pooled) + b_c, so now
    dz, grads["classifier.weight"], grads["classifier.bias"] = _dense_backward(K, dlogits, cls)  # (B, C)
    dpooled = _dropout_backward(K, dz, drop)  # (B, C)
    grads.update(_encoder_backward(enc, None, dpooled))
    return _all_grads(grads, names, config, dtype)


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
    _check_train(config, train, rng)
    if not isinstance(params, dict) or "qa_outputs.weight" not in params:
        raise KeyError("params has no QA head (qa_outputs.*); build them with init_params(config, heads=('qa',))")
    if (start_positions is None) != (end_positions is None):
        raise ValueError("give both start_positions and end_positions, or neither")
    x, _, enc = _encoder_forward(params, config, input_ids, token_type_ids, attention_mask, kernels, train, rng,
                                 pool=False)
    B, T = input_ids.shape
    K, _ = _backend(kernels)
    logits, qa = _dense_forward(K, x, params["qa_outputs.weight"], params["qa_outputs.bias"])  # (B, T, 2)
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
    return start_logits, end_logits, loss, (enc, qa, ce_start, ce_end)


def bert_qa_backward(cache, dloss: float = 1.0, dstart: np.ndarray | None = None,
                     dend: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Gradients of the QA loss (or, when ``dstart`` and ``dend`` (B, T) are given, of
    ``sum(start_logits * dstart + end_logits * dend)``) for every parameter."""
    enc, qa, ce_start, ce_end = cache
    config, kernels, dtype, names = enc[:4]
    K, _ = _backend(kernels)
    grads = {}
    if dstart is None or dend is None:
        if dstart is not None or dend is not None:
            raise ValueError("give both dstart and dend, or neither (then the loss is differentiated)")
        if ce_start is None:
            raise ValueError("bert_qa_backward needs the cache of a forward pass given positions, or dstart and dend")
        # in the forward pass this was: loss = (loss_start + loss_end) / 2, so now
        dstart = K.cross_entropy_backward(dloss / 2, ce_start)  # (B, T)
        dend = K.cross_entropy_backward(dloss / 2, ce_end)  # (B, T)
    dlogits = np.stack([dstart, dend], axis=-1).astype(dtype, copy=False)  # (B, T, 2)
    # logits = W_qa x + b_qa
    dx, grads["qa_outputs.weight"], grads["qa_outputs.bias"] = _dense_backward(K, dlogits, qa)  # (B, T, C)
    grads.update(_encoder_backward(enc, dx, None))
    return _all_grads(grads, names, config, dtype)


# ----------------------------------------------------------------------------------------
# Hugging Face checkpoints: config.json + model.safetensors (+ vocab.txt)

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
    found = BertConfig.from_json(directory / "config.json")
    if config is not None and config != found:
        diffs = [f"{f.name}: expected {getattr(config, f.name)!r}, checkpoint has {getattr(found, f.name)!r}"
                 for f in dataclasses.fields(BertConfig) if getattr(config, f.name) != getattr(found, f.name)]
        raise ValueError(f"{directory}: the checkpoint's config differs from the one given: " + "; ".join(diffs))
    config = found
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
    params = {}
    for name in shapes:
        value = tensors[name]
        if dtype is not None:
            value = value.astype(dtype)
        elif value.dtype not in (np.float32, np.float64):
            value = value.astype(np.float32)
        params[name] = value
    check_params(params, config)
    return params, config


def _read_json(path: Path, default=None):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def load_tokenizer(directory) -> WordPieceTokenizer:
    """The WordPiece tokenizer of a checkpoint folder: ``vocab.txt``, with the options of
    ``tokenizer_config.json`` when present (``do_lower_case``, ``strip_accents``,
    ``tokenize_chinese_chars`` and the special tokens); without it, BERT's uncased defaults."""
    directory = Path(directory)
    vocab = directory / "vocab.txt"
    if not vocab.is_file():
        raise FileNotFoundError(f"{directory}: no vocab.txt (BERT's vocabulary, one token per line)")
    options = _read_json(directory / "tokenizer_config.json", {})
    kwargs = {k: options[k] for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars") if k in options}
    for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        token = options.get(k)
        if isinstance(token, dict):  # newer files store {"content": "[UNK]", ...}
            token = token.get("content")
        if isinstance(token, str):
            kwargs[k] = token
    return WordPieceTokenizer.from_vocab_file(vocab, **kwargs)


def save_tokenizer(tokenizer: WordPieceTokenizer, directory) -> None:
    """Write ``vocab.txt`` and a ``tokenizer_config.json`` that Hugging Face's ``BertTokenizer``
    and ``load_tokenizer`` read."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_vocab(directory / "vocab.txt")
    write_json(directory / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": tokenizer.do_lower_case,
        "strip_accents": tokenizer.strip_accents, "tokenize_chinese_chars": tokenizer.tokenize_chinese_chars,
        "unk_token": tokenizer.unk_token, "sep_token": tokenizer.sep_token, "pad_token": tokenizer.pad_token,
        "cls_token": tokenizer.cls_token, "mask_token": tokenizer.mask_token})


# ----------------------------------------------------------------------------------------
# sentence embeddings

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
    modules = _read_json(directory / "modules.json")
    if modules is None:
        return options
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Transformer":
            settings = _read_json(directory / module.get("path", "") / "sentence_bert_config.json", {})
            if isinstance(settings.get("max_seq_length"), int):
                options["max_length"] = settings["max_seq_length"]
        elif kind == "Pooling":
            pooling = _read_json(directory / module.get("path", "") / "config.json", {})
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
        hidden, _, _ = _encoder_forward(params, config, input_ids, None, mask, kernels, False, None,
                                        pool=False)  # (B, T, C)
        if pooling == "mean":
            m = mask[:, :, None].astype(hidden.dtype)  # (B, T, 1)
            vectors = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)  # (B, C)
        else:
            vectors = hidden[:, 0]  # (B, C)
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)  # (B, C)
        out[rows] = vectors
    return out
