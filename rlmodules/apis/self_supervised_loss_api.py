"""SelfSupervisedLossAPI: a module that brings its own loss (e.g. a curiosity model)."""

from __future__ import annotations

import abc
from typing import Any


class SelfSupervisedLossAPI(abc.ABC):
    """Learners call ``compute_self_supervised_loss`` for such a module instead of the
    algorithm's loss, and do not require the algorithm's APIs (e.g. ValueFunctionAPI) of it."""

    @abc.abstractmethod
    def compute_self_supervised_loss(self, *, learner: Any, module_id: str, config: Any,
                                     batch: dict[str, Any], fwd_out: dict[str, Any]) -> Any:
        """The scalar loss tensor of this module on one minibatch (``fwd_out`` is its
        ``forward_train`` output on ``batch``)."""
