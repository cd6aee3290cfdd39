"""Default encoders: observations -> feature vectors, optionally through an LSTM.

Every encoder is called as ``features, state_out = encoder(obs, state_in)``. Stateless
ones (MLP, CNN) take obs with any leading dims ``[..., *obs_shape]``, ignore ``state_in``
and return ``{}`` as state. ``LSTMEncoder`` takes obs ``[B, T, *obs_shape]`` and
``state_in = {"h": [B, cell], "c": [B, cell]}`` and returns features ``[B, T, cell]``.
Use ``build_encoder(observation_space, config)`` to get the right one.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import torch
from torch import nn

from rlmodules.columns import Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.layers import activation, initializer, is_positive_int, mlp, positive_int

# Used when conv_filters is None: "same" padding halves H and W per layer, down to 1x1.
DEFAULT_CONV_FILTERS = [[16, 4, 2], [32, 4, 2], [64, 4, 2], [128, 4, 2]]


class Encoder(nn.Module):
    """Base of the default encoders: ``output_dim`` features, optional recurrent state."""

    output_dim: int

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        """The recurrent state at an episode start, without batch dim; {} if stateless."""
        return {}


class MLPEncoder(Encoder):
    """Dense layers ``fcnet_hiddens`` with ``fcnet_activation`` over 1D observations."""

    def __init__(self, input_dim: int, cfg: DefaultModelConfig) -> None:
        super().__init__()
        self.net = mlp(input_dim, cfg, "fcnet")  # Checks fcnet_hiddens.
        self.output_dim = cfg.fcnet_hiddens[-1] if cfg.fcnet_hiddens else input_dim

    def forward(self, obs: torch.Tensor, state_in: Any = None) -> tuple[torch.Tensor, dict]:
        return self.net(obs.float()), {}


class CNNEncoder(Encoder):
    """Conv2d layers ``conv_filters`` over [H, W, C] images, then flatten."""

    def __init__(self, obs_shape: Sequence[int], cfg: DefaultModelConfig) -> None:
        super().__init__()
        height, width, channels = (int(d) for d in obs_shape)
        init = initializer(cfg, "conv")
        filters = DEFAULT_CONV_FILTERS if cfg.conv_filters is None else cfg.conv_filters
        layers: list[nn.Module] = []
        for i, entry in enumerate(filters):
            num_filters, kernel, stride, padding = _conv_entry(entry, i)
            if padding == "same":
                pads = [_same_padding(size, k, s)
                        for size, k, s in zip((height, width), kernel, stride)]
                if any(sum(p) for p in pads):
                    layers.append(nn.ZeroPad2d((*pads[1], *pads[0])))  # left, right, top, bottom
                height, width = math.ceil(height / stride[0]), math.ceil(width / stride[1])
                padding = 0
            else:
                padding = 0 if padding == "valid" else padding
                height = (height + 2 * padding - kernel[0]) // stride[0] + 1
                width = (width + 2 * padding - kernel[1]) // stride[1] + 1
            if height < 1 or width < 1:
                raise ValueError(
                    f"model_config['conv_filters'][{i}] = {entry!r} shrinks the image of shape "
                    f"{tuple(obs_shape)} to nothing; use smaller kernels or strides, or 'same' "
                    "padding.")
            conv = nn.Conv2d(channels, num_filters, kernel, stride, padding=padding)
            init(conv)
            layers += [conv, activation(cfg.conv_activation, "conv_activation")]
            channels = num_filters
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        self.output_dim = channels * height * width

    def forward(self, obs: torch.Tensor, state_in: Any = None) -> tuple[torch.Tensor, dict]:
        lead = obs.shape[:-3]
        images = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float()
        return self.net(images).reshape(*lead, self.output_dim), {}


class LSTMEncoder(Encoder):
    """Runs ``base`` on each step of [B, T, ...] observations, then a one-layer LSTM."""

    def __init__(self, base: Encoder, obs_ndim: int, cfg: DefaultModelConfig) -> None:
        super().__init__()
        self.base = base
        self.obs_ndim = obs_ndim
        cell = positive_int(cfg.lstm_cell_size, "lstm_cell_size")
        positive_int(cfg.max_seq_len, "max_seq_len")  # Read by learners; checked here, once.
        self.lstm = nn.LSTM(base.output_dim, cell, batch_first=True)
        initializer(cfg, "lstm")(self.lstm)
        self.output_dim = cell

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        return {"h": torch.zeros(self.output_dim), "c": torch.zeros(self.output_dim)}

    def forward(self, obs: torch.Tensor,
                state_in: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        if obs.dim() != self.obs_ndim + 2:
            raise ValueError(
                f"LSTMEncoder: obs must be [B, T, *obs_shape] ({self.obs_ndim + 2} dims), got "
                f"shape {tuple(obs.shape)}. Stateful modules take a time dim (T=1 when acting).")
        if state_in is None:
            raise ValueError(
                f"LSTMEncoder: the batch has no '{Columns.STATE_IN}'; pass {{'h': [B, "
                f"{self.output_dim}], 'c': [B, {self.output_dim}]}} (the module's "
                "get_initial_state() at episode starts).")
        features, _ = self.base(obs)
        out, (h, c) = self.lstm(features, (state_in["h"].unsqueeze(0), state_in["c"].unsqueeze(0)))
        return out, {"h": h.squeeze(0), "c": c.squeeze(0)}


def build_encoder(observation_space: gym.Space, cfg: DefaultModelConfig) -> Encoder:
    """MLP for 1D Box observations, CNN for [H, W, C] Box images, LSTM-wrapped if use_lstm."""
    shape = getattr(observation_space, "shape", None)
    if isinstance(observation_space, gym.spaces.Box) and len(shape) == 1:
        base: Encoder = MLPEncoder(int(shape[0]), cfg)
    elif isinstance(observation_space, gym.spaces.Box) and len(shape) == 3:
        base = CNNEncoder(shape, cfg)
    else:
        raise ValueError(
            f"The default models take 1D Box observations (MLP) or [H, W, C] Box images (CNN), "
            f"got {observation_space!r}. Flatten other observations with the FlattenObservations "
            "connector (env_to_module_connector=lambda env: FlattenObservations()) or write a "
            "custom RLModule.")
    return LSTMEncoder(base, len(shape), cfg) if cfg.use_lstm else base


def _conv_entry(entry: Any, index: int) -> tuple[int, tuple[int, int], tuple[int, int], Any]:
    """Validate one conv_filters entry: num_filters, kernel, stride(, padding)."""
    def pair(v: Any) -> tuple[int, int] | None:
        v = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (list, tuple)) else ()
        return v if len(v) == 2 and all(is_positive_int(x) for x in v) else None

    ok = isinstance(entry, (list, tuple)) and len(entry) in (3, 4)
    if ok:
        num_filters, kernel, stride = entry[0], pair(entry[1]), pair(entry[2])
        padding = entry[3] if len(entry) == 4 else "same"
        ok = (is_positive_int(num_filters) and kernel and stride and (
            padding in ("same", "valid") or (isinstance(padding, int) and padding >= 0)))
    if not ok:
        raise ValueError(
            f"model_config['conv_filters'][{index}] = {entry!r}; expected [num_filters, kernel, "
            "stride] or [num_filters, kernel, stride, padding]: positive ints (kernel and stride "
            "may be [h, w] pairs), padding 'same', 'valid' or an int >= 0.")
    return num_filters, kernel, stride, padding


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) so that the output has ceil(size / stride) cells."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2
