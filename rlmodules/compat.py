"""The alpha RLModule API (seeds 001/002): RLModuleConfig and the old spec names."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym


@dataclass
class RLModuleConfig:
    """The single constructor argument of alpha-API modules: ``__init__(self, config)``."""

    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    model_config_dict: dict[str, Any] = field(default_factory=dict)
    catalog_class: type | None = None
    inference_only: bool = False


def takes_config_object(module_class: type) -> bool:
    """True for alpha-API classes whose ``__init__`` takes ``config`` but no spaces."""
    params = inspect.signature(module_class.__init__).parameters
    return "config" in params and "observation_space" not in params and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
