"""ValueFunctionAPI: state-value estimates, which actor-critic learners (PPO) need."""

from __future__ import annotations

import abc
from typing import Any

import torch


class ValueFunctionAPI(abc.ABC):
    """A module with a state-value head; required by PPO's learner."""

    @abc.abstractmethod
    def compute_values(self, batch: dict[str, Any],
                       embeddings: Any | None = None) -> torch.Tensor:
        """Value estimates of shape [B] (or [B, T] for stateful modules) for ``batch``.

        ``embeddings`` lets a module reuse encoder outputs it already computed in
        ``_forward_train``; when None, the module encodes ``batch`` itself.
        """
