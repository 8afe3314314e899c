"""StoryWorld: exact probabilities agree with the sampler, the tiny language sums to one, the
labelled views agree with an independent reading of the text, splits never share a story."""

from __future__ import annotations

import collections
import dataclasses
import math
import re
import time

import numpy as np
import pytest

from llm_from_scratch.data import (LABELS, SPLITS, VELU_LEXICON, EntropyFloor, QAPair, Story,
                                   StoryWorld, StoryWorldConfig)


@pytest.fixture(scope="module")
def world():
    return StoryWorld()


@pytest.fixture(scope="module")
def tiny():
    return StoryWorld(StoryWorldConfig.tiny())


@pytest.fixture(scope="module")
def stories(world):
    return world.sample(3000, seed=1234)


@pytest.fixture(scope="module")
def enumerated(tiny):
    return tiny.enumerate_texts()


# ---- exact probabilities ---------------------------------------------------------------------


def test_logprob_of_sampled_stories_equals_their_sampled_logprob(world, stories):
    diffs = [abs(world.logprob(s.text) - s.logprob) for s in stories]
    assert max(diffs) <= 1e-9, f"max abs difference {max(diffs)}"
    assert all(np.isfinite(s.logprob) and s.logprob < 0 for s in stories)


def test_tiny_language_enumeration_sums_to_one_and_matches_logprob(tiny, enumerated):
    texts = [t for t, _ in enumerated]
    assert len(texts) == 6308
    assert len(set(texts)) == len(texts), "two derivations wrote the same text"
    total = math.fsum(math.exp(lp) for _, lp in enumerated)
    assert abs(total - 1.0) < 1e-9, f"probabilities sum to {total!r}, abs diff {abs(total - 1)}"
    diffs = [abs(tiny.logprob(t) - lp) for t, lp in enumerated]
    assert max(diffs) <= 1e-12, f"max abs difference {max(diffs)}"
    # every action of the language appears somewhere in the tiny language
    for word in ("went to", "found a", "took", "dropped", "gave", "felt", "hello", "where is",
                 " it.", " it to "):
        assert any(word in t for t in texts), word


def test_hand_computed_probability(tiny):
    text = "Mia was in the park. Tom was in the park. He said, hello Mia! She felt happy.\n"
    p = (1 / 2) * (1 / 2) * 0.7           # Mia, park, go on (p_stop = 0.3)
    p *= 0.3 * (1 / 2) * 0.7               # a newcomer (only Tom is left), park, go on
    p *= (2 / 3) * 0.6                     # Tom was last (weight 2 vs Mia's 1), as a pronoun
    p *= 1 / 5 * 1.0 * 0.7                 # greet among go 2, find 1, feel 1, greet 1; Mia; go on
    p *= (2 / 3) * 0.6                     # Mia was last (the greeted one), as a pronoun
    p *= 1 / 5 * (3 / 4)                   # feel, happy after meeting someone (3:1)
    p *= 1.0                               # the fourth sentence is the last
    lp = tiny.logprob(text)
    assert abs(lp - math.log(p)) < 1e-12, f"abs diff {abs(lp - math.log(p))}"


def test_sampler_frequencies_match_exact_probabilities(tiny, enumerated):
    n = 20_000
    counts = collections.Counter(s.text for s in tiny.sample(n, seed=7))
    top = sorted(enumerated, key=lambda t: -t[1])[:40]
    for text, lp in top:
        p = math.exp(lp)
        z = (counts[text] / n - p) / math.sqrt(p * (1 - p) / n)
        assert abs(z) < 5, f"{text!r}: frequency {counts[text] / n:.5f} vs p {p:.5f} (z = {z:.1f})"
    assert set(counts) <= {t for t, _ in enumerated}


@pytest.mark.parametrize("bad", [
    "Mia was in the park.",                            # no final newline
    "Mia was in the park.\nTom was in the park.\n",     # two stories
    "Mia was in the park. He felt happy.\n",           # He cannot be Mia
    "Mia was in the park. She went to the park.\n",    # already there
    "Mia was in the park. She dropped the red ball.\n",  # not held
    "Mia was in the park. She found a red ball. She dropped it. Tom took it.\n",  # not introduced
    "Mia was in the park. Tom was in the garden. He said, hello Mia!\n",  # not in the same place
    "Mia was in the park. Tom was in the park. Mia asked, where is Tom?\n",  # he is right here
    "Mia was in the park.  She felt happy.\n",         # double space
    "mia was in the park.\n",                          # lowercase
    "Mia was in the pool.\n",                          # unknown place
    "",
])
def test_impossible_texts_have_probability_zero(tiny, bad):
    assert tiny.logprob(bad) == -math.inf
    # the nearest possible texts are fine
    good = "Mia was in the park. She found a red ball. Tom was in the park. Mia gave it to Tom.\n"
    assert math.isfinite(tiny.logprob(good))


def test_perturbed_sampled_stories_have_probability_zero(world, stories):
    adjectives = world.config.adjectives
    n_checked = collections.Counter()
    for s in stories[:500]:
        t = s.text
        assert world.logprob(t[:-1]) == -math.inf
        assert world.logprob(t + t) == -math.inf
        # a pronoun of the wrong gender
        m = re.search(r"\. (He|She|They) ", t)
        if m:
            other = {"He": "She", "She": "They", "They": "He"}[m.group(1)]
            bad = t[:m.start(1)] + other + t[m.end(1):]
            assert world.logprob(bad) == -math.inf, bad
            n_checked["pronoun"] += 1
        # a later mention of an object with a different adjective
        m = re.search(r"(took|dropped|gave) the (\w+) ", t)
        if m:
            new = adjectives[(adjectives.index(m.group(2)) + 1) % len(adjectives)]
            bad = t[:m.start(2)] + new + t[m.end(2):]
            assert world.logprob(bad) == -math.inf, bad
            n_checked["adjective"] += 1
        # go to the place one is already in
        m = re.search(r"(\w+) went to the (\w+)\.", t)
        if m:
            bad = t[:m.end()] + f" {m.group(1)} went to the {m.group(2)}." + t[m.end():]
            if m.group(1) in {n for n, _ in world.config.names}:
                assert world.logprob(bad) == -math.inf, bad
                n_checked["go"] += 1
    assert min(n_checked.values()) > 20 and len(n_checked) == 3, n_checked


def test_the_documented_example_is_a_story(world):
    text = ("Mia was in the park. She found a red ball. Tom was in the park. Mia gave the red "
            "ball to Tom. He felt happy. Tom went to the house. He dropped it.\n")
    assert math.isfinite(world.logprob(text))
    assert {q.question: q.answer for q in world.questions(text)} == {
        "Where is Mia?": "park", "Where is Tom?": "house", "Where is the ball?": "house"}


def test_enumerate_refuses_large_languages(world):
    with pytest.raises(ValueError, match="more than 100 texts"):
        world.enumerate_texts(max_texts=100)
    with pytest.raises(ValueError, match="max_texts"):
        world.enumerate_texts(max_texts=0)


def test_logprob_errors_and_parse_messages(world, tiny):
    with pytest.raises(TypeError, match="str"):
        world.logprob(b"Mia was in the park.\n")
    with pytest.raises(ValueError, match=r"at character 21 expected one of .*'She '.*got 'He"):
        tiny.label_of("Mia was in the park. He felt happy.\n")
    assert math.isclose(world.logprob_corpus(stories_text := "".join(
        s.text for s in world.sample(3, seed=5))), math.fsum(
        s.logprob for s in world.sample(3, seed=5)), rel_tol=0, abs_tol=1e-9)
    assert world.logprob_corpus(stories_text[:-1]) == -math.inf


# ---- the true next-character distribution ------------------------------------------------


def test_next_char_distribution_matches_enumeration(tiny, enumerated):
    mass = collections.defaultdict(float)   # prefix -> P(a story starts with it)
    for text, lp in enumerated:
        p = math.exp(lp)
        for i in range(len(text) + 1):
            mass[text[:i]] += p
    rng = np.random.default_rng(0)
    worst = 0.0
    for j in rng.choice(len(enumerated), size=60, replace=False):
        text = enumerated[j][0]
        for i in range(len(text)):
            dist = tiny.next_char_distribution(text[:i])
            assert abs(math.fsum(dist.values()) - 1.0) < 1e-12
            for ch, p in dist.items():
                worst = max(worst, abs(p - mass[text[:i] + ch] / mass[text[:i]]))
    assert worst < 1e-9, f"max abs difference {worst}"


def test_next_char_distribution_chain_rule_gives_logprob(world, stories):
    for s in stories[:15]:
        lp = math.fsum(math.log(world.next_char_distribution("prev story.\n" + s.text[:i])
                                [s.text[i]]) for i in range(len(s.text)))
        assert abs(lp - s.logprob) < 1e-9, f"abs diff {abs(lp - s.logprob)}"
    with pytest.raises(ValueError, match="no story starts with"):
        world.next_char_distribution("Mia was in the moon")


# ---- entropy floor -------------------------------------------------------------------------


def test_entropy_floor_estimate_covers_the_exact_entropy_rate(tiny, enumerated):
    p = np.array([math.exp(lp) for _, lp in enumerated])
    nll = np.array([-lp for _, lp in enumerated])
    length = np.array([len(t) for t, _ in enumerated])
    exact = (p * nll).sum() / (p * length).sum()                 # nats per character
    f = tiny.entropy_floor(n_stories=5000, seed=3)
    assert isinstance(f, EntropyFloor) and f.n_stories == 5000
    assert abs(f.nats_per_char - exact) < 4 * f.nats_per_char_se, (f, exact)
    assert math.isclose(f.bits_per_char, f.nats_per_char / math.log(2))
    assert math.isclose(f.nats_per_char, f.nats_per_story / f.chars_per_story)
    assert f == tiny.entropy_floor(n_stories=5000, seed=3)
    with pytest.raises(ValueError, match="n_stories"):
        tiny.entropy_floor(n_stories=1)


def test_default_entropy_floor_and_lengths(world):
    f = world.entropy_floor(n_stories=2000, seed=0)
    assert 0.2 < f.bits_per_char < 0.4 and f.bits_per_char_se < 0.005, f
    assert 150 < f.chars_per_story < 300, f


# ---- sampling ------------------------------------------------------------------------------


def test_sampling_is_deterministic_and_prefix_stable(world):
    a = world.sample(50, seed=11)
    assert a == world.sample(50, seed=11)
    assert a[:20] == world.sample(20, seed=11)
    assert a != world.sample(50, seed=12)
    r1, r2 = np.random.default_rng(4), np.random.default_rng(4)
    assert world.sample_one(r1) == world.sample_one(r2)
    assert world.sample(0) == []


def test_stories_look_like_the_language(world, stories):
    lengths = np.array([len(s.text) for s in stories])
    assert 150 < np.median(lengths) < 300 and lengths.max() < 600
    alphabet = set(world.alphabet)
    assert set("".join(s.text for s in stories)) <= alphabet
    assert set(world.alphabet) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,?!\n")
    for s in stories:
        assert s.text.endswith("\n") and s.text.count("\n") == 1
    joined = "".join(s.text for s in stories)
    for word in ("They ", "She ", "He ", " it.", " it to ", "hello", "?", "!", ","):
        assert word in joined, word


def test_sampling_speed(world):
    t0 = time.perf_counter()
    world.sample(5000, seed=0)
    seconds = time.perf_counter() - t0
    assert seconds < 2.5, f"5,000 stories took {seconds:.2f} s (expected about 0.15 s)"


@pytest.mark.parametrize("n", [-1, 2.5, "3", True])
def test_sample_rejects_bad_counts(world, n):
    with pytest.raises(ValueError, match="non-negative integer"):
        world.sample(n)


def test_sample_one_needs_a_generator(world):
    with pytest.raises(TypeError, match="default_rng"):
        world.sample_one(3)


@pytest.mark.parametrize("change, message", [
    (dict(names=(("Mia", "she"), ("Mia", "he"))), "duplicates"),
    (dict(names=(("Mia", "it"),)), "pronoun of 'Mia'"),
    (dict(names=(("She", "she"),)), "is a pronoun"),
    (dict(places=("Park",)), "lowercase"),
    (dict(min_sentences=5, max_sentences=3), "min_sentences"),
    (dict(p_stop=1.5), "p_stop"),
    (dict(feelings=("happy",)), "feeling_weights"),
    (dict(max_characters=0), "max_characters"),
    (dict(action_weights=(1.0,) * 3), "action_weights"),
])
def test_config_errors(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(StoryWorldConfig(), **change)
    with pytest.raises(TypeError, match="StoryWorldConfig"):
        StoryWorld({"names": ()})


# ---- labelled views, checked against an independent reading of the text -----------------


_SENTENCE = re.compile(
    r"(?P<s>\w+) (?:was in the (?P<intro>\w+)|went to the (?P<go>\w+)|found a (?P<fadj>\w+) "
    r"(?P<find>\w+)|took (?:the \w+ (?P<take>\w+)|(?P<take_it>it))|dropped (?:the \w+ "
    r"(?P<drop>\w+)|(?P<drop_it>it))|gave (?:the \w+ (?P<give>\w+)|(?P<give_it>it)) to "
    r"(?P<to>\w+)|felt (?P<feel>\w+)|said, hello (?P<hello>\w+)|asked, where is (?P<ask>\w+))"
    r"[.!?]")


def _read(text, gender):
    """Final state by reading the text with regular expressions: where everyone is, who holds
    what, where dropped things lie, and where each character started."""
    pronouns = {"He": "he", "She": "she", "They": "they"}
    loc, start, holder, lies = {}, {}, {}, {}
    last_c = last_o = None
    cast = []
    for m in _SENTENCE.finditer(text):
        s = m["s"]
        if s in pronouns:
            assert pronouns[s] == gender[last_c], (text, s, last_c)
            s = last_c
        last_c = s
        if m["intro"]:
            cast.append(s)
            loc[s] = start[s] = m["intro"]
        elif m["go"]:
            loc[s] = m["go"]
        elif m["find"] or m["take"] or m["take_it"]:
            o = m["find"] or m["take"] or last_o
            holder[o], last_o = s, o
            lies.pop(o, None)
        elif m["drop"] or m["drop_it"]:
            o = m["drop"] or last_o
            assert holder.pop(o) == s
            lies[o], last_o = loc[s], o
        elif m["to"]:
            o = m["give"] or last_o
            assert holder[o] == s
            holder[o], last_o, last_c = m["to"], o, m["to"]
        elif m["hello"] or m["ask"]:
            last_c = m["hello"] or m["ask"]
    return cast, loc, start, holder, lies


def test_labels_and_answers_agree_with_an_independent_reading(world, stories):
    gender = dict(world.config.names)
    labels = collections.Counter()
    kinds = collections.Counter()
    for s in stories:
        cast, loc, start, holder, lies = _read(s.text, gender)
        hero = cast[0]
        label = (0 if loc[hero] == start[hero] else 2) + (0 if hero in holder.values() else 1)
        assert s.label == label == world.label_of(s.text), s.text
        labels[label] += 1
        expected = {f"Where is {c}?": loc[c] for c in cast}
        expected.update({f"Who has the {o}?": h for o, h in holder.items()})
        expected.update({f"Where is the {o}?": p for o, p in lies.items()})
        mine = collections.Counter(holder.values())
        expected.update({f"What does {c} have?": o for o, c in holder.items() if mine[c] == 1})
        assert {q.question: q.answer for q in s.qa} == expected, s.text
        for q in s.qa:
            assert s.text[q.start:q.end] == q.answer, (s.text, q)
            assert not s.text[q.end].isalpha() and not s.text[q.start - 1].isalpha()
            kinds[q.question.split()[0] + (" the" if " the " in q.question else "")] += 1
        assert tuple(world.questions(s.text)) == s.qa
    assert set(labels) == {0, 1, 2, 3} and min(labels.values()) > 0.1 * len(stories), labels
    assert min(kinds.values()) > 50, kinds


def test_answer_spans_are_the_sentences_that_state_them(tiny):
    text = ("Mia was in the park. She found a red ball. Tom was in the park. "
            "She gave it to Tom.\n")
    assert tiny.logprob(text) == -math.inf    # "She" would have to be Tom
    text = ("Mia was in the park. She found a red ball. Tom was in the garden. "
            "He went to the park.\n")
    qa = {q.question: q for q in tiny.questions(text)}
    assert qa["Where is Tom?"] == QAPair("Where is Tom?", "park", text.rindex("park"),
                                         text.rindex("park") + 4)
    assert qa["Who has the ball?"] == QAPair("Who has the ball?", "Mia", 0, 3)
    assert qa["What does Mia have?"].start == text.index("ball")
    text = ("Mia was in the park. She went to the garden. She found a red ball. "
            "She dropped it.\n")
    qa = {q.question: q for q in tiny.questions(text)}
    assert qa["Where is the ball?"].start == text.index("garden")
    assert LABELS[tiny.label_of(text)] == "away, empty-handed"


def test_translation_rules(world, stories):
    text = ("Mia was in the park. She found a red ball. Sam was in the park. "
            "Mia gave the red ball to Sam. They felt happy. Sam asked, where is Tom?\n")
    # Tom is not in the story, so the last sentence is not possible
    assert world.logprob(text) == -math.inf
    text = text.replace(" Sam asked, where is Tom?", " They said, hello Mia!")
    assert world.translate(text) == ("Mia parka en esti. Sa bolo ruza un trovi. Sam parka en "
                                     "esti. Mia bolo ruza Sam al doni. Tei gaja senti. "
                                     "Tei Mia saluti!")
    velu = set(VELU_LEXICON.values()) | {n for n, _ in world.config.names}
    verbs = {VELU_LEXICON[w] for w in ("was", "went", "found", "took", "dropped", "gave",
                                       "felt", "hello", "asked")}
    for s in stories[:300]:
        sentences = re.findall(r"[^.!?]+[.!?]", s.translation)
        assert len(sentences) == len(re.findall(r"[.!?]", s.text))
        for sent in sentences:
            words = sent.strip()[:-1].split()
            assert words[-1] in verbs, sent          # verb-final
            assert {w.lower() for w in words} <= {v.lower() for v in velu}, sent
        assert s.translation == world.translate(s.text)


# ---- splits and corpora ------------------------------------------------------------------


def test_splits_are_stable_disjoint_and_have_the_documented_fractions(world, stories):
    parts = world.split(stories)
    assert sum(map(len, parts.values())) == len(stories)
    texts = {k: {s.text for s in v} for k, v in parts.items()}
    assert not (texts["train"] & texts["val"]) and not (texts["train"] & texts["test"])
    assert not (texts["val"] & texts["test"])
    for name, (lo, hi) in SPLITS.items():
        frac = len(parts[name]) / len(stories)
        expected = (hi - lo) / 100
        assert abs(frac - expected) < 5 * math.sqrt(expected * (1 - expected) / len(stories)), \
            (name, frac)
    assert world.split_of(stories[0].text) == world.split_of(str(stories[0].text))


def test_corpus(world):
    val = world.corpus("val", n_stories=30, seed=2)
    assert val.count("\n") == 30
    assert val == world.corpus("val", n_stories=30, seed=2)
    for story in val.split("\n")[:-1]:
        assert world.split_of(story + "\n") == "val"
        assert math.isfinite(world.logprob(story + "\n"))
    train = world.corpus("train", n_chars=5000, seed=2)
    assert 4500 < len(train) <= 5000 and train.endswith("\n")
    assert not set(train.split("\n")[:-1]) & set(val.split("\n")[:-1])
    assert [s.text for s in world.stories("val", 30, seed=2)] == \
        [t + "\n" for t in val.split("\n")[:-1]]
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        world.corpus("valid", n_stories=3)
    with pytest.raises(ValueError, match="exactly one"):
        world.corpus("train")
    with pytest.raises(ValueError, match="n_chars"):
        world.corpus("train", n_chars=-5)


def test_story_is_a_frozen_record(stories):
    s = stories[0]
    assert isinstance(s, Story)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.text = "x"
    assert "Story(text=" in repr(s) and "_world" not in repr(s)
