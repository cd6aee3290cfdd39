"""Layer helpers for the default models: activations and initializers by name, MLP stacks.

Every helper takes the DefaultModelConfig key a value came from, so that a bad value
raises an error naming that key.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from rlmodules.default_model_config import DefaultModelConfig


_SIGMOID_TANH_MIN_NUMEL = 8192


class Tanh(nn.Tanh):
    """``nn.Tanh`` that computes large CPU inputs as 2 sigmoid(2x) - 1 (the same function,
    within 2e-7): torch's vectorized CPU tanh is several times slower than its sigmoid (44
    vs 7 us for 250 x 64 floats, measured on the 2-core AVX-512 machine of the README's
    benchmarks), which makes tanh MLPs' training steps up to a third slower. Below about
    128 rows (inference on a few envs) torch.tanh's single kernel is the faster one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() < _SIGMOID_TANH_MIN_NUMEL or not x.is_cpu:
            return torch.tanh(x)
        return torch.sigmoid(x * 2) * 2 - 1


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": Tanh, "silu": nn.SiLU, "swish": nn.SiLU, "elu": nn.ELU,
    "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid, "linear": nn.Identity,
}

Init = Callable[[nn.Module], None]


def activation(name: str | None, key: str) -> nn.Module:
    """A fresh activation layer for ``name`` (None or "linear": identity)."""
    if name is None:
        return nn.Identity()
    layer_cls = ACTIVATIONS.get(name.lower()) if isinstance(name, str) else None
    if layer_cls is None:
        raise ValueError(f"model_config['{key}'] = {name!r} is not a known activation; use one "
                         f"of {sorted(ACTIVATIONS)} or None.")
    return layer_cls()


def initializer(cfg: DefaultModelConfig, prefix: str) -> Init:
    """Applies ``cfg.<prefix>_{kernel,bias}_initializer`` (with their ``_kwargs``) to a layer.

    An initializer is a ``torch.nn.init`` name ("orthogonal", "xavier_uniform_", ...) or a
    callable ``fn(tensor, **kwargs)``; None keeps torch's default. Weights ("weight*"
    parameters) get the kernel one, biases ("bias*") the bias one.
    """
    kernel = _init_fn(cfg, f"{prefix}_kernel_initializer")
    bias = _init_fn(cfg, f"{prefix}_bias_initializer")

    def apply(layer: nn.Module) -> None:
        for name, param in layer.named_parameters(recurse=False):
            fn = kernel if name.startswith("weight") else bias if name.startswith("bias") else None
            if fn is not None:
                fn(param)

    return apply


def _init_fn(cfg: DefaultModelConfig, key: str) -> Callable[[torch.Tensor], Any] | None:
    spec = getattr(cfg, key)
    kwargs = getattr(cfg, f"{key}_kwargs") or {}
    if spec is None:
        return None
    fn = spec if callable(spec) else getattr(nn.init, f"{str(spec).rstrip('_')}_", None)
    if fn is None:
        raise ValueError(f"model_config['{key}'] = {spec!r} is neither a torch.nn.init name "
                         "(e.g. 'orthogonal', 'xavier_uniform', 'zeros') nor a callable.")

    def init(tensor: torch.Tensor) -> None:
        try:
            with torch.no_grad():
                fn(tensor, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"model_config['{key}'] = {spec!r} with kwargs {kwargs} failed on "
                             f"a tensor of shape {tuple(tensor.shape)}: {err}") from err

    return init


def positive_int(value: Any, key: str) -> int:
    """``value`` if it is a positive int, else an error naming ``key``."""
    if not is_positive_int(value):
        raise ValueError(f"model_config['{key}'] = {value!r}; expected a positive int.")
    return value


def positive_ints(values: Any, key: str) -> list[int]:
    """``values`` as a list of positive ints, or an error naming ``key``."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not all(
            is_positive_int(v) for v in values):
        raise ValueError(f"model_config['{key}'] = {values!r}; expected a list of positive ints.")
    return list(values)


def is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def mlp(input_dim: int, cfg: DefaultModelConfig, prefix: str,
        output_dim: int | None = None, output_init: Init | None = None) -> nn.Sequential:
    """Dense layers ``cfg.<prefix>_hiddens`` with ``cfg.<prefix>_activation`` after each.

    With ``output_dim``, a final linear layer follows (no activation), initialized with
    ``output_init`` unless the config names a kernel initializer.
    """
    hiddens = positive_ints(getattr(cfg, f"{prefix}_hiddens"), f"{prefix}_hiddens")
    act_name, act_key = getattr(cfg, f"{prefix}_activation"), f"{prefix}_activation"
    activation(act_name, act_key)  # Validate even when there are no hidden layers.
    init = initializer(cfg, prefix)
    layers: list[nn.Module] = []
    for size in hiddens:
        layers.append(nn.Linear(input_dim, size))
        init(layers[-1])
        layers.append(activation(act_name, act_key))
        input_dim = size
    if output_dim is not None:
        layers.append(nn.Linear(input_dim, output_dim))
        custom = getattr(cfg, f"{prefix}_kernel_initializer") is not None
        (init if custom or output_init is None else output_init)(layers[-1])
    return nn.Sequential(*layers)


def orthogonal_init(gain: float) -> Init:
    """Orthogonal weights with ``gain`` and zero bias: PPO's usual output-layer init."""
    def apply(layer: nn.Module) -> None:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return apply
