"""The alpha RLModule API (seeds 001/002), mapped onto the current one.

Modules written for it port by changing imports only: ``__init__(self, config)`` modules
read ``self.config.observation_space`` / ``.model_config_dict``; sub-modules call
``super().__init__(config=None)``; MultiAgentRLModule subclasses override ``build()`` or
``setup()`` and assign a plain dict to ``self._rl_modules``; forward passes may return
``action_dist``; the I/O spec checks live in ``rlmodules.specs``.

The core never imports this module; the package does, which installs ``RLModule.config``
and, once per class, lets an ``__init__(self, config)`` also take keyword arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym

from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.multi_rl_module import MultiRLModule, MultiRLModuleSpec
from rlmodules.rl_module import RLModule, RLModuleSpec


@dataclass
class RLModuleConfig:
    """The single constructor argument of alpha-API modules: ``__init__(self, config)``."""

    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    model_config_dict: dict[str, Any] = field(default_factory=dict)
    catalog_class: type | None = None
    inference_only: bool = False
    learner_only: bool = False


@dataclass
class MultiAgentRLModuleConfig(RLModuleConfig):
    """The alpha API's MultiAgentRLModule config: one spec per module ID in ``modules``."""

    modules: dict[str, RLModuleSpec] = field(default_factory=dict)


class SingleAgentRLModuleSpec(RLModuleSpec):
    """RLModuleSpec under its alpha name, taking ``model_config_dict=``."""

    def __init__(self, module_class: type[RLModule] | None = None,
                 observation_space: gym.Space | None = None,
                 action_space: gym.Space | None = None,
                 model_config_dict: dict[str, Any] | None = None,
                 catalog_class: type | None = None, **kwargs: Any) -> None:
        if model_config_dict is not None:
            kwargs["model_config"] = model_config_dict
        super().__init__(module_class=module_class, observation_space=observation_space,
                         action_space=action_space, catalog_class=catalog_class, **kwargs)

    @property
    def model_config_dict(self) -> Any:
        return self.model_config


class MultiAgentRLModule(MultiRLModule):
    """MultiRLModule under its alpha name, built from a MultiAgentRLModuleConfig; subclasses
    override ``build()`` (seed 001) or ``setup()`` (seed 002)."""

    def __init__(self, config: MultiAgentRLModuleConfig | None = None, **kwargs: Any) -> None:
        if config is not None:
            kwargs.setdefault("rl_module_specs", config.modules)
        super().__init__(config, **kwargs)

    def setup(self) -> None:
        self.build()

    def build(self) -> None:
        MultiRLModule.setup(self)


class MultiAgentRLModuleSpec(MultiRLModuleSpec):
    """MultiRLModuleSpec under its alpha name: ``marl_module_class=``, ``module_specs=``."""

    def __init__(self, marl_module_class: type[MultiRLModule] | None = None,
                 module_specs: RLModuleSpec | dict[str, RLModuleSpec] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("multi_rl_module_class", marl_module_class or MultiAgentRLModule)
        if module_specs is not None:
            kwargs["rl_module_specs"] = module_specs
        super().__init__(**kwargs)


def takes_config_object(module_class: type) -> bool:
    """True for alpha-API classes whose ``__init__`` takes ``config`` but no spaces."""
    params = inspect.signature(module_class.__init__).parameters
    return "config" in params and "observation_space" not in params and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _alpha_config(model_config: Any = None, rl_module_specs: Any = None,
                  **fields: Any) -> RLModuleConfig:
    """The config object for keyword constructor args; a multi-agent one with specs."""
    if isinstance(model_config, DefaultModelConfig):
        model_config = dataclasses.asdict(model_config)
    fields["model_config_dict"] = {} if model_config is None else model_config
    if rl_module_specs is None:
        return RLModuleConfig(**fields)
    return MultiAgentRLModuleConfig(modules=rl_module_specs, **fields)


def _accept_ctor_kwargs(cls: type[RLModule]) -> None:
    """RLModule.__init_subclass__: an own ``__init__(self, config)`` also takes keywords."""
    if "__init__" not in vars(cls) or not takes_config_object(cls):
        return
    alpha_init = cls.__init__

    @functools.wraps(alpha_init)
    def __init__(self, config: RLModuleConfig | None = None, **ctor_args: Any) -> None:
        if config is None:
            config, ctor_args = _alpha_config(**ctor_args), {}
        alpha_init(self, config, **ctor_args)  # Keywords with a config: alpha_init refuses.

    cls.__init__ = __init__


RLModule.__init_subclass__ = classmethod(_accept_ctor_kwargs)
RLModule.config = property(lambda self: _alpha_config(**self.get_ctor_args()),
                           doc="The alpha API's view of the constructor arguments.")


def override(parent: type) -> Callable[[Callable], Callable]:
    """The alpha examples' ``@override(Parent)``: checks that ``Parent`` has the method."""
    def check(method: Callable) -> Callable:
        if not hasattr(parent, method.__name__):
            raise NameError(f"@override({parent.__name__}): {parent.__name__} has no method "
                            f"'{method.__name__}' to override; check its name.")
        return method
    return check
