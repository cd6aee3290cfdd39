"""The default PPO module: actor-critic with a value function for the learner."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rlmodules import Columns, DefaultModelConfig, TorchRLModule, ValueFunctionAPI
from rlmodules.encoders import build_encoder
from rlmodules.heads import PolicyHead, ValueHead
from rlmodules.torch_rl_module import to_tensors


class DefaultPPOTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """Actor (encoder + policy head) and critic (own encoder unless shared + value head).

    ``_forward_inference/_forward_exploration`` return ``action_dist_inputs``;
    ``_forward_train`` also returns the critic's features as ``embeddings`` for
    ``compute_values``. All also return ``state_out`` when ``use_lstm``. Built with
    ``inference_only=True`` the module has no critic and accepts the full module's state.
    """

    def setup(self) -> None:
        cfg = DefaultModelConfig.from_dict(self.model_config, owner=type(self).__name__)
        self.model_config = dataclasses.asdict(cfg)
        self.encoder = build_encoder(self.observation_space, cfg)
        self.pi = PolicyHead(self.encoder.output_dim, self.action_space, cfg)
        # A recurrent encoder is shared: its state, carried by the acting module, must be
        # all that the learner needs to recompute the critic's features.
        self.shares_encoder = cfg.vf_share_layers or cfg.use_lstm
        if not self.inference_only:
            if not self.shares_encoder:
                self.vf_encoder = build_encoder(self.observation_space, cfg)
            self.vf = ValueHead(self.encoder.output_dim, cfg)

    def get_non_inference_attributes(self) -> list[str]:
        return ["vf_encoder", "vf"]

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.get_initial_state()

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._actor(batch)[0]

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        out, features = self._actor(batch)
        out[Columns.EMBEDDINGS] = features if self.shares_encoder else \
            self.vf_encoder(batch[Columns.OBS])[0]
        return out

    def compute_values(self, batch: dict[str, Any],
                       embeddings: torch.Tensor | None = None) -> torch.Tensor:
        if embeddings is None:
            batch = to_tensors(batch)
            encoder = self.encoder if self.shares_encoder else self.vf_encoder
            embeddings, _ = encoder(batch[Columns.OBS], batch.get(Columns.STATE_IN))
        return self.vf(embeddings)

    def _actor(self, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        features, state_out = self.encoder(batch[Columns.OBS], batch.get(Columns.STATE_IN))
        out = {Columns.ACTION_DIST_INPUTS: self.pi(features)}
        if state_out:
            out[Columns.STATE_OUT] = state_out
        return out, features
