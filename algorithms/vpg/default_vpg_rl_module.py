"""The default VPG module: a policy network only (encoder + policy head)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from rlmodules import ENCODER_OUT, Columns, DefaultModelConfig, TorchRLModule
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
        encoded = self.encoder(batch)
        out = {Columns.ACTION_DIST_INPUTS: self.pi(encoded[ENCODER_OUT])}
        if Columns.STATE_OUT in encoded:
            out[Columns.STATE_OUT] = encoded[Columns.STATE_OUT]
        return out
