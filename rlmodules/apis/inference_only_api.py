"""InferenceOnlyAPI: which sub-networks an inference-only copy (on env runners) leaves out."""

from __future__ import annotations

import abc


class InferenceOnlyAPI(abc.ABC):
    """A module whose ``inference_only=True`` build omits learner-only attributes.

    Such a build never holds the attributes named here (even where ``setup()`` created
    them), and its ``set_state`` accepts the full module's state, skipping their entries.
    """

    @abc.abstractmethod
    def get_non_inference_attributes(self) -> list[str]:
        """Attribute names (e.g. ``["vf", "encoder.critic_encoder"]``) only learners need."""
