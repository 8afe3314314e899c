"""Shared test fixtures.

The PyTorch / Hugging Face references are test-only. ``reference(name)`` imports one; when it
is missing, the test is skipped on a reader's machine but FAILS in CI (``CI`` set in the
environment) or when ``LLM_SCRATCH_REQUIRE_REFERENCE=1``, so a parity check can never pass
by not running.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest


def _reference_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("LLM_SCRATCH_REQUIRE_REFERENCE") == "1"


def reference(name: str):
    """Import a test-only reference package (``torch``, ``transformers``, ``tokenizers``)."""
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        message = (f"reference package {name!r} is not installed ({exc}); "
                   f"install it with: pip install -r requirements-reference.txt")
        if _reference_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if name == "torch":
        module.set_num_threads(1)
    return module


@pytest.fixture
def torch():
    return reference("torch")


@pytest.fixture
def transformers():
    return reference("transformers")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# pytest's own process draws with Agg (no display needed). Notebook kernels are separate
# processes and keep the inline backend, so the built book shows every figure.
import matplotlib  # noqa: E402

matplotlib.use("Agg")
