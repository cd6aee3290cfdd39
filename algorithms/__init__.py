"""Algorithms: configs that build runners + learners, and the train() loop that joins them."""

import importlib

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, NotProvided

ALGORITHMS = {"PPO": "algorithms.ppo", "APPO": "algorithms.appo", "VPG": "algorithms.vpg"}
"""Algorithm name -> the package that exports it (imported on demand)."""


def get_algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm subclass called ``name`` (e.g. "PPO"), as scripts pick them."""
    if name not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}.")
    return getattr(importlib.import_module(ALGORITHMS[name]), name)


__all__ = ["Algorithm", "AlgorithmConfig", "NotProvided", "ALGORITHMS", "get_algorithm_class"]
