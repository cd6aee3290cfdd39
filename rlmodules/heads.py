"""Default heads: features -> action distribution inputs, features -> state values.

Both are an MLP of ``head_fcnet_hiddens`` and an output layer; without a configured
``head_fcnet_kernel_initializer`` the output layer is orthogonal with a small gain for the
policy (near-uniform initial actions) and gain 1 for the value function.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.distributions import TorchDiagGaussian, TorchDistribution, default_dist_cls
from rlmodules.layers import mlp, orthogonal_init


class PolicyHead(nn.Module):
    """Features -> ``action_dist_inputs`` of size ``dist_cls.required_input_dim(action_space)``.

    ``dist_cls`` defaults to the action space's default distribution (Discrete, MultiDiscrete,
    MultiBinary, Box of any shape, Tuple, Dict). For a TorchDiagGaussian (Box actions) the
    inputs are the flattened means, then log-stds clipped to +-log_std_clip_param; with
    ``free_log_std`` the log-stds are one learned parameter per dim that does not depend on
    the features.
    """

    def __init__(self, input_dim: int, action_space: gym.Space, cfg: DefaultModelConfig,
                 dist_cls: type[TorchDistribution] | None = None) -> None:
        super().__init__()
        dist_cls = default_dist_cls(action_space) if dist_cls is None else dist_cls
        self.is_gaussian = issubclass(dist_cls, TorchDiagGaussian)
        if cfg.free_log_std and not self.is_gaussian:
            raise ValueError(
                f"model_config['free_log_std'] = True needs Box actions (a TorchDiagGaussian), "
                f"got {action_space!r} with {dist_cls.__name__}; set it to False.")
        out_dim = dist_cls.required_input_dim(action_space)
        out_dim //= 2 if cfg.free_log_std else 1  # The log-stds are then a parameter.
        self.net = mlp(input_dim, cfg, "head_fcnet", out_dim, orthogonal_init(0.01))
        self.log_std = nn.Parameter(torch.zeros(out_dim)) if cfg.free_log_std else None
        self.log_std_clip = float(cfg.log_std_clip_param)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.net(features)
        if not self.is_gaussian:
            return out
        if self.log_std is None:
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return torch.cat([mean, log_std.clamp(-self.log_std_clip, self.log_std_clip)], dim=-1)


class ValueHead(nn.Module):
    """Features [..., D] -> state values [..., 1] (``compute_values`` squeezes, as RLlib's)."""

    def __init__(self, input_dim: int, cfg: DefaultModelConfig) -> None:
        super().__init__()
        self.net = mlp(input_dim, cfg, "head_fcnet", 1, orthogonal_init(1.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)
