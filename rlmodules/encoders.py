"""Default encoders: observation batches -> feature vectors, optionally through an LSTM.

Encoders follow RLlib's convention: ``encoder(batch)`` takes a batch dict and returns
``{ENCODER_OUT: features}``. Stateless ones (MLP, CNN) read ``batch[OBS]`` with any leading
dims ``[..., *obs_shape]``. ``LSTMEncoder`` reads obs ``[B, T, *obs_shape]`` and
``batch[STATE_IN] = {"h": [B, cell], "c": [B, cell]}`` and also returns ``STATE_OUT``.
``ActorCriticEncoder`` holds one shared or two (actor, critic) encoders and returns
``{ENCODER_OUT: {ACTOR: ..., CRITIC: ...}}``. Use ``build_encoder(observation_space,
config)`` to get the right single encoder.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import nn

from rlmodules.columns import ENCODER_OUT, Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.layers import activation, initializer, is_positive_int, mlp, positive_int, \
    positive_ints

ACTOR = "actor"
"""Key of the policy's features in an ActorCriticEncoder's ``ENCODER_OUT`` (RLlib's)."""
CRITIC = "critic"
"""Key of the value function's features in an ActorCriticEncoder's ``ENCODER_OUT``."""

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
        self.output_dim = _mlp_output_dim(input_dim, cfg)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {ENCODER_OUT: self.net(batch[Columns.OBS].float())}


class CNNEncoder(Encoder):
    """Conv2d layers ``conv_filters`` over [H, W, C] images, then flatten."""

    def __init__(self, obs_shape: Sequence[int], cfg: DefaultModelConfig) -> None:
        super().__init__()
        init = initializer(cfg, "conv")
        layers: list[nn.Module] = []
        plan, self.output_dim = _conv_plan(obs_shape, cfg)
        for in_channels, num_filters, kernel, stride, pads, padding in plan:
            if any(pads):
                layers.append(nn.ZeroPad2d(pads))
            conv = nn.Conv2d(in_channels, num_filters, kernel, stride, padding=padding)
            init(conv)
            layers += [conv, activation(cfg.conv_activation, "conv_activation")]
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        self._steps = _fused_steps(self.net)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        obs = batch[Columns.OBS]
        lead = obs.shape[:-3]
        # [N, C, H, W] views of the channels-last images, no copy: the convs run faster on
        # that memory layout (uint8 images become float only here, in the module).
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float()
        for kind, index, padding in self._steps:
            layer = self.net[index]
            if kind == "padded_conv":
                x = F.conv2d(x, layer.weight, layer.bias, layer.stride, padding, layer.dilation,
                             layer.groups)
            elif kind == "relu_":
                x = F.relu_(x)
            else:
                x = layer(x)
        return {ENCODER_OUT: x.reshape(*lead, self.output_dim)}


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

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        obs, state_in = batch[Columns.OBS], batch.get(Columns.STATE_IN)
        if obs.dim() != self.obs_ndim + 2:
            raise ValueError(
                f"LSTMEncoder: obs must be [B, T, *obs_shape] ({self.obs_ndim + 2} dims), got "
                f"shape {tuple(obs.shape)}. Stateful modules take a time dim (T=1 when acting).")
        if state_in is None:
            raise ValueError(
                f"LSTMEncoder: the batch has no '{Columns.STATE_IN}'; pass {{'h': [B, "
                f"{self.output_dim}], 'c': [B, {self.output_dim}]}} (the module's "
                "get_initial_state() at episode starts).")
        features = self.base(batch)[ENCODER_OUT]
        out, (h, c) = self.lstm(features, (state_in["h"].unsqueeze(0), state_in["c"].unsqueeze(0)))
        return {ENCODER_OUT: out, Columns.STATE_OUT: {"h": h.squeeze(0), "c": c.squeeze(0)}}


class ActorCriticEncoder(Encoder):
    """Features for a policy and a value function: one ``encoder`` shared by both, or an
    ``actor_encoder`` and a ``critic_encoder`` (RLlib's attribute names).

    Returns ``{ENCODER_OUT: {ACTOR: ..., CRITIC: ...}}`` (plus ``STATE_OUT`` of a recurrent
    shared encoder). With ``inference_only`` (and not shared) no critic encoder is built
    and the output holds only ``ACTOR``.
    """

    def __init__(self, build: Callable[[], Encoder], shared: bool,
                 inference_only: bool = False) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.encoder = build()
            self.output_dim = self.encoder.output_dim
            return
        self.actor_encoder = build()
        self.output_dim = self.actor_encoder.output_dim
        if self.actor_encoder.get_initial_state():
            raise ValueError(
                "ActorCriticEncoder: separate actor and critic encoders must be stateless "
                "(the acting module carries one recurrent state); pass shared=True for "
                "recurrent encoders.")
        if not inference_only:
            self.critic_encoder = build()

    def get_initial_state(self) -> dict[str, torch.Tensor]:
        return (self.encoder if self.shared else self.actor_encoder).get_initial_state()

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.shared:
            out = self.encoder(batch)
            features = out[ENCODER_OUT]
            result = {ENCODER_OUT: {ACTOR: features, CRITIC: features}}
            if Columns.STATE_OUT in out:
                result[Columns.STATE_OUT] = out[Columns.STATE_OUT]
            return result
        features = {ACTOR: self.actor_encoder(batch)[ENCODER_OUT]}
        critic = getattr(self, "critic_encoder", None)  # Absent in inference-only builds.
        if critic is not None:
            features[CRITIC] = critic(batch)[ENCODER_OUT]
        return {ENCODER_OUT: features}


def build_encoder(observation_space: gym.Space, cfg: DefaultModelConfig) -> Encoder:
    """MLP for 1D Box observations, CNN for [H, W, C] Box images, LSTM-wrapped if use_lstm."""
    shape = _obs_shape(observation_space)
    base = MLPEncoder(shape[0], cfg) if len(shape) == 1 else CNNEncoder(shape, cfg)
    return LSTMEncoder(base, len(shape), cfg) if cfg.use_lstm else base


def encoder_output_dim(observation_space: gym.Space, cfg: DefaultModelConfig) -> int:
    """The feature size of ``build_encoder(observation_space, cfg)``, without building it."""
    shape = _obs_shape(observation_space)
    if cfg.use_lstm:
        return positive_int(cfg.lstm_cell_size, "lstm_cell_size")
    return _mlp_output_dim(shape[0], cfg) if len(shape) == 1 else _conv_plan(shape, cfg)[1]


def _obs_shape(observation_space: gym.Space) -> tuple[int, ...]:
    shape = getattr(observation_space, "shape", None)
    if not isinstance(observation_space, gym.spaces.Box) or len(shape) not in (1, 3):
        raise ValueError(
            f"The default models take 1D Box observations (MLP) or [H, W, C] Box images (CNN), "
            f"got {observation_space!r}. Flatten other observations with the FlattenObservations "
            "connector (env_to_module_connector=lambda env: FlattenObservations()) or write a "
            "custom RLModule.")
    return tuple(int(d) for d in shape)


def _mlp_output_dim(input_dim: int, cfg: DefaultModelConfig) -> int:
    hiddens = positive_ints(cfg.fcnet_hiddens, "fcnet_hiddens")
    return hiddens[-1] if hiddens else input_dim


def _conv_plan(obs_shape: Sequence[int], cfg: DefaultModelConfig
               ) -> tuple[list[tuple[Any, ...]], int]:
    """Per conv layer (in_channels, num_filters, kernel, stride, ZeroPad2d pads, Conv2d
    padding), and the flattened output size; checks ``conv_filters`` and the image layout."""
    height, width, channels = obs_shape
    if _looks_channels_first(obs_shape):
        raise ValueError(
            f"The default CNN encoder reads images channels-last [H, W, C], but the observation "
            f"shape {tuple(obs_shape)} looks channels-first [C, H, W] (as gymnasium's "
            f"FrameStackObservation over grayscale frames gives): it would convolve "
            f"{height}x{width} images of {channels} channels. Move the channels last, e.g. "
            f"wrap the env in gymnasium.wrappers.TransformObservation(env, lambda obs: "
            f"np.moveaxis(obs, 0, -1), <Box of shape {(*obs_shape[1:], obs_shape[0])}>), or "
            "write a custom RLModule for channels-first images.")
    filters = DEFAULT_CONV_FILTERS if cfg.conv_filters is None else cfg.conv_filters
    plan = []
    for i, entry in enumerate(filters):
        num_filters, kernel, stride, padding = _conv_entry(entry, i)
        if padding == "same":
            (top, bottom), (left, right) = (_same_padding(size, k, s) for size, k, s in
                                            zip((height, width), kernel, stride))
            pads, padding = (left, right, top, bottom), 0
            height, width = math.ceil(height / stride[0]), math.ceil(width / stride[1])
        else:
            padding = 0 if padding == "valid" else padding
            pads = (0, 0, 0, 0)
            height = (height + 2 * padding - kernel[0]) // stride[0] + 1
            width = (width + 2 * padding - kernel[1]) // stride[1] + 1
        if height < 1 or width < 1:
            raise ValueError(
                f"model_config['conv_filters'][{i}] = {entry!r} shrinks the image of shape "
                f"{tuple(obs_shape)} to nothing; use smaller kernels or strides, or 'same' "
                "padding.")
        plan.append((channels, num_filters, kernel, stride, pads, padding))
        channels = num_filters
    return plan, channels * height * width


def _fused_steps(net: nn.Sequential) -> list[tuple[str, int, tuple[int, int] | None]]:
    """How ``CNNEncoder.forward`` runs ``net``, as (kind, layer index, padding) steps.

    A ZeroPad2d with equal pads on opposite sides is folded into the next conv's own
    padding ("padded_conv"), and a ReLU right after a conv runs in place on the conv's fresh
    output ("relu_"): each saves a copy of a feature map per layer. The results, parameters
    and state keys are those of ``net(x)`` (only forward hooks on those layers do not fire);
    all other layers run as they are ("layer").
    """
    layers, steps, i = list(net), [], 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if (isinstance(layer, nn.ZeroPad2d) and isinstance(after, nn.Conv2d)
                and after.padding == (0, 0) and after.padding_mode == "zeros"):
            left, right, top, bottom = layer.padding
            if left == right and top == bottom:
                steps.append(("padded_conv", i + 1, (top, left)))
                i += 2
                continue
        in_place = type(layer) is nn.ReLU and i > 0 and isinstance(layers[i - 1], nn.Conv2d)
        steps.append(("relu_" if in_place else "layer", i, None))
        i += 1
    return steps


def _looks_channels_first(shape: Sequence[int]) -> bool:
    """[C, H, W] with few channels and a roughly square image, e.g. (4, 84, 84)."""
    first, h, w = shape
    return first <= 4 and min(h, w) >= 16 and max(h, w) <= 2 * min(h, w)


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
