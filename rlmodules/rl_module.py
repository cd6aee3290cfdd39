"""RLModule: the neural-network container with three forward passes, and its spec."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import gymnasium as gym
import torch

from rlmodules.checkpoint import load_module, restore_module, save_module
from rlmodules.columns import DEFAULT_MODULE_ID, Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.distributions import TorchDistribution, default_dist_cls
from rlmodules.specs import check_spec

if TYPE_CHECKING:
    from rlmodules.multi_rl_module import MultiRLModule

# What every RLModule's constructor takes; RLModuleSpec fields of the same names feed it.
CTOR_ARGS = ("observation_space", "action_space", "inference_only", "model_config", "catalog_class")

# Keys a forward pass used for acting must return (``action_dist`` is the alpha API's name).
_ACTION_KEYS = (Columns.ACTIONS, Columns.ACTION_DIST_INPUTS, Columns.ACTION_DIST)


class RLModule:
    """Base class of all modules: holds spaces and config, routes the three forward passes.

    Subclasses implement ``setup()`` and ``_forward_exploration``, ``_forward_inference``,
    ``_forward_train`` (or just ``_forward``, which each of them falls back to).
    The ``config`` argument and ``self.config`` are the alpha API's (see ``rlmodules.compat``).
    """

    framework: str | None = None

    def __init__(
        self,
        config: Any = None,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        inference_only: bool = False,
        model_config: Mapping[str, Any] | DefaultModelConfig | None = None,
        catalog_class: type | None = None,
        **kwargs: Any,
    ) -> None:
        if config is not None:  # Alpha API: a single RLModuleConfig positional argument.
            observation_space = config.observation_space
            action_space = config.action_space
            inference_only = config.inference_only
            model_config = config.model_config_dict
            catalog_class = config.catalog_class
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}; "
                f"an RLModule takes {', '.join(CTOR_ARGS)}.")
        self.observation_space = observation_space
        self.action_space = action_space
        self.inference_only = bool(inference_only)
        if isinstance(model_config, DefaultModelConfig):
            model_config = dataclasses.asdict(model_config)
        self.model_config: dict[str, Any] = dict(model_config or {})
        self.catalog_class = catalog_class
        self.setup()

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

    def get_train_action_dist_cls(self) -> type[TorchDistribution]:
        return default_dist_cls(self.action_space)

    get_inference_action_dist_cls = get_exploration_action_dist_cls = get_train_action_dist_cls

    # ---- recurrent state --------------------------------------------------------------------

    def get_initial_state(self) -> dict[str, Any]:
        """Initial recurrent state without a batch dim; empty for stateless modules."""
        return {}

    def is_stateful(self) -> bool:
        return bool(self.get_initial_state())

    # ---- state and checkpoints --------------------------------------------------------------

    def get_non_inference_attributes(self) -> list[str]:
        """Attribute names of learner-only sub-networks that inference-only copies leave out."""
        return []

    def get_state(self, inference_only: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

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
    model_config: Mapping[str, Any] | DefaultModelConfig | None = None
    catalog_class: type | None = None

    def build(self) -> RLModule:
        missing = [name for name in ("module_class", "observation_space", "action_space")
                   if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"RLModuleSpec.build(): {', '.join(missing)} not set. Pass them to the spec, "
                "or hand the spec to an algorithm config, which fills them from the env and "
                "its default module.")
        return self.module_class(**{name: getattr(self, name) for name in CTOR_ARGS})

    def update(self, other: "RLModuleSpec", override: bool = True) -> None:
        """Take ``other``'s set fields; with ``override=False`` only where ours are None."""
        for f in dataclasses.fields(self):
            theirs = getattr(other, f.name)
            if theirs is not None and (override or getattr(self, f.name) is None):
                setattr(self, f.name, theirs)

    def as_inference_only(self) -> "RLModuleSpec":
        return dataclasses.replace(self, inference_only=True)
