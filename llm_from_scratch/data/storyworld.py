"""StoryWorld: a synthetic story language whose exact probabilities are known.

Every model in the book (n-gram, MLP, GPT, BERT) is trained on text whose true distribution we
know exactly, so its loss can be compared with the best loss any model could reach.

    >>> world = StoryWorld()
    >>> story = world.sample(1, seed=0)[0]
    >>> world.logprob(story.text) == story.logprob
    True

Scope
-----
A seeded probabilistic program writes short stories in simple English:

    Mia was in the park. She found a red ball. Tom was in the park. Mia gave the red ball
    to Tom. He felt happy. Tom went to the house. He dropped it.

The program keeps a world state across sentences (who is in the story, who is where, who
holds what, which character and which object were mentioned last, what last happened to each
character), and every sentence must agree with it:

- a character can only go to a place they are not in, drop or give an object they hold, take
  an object lying where they are, give to or greet someone in the same place, ask for someone
  who is elsewhere;
- a pronoun (``He``/``She``/``They``) always refers to the most recently mentioned character and
  agrees with that character's gender; ``it`` always refers to the most recently mentioned
  object;
- an object is introduced with ``a`` and an adjective (``a red ball``); every later mention
  repeats the same adjective (``the red ball``), however far back it was introduced;
- a character who goes somewhere is more likely to go back where they were introduced;
- the feeling in ``Tom felt happy.`` depends on what last happened to Tom (finding or
  receiving something makes him more likely to be happy, dropping something sad, ...).

So later characters depend on characters far back, and attention has something to learn.
The alphabet is small: letters, space, ``. , ? !`` and the newline that ends every story.
A corpus is stories concatenated; the end of a story is part of the story's probability.

Exact probabilities and unique derivations
------------------------------------------
The program is a sequence of random choices (``_Choice``). Each option of a choice writes a
non-empty piece of text, and the pieces of one choice are *prefix-free*: no piece is the
beginning of another (``"Mia "``, ``"She "`` and ``"Tom "``; ``"went to the "`` and ``"gave "``).
Reading a text from left to right therefore determines every choice: at each choice at most
one option matches the text at the current position. Every text has at most one derivation,
its probability is the product of the probabilities of its choices, and a text that the
program cannot write (wrong grammar, a pronoun that disagrees, dropping something not held,
a missing final newline) has probability zero (log-probability ``-inf``). The same program
samples (``sample``), parses (``logprob``), enumerates every text of a small configuration
(``enumerate_texts``) and computes the exact next-character distribution after any prefix
(``next_char_distribution``), so the four cannot disagree.

Entropy floor
-------------
Stories are independent, so the per-character entropy rate of the story stream is
``H = E[-log p(S)] / E[|S|]`` (``|S|`` counts the final newline). For any model ``q``, the
cross-entropy is ``H(p) + KL(p || q) >= H(p)``: no model can beat ``entropy_floor`` on average,
and the gap a model leaves is exactly its KL divergence from the truth.

Labelled views (deterministic functions of the story)
-----------------------------------------------------
- ``label``: how the story ends for its first character (the hero): back in the place they
  started or away, and holding something or empty-handed (``LABELS``). A classifier has to
  follow the hero through moves, finds, drops, gives and pronouns to get it.
- ``qa``: bAbI-style questions (``Where is Mia?``, ``Who has the ball?``, ``Where is the
  kite?``, ``What does Tom have?``) whose answers are exact spans of the story.
- ``translation``: the story in Velu, a rule-defined language with its own lexicon, verb-final
  word order, adjectives after nouns and postpositions (``Mia bolo ruza Tom al doni.`` for
  ``Mia gave the red ball to Tom.``).

Splits
------
A story goes to ``train``, ``val`` or ``test`` by a stable hash of its text
(``zlib.crc32(text) % 100``: 0-89 train, 90-94 val, 95-99 test), so the same text always lands
in the same split and the splits never share a story. Strictly, a split's stories follow ``p``
restricted to that split's texts, but with the default configuration the chance that two
stories coincide is negligible, and so is the difference.

Speed: plain Python with memoized choice tables. Sampling 100,000 default stories (text,
exact log-probability and label) takes about 3.2 s of CPU time on the machine the book was
built on; their questions and translations, computed the first time they are read, about
3 s more.

Left out: anything beyond a few sentences per story, dialogue, tense and number agreement
beyond pronouns, and any claim that this is natural English: it is a language with a known
distribution, which is what the book needs.

References: Shannon, "Prediction and Entropy of Printed English" (1951) for the entropy rate
per character; Cover & Thomas, "Elements of Information Theory", Thm 5.4.3 (cross-entropy =
H + KL); Weston et al., "Towards AI-Complete Question Answering: A Set of Prerequisite Toy
Tasks" (bAbI, 2015); Eldan & Li, "TinyStories" (2023); Allen-Zhu & Li, "Physics of Language
Models: Part 1" (2023) for synthetic languages with exact next-token distributions.
"""

from __future__ import annotations

import bisect
import functools
import math
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "StoryWorldConfig", "StoryWorld", "Story", "QAPair", "EntropyFloor",
    "LABELS", "SPLITS", "CUES", "ACTIONS", "VELU_LEXICON",
]

# the story's hero (first character) at the end: in the starting place or not, holding or not
LABELS = ("home, holding something", "home, empty-handed",
          "away, holding something", "away, empty-handed")

# split name -> (first, last + 1) bucket of zlib.crc32(text) % 100
SPLITS = {"train": (0, 90), "val": (90, 95), "test": (95, 100)}

# what last happened to a character; the feeling they report depends on it
CUES = ("none", "went", "got", "dropped", "gave", "met", "missed")
_NONE, _WENT, _GOT, _DROPPED, _GAVE, _MET, _MISSED = range(len(CUES))

ACTIONS = ("go", "find", "take", "drop", "give", "feel", "greet", "ask")
_GO, _FIND, _TAKE, _DROP, _GIVE, _FEEL, _GREET, _ASK = range(len(ACTIONS))
_INTRO = -1  # event kind of "Mia was in the park."
# the piece of text that each action writes right after its subject
_VERBS = ("went to the ", "found a ", "took ", "dropped ", "gave ", "felt ",
          "said, hello ", "asked, where is ")

_PRONOUNS = {"he": "He", "she": "She", "they": "They"}

# Velu: an invented target language for translation. Word order subject-object-verb,
# adjectives after nouns, the indefinite article ``un`` after the noun phrase, no definite
# article, postpositions (``parka al`` = "to the park", ``parka en`` = "in the park").
VELU_LEXICON = {
    # pronouns
    "he": "ko", "she": "sa", "they": "tei", "it": "lu",
    # places
    "park": "parka", "garden": "hortu", "kitchen": "kozina", "forest": "silva",
    "house": "doma", "school": "skola",
    # objects
    "ball": "bolo", "kite": "drako", "book": "libro", "apple": "pomo", "cup": "tasa",
    "hat": "kapo",
    # adjectives
    "red": "ruza", "blue": "bluva", "green": "verda", "yellow": "flava", "big": "granda",
    "small": "mala",
    # feelings
    "happy": "gaja", "sad": "trista", "tired": "laca", "proud": "fiera", "scared": "tima",
    # function words and verbs
    "a": "un", "in": "en", "to": "al", "where": "kie",
    "was": "esti", "went": "iri", "found": "trovi", "took": "preni", "dropped": "faligi",
    "gave": "doni", "felt": "senti", "hello": "saluti", "asked": "demandi",
}


def _velu(word: str) -> str:
    """The Velu word for an English word: the lexicon's, else the word reversed plus ``o``.

    >>> _velu("park"), _velu("lake")
    ('parka', 'ekalo')
    """
    return VELU_LEXICON.get(word) or word[::-1] + "o"


# ---------------------------------------------------------------------------------------------
# configuration and results


@dataclass(frozen=True)
class StoryWorldConfig:
    """Everything that defines a StoryWorld language. The default is the book's language.

    >>> StoryWorldConfig().max_sentences, StoryWorldConfig.tiny().max_sentences
    (15, 4)
    """

    # (name, pronoun) for every character that can appear; names must be capitalized words
    names: tuple = (("Mia", "she"), ("Tom", "he"), ("Lily", "she"), ("Ben", "he"),
                    ("Sam", "they"), ("Anna", "she"), ("Max", "he"), ("Kim", "they"))
    places: tuple = ("park", "garden", "kitchen", "forest", "house", "school")
    objects: tuple = ("ball", "kite", "book", "apple", "cup", "hat")  # at most one of each
    adjectives: tuple = ("red", "blue", "green", "yellow", "big", "small")
    feelings: tuple = ("happy", "sad", "tired", "proud", "scared")
    # one row per cue in CUES, one weight per feeling: P(feeling | what last happened)
    feeling_weights: tuple = ((3, 1, 1, 1, 1),   # none
                              (1, 1, 4, 1, 1),   # went
                              (5, 1, 1, 2, 1),   # got (found, took or received something)
                              (1, 4, 1, 1, 1),   # dropped
                              (2, 1, 1, 4, 1),   # gave
                              (4, 1, 1, 1, 1),   # met (greeted or was greeted)
                              (1, 3, 1, 1, 3))   # missed (asked where someone was)
    # relative weight of each action in ACTIONS, among the actions the state allows
    action_weights: tuple = (2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 1.0)
    min_sentences: int = 5          # a story never ends before this many sentences
    max_sentences: int = 15         # ... and always ends after this many
    p_stop: float = 0.15            # P(end) after each sentence between the two
    max_characters: int = 3         # characters per story
    p_new_character: float = 0.15   # P(a sentence introduces a new character), while allowed
    w_last: float = 2.0             # weight of the last-mentioned character as next subject
    w_return: float = 5.0           # weight of a character's first place when they go somewhere
    p_pronoun: float = 0.6          # P(He/She/They) when the subject is the last-mentioned one
    p_it: float = 0.5               # P(it) when the object is the last-mentioned one

    @classmethod
    def tiny(cls) -> "StoryWorldConfig":
        """A configuration small enough to enumerate every story (6,308 texts, in 0.2 s).

        Two characters, two places, one object, at most four sentences: enough for every
        action (a give needs two introductions and a find first).

        >>> len(StoryWorld(StoryWorldConfig.tiny()).enumerate_texts())
        6308
        """
        return cls(names=(("Mia", "she"), ("Tom", "he")), places=("park", "garden"),
                   objects=("ball",), adjectives=("red",), feelings=("happy", "sad"),
                   feeling_weights=((1, 1), (1, 2), (3, 1), (1, 3), (2, 1), (3, 1), (1, 1)),
                   min_sentences=1, max_sentences=4, p_stop=0.3, max_characters=2,
                   p_new_character=0.3)

    def __post_init__(self):
        def words(name, values, capital=False):
            if not isinstance(values, tuple) or not values:
                raise ValueError(f"StoryWorldConfig.{name} must be a non-empty tuple, got "
                                 f"{values!r}")
            for w in values:
                ok = isinstance(w, str) and w.isascii() and w.isalpha() and (
                    w[:1].isupper() and w[1:].islower() if capital else w.islower())
                if not ok:
                    form = "a capitalized word like 'Mia'" if capital else "a lowercase word"
                    raise ValueError(f"StoryWorldConfig.{name}: expected {form}, got {w!r}")
            if len(set(values)) != len(values):
                raise ValueError(f"StoryWorldConfig.{name} has duplicates: {values!r}")

        if not isinstance(self.names, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 for p in self.names):
            raise ValueError(f"StoryWorldConfig.names must be a tuple of (name, pronoun) pairs, "
                             f"got {self.names!r}")
        words("names", tuple(n for n, _ in self.names), capital=True)
        for n, g in self.names:
            if g not in _PRONOUNS:
                raise ValueError(f"StoryWorldConfig.names: pronoun of {n!r} must be one of "
                                 f"{sorted(_PRONOUNS)}, got {g!r}")
            if n in _PRONOUNS.values():
                raise ValueError(f"StoryWorldConfig.names: {n!r} is a pronoun, not a name")
        for name in ("places", "objects", "adjectives", "feelings"):
            words(name, getattr(self, name))
        rows = self.feeling_weights
        if (not isinstance(rows, tuple) or len(rows) != len(CUES)
                or any(len(r) != len(self.feelings) for r in rows)):
            raise ValueError(f"StoryWorldConfig.feeling_weights must have {len(CUES)} rows "
                             f"(one per cue {CUES}) of {len(self.feelings)} weights each")
        if any(not (w >= 0) for r in rows for w in r) or any(sum(r) <= 0 for r in rows):
            raise ValueError("StoryWorldConfig.feeling_weights must be >= 0 with a positive sum "
                             f"in every row, got {rows!r}")
        if len(self.action_weights) != len(ACTIONS) or any(
                not (w > 0) for w in self.action_weights):
            raise ValueError(f"StoryWorldConfig.action_weights must be {len(ACTIONS)} positive "
                             f"weights for {ACTIONS}, got {self.action_weights!r}")
        if not (isinstance(self.min_sentences, int) and 1 <= self.min_sentences
                <= self.max_sentences):
            raise ValueError(f"StoryWorldConfig needs 1 <= min_sentences <= max_sentences, got "
                             f"{self.min_sentences} and {self.max_sentences}")
        if not (isinstance(self.max_characters, int) and
                1 <= self.max_characters <= len(self.names)):
            raise ValueError(f"StoryWorldConfig.max_characters must be in [1, {len(self.names)}]"
                             f", got {self.max_characters!r}")
        for name in ("p_stop", "p_new_character", "p_pronoun", "p_it"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"StoryWorldConfig.{name} must be a probability in [0, 1], "
                                 f"got {v!r}")
        for name in ("w_last", "w_return"):
            if not getattr(self, name) > 0:
                raise ValueError(f"StoryWorldConfig.{name} must be > 0, got "
                                 f"{getattr(self, name)!r}")


@dataclass(frozen=True)
class QAPair:
    """A question whose answer is the span ``story.text[start:end]``.

    >>> QAPair("Where is Mia?", "park", 15, 19)
    QAPair(question='Where is Mia?', answer='park', start=15, end=19)
    """

    question: str
    answer: str
    start: int
    end: int


@dataclass(frozen=True)
class Story:
    """One sampled story and its views.

    ``qa`` and ``translation`` are computed from the story's events the first time they are
    read (sampling stays fast when only the text is needed).

    >>> s = StoryWorld().sample(1, seed=0)[0]
    >>> s.text.endswith("\\n"), s.logprob < 0, 0 <= s.label < len(LABELS)
    (True, True, True)
    """

    text: str               # the story, ending with "\\n"
    logprob: float          # exact natural-log probability of the text
    label: int              # index into LABELS
    _events: tuple = field(default=(), repr=False, compare=False)
    _world: object = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def qa(self) -> tuple:
        """(QAPair, ...): questions about the end of the story, answered by spans of ``text``."""
        return self._world._qa(self.text, self._events)

    @functools.cached_property
    def translation(self) -> str:
        """The story in Velu (no final newline)."""
        return self._world._translate(self._events)


@dataclass(frozen=True)
class EntropyFloor:
    """The estimated entropy rate of the story stream, with standard errors.

    ``nats_per_char = nats_per_story / chars_per_story``; bits are nats / ln 2.
    """

    nats_per_char: float
    nats_per_char_se: float
    bits_per_char: float
    bits_per_char_se: float
    nats_per_story: float
    nats_per_story_se: float
    chars_per_story: float
    n_stories: int


# ---------------------------------------------------------------------------------------------
# the choice machinery: one program, several ways of making its choices


class _Choice:
    """One random choice: options that each write a piece of text and carry a value.

    >>> c = _Choice(("He ", "Tom "), (3.0, 1.0), (0, 1))
    >>> [round(math.exp(lp), 2) for lp in c.logp]
    [0.75, 0.25]
    """

    __slots__ = ("strings", "values", "logp", "cum")

    def __init__(self, strings, weights, values):
        keep = [i for i, w in enumerate(weights) if w > 0]
        total = math.fsum(weights[i] for i in keep)
        self.strings = tuple(strings[i] for i in keep)
        self.values = tuple(values[i] for i in keep)
        self.logp = tuple(math.log(weights[i] / total) for i in keep)
        cum = list(np.cumsum([weights[i] / total for i in keep]))
        cum[-1] = 1.0
        self.cum = [float(c) for c in cum[:-1]]  # bisect over these picks the option
        for a in self.strings:
            for b in self.strings:
                if a is not b and b.startswith(a):
                    raise ValueError(f"StoryWorld options {a!r} and {b!r} are not prefix-free, so "
                                     f"texts would not have a unique derivation; rename a word")


class _NoParse(Exception):
    """The text cannot be written by the program; ``pos`` is where reading failed."""

    def __init__(self, pos, expected):
        super().__init__(pos, expected)
        self.pos, self.expected = pos, expected


class _Branch(Exception):
    """Raised by ``_Replay`` at the first choice beyond its path: how many options it has."""

    def __init__(self, n):
        super().__init__(n)
        self.n = n


class _Frontier(Exception):
    """Raised by ``_PrefixReader`` where the prefix ends: next character -> probability."""

    def __init__(self, dist):
        super().__init__(dist)
        self.dist = dist


class _Sampler:
    """Makes each choice by inverse-CDF sampling from a buffered stream of uniforms."""

    def __init__(self, rng, block=4096):
        self.rng, self.block = rng, block
        self.u, self.i = rng.random(block).tolist(), 0
        self.parts, self.logp = [], 0.0

    def choose(self, c):
        if c.cum:
            i = self.i
            if i == len(self.u):
                self.u, i = self.rng.random(self.block).tolist(), 0
            self.i = i + 1
            k = bisect.bisect_right(c.cum, self.u[i])
            self.logp += c.logp[k]
        else:
            k = 0
        self.parts.append(c.strings[k])
        return c.values[k]


class _Reader:
    """Makes each choice by reading which option the text has at the current position."""

    def __init__(self, text):
        self.text, self.pos, self.logp = text, 0, 0.0

    def choose(self, c):
        text, pos = self.text, self.pos
        for k, s in enumerate(c.strings):
            if text.startswith(s, pos):
                self.pos = pos + len(s)
                self.logp += c.logp[k]
                return c.values[k]
        raise _NoParse(pos, c.strings)


class _PrefixReader(_Reader):
    """A reader for a prefix: where the prefix ends, reports the next-character distribution."""

    def choose(self, c):
        text, pos = self.text, self.pos
        for k, s in enumerate(c.strings):
            if text.startswith(s, pos):
                self.pos = pos + len(s)
                self.logp += c.logp[k]
                return c.values[k]
        rest, dist = text[pos:], {}
        for s, lp in zip(c.strings, c.logp):
            if s.startswith(rest):  # then len(s) > len(rest): s did not match in full
                ch = s[len(rest)]
                dist[ch] = dist.get(ch, 0.0) + math.exp(lp)
        if not dist:
            raise _NoParse(pos, c.strings)
        raise _Frontier(dist)


class _Replay:
    """Makes the choices listed in ``path`` (option indices); raises ``_Branch`` after it."""

    def __init__(self, path):
        self.path, self.k, self.parts, self.logp = path, 0, [], 0.0

    def choose(self, c):
        if self.k == len(self.path):
            raise _Branch(len(c.strings))
        i = self.path[self.k]
        self.k += 1
        self.parts.append(c.strings[i])
        self.logp += c.logp[i]
        return c.values[i]


# ---------------------------------------------------------------------------------------------
# the world


class StoryWorld:
    """A story language with exact probabilities, sampling, parsing and labelled views.

    The probability of a text is the product of its choices. In the tiny language:

    >>> world = StoryWorld(StoryWorldConfig.tiny())
    >>> p = math.exp(world.logprob("Mia was in the park. She felt happy.\\n"))
    >>> # Mia, park, go on, no newcomer * pronoun, feel (go:find:feel = 2:1:1), happy, stop
    >>> q = (1/2) * (1/2) * 0.7 * (0.7 * 0.6) * (1/4) * (1/2) * 0.3
    >>> abs(p - q) < 1e-15
    True
    >>> world.logprob("Mia was in the park. He felt happy.\\n")   # "He" cannot be Mia
    -inf
    """

    def __init__(self, config: StoryWorldConfig | None = None):
        if config is None:
            config = StoryWorldConfig()
        if not isinstance(config, StoryWorldConfig):
            raise TypeError(f"expected a StoryWorldConfig or None, got {type(config).__name__}")
        self.config = config
        cfg = config
        self._names = tuple(n for n, _ in cfg.names)
        self._pronoun = tuple(_PRONOUNS[g] for _, g in cfg.names)
        self._cache = {}
        n_places = len(cfg.places)
        # fixed choices
        self._first_subject = _Choice(tuple(n + " " for n in self._names),
                                      [1.0] * len(self._names),
                                      tuple((c, 2) for c in range(len(self._names))))
        self._intro_place = _Choice(tuple(f"was in the {p}." for p in cfg.places),
                                    [1.0] * n_places, tuple(range(n_places)))
        # where a character goes, by (where they are, where they first were)
        self._go = {(here, home): _Choice(
            tuple(p + "." for p in cfg.places),
            [0.0 if q == here else cfg.w_return if q == home else 1.0 for q in range(n_places)],
            tuple(range(n_places))) for here in range(n_places) for home in range(n_places)
            if n_places > 1}
        self._feel = [_Choice(tuple(f + "." for f in cfg.feelings), row,
                              tuple(range(len(cfg.feelings))))
                      for row in cfg.feeling_weights]
        self._end_forced_on = _Choice((" ",), [1.0], (False,))
        self._end_forced_off = _Choice(("\n",), [1.0], (True,))
        self._end = _Choice((" ", "\n"), [1.0 - cfg.p_stop, cfg.p_stop], (False, True))
        alphabet = set("\n")
        for c in [self._first_subject, self._intro_place, self._end, *self._feel]:
            for s in c.strings:
                alphabet.update(s)
        for s in (*_VERBS, *self._pronoun, " it to the ", " ?!", *cfg.objects, *cfg.adjectives):
            alphabet.update(s)
        self.alphabet = "".join(sorted(alphabet))

    def __repr__(self):
        return f"StoryWorld({self.config!r})"

    # ---- memoized choice tables --------------------------------------------------------------

    def _subject_choice(self, cast, last):
        """Who the next sentence is about: a cast member (by name or pronoun) or a newcomer."""
        key = ("subject", cast, last)
        c = self._cache.get(key)
        if c is None:
            cfg = self.config
            newcomers = [n for n in range(len(self._names)) if n not in cast]
            p_new = cfg.p_new_character if (newcomers and len(cast) < cfg.max_characters) else 0.0
            weight = {n: (cfg.w_last if n == last else 1.0) for n in cast}
            total = sum(weight.values())
            strings, weights, values = [], [], []
            for n in cast:
                p = (1.0 - p_new) * weight[n] / total
                if n == last:
                    strings.append(self._pronoun[n] + " ")
                    weights.append(p * cfg.p_pronoun)
                    values.append((n, 1))
                    p *= 1.0 - cfg.p_pronoun
                strings.append(self._names[n] + " ")
                weights.append(p)
                values.append((n, 0))
            for n in newcomers:
                strings.append(self._names[n] + " ")
                weights.append(p_new / len(newcomers))
                values.append((n, 2))
            c = self._cache[key] = _Choice(strings, weights, values)
        return c

    def _action_choice(self, mask):
        """Which action, among those the state allows (bit ``a`` of ``mask`` for action ``a``)."""
        key = ("action", mask)
        c = self._cache.get(key)
        if c is None:
            w = [self.config.action_weights[a] if mask >> a & 1 else 0.0
                 for a in range(len(ACTIONS))]
            c = self._cache[key] = _Choice(_VERBS, w, tuple(range(len(ACTIONS))))
        return c

    def _find_choice(self, avail):
        """Which new object, with which adjective: ``"red ball."``."""
        key = ("find", avail)
        c = self._cache.get(key)
        if c is None:
            cfg = self.config
            strings, values = [], []
            for o in avail:
                for a in range(len(cfg.adjectives)):
                    strings.append(f"{cfg.adjectives[a]} {cfg.objects[o]}.")
                    values.append((o, a))
            c = self._cache[key] = _Choice(strings, [1.0] * len(strings), values)
        return c

    def _object_choice(self, objs, last, suffix):
        """Which known object, named in full (``"the red ball"``) or as ``"it"`` if it was the
        last one mentioned; ``objs`` holds (object, adjective) pairs."""
        key = ("object", objs, last, suffix)
        c = self._cache.get(key)
        if c is None:
            cfg = self.config
            strings, weights, values = [], [], []
            for o, a in objs:
                p = 1.0 / len(objs)
                if o == last:
                    strings.append("it" + suffix)
                    weights.append(p * cfg.p_it)
                    values.append((o, 1))
                    p *= 1.0 - cfg.p_it
                strings.append(f"the {cfg.adjectives[a]} {cfg.objects[o]}{suffix}")
                weights.append(p)
                values.append((o, 0))
            c = self._cache[key] = _Choice(strings, weights, values)
        return c

    def _name_choice(self, people, suffix):
        """Which other character (recipient, greeted, asked for), always by name."""
        key = ("name", people, suffix)
        c = self._cache.get(key)
        if c is None:
            c = self._cache[key] = _Choice(tuple(self._names[n] + suffix for n in people),
                                           [1.0] * len(people), people)
        return c

    # ---- the program -------------------------------------------------------------------------

    def _run(self, chooser):
        """The story program. ``chooser.choose(choice)`` makes each random choice.

        Returns ``(events, label)``: one event tuple per sentence, ``(kind, subject, form,
        *arguments)`` with ``form`` 0 = name, 1 = pronoun, 2 = introduced here.
        """
        cfg = self.config
        choose = chooser.choose
        n_obj = len(cfg.objects)
        loc = [-1] * len(self._names)          # character -> place
        home = [-1] * len(self._names)         # character -> the place they were introduced in
        cue = [_NONE] * len(self._names)       # character -> what last happened to them
        holder = [-1] * n_obj                  # object -> character holding it, or -1
        lies = [-1] * n_obj                    # object -> place where it lies, or -1
        adj = [-1] * n_obj                     # object -> its adjective; -1 = not in story yet
        cast = ()                              # characters in order of introduction
        last_c = last_o = -1                   # last mentioned character and object
        events = []
        n_sent = 0
        while True:
            if cast:
                subj, form = choose(self._subject_choice(cast, last_c))
            else:
                subj, form = choose(self._first_subject)
            if form == 2:
                place = choose(self._intro_place)
                cast += (subj,)
                loc[subj] = home[subj] = place
                events.append((_INTRO, subj, 2, place))
                last_c = subj
            else:
                here = loc[subj]
                held = [o for o in range(n_obj) if holder[o] == subj]
                others_here = tuple(n for n in cast if n != subj and loc[n] == here)
                others_away = tuple(n for n in cast if loc[n] != here)
                lying = [o for o in range(n_obj) if lies[o] == here]
                mask = 1 << _FEEL
                if len(cfg.places) > 1:
                    mask |= 1 << _GO
                if -1 in adj:
                    mask |= 1 << _FIND
                if lying:
                    mask |= 1 << _TAKE
                if held:
                    mask |= 1 << _DROP
                    if others_here:
                        mask |= 1 << _GIVE
                if others_here:
                    mask |= 1 << _GREET
                if others_away:
                    mask |= 1 << _ASK
                act = choose(self._action_choice(mask))
                last_c = subj
                if act == _GO:
                    place = choose(self._go[here, home[subj]])
                    loc[subj] = place
                    cue[subj] = _WENT
                    events.append((_GO, subj, form, place))
                elif act == _FIND:
                    o, a = choose(self._find_choice(tuple(i for i in range(n_obj) if adj[i] < 0)))
                    adj[o] = a
                    holder[o] = subj
                    cue[subj] = _GOT
                    last_o = o
                    events.append((_FIND, subj, form, o, 0, a))
                elif act == _FEEL:
                    f = choose(self._feel[cue[subj]])
                    events.append((_FEEL, subj, form, f))
                elif act == _GREET or act == _ASK:
                    if act == _GREET:
                        other = choose(self._name_choice(others_here, "!"))
                        cue[subj] = cue[other] = _MET
                    else:
                        other = choose(self._name_choice(others_away, "?"))
                        cue[subj] = _MISSED
                    last_c = other
                    events.append((act, subj, form, other))
                else:  # take, drop, give: an object already in the story
                    objs = lying if act == _TAKE else held
                    suffix = " to " if act == _GIVE else "."
                    o, oform = choose(self._object_choice(
                        tuple((i, adj[i]) for i in objs), last_o, suffix))
                    last_o = o
                    if act == _TAKE:
                        lies[o], holder[o] = -1, subj
                        cue[subj] = _GOT
                        events.append((_TAKE, subj, form, o, oform))
                    elif act == _DROP:
                        lies[o], holder[o] = here, -1
                        cue[subj] = _DROPPED
                        events.append((_DROP, subj, form, o, oform))
                    else:
                        other = choose(self._name_choice(others_here, "."))
                        holder[o] = other
                        cue[subj], cue[other] = _GAVE, _GOT
                        last_c = other
                        events.append((_GIVE, subj, form, o, oform, other))
            n_sent += 1
            if n_sent < cfg.min_sentences:
                choose(self._end_forced_on)
            elif n_sent >= cfg.max_sentences:
                choose(self._end_forced_off)
                break
            elif choose(self._end):
                break
        hero = cast[0]
        at_home = loc[hero] == home[hero]
        holding = hero in holder
        return events, (0 if at_home else 2) + (0 if holding else 1)

    # ---- sampling ----------------------------------------------------------------------------

    def _story(self, sampler):
        sampler.parts, sampler.logp = [], 0.0
        events, label = self._run(sampler)
        text = "".join(sampler.parts)
        return Story(text, sampler.logp, label, tuple(events), self)

    def sample(self, n: int, seed: int = 0) -> list[Story]:
        """``n`` independent stories, deterministic for a seed.

        ``sample(k, seed)`` is the first ``k`` stories of ``sample(n, seed)`` for ``k <= n``.

        >>> w = StoryWorld()
        >>> w.sample(3, seed=1)[:2] == w.sample(2, seed=1)
        True
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative integer number of stories, got {n!r}")
        sampler = _Sampler(np.random.default_rng(seed))
        story = self._story
        return [story(sampler) for _ in range(int(n))]

    def sample_one(self, rng: np.random.Generator) -> Story:
        """One story drawn with a numpy Generator (consumes a small block of uniforms)."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed))"
                            f", got {type(rng).__name__}")
        return self._story(_Sampler(rng, block=64))

    # ---- exact probabilities -----------------------------------------------------------------

    def _parse(self, text):
        """``(events, label, logprob)`` of a story text; raises ``ValueError`` if impossible."""
        if not isinstance(text, str):
            raise TypeError(f"expected the text of one story (str), got {type(text).__name__}")
        reader = _Reader(text)
        try:
            events, label = self._run(reader)
        except _NoParse as e:
            got = text[e.pos:e.pos + 20]
            options = ", ".join(repr(s) for s in e.expected[:8])
            more = ", ..." if len(e.expected) > 8 else ""
            raise ValueError(f"not a StoryWorld story: at character {e.pos} expected one of "
                             f"{options}{more}, got {got!r}") from None
        if reader.pos != len(text):
            raise ValueError(f"not a StoryWorld story: the story ends at character {reader.pos} "
                             f"(after its newline) but the text goes on: "
                             f"{text[reader.pos:reader.pos + 20]!r}")
        return events, label, reader.logp

    def logprob(self, text: str) -> float:
        """Exact natural-log probability of one story text; ``-inf`` if the program cannot write it.

        >>> w = StoryWorld()
        >>> s = w.sample(1, seed=3)[0]
        >>> w.logprob(s.text) == s.logprob, w.logprob(s.text[:-1])   # no final newline
        (True, -inf)
        """
        try:
            return self._parse(text)[2]
        except ValueError:
            return -math.inf

    def logprob_corpus(self, text: str) -> float:
        """Log-probability of stories concatenated (each ends with a newline): their sum."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        if text and not text.endswith("\n"):
            return -math.inf
        return math.fsum(self.logprob(s + "\n") for s in text.split("\n")[:-1])

    def next_char_distribution(self, prefix: str) -> dict[str, float]:
        """Exact distribution of the next character after ``prefix``, summed over the program.

        ``prefix`` may span several stories; only the part after its last newline matters
        (stories are independent). Raises ``ValueError`` if no story starts with that part.

        >>> w = StoryWorld(StoryWorldConfig.tiny())
        >>> w.next_char_distribution("Mia was in the park. She felt ")
        {'h': 0.5, 's': 0.5}
        """
        if not isinstance(prefix, str):
            raise TypeError(f"expected a str prefix, got {type(prefix).__name__}")
        part = prefix[prefix.rfind("\n") + 1:]
        try:
            self._run(_PrefixReader(part))
        except _Frontier as f:
            total = math.fsum(f.dist.values())
            return {ch: p / total for ch, p in sorted(f.dist.items())}
        except _NoParse as e:
            raise ValueError(f"no story starts with {part!r}: at character {e.pos} expected one "
                             f"of {', '.join(repr(s) for s in e.expected[:8])}") from None
        raise AssertionError("unreachable: a prefix without a newline cannot finish a story")

    def enumerate_texts(self, max_texts: int = 200_000) -> list[tuple[str, float]]:
        """Every text the language can produce, with its log-probability, by walking all choices.

        Only for small configurations such as ``StoryWorldConfig.tiny()``; raises
        ``ValueError`` once more than ``max_texts`` texts are found.

        >>> texts = StoryWorld(StoryWorldConfig.tiny()).enumerate_texts()
        >>> abs(math.fsum(math.exp(lp) for _, lp in texts) - 1.0) < 1e-12
        True
        """
        if isinstance(max_texts, bool) or not isinstance(max_texts, (int, np.integer)) \
                or max_texts < 1:
            raise ValueError(f"max_texts must be a positive integer, got {max_texts!r}")
        out, stack = [], [[]]
        while stack:
            path = stack.pop()
            replay = _Replay(path)
            try:
                self._run(replay)
            except _Branch as b:
                stack.extend(path + [i] for i in reversed(range(b.n)))
                continue
            out.append(("".join(replay.parts), replay.logp))
            if len(out) > max_texts:
                raise ValueError(f"this configuration has more than {max_texts} texts; "
                                 f"enumerate a smaller one such as StoryWorldConfig.tiny(), or "
                                 f"raise max_texts")
        return out

    def entropy_floor(self, n_stories: int = 20_000, seed: int = 0) -> EntropyFloor:
        """Monte Carlo estimate of the entropy rate ``E[-log p(S)] / E[|S|]`` per character.

        A ratio estimator over ``n_stories`` sampled stories; its standard error by the delta
        method, ``se = sd(a - H b) / (sqrt(n) mean(b))`` with ``a = -log p(S)``, ``b = |S|``.
        No model can have a lower expected cross-entropy per character (it is H + KL).

        >>> f = StoryWorld(StoryWorldConfig.tiny()).entropy_floor(2000, seed=0)
        >>> 0.0 < f.bits_per_char < 1.0
        True
        """
        if isinstance(n_stories, bool) or not isinstance(n_stories, (int, np.integer)) \
                or n_stories < 2:
            raise ValueError(f"n_stories must be an integer >= 2 (to estimate a standard error), "
                             f"got {n_stories!r}")
        stories = self.sample(int(n_stories), seed)
        a = np.array([-s.logprob for s in stories])                 # [n] nats per story
        b = np.array([len(s.text) for s in stories], dtype=float)   # [n] characters per story
        n = len(stories)
        h = a.mean() / b.mean()
        se = (a - h * b).std(ddof=1) / (math.sqrt(n) * b.mean())
        ln2 = math.log(2.0)
        return EntropyFloor(nats_per_char=float(h), nats_per_char_se=float(se),
                            bits_per_char=float(h / ln2), bits_per_char_se=float(se / ln2),
                            nats_per_story=float(a.mean()),
                            nats_per_story_se=float(a.std(ddof=1) / math.sqrt(n)),
                            chars_per_story=float(b.mean()), n_stories=n)

    # ---- labelled views ----------------------------------------------------------------------

    def label_of(self, text: str) -> int:
        """The story's label (index into ``LABELS``), computed from its text alone.

        >>> w = StoryWorld(StoryWorldConfig.tiny())
        >>> LABELS[w.label_of("Mia was in the park. She found a red ball.\\n")]
        'home, holding something'
        """
        return self._parse(text)[1]

    def questions(self, text: str) -> list[QAPair]:
        """The question/answer pairs of a story text (see ``_qa`` for which are asked).

        >>> w = StoryWorld(StoryWorldConfig.tiny())
        >>> w.questions("Mia was in the park. She found a red ball.\\n")[1]
        QAPair(question='Who has the ball?', answer='Mia', start=0, end=3)
        """
        return list(self._qa(text, self._parse(text)[0]))

    def translate(self, text: str) -> str:
        """The story in Velu: subject-object-verb, adjectives after nouns, postpositions.

        >>> w = StoryWorld(StoryWorldConfig.tiny())
        >>> w.translate("Mia was in the park. She found a red ball. Tom was in the park. "
        ...             "Mia gave it to Tom.\\n")
        'Mia parka en esti. Sa bolo ruza un trovi. Tom parka en esti. Mia lu Tom al doni.'
        """
        return self._translate(self._parse(text)[0])

    def _qa(self, text, events):
        """Questions about the final state, each answered by the span that states the answer.

        For each character in order of introduction, ``Where is NAME?`` (the place in the
        sentence that put them there); for each object in order of introduction, ``Who has the
        OBJ?`` if someone holds it (the holder's name as written in the sentence where they got
        it, or, if a pronoun was used there, its last mention before) or ``Where is the OBJ?``
        if it lies somewhere (the place where its dropper was put); then ``What does NAME
        have?`` for each character holding exactly one object (the object's noun in the
        sentence where they got it, or its last mention before if ``it`` was used).
        """
        cfg = self.config
        names = self._names
        name_at = {}      # character -> (start, end) of their last mention by name
        obj_at = {}       # object -> (start, end) of its noun's last mention
        loc_at = {}       # character -> span of the place word that put them where they are
        has = {}          # object -> (holder, span of holder's name) if held
        lies = {}         # object -> span of the place word where it lies
        got = {}          # object -> span of the noun when its holder got it
        objects = []      # objects in order of introduction
        start = 0
        # one past each sentence's final punctuation mark (no sentence has one inside)
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        for ev, end in zip(events, ends):
            kind, subj, form = ev[0], ev[1], ev[2]
            if form != 1:
                name_at[subj] = (start, start + len(names[subj]))
            if kind == _INTRO or kind == _GO:
                w = cfg.places[ev[3]]
                loc_at[subj] = (end - 1 - len(w), end - 1)
            elif kind in (_FIND, _TAKE, _DROP, _GIVE):
                o, oform = ev[3], ev[4]
                tail = 0 if kind != _GIVE else len(" to ") + len(names[ev[5]])
                if kind == _FIND:
                    objects.append(o)
                if oform == 0:
                    noun = cfg.objects[o]
                    obj_at[o] = (end - 1 - tail - len(noun), end - 1 - tail)
                if kind == _GIVE:
                    r = ev[5]
                    name_at[r] = (end - 1 - len(names[r]), end - 1)
                    has[o] = (r, name_at[r])
                    got[o] = obj_at[o]
                elif kind == _DROP:
                    has.pop(o, None)
                    lies[o] = loc_at[subj]
                else:
                    has[o] = (subj, name_at[subj])
                    lies.pop(o, None)
                    got[o] = obj_at[o]
            elif kind == _GREET or kind == _ASK:
                r = ev[3]
                name_at[r] = (end - 1 - len(names[r]), end - 1)
            start = end + 1
        qa = []
        cast = [ev[1] for ev in events if ev[0] == _INTRO]
        for n in cast:
            s, e = loc_at[n]
            qa.append(QAPair(f"Where is {names[n]}?", text[s:e], s, e))
        for o in objects:
            if o in has:
                s, e = has[o][1]
                qa.append(QAPair(f"Who has the {cfg.objects[o]}?", text[s:e], s, e))
            else:
                s, e = lies[o]
                qa.append(QAPair(f"Where is the {cfg.objects[o]}?", text[s:e], s, e))
        for n in cast:
            mine = [o for o in objects if o in has and has[o][0] == n]
            if len(mine) == 1:
                s, e = got[mine[0]]
                qa.append(QAPair(f"What does {names[n]} have?", text[s:e], s, e))
        return tuple(qa)

    def _translate(self, events):
        """Render the events in Velu, one sentence per event, by fixed rules."""
        cfg = self.config
        names, v = self._names, _velu
        adj = {}   # object -> adjective index, from the sentence that introduced it
        out = []
        for ev in events:
            kind, subj, form = ev[0], ev[1], ev[2]
            if kind == _FIND:
                adj[ev[3]] = ev[5]
            s = (v(cfg.names[subj][1]).capitalize() if form == 1 else names[subj])
            if kind == _INTRO:
                out.append(f"{s} {v(cfg.places[ev[3]])} {v('in')} {v('was')}.")
            elif kind == _GO:
                out.append(f"{s} {v(cfg.places[ev[3]])} {v('to')} {v('went')}.")
            elif kind == _FEEL:
                out.append(f"{s} {v(cfg.feelings[ev[3]])} {v('felt')}.")
            elif kind == _GREET:
                out.append(f"{s} {names[ev[3]]} {v('hello')}!")
            elif kind == _ASK:
                out.append(f"{s} {names[ev[3]]} {v('where')} {v('asked')}?")
            else:
                o, oform = ev[3], ev[4]
                obj = (v("it") if oform == 1 else
                       f"{v(cfg.objects[o])} {v(cfg.adjectives[adj[o]])}")
                if kind == _FIND:
                    out.append(f"{s} {obj} {v('a')} {v('found')}.")
                elif kind == _TAKE:
                    out.append(f"{s} {obj} {v('took')}.")
                elif kind == _DROP:
                    out.append(f"{s} {obj} {v('dropped')}.")
                else:
                    out.append(f"{s} {obj} {names[ev[5]]} {v('to')} {v('gave')}.")
        return " ".join(out)

    # ---- splits and corpora ------------------------------------------------------------------

    @staticmethod
    def split_of(text: str) -> str:
        """The split a story text belongs to, by ``zlib.crc32`` of its UTF-8 bytes (see SPLITS).

        >>> StoryWorld.split_of("Mia was in the park. She felt happy.\\n") in SPLITS
        True
        """
        if not isinstance(text, str):
            raise TypeError(f"expected a story text (str), got {type(text).__name__}")
        bucket = zlib.crc32(text.encode("utf-8")) % 100
        for name, (lo, hi) in SPLITS.items():
            if lo <= bucket < hi:
                return name
        raise AssertionError("unreachable: SPLITS covers 0..99")

    def split(self, stories) -> dict[str, list]:
        """Group stories (``Story`` objects or texts) by split, keeping their order."""
        out = {name: [] for name in SPLITS}
        for s in stories:
            out[self.split_of(s.text if isinstance(s, Story) else s)].append(s)
        return out

    def stories(self, split: str, n_stories: int, seed: int = 0) -> list[Story]:
        """The first ``n_stories`` sampled stories (stream ``seed``) that belong to ``split``."""
        _check_split(split)
        if isinstance(n_stories, bool) or not isinstance(n_stories, (int, np.integer)) \
                or n_stories < 0:
            raise ValueError(f"n_stories must be a non-negative integer, got {n_stories!r}")
        sampler = _Sampler(np.random.default_rng(seed))
        out = []
        while len(out) < n_stories:
            s = self._story(sampler)
            if self.split_of(s.text) == split:
                out.append(s)
        return out

    def corpus(self, split: str = "train", n_stories: int | None = None,
               n_chars: int | None = None, seed: int = 0) -> str:
        """Stories of one split concatenated: ``n_stories`` of them, or as many whole stories
        as fit in ``n_chars`` characters (exactly one of the two).

        The same seed gives the same stream for every split; a story goes to the split its
        text hashes to, so the corpora of different splits never share a story.

        >>> w = StoryWorld()
        >>> c = w.corpus("val", n_chars=1000, seed=0)
        >>> len(c) <= 1000, c.endswith("\\n"), w.split_of(c.split("\\n")[0] + "\\n")
        (True, True, 'val')
        """
        _check_split(split)
        if (n_stories is None) == (n_chars is None):
            raise ValueError("give exactly one of n_stories (a number of stories) or n_chars "
                             "(a budget of characters)")
        if n_stories is not None:
            return "".join(s.text for s in self.stories(split, n_stories, seed))
        if isinstance(n_chars, bool) or not isinstance(n_chars, (int, np.integer)) \
                or n_chars < 0:
            raise ValueError(f"n_chars must be a non-negative integer, got {n_chars!r}")
        sampler = _Sampler(np.random.default_rng(seed))
        parts, total = [], 0
        while True:
            s = self._story(sampler)
            if self.split_of(s.text) != split:
                continue
            if total + len(s.text) > n_chars:
                return "".join(parts)
            parts.append(s.text)
            total += len(s.text)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")


_SENTENCE_END = re.compile(r"[.!?]")
