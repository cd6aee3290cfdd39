"""Learners: train the full MultiRLModule on fragments, locally or as data-parallel Ray actors."""

from learners.learner import ALL_MODULES, Learner, check_required_apis
from learners.learner_group import LearnerGroup
from learners.torch_learner import TorchLearner, masked_mean

__all__ = [
    "ALL_MODULES",
    "Learner",
    "LearnerGroup",
    "TorchLearner",
    "check_required_apis",
    "masked_mean",
]
