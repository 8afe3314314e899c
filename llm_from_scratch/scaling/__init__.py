"""Scaling laws measured against a known floor.

- ``llm_from_scratch.scaling.sweep``: grids of GPT training runs over model size N and training
  tokens D, run locally or on a Dask cluster, with their results in a JSON-lines file.
- ``llm_from_scratch.scaling.fit``: the Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta fitted
  as Hoffmann et al. (2022) did, bootstrap intervals, and IsoFLOP profiles.
"""
