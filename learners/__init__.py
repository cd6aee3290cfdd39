"""Learners: train the full MultiRLModule on fragments, locally or as data-parallel Ray actors."""

from learners.learner import (ALL_MODULES, DEFAULT_OPTIMIZER, Learner, TorchLearner,
                              check_required_apis, masked_mean)
from learners.learner_group import LearnerGroup

__all__ = [
    "ALL_MODULES",
    "DEFAULT_OPTIMIZER",
    "Learner",
    "LearnerGroup",
    "TorchLearner",
    "check_required_apis",
    "masked_mean",
]
