import numpy as np
import pytest

from llm_from_scratch.data.bert import encode_batch, mask_tokens, qa_features
from llm_from_scratch.data import StoryWorld
from llm_from_scratch.tokenizers import train_wordpiece

PAD, UNK, CLS, SEP, MASK = range(5)


def _batch(rng, B=400, T=40, V=100):
    ids = rng.integers(5, V, (B, T))
    lengths = rng.integers(10, T + 1, B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = CLS
    ids[np.arange(B), lengths - 1] = SEP
    ids[mask == 0] = PAD
    return ids, mask


def test_masking_follows_bert_recipe():
    rng = np.random.default_rng(0)
    ids, mask = _batch(rng)
    masked, labels = mask_tokens(ids, mask, {PAD, CLS, SEP}, MASK, 100, np.random.default_rng(1))
    chosen = labels != -100
    # how many per sequence: round(15% of the real tokens)
    assert np.array_equal(chosen.sum(1), np.maximum(1, np.round(mask.sum(1) * 0.15)).astype(int))
    # never [CLS], [SEP] or padding; labels are the original ids
    assert not np.any(chosen & np.isin(ids, [PAD, CLS, SEP]))
    assert np.array_equal(labels[chosen], ids[chosen])
    # unchosen positions are untouched
    assert np.array_equal(masked[~chosen], ids[~chosen])
    # 80 / 10 / 10 (about 2,400 chosen positions: the shares within +-3%)
    became_mask = np.mean(masked[chosen] == MASK)
    unchanged = np.mean(masked[chosen] == ids[chosen])
    assert abs(became_mask - 0.8) < 0.03 and abs(unchanged - 0.1 - 0.01) < 0.03
    assert abs(1 - became_mask - unchanged - 0.1) < 0.03


def test_masks_are_redrawn_and_seeded():
    ids, mask = _batch(np.random.default_rng(0), B=20)
    rng = np.random.default_rng(5)
    a = mask_tokens(ids, mask, {PAD, CLS, SEP}, MASK, 100, rng)[1]
    b = mask_tokens(ids, mask, {PAD, CLS, SEP}, MASK, 100, rng)[1]
    assert not np.array_equal(a != -100, b != -100)  # a new epoch, new positions
    again = mask_tokens(ids, mask, {PAD, CLS, SEP}, MASK, 100, np.random.default_rng(5))[1]
    assert np.array_equal(a, again)
    capped = mask_tokens(ids, mask, {PAD, CLS, SEP}, MASK, 100, np.random.default_rng(5), max_predictions=2)[1]
    assert (capped != -100).sum(1).max() == 2
    with pytest.raises(ValueError, match="same shape"):
        mask_tokens(ids, mask[:, :3], {PAD}, MASK, 100, rng)


def test_qa_features_point_at_the_answer_tokens():
    world = StoryWorld()
    stories = world.sample(200, seed=3)
    tok = train_wordpiece([s.text for s in stories], 300)
    checked = 0
    for s in stories[:40]:
        for qa in s.qa:
            f = qa_features(tok, qa.question, s.text, qa.start, qa.answer, max_length=160)
            if f.start < 0:
                continue
            span = tok.decode(f.input_ids[f.start:f.end + 1])
            assert span == qa.answer.lower(), (qa, span)
            assert f.token_type_ids[f.start] == 1
            checked += 1
    assert checked > 100
    with pytest.raises(ValueError, match="not at character"):
        qa_features(tok, "Where?", "Mia is here.", 0, "here", 32)


def test_encode_batch_pads_to_max_length():
    tok = train_wordpiece(["a b c a b"], 40)
    batch = encode_batch(tok, ["a b", "c"], max_length=6)
    assert batch["input_ids"].shape == (2, 6)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]


def test_story_task_label_halves():
    from llm_from_scratch.data import StoryWorld
    from llm_from_scratch.data.bert import STORY_TASK_LABELS, story_task_label

    world = StoryWorld()
    stories = world.stories("train", 400, seed=5)
    labels = np.array([story_task_label(world, s.text) for s in stories])
    # the holding half is StoryWorld's own (even = holding something)
    assert np.array_equal(labels % 2, np.array([s.label % 2 for s in stories]))
    # the went-back half, from the events the sampler recorded (not the parser's): did the hero
    # ever go to the place of their introduction?
    for s, y in zip(stories, labels):
        intro = [e for e in s._events if e[0] == -1]
        hero, home = intro[0][1], intro[0][3]
        back = any(e[0] == 0 and e[1] == hero and e[3] == home for e in s._events)
        assert (y < 2) == back, (s.text, STORY_TASK_LABELS[y])
    counts = np.bincount(labels, minlength=4)
    print("class counts", counts)
    assert counts.min() > 40                     # every class is common: no class is left unpredicted by chance
    # a story that ends away from home but went back on the way
    text = "Mia was in the park. She went to the school. Mia went to the park. She went to the house. She felt tired.\n"
    assert STORY_TASK_LABELS[story_task_label(world, text)] == "went back, empty-handed"
    assert world.label_of(text) == 3             # StoryWorld's label: away, empty-handed
    with pytest.raises(ValueError, match="not a StoryWorld story"):
        story_task_label(world, "Mia was in the park. He felt happy.\n")
