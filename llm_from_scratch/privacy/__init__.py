"""Data and privacy: what a model keeps of its training data, and how DP-SGD limits it.

- ``memorization``: the exposure of planted secrets (canaries), and membership inference by a
  loss threshold, measured with the ROC curve and its AUC.
- ``accountant``: the (epsilon, delta) guarantee of DP-SGD, by Rényi differential privacy of the
  subsampled Gaussian mechanism.
- ``dpsgd``: per-example gradients from one batched backward pass, clipping and noise.
"""

from llm_from_scratch.privacy.accountant import ORDERS, epsilon, epsilon_from_rdp, rdp_subsampled_gaussian
from llm_from_scratch.privacy.dpsgd import clip_per_example, dp_sgd_gradient, per_example_grads, per_example_ops
from llm_from_scratch.privacy.memorization import exposure, roc_auc, roc_curve, secret_rank

__all__ = ["ORDERS", "rdp_subsampled_gaussian", "epsilon_from_rdp", "epsilon", "secret_rank", "exposure",
           "roc_curve", "roc_auc", "per_example_ops", "per_example_grads", "clip_per_example", "dp_sgd_gradient"]
