"""The default VPG module: a policy network only (encoder + policy head)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rlmodules import Columns, DefaultModelConfig, TorchRLModule
from rlmodules.encoders import build_encoder
from rlmodules.heads import PolicyHead


class DefaultVPGTorchRLModule(TorchRLModule):
    """Encoder (MLP, CNN, optionally LSTM) and policy head, built from a DefaultModelConfig.

    All three forward passes return ``action_dist_inputs`` (and ``state_out`` when
    ``use_lstm``). ``model_config`` is merged over ``DefaultModelConfig()``.
    """

    def setup(self) -> None:
        cfg = DefaultModelConfig.from_dict(self.model_config, owner=type(self).__name__)
        self.model_config = dataclasses.asdict(cfg)
        self.encoder = build_encoder(self.observation_space, cfg)
        self.pi = PolicyHead(self.encoder.output_dim, self.action_space, cfg)

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        return self.encoder.get_initial_state()

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        features, state_out = self.encoder(batch[Columns.OBS], batch.get(Columns.STATE_IN))
        out = {Columns.ACTION_DIST_INPUTS: self.pi(features)}
        if state_out:
            out[Columns.STATE_OUT] = state_out
        return out
