"""The default APPO module: PPO's actor-critic plus a target copy of its policy."""

from __future__ import annotations

from typing import Any

from torch import nn

from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from rlmodules import ACTOR, ENCODER_OUT
from rlmodules.apis import TARGET_NETWORK_ACTION_DIST_INPUTS, TargetNetworkAPI, make_target_network


class DefaultAPPOTorchRLModule(DefaultPPOTorchRLModule, TargetNetworkAPI):
    """DefaultPPOTorchRLModule whose learner keeps frozen copies of ``encoder`` and ``pi``
    (RLlib's ``_old_encoder`` / ``_old_pi``): the "old" policy APPO's surrogate and KL term
    are measured against, moved towards the trained nets every target network update.
    Env runners never build them (only learners call ``make_target_networks``)."""

    def make_target_networks(self) -> None:
        self._old_encoder = make_target_network(self.encoder)
        self._old_pi = make_target_network(self.pi)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.encoder, self._old_encoder), (self.pi, self._old_pi)]

    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        encoded = self._old_encoder(batch)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._old_pi(encoded[ENCODER_OUT][ACTOR])}
