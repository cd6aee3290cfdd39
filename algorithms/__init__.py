"""Algorithms: configs that build runners + learners, and the train() loop that joins them."""

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, NotProvided

__all__ = ["Algorithm", "AlgorithmConfig", "NotProvided"]
