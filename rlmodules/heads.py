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
from rlmodules.distributions import default_dist_cls
from rlmodules.layers import mlp, orthogonal_init


class PolicyHead(nn.Module):
    """Features -> ``action_dist_inputs`` for the action space's default distribution.

    Discrete: n logits; MultiDiscrete: sum(nvec) logits; 1D Box: per dim a mean and a
    log-std (clipped to +-log_std_clip_param). With ``free_log_std`` the log-std is one
    learned parameter per dim that does not depend on the features.
    """

    def __init__(self, input_dim: int, action_space: gym.Space, cfg: DefaultModelConfig) -> None:
        super().__init__()
        self.is_box = isinstance(action_space, gym.spaces.Box)
        if not (isinstance(action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)) or (
                self.is_box and len(action_space.shape) == 1)):
            raise ValueError(
                f"The default models support Discrete, MultiDiscrete and 1D Box actions, got "
                f"{action_space!r}; write a custom RLModule (and distribution) for it.")
        if cfg.free_log_std and not self.is_box:
            raise ValueError(f"model_config['free_log_std'] = True needs Box actions, got "
                             f"{action_space!r}; set it to False.")
        out_dim = default_dist_cls(action_space).required_input_dim(action_space)
        out_dim //= 2 if cfg.free_log_std else 1  # The log-stds are then a parameter.
        self.net = mlp(input_dim, cfg, "head_fcnet", out_dim, orthogonal_init(0.01))
        self.log_std = nn.Parameter(torch.zeros(out_dim)) if cfg.free_log_std else None
        self.log_std_clip = float(cfg.log_std_clip_param)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.net(features)
        if not self.is_box:
            return out
        if self.log_std is None:
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return torch.cat([mean, log_std.clamp(-self.log_std_clip, self.log_std_clip)], dim=-1)


class ValueHead(nn.Module):
    """Features [..., D] -> state values [...]."""

    def __init__(self, input_dim: int, cfg: DefaultModelConfig) -> None:
        super().__init__()
        self.net = mlp(input_dim, cfg, "head_fcnet", 1, orthogonal_init(1.0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)
