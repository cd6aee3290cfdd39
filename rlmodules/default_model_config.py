"""Settings for the default encoders and heads (only for the built-in default modules)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping


@dataclass
class DefaultModelConfig:
    """Architecture of a default module; custom modules use plain dicts instead."""

    # MLP encoder for 1D observations.
    fcnet_hiddens: list[int] = field(default_factory=lambda: [256, 256])
    fcnet_activation: str = "tanh"
    fcnet_kernel_initializer: str | Callable | None = None
    fcnet_kernel_initializer_kwargs: dict | None = None
    fcnet_bias_initializer: str | Callable | None = None
    fcnet_bias_initializer_kwargs: dict | None = None
    # CNN encoder for [H, W, C] image observations: [num_filters, kernel, stride(, padding)],
    # padding "same" (default), "valid" or an int. None: four stride-2 layers of 16..128.
    conv_filters: list[list[Any]] | None = None
    conv_activation: str = "relu"
    conv_kernel_initializer: str | Callable | None = None
    conv_kernel_initializer_kwargs: dict | None = None
    conv_bias_initializer: str | Callable | None = None
    conv_bias_initializer_kwargs: dict | None = None
    # MLP heads (after the encoder), then the output layer.
    head_fcnet_hiddens: list[int] = field(default_factory=list)
    head_fcnet_activation: str = "relu"
    head_fcnet_kernel_initializer: str | Callable | None = None
    head_fcnet_kernel_initializer_kwargs: dict | None = None
    head_fcnet_bias_initializer: str | Callable | None = None
    head_fcnet_bias_initializer_kwargs: dict | None = None
    # Box actions: a state-independent, learned log-std instead of one output per dim.
    free_log_std: bool = False
    log_std_clip_param: float = 20.0
    # Actor-critic: one encoder for policy and value function, or two.
    vf_share_layers: bool = False
    # LSTM after the encoder. Actor and critic then share encoder and LSTM (one recurrent
    # state, carried by the acting module), whatever vf_share_layers says.
    use_lstm: bool = False
    max_seq_len: int = 20
    lstm_cell_size: int = 256
    lstm_kernel_initializer: str | Callable | None = None
    lstm_kernel_initializer_kwargs: dict | None = None
    lstm_bias_initializer: str | Callable | None = None
    lstm_bias_initializer_kwargs: dict | None = None

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | "DefaultModelConfig" | None,
                  owner: str = "DefaultModelConfig") -> "DefaultModelConfig":
        """Fill defaults for a partial dict; an unknown key is an error naming it."""
        if isinstance(config, DefaultModelConfig):
            return config
        config = dict(config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(
                f"{owner}: unknown model_config key(s) {unknown}. Known keys: {sorted(known)}. "
                "Custom keys belong in a custom RLModule's plain-dict model_config.")
        return cls(**config)
