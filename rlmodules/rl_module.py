"""RLModule: the neural-network container with three forward passes, and its spec."""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import gymnasium as gym
import torch

from rlmodules.apis.inference_only_api import InferenceOnlyAPI
from rlmodules.checkpoint import load_module, restore_module, save_module
from rlmodules.columns import DEFAULT_MODULE_ID, Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.distributions import TorchDistribution, default_dist_cls
from rlmodules.specs import check_spec

if TYPE_CHECKING:
    from rlmodules.multi_rl_module import MultiRLModule

# What every RLModule's constructor takes; RLModuleSpec fields of the same names feed it.
CTOR_ARGS = ("observation_space", "action_space", "inference_only", "learner_only", "model_config",
             "catalog_class")

_DIST_GETTERS = ("get_inference_action_dist_cls", "get_exploration_action_dist_cls",
                 "get_train_action_dist_cls")

# Keys a forward pass used for acting must return (``action_dist`` is the alpha API's name).
_ACTION_KEYS = (Columns.ACTIONS, Columns.ACTION_DIST_INPUTS, Columns.ACTION_DIST)


class RLModule:
    """Base class of all modules: holds spaces and config, routes the three forward passes.

    Subclasses implement ``setup()`` and ``_forward_exploration``, ``_forward_inference``,
    ``_forward_train`` (or just ``_forward``, which each of them falls back to).
    ``catalog_class`` is built into ``self.catalog`` before ``setup()``; ``learner_only``
    modules exist only on learners (inference-only MultiRLModules leave them out).
    The ``config`` argument and ``self.config`` are the alpha API's (see ``rlmodules.compat``).
    """

    framework: str | None = None

    action_dist_cls: type[TorchDistribution] | None = None
    """The action distribution class of all three passes; None: the action space's default.
    ``setup()`` may set it (e.g. a Categorical with a temperature)."""

    def __init__(
        self,
        config: Any = None,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        inference_only: bool = False,
        learner_only: bool = False,
        model_config: Mapping[str, Any] | DefaultModelConfig | None = None,
        catalog_class: type | None = None,
        **kwargs: Any,
    ) -> None:
        if config is not None:  # Alpha API: a single RLModuleConfig positional argument.
            observation_space = config.observation_space
            action_space = config.action_space
            inference_only = config.inference_only
            learner_only = config.learner_only
            model_config = config.model_config_dict
            catalog_class = config.catalog_class
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}; "
                f"an RLModule takes {', '.join(CTOR_ARGS)}.")
        self.observation_space = observation_space
        self.action_space = action_space
        self.inference_only = bool(inference_only)
        self.learner_only = bool(learner_only)
        if isinstance(model_config, DefaultModelConfig):
            model_config = dataclasses.asdict(model_config)
        self.model_config: dict[str, Any] = dict(model_config or {})
        self.catalog_class = catalog_class
        self.catalog = None if catalog_class is None else catalog_class(
            observation_space=observation_space, action_space=action_space,
            model_config_dict=self.model_config)
        self.setup()
        if self.inference_only and isinstance(self, InferenceOnlyAPI):
            self._drop_non_inference_attributes()

    def _drop_non_inference_attributes(self) -> None:
        """Delete what ``get_non_inference_attributes()`` names (dotted paths too), so an
        inference-only build never holds learner-only networks, whatever setup() made."""
        for path in self.get_non_inference_attributes():
            owner: Any = self
            *parents, name = path.split(".")
            for part in parents:
                owner = getattr(owner, part, None)
            if hasattr(owner, name):
                delattr(owner, name)

    def setup(self) -> None:
        """Build the sub-networks here; the spaces and ``model_config`` are already set."""

    # ---- forward passes -------------------------------------------------------------------

    def forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Actions (or their distribution inputs) for collecting training data; no autograd."""
        return self._run_forward("exploration", batch, **kwargs)

    def forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Actions (or their distribution inputs) for evaluation and deployment; no autograd."""
        return self._run_forward("inference", batch, **kwargs)

    def forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        """Everything the loss needs, with autograd on."""
        if self.inference_only:
            raise RuntimeError(
                f"{type(self).__name__} was built with inference_only=True and cannot run "
                "forward_train; build it with inference_only=False for learning.")
        return self._run_forward("train", batch, **kwargs)

    def _run_forward(self, phase: str, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        batch = self._to_tensors(batch)
        self._check_specs(f"input_specs_{phase}", batch)
        forward = getattr(self, f"_forward_{phase}")
        if phase == "train":
            out = forward(batch, **kwargs)
        else:
            with torch.no_grad():
                out = forward(batch, **kwargs)
            self._check_action_outputs(out, f"forward_{phase}")
        self._check_specs(f"output_specs_{phase}", out)
        return out

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        raise NotImplementedError(
            f"{type(self).__name__} implements neither _forward() nor the phase-specific "
            "_forward_exploration/_forward_inference/_forward_train(); implement _forward() "
            "or the one that was called.")

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._forward(batch, **kwargs)

    _forward_exploration = _forward_inference = _forward_train

    def _to_tensors(self, batch: dict[str, Any]) -> dict[str, Any]:
        return batch

    def _check_action_outputs(self, out: Any, method: str) -> None:
        if not isinstance(out, Mapping) or not any(k in out for k in _ACTION_KEYS):
            got = sorted(out) if isinstance(out, Mapping) else type(out).__name__
            raise ValueError(
                f"{type(self).__name__}.{method}() must return a dict holding "
                f"'{Columns.ACTIONS}' and/or '{Columns.ACTION_DIST_INPUTS}', got {got}. "
                f"Return the actions themselves or the inputs of the action distribution.")

    # ---- alpha API I/O specs: override to have batches and outputs checked -----------------

    def input_specs_train(self) -> Any:
        """A ``rlmodules.specs.SpecType`` the batch or output must match; None: unchecked."""
        return None

    input_specs_exploration = input_specs_inference = input_specs_train
    output_specs_exploration = output_specs_inference = output_specs_train = input_specs_train

    def _check_specs(self, method: str, data: Any) -> None:
        spec = getattr(self, method)()
        if spec is not None:
            check_spec(spec, data, f"{type(self).__name__}.{method}()")

    # ---- action distributions ---------------------------------------------------------------

    def get_inference_action_dist_cls(self) -> type[TorchDistribution]:
        """``self.action_dist_cls`` if set, else the action space's default."""
        return self._action_dist_cls("get_inference_action_dist_cls")

    def get_exploration_action_dist_cls(self) -> type[TorchDistribution]:
        """The inference class unless overridden."""
        return self._action_dist_cls("get_exploration_action_dist_cls")

    def get_train_action_dist_cls(self) -> type[TorchDistribution]:
        """The inference class unless overridden."""
        return self._action_dist_cls("get_train_action_dist_cls")

    def _action_dist_cls(self, asked: str) -> type[TorchDistribution]:
        """``action_dist_cls``; else what a getter the subclass overrides returns (inference
        first), so that a custom class is never replaced by the default where the other
        getters are not overridden; else the action space's default. Within that call
        (a ``super()`` call of the override) the base getters give the default."""
        if self.action_dist_cls is not None:
            return self.action_dist_cls
        if not self.__dict__.get("_resolving_dist_cls"):
            for name in _DIST_GETTERS:
                if name != asked and getattr(type(self), name) is not getattr(RLModule, name):
                    self.__dict__["_resolving_dist_cls"] = True
                    try:
                        return getattr(self, name)()
                    finally:
                        del self.__dict__["_resolving_dist_cls"]
        return default_dist_cls(self.action_space)

    # ---- recurrent state --------------------------------------------------------------------

    def get_initial_state(self) -> dict[str, Any]:
        """Initial recurrent state without a batch dim; empty for stateless modules."""
        return {}

    def is_stateful(self) -> bool:
        return bool(self.get_initial_state())

    # ---- state and checkpoints --------------------------------------------------------------

    def unwrapped(self) -> "RLModule":
        """This module itself (learners that wrap modules, e.g. for DDP, return the inner one)."""
        return self

    def get_state(self, inference_only: bool = False) -> dict[str, Any]:
        """A plain (non-torch) RLModule has no weights: ``{}``; override to keep some."""
        return {}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Loads nothing: a plain RLModule has no weights (its ``get_state()`` is ``{}``)."""
        if state:
            raise KeyError(
                f"{type(self).__name__}.set_state(): this module holds no state, but got "
                f"entries {sorted(state)[:3]}; override get_state()/set_state() to keep some.")

    def get_ctor_args(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this module (what checkpoints record)."""
        return {name: getattr(self, name) for name in CTOR_ARGS}

    def save_to_path(self, path: str | os.PathLike | None = None) -> str:
        """Write a checkpoint directory atomically (a new temp dir if ``path`` is None)."""
        return save_module(self, tempfile.mkdtemp() if path is None else path)

    def restore_from_path(self, path: str | os.PathLike) -> None:
        """Load the weights of a checkpoint written by ``save_to_path`` into this module."""
        restore_module(self, path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, trusted: Sequence[Any] = ()) -> "RLModule":
        """Rebuild the module class recorded in the checkpoint and load its weights.

        ``trusted``: classes and functions the checkpoint may name beyond what loading allows
        by itself (see rlmodules/checkpoint.py); they are used, unchecked, for their names.
        """
        module = load_module(path, trusted)
        if not isinstance(module, cls):
            raise TypeError(
                f"{cls.__name__}.from_checkpoint('{path}'): the checkpoint holds a "
                f"{type(module).__name__}, not a {cls.__name__}; call RLModule.from_checkpoint().")
        return module

    multi_agent_class: type["MultiRLModule"]
    """What ``as_multi_agent`` wraps modules in; rlmodules.multi_rl_module sets it (it
    imports this module, so this one cannot import it)."""

    def as_multi_agent(self) -> "MultiRLModule":
        """This module inside a MultiRLModule under DEFAULT_MODULE_ID."""
        multi = self.multi_agent_class(observation_space=self.observation_space,
                              action_space=self.action_space, inference_only=self.inference_only)
        multi.add_module(DEFAULT_MODULE_ID, self)
        return multi


@dataclass
class RLModuleSpec:
    """How to build one RLModule; any field may be left out and filled in by an algorithm."""

    module_class: type[RLModule] | None = None
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    inference_only: bool = False
    learner_only: bool = False
    model_config: Mapping[str, Any] | DefaultModelConfig | None = None
    catalog_class: type | None = None
    load_state_path: str | os.PathLike | None = None
    """A checkpoint written by ``save_to_path`` whose weights ``build()`` loads."""

    def build(self) -> RLModule:
        missing = [name for name in ("module_class", "observation_space", "action_space")
                   if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"RLModuleSpec.build(): {', '.join(missing)} not set. Pass them to the spec, "
                "or hand the spec to an algorithm config, which fills them from the env and "
                "its default module.")
        args = {name: getattr(self, name) for name in CTOR_ARGS}
        params = inspect.signature(self.module_class.__init__).parameters.values()
        if not any(p.name == "learner_only" or p.kind is p.VAR_KEYWORD for p in params):
            del args["learner_only"]  # A fixed __init__ written before RLlib added it.
        module = self.module_class(**args)
        module.learner_only = self.learner_only
        if self.load_state_path is not None:
            module.restore_from_path(self.load_state_path)
        return module

    def update(self, other: "RLModuleSpec", override: bool = True) -> None:
        """Take ``other``'s set fields; with ``override=False`` only where ours are None."""
        for f in dataclasses.fields(self):
            theirs = getattr(other, f.name)
            if theirs is not None and (override or getattr(self, f.name) is None):
                setattr(self, f.name, theirs)

    def as_inference_only(self) -> "RLModuleSpec":
        return dataclasses.replace(self, inference_only=True)
