"""Preparing data for BERT: masked-language-model inputs and question-answering features.

Masking, as in BERT's ``create_pretraining_data.py`` (Devlin et al. 2019, section 3.1): in each
sequence, ``round(0.15 * length)`` positions are chosen (at least one, at most
``max_predictions``), never ``[CLS]``, ``[SEP]`` or padding. Of the chosen positions 80% become
``[MASK]``, 10% a random token, 10% stay as they were; the loss is computed on the chosen
positions only (the others get the label -100, which the cross-entropy ignores). The random and
unchanged 10% keep the model from learning that only ``[MASK]`` positions matter. Calling
``mask_tokens`` again with the generator's next state draws new masks: dynamic masking, as in
RoBERTa (Liu et al. 2019), so every epoch sees different positions masked.

Story classification: chapter 9 fine-tunes a classifier on a four-class label of each StoryWorld
story, ``story_task_label``: two yes/no questions about the story's first character (the hero),
read off the story's events by StoryWorld's own parser. Does the hero, at some point, go back to
the place where they were first? Does the hero end holding something? The second half is the
holding half of StoryWorld's ``Story.label``. The first replaces its other half, "the hero *ends*
where they started", which needs the hero's *last* move (often as a pronoun) compared with the
first sentence: a bag-of-words logistic regression on 1,000 stories reads it no better than always
answering "away", and a two-layer encoder fine-tuned on a few hundred stories does not learn it
either. Whether the hero *ever* goes back needs no "last": a return anywhere in the story will
do, and predicting the place after "went to the" is what masked-LM pretraining rewards (the
mover's first place is five times likelier than any other).

Question answering: a question and a story become ``[CLS] question [SEP] story [SEP]``; the
answer is a character span of the story, and the model predicts the index of its first and last
token. ``qa_features`` finds those indices by tokenizing the text before the answer (WordPiece
splits at spaces and punctuation, so a whole-word answer starts exactly where the tokens of the
text before it end).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_from_scratch.data.storyworld import ACTIONS

__all__ = ["mask_tokens", "QAFeatures", "qa_features", "encode_batch", "STORY_TASK_LABELS", "story_task_label"]

_INTRO, _GO = -1, ACTIONS.index("go")  # event kinds of StoryWorld's parser: "X was in the P.", "X went to the P."

# the four classes of story_task_label: (the hero ever goes back where they were first?) x (ends holding something?)
STORY_TASK_LABELS = ("went back, holding something", "went back, empty-handed",
                     "never went back, holding something", "never went back, empty-handed")


def mask_tokens(input_ids: np.ndarray, attention_mask: np.ndarray, special_ids, mask_id: int, vocab_size: int,
                rng: np.random.Generator, mask_prob: float = 0.15, max_predictions: int | None = None):
    """Choose and corrupt positions for masked-language modelling.

    ``input_ids`` and ``attention_mask`` are (B, T); ``special_ids`` are the ids never chosen
    (``[CLS]``, ``[SEP]``, ``[PAD]``). Returns ``(masked_ids, labels)``: the corrupted copy and
    (B, T) labels holding the original id at chosen positions and -100 elsewhere.

    >>> ids = np.array([[2, 10, 11, 12, 13, 14, 15, 16, 3, 0]])   # [CLS] ... [SEP] [PAD]
    >>> masked, labels = mask_tokens(ids, (ids != 0).astype(int), {0, 2, 3}, 4, 20, np.random.default_rng(0))
    >>> int((labels != -100).sum())   # round(0.15 * 9 real tokens) = 1
    1
    """
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or np.shape(attention_mask) != ids.shape:
        raise ValueError(f"input_ids and attention_mask must be (B, T) arrays of the same shape, "
                         f"got {ids.shape} and {np.shape(attention_mask)}")
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    special = np.isin(ids, np.array(sorted(special_ids)))          # (B, T)
    real = np.asarray(attention_mask).astype(bool)                  # (B, T)
    masked = ids.copy()
    labels = np.full(ids.shape, -100, dtype=np.int64)
    for b in range(ids.shape[0]):
        candidates = np.flatnonzero(real[b] & ~special[b])
        if candidates.size == 0:
            continue
        n = max(1, int(round(real[b].sum() * mask_prob)))
        if max_predictions is not None:
            n = min(n, max_predictions)
        chosen = rng.permutation(candidates)[:n]
        labels[b, chosen] = ids[b, chosen]
        r = rng.random(chosen.size)
        to_mask = chosen[r < 0.8]
        to_random = chosen[(r >= 0.8) & (r < 0.9)]
        masked[b, to_mask] = mask_id
        masked[b, to_random] = rng.integers(0, vocab_size, to_random.size)
    return masked, labels


def story_task_label(world, text: str) -> int:
    """Chapter 9's classification label of one StoryWorld story text, an index into
    ``STORY_TASK_LABELS``: 0 or 1 if the hero (the first character) at some point goes to the
    place where they were introduced, 2 or 3 if never; even if the hero ends holding something,
    odd if empty-handed. Raises ``ValueError`` for a text StoryWorld cannot write.

    >>> from llm_from_scratch.data import StoryWorld
    >>> w = StoryWorld()
    >>> STORY_TASK_LABELS[story_task_label(w, "Mia was in the park. She went to the school. She found a red ball. "
    ...                                       "Mia went to the park. Mia went to the house.\\n")]
    'went back, holding something'
    >>> STORY_TASK_LABELS[story_task_label(w, "Mia was in the park. She went to the school. Tom was in the house. "
    ...                                       "He went to the park. Tom went to the house.\\n")]
    'never went back, empty-handed'

    In the first story the hero ends in the house, away from the park: StoryWorld's own label
    calls it "away", this one "went back". In the second, Tom goes back but is not the hero.
    """
    events, label, _ = world._parse(text)        # StoryWorld's parser: one event per sentence
    first_place = {}                             # character -> the place they were introduced in
    hero, went_back = None, False
    for kind, subject, _form, *args in events:
        if kind == _INTRO:                       # "Mia was in the park."
            first_place[subject] = args[0]
            hero = subject if hero is None else hero
        elif kind == _GO and subject == hero and args[0] == first_place[hero]:   # "She went to the park."
            went_back = True
    holding = label % 2 == 0                     # StoryWorld's label: even = the hero holds something
    return (0 if went_back else 2) + (0 if holding else 1)


def encode_batch(tokenizer, texts, max_length: int, text_pairs=None) -> dict[str, np.ndarray]:
    """Encode texts (and optional second texts) to padded (B, max_length) int64 arrays."""
    pairs = text_pairs if text_pairs is not None else [None] * len(texts)
    encs = [tokenizer.encode(t, text_pair=p, max_length=max_length, padding="max_length") for t, p in zip(texts, pairs)]
    return {k: np.array([e[k] for e in encs], dtype=np.int64) for k in ("input_ids", "token_type_ids", "attention_mask")}


@dataclass(frozen=True)
class QAFeatures:
    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    start: int          # index of the answer's first token, or -1 if it was cut off by max_length
    end: int            # index of the answer's last token (inclusive), or -1


def qa_features(tokenizer, question: str, context: str, answer_start: int, answer: str, max_length: int) -> QAFeatures:
    """``[CLS] question [SEP] context [SEP]`` with the token indices of the answer span.

    ``context[answer_start:answer_start + len(answer)]`` must be the answer. The answer must
    begin and end at word boundaries (it does for StoryWorld's answers).
    """
    if context[answer_start:answer_start + len(answer)] != answer:
        raise ValueError(f"the answer {answer!r} is not at character {answer_start} of the context "
                         f"(found {context[answer_start:answer_start + len(answer)]!r})")
    enc = tokenizer.encode(question, text_pair=context, max_length=max_length, padding="max_length")
    offset = len(tokenizer.tokenize(question)) + 2                 # [CLS] question [SEP]
    start = offset + len(tokenizer.tokenize(context[:answer_start]))
    end = start + len(tokenizer.tokenize(answer)) - 1
    n_real = int(sum(enc["attention_mask"]))
    if end >= n_real - 1:                                          # truncated away (the last real token is [SEP])
        start = end = -1
    return QAFeatures(list(enc["input_ids"]), list(enc["token_type_ids"]), list(enc["attention_mask"]), start, end)
