"""llm_from_scratch: a language model built by hand in numpy and numba.

Every component has an explicit forward and backward pass in plain numpy (what the book
teaches) and, for the hot paths, a numba twin of the same name in ``llm_from_scratch.kernels``
(what makes it fast). Subpackages:

- ``data``: StoryWorld, a synthetic story language with exact probabilities, and real text.
- ``tokenizers``: character, byte-level BPE and WordPiece tokenizers.
- ``testing``: gradient checking and ``assert_close``.
- ``exercises``: the course exercises and their checks.
"""

__version__ = "0.1.0"
