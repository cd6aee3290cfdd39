"""QNetAPI: Q-value heads, for Q-learning algorithms."""

from __future__ import annotations

import abc
from typing import Any


class QNetAPI(abc.ABC):
    """A module with Q-values; declared for (distributional) Q-learning algorithms."""

    @abc.abstractmethod
    def compute_q_values(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``{"qf_preds": [B, num_actions], ...}`` (plus atoms, logits and probs when
        distributional) for ``batch``."""

    def compute_advantage_distribution(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The advantage stream's distribution; the Q-distribution without dueling."""
        return self.compute_q_values(batch)
