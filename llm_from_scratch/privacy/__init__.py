"""Data and privacy: what a model keeps of its training data, and how DP-SGD limits it.

- ``memorization``: the exposure of planted secrets (canaries), and membership inference by a
  loss threshold, measured with the ROC curve and its AUC.
- ``accountant``: the (epsilon, delta) guarantee of DP-SGD, by Rényi differential privacy of the
  subsampled Gaussian mechanism.
"""

from llm_from_scratch.privacy.accountant import ORDERS, epsilon, epsilon_from_rdp, rdp_subsampled_gaussian
from llm_from_scratch.privacy.memorization import exposure, roc_auc, roc_curve, secret_rank

__all__ = ["ORDERS", "rdp_subsampled_gaussian", "epsilon_from_rdp", "epsilon", "secret_rank", "exposure",
           "roc_curve", "roc_auc"]
