"""Data: StoryWorld (a synthetic story language with exact probabilities), real text, batching.

- ``storyworld``: stories from a seeded probabilistic program, their exact log-probabilities,
  the entropy floor no model can beat, labels, questions with answer spans, translations and
  hash-based train/val/test splits.
- ``realtext``: the Python standard library's own source as a real-text corpus, or a file.
- ``batching``: random training windows and sequential evaluation windows of token ids.
- ``bert``: BERT's inputs: masked-language-model masking and question-answering span features.
"""

from .batching import get_batch, iter_windows
from .realtext import load_text_file, python_stdlib_text, stdlib_files
from .storyworld import (ACTIONS, CUES, LABELS, SPLITS, VELU_LEXICON, EntropyFloor, QAPair,
                         Story, StoryWorld, StoryWorldConfig)

__all__ = [
    "StoryWorld", "StoryWorldConfig", "Story", "QAPair", "EntropyFloor",
    "LABELS", "SPLITS", "CUES", "ACTIONS", "VELU_LEXICON",
    "python_stdlib_text", "stdlib_files", "load_text_file",
    "get_batch", "iter_windows",
]
