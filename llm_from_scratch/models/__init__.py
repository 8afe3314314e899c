"""Models built from the ops in ``llm_from_scratch.ops``, each with its backward pass written out."""
