"""TargetNetworkAPI: slowly updated copies of a module's networks, kept by its learner."""

from __future__ import annotations

import abc
import copy
from typing import Any

import torch
from torch import nn

TARGET_NETWORK_ACTION_DIST_INPUTS = "target_network_action_dist_inputs"
"""Output key of ``forward_target`` for the target policy's action distribution inputs."""


class TargetNetworkAPI(abc.ABC):
    """A module with target networks. Its learner calls ``make_target_networks()`` once
    after building it, and moves each target towards its main net every
    ``target_network_update_freq`` trained timesteps by ``tau`` (Polyak averaging)."""

    @abc.abstractmethod
    def make_target_networks(self) -> None:
        """Create the target nets, e.g. ``self._target_pi = make_target_network(self.pi)``."""

    @abc.abstractmethod
    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """``[(main_net, target_net), ...]`` for every target made in make_target_networks."""

    @abc.abstractmethod
    def forward_target(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The forward pass through the target nets (e.g. TARGET_NETWORK_ACTION_DIST_INPUTS)."""


def make_target_network(main_net: nn.Module) -> nn.Module:
    """A frozen copy of ``main_net`` (same weights, no gradients)."""
    target = copy.deepcopy(main_net)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def update_target_network(*, main_net: nn.Module, target_net: nn.Module, tau: float) -> None:
    """``target = tau * main + (1 - tau) * target``, parameter by parameter (and buffers)."""
    main = main_net.state_dict()
    for name, target in target_net.state_dict().items():
        if target.dtype.is_floating_point:
            target.lerp_(main[name], tau)
        else:
            target.copy_(main[name])
