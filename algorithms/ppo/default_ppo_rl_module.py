"""The default PPO module: actor-critic with a value function for the learner."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from algorithms.ppo.ppo_catalog import PPOCatalog
from rlmodules import (ENCODER_OUT, Columns, DefaultModelConfig, InferenceOnlyAPI,
                       TorchRLModule, ValueFunctionAPI)
from rlmodules.encoders import ACTOR, CRITIC
from rlmodules.torch_rl_module import to_tensors


class DefaultPPOTorchRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """RLlib's layout: ``encoder`` (an ActorCriticEncoder: ``encoder.actor_encoder`` and
    ``encoder.critic_encoder``, or one shared ``encoder.encoder``), ``pi`` and ``vf`` heads,
    all built by a PPOCatalog (the spec's ``catalog_class`` instance, else a new one).

    ``_forward_inference/_forward_exploration`` return ``action_dist_inputs``;
    ``_forward_train`` also returns the critic's features as ``embeddings`` for
    ``compute_values``. All also return ``state_out`` when ``use_lstm`` (the recurrent
    encoder is then shared). Built with ``inference_only=True`` the module has neither
    ``vf`` nor a critic encoder and accepts the full module's state.
    """

    def setup(self) -> None:
        cfg = DefaultModelConfig.from_dict(self.model_config, owner=type(self).__name__)
        self.model_config = dataclasses.asdict(cfg)
        catalog = getattr(self, "catalog", None)
        if catalog is None:
            self.catalog = catalog = PPOCatalog(self.observation_space, self.action_space,
                                                self.model_config)
        elif not isinstance(catalog, PPOCatalog):
            raise TypeError(
                f"{type(self).__name__} builds its networks with a PPOCatalog, but the spec's "
                f"catalog_class is {type(catalog).__name__}; subclass PPOCatalog or leave "
                "catalog_class unset.")
        catalog.inference_only = self.inference_only
        self.encoder = catalog.build_actor_critic_encoder(framework=self.framework)
        self.pi = catalog.build_pi_head(framework=self.framework)
        if not self.inference_only:
            self.vf = catalog.build_vf_head(framework=self.framework)

    def get_non_inference_attributes(self) -> list[str]:
        return ["vf"] + ([] if self.encoder.shared else ["encoder.critic_encoder"])

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.get_initial_state()

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._policy_outputs(self.encoder(batch))

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        encoded = self.encoder(batch)
        out = self._policy_outputs(encoded)
        out[Columns.EMBEDDINGS] = encoded[ENCODER_OUT][CRITIC]
        return out

    def compute_values(self, batch: dict[str, Any],
                       embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings is None:
            batch = to_tensors(batch)
            embeddings = (self.encoder(batch)[ENCODER_OUT][CRITIC] if self.encoder.shared
                          else self.encoder.critic_encoder(batch)[ENCODER_OUT])
        return self.vf(embeddings).squeeze(-1)

    def _policy_outputs(self, encoded: dict[str, Any]) -> dict[str, Any]:
        out = {Columns.ACTION_DIST_INPUTS: self.pi(encoded[ENCODER_OUT][ACTOR])}
        if Columns.STATE_OUT in encoded:
            out[Columns.STATE_OUT] = encoded[Columns.STATE_OUT]
        return out
