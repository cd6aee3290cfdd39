"""MultiRLModule: a dict of RLModules keyed by module ID, itself an RLModule."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import gymnasium as gym
from torch import nn

from rlmodules.columns import DEFAULT_MODULE_ID
from rlmodules.rl_module import RLModule, RLModuleSpec
from rlmodules.torch_rl_module import TorchRLModule, to_tensors


class _SubModules(nn.ModuleDict):
    """Sub-modules by module ID, in insertion order. Torch ones are registered children (so
    ``parameters()``, ``to()`` and ``state_dict()`` cover them); plain RLModules (e.g.
    numpy heuristics) are only held, as RLlib holds every sub-module in a plain dict."""

    def __init__(self, modules: Mapping[str, RLModule] | None = None) -> None:
        super().__init__()
        self.all: dict[str, RLModule] = {}
        self.update(modules or {})

    def __setitem__(self, module_id: str, module: RLModule) -> None:
        self._modules.pop(module_id, None)
        if isinstance(module, nn.Module):
            super().__setitem__(module_id, module)
        self.all[module_id] = module

    def __delitem__(self, module_id: str) -> None:
        del self.all[module_id]
        self._modules.pop(module_id, None)

    def __getitem__(self, module_id: str) -> RLModule:
        return self.all[module_id]

    def __contains__(self, module_id: object) -> bool:
        return module_id in self.all

    def __len__(self) -> int:
        return len(self.all)

    def __iter__(self) -> Iterator[str]:
        return iter(self.all)

    def keys(self):
        return self.all.keys()

    def values(self):
        return self.all.values()

    def items(self):
        return self.all.items()

    def clear(self) -> None:
        self.all.clear()
        self._modules.clear()


class MultiRLModule(TorchRLModule):
    """Holds one sub-module per module ID; forward passes take and return ``{module_id: ...}``.

    By default each sub-module runs its own forward pass on its own batch. Subclasses that
    share networks between sub-modules override ``setup()`` (calling ``super().setup()``)
    and ``_forward`` or the phase-specific ``_forward_*`` methods.
    """

    def __init__(self, *args: Any, rl_module_specs: Mapping[str, RLModuleSpec] | None = None,
                 **kwargs: Any) -> None:
        """RLModule's arguments, plus one spec per module ID to build in ``setup()``."""
        self.rl_module_specs = dict(rl_module_specs or {})
        super().__init__(*args, **kwargs)

    def setup(self) -> None:
        """Build one sub-module per spec; an inference-only build (on env runners) builds
        them inference-only and leaves out the ``learner_only`` ones."""
        self._rl_modules = {}
        for module_id, spec in self.rl_module_specs.items():
            if self.inference_only:
                if spec.learner_only:
                    continue
                spec = spec.as_inference_only()
            self._rl_modules[module_id] = spec.build()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_rl_modules" and not isinstance(value, _SubModules):
            value = _SubModules(value)  # Subclasses (alpha API too) assign a plain dict.
        super().__setattr__(name, value)

    # ---- dict-like access -------------------------------------------------------------------

    def __getitem__(self, module_id: str) -> RLModule:
        if module_id not in self._rl_modules:
            raise KeyError(f"Module ID '{module_id}' not in {type(self).__name__}; it holds "
                           f"{list(self.keys())}.")
        return self._rl_modules[module_id]

    def __contains__(self, module_id: object) -> bool:
        return module_id in self._rl_modules

    def __len__(self) -> int:
        return len(self._rl_modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rl_modules)

    def keys(self):
        return self._rl_modules.keys()

    def values(self):
        return self._rl_modules.values()

    def items(self):
        return self._rl_modules.items()

    def add_module(self, module_id: str, module: RLModule, *, override: bool = False) -> None:
        """Add a sub-module; replacing an existing ID needs ``override=True``."""
        if module_id in self._rl_modules and not override:
            raise ValueError(f"Module ID '{module_id}' already exists in {type(self).__name__}; "
                             "pass override=True to replace it.")
        if not isinstance(module, RLModule):
            raise TypeError(f"add_module('{module_id}', ...) needs an RLModule, got "
                            f"{type(module).__name__}.")
        self._rl_modules[module_id] = module
        self.rl_module_specs[module_id] = spec_of(module)

    def remove_module(self, module_id: str, *, raise_err_if_not_found: bool = True) -> None:
        if module_id in self or raise_err_if_not_found:
            self[module_id]  # Raises a KeyError that names the IDs this module holds.
            del self._rl_modules[module_id]
            self.rl_module_specs.pop(module_id, None)

    # ---- forward passes ---------------------------------------------------------------------

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._per_module("forward_exploration", batch, **kwargs)

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._per_module("forward_inference", batch, **kwargs)

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return self._per_module("forward_train", batch, **kwargs)

    def _to_tensors(self, batch: dict[str, Any]) -> dict[str, Any]:
        """As a torch module does, except for the batches of plain (numpy) sub-modules."""
        modules = self._rl_modules
        if len(modules.all) == len(modules._modules):
            return to_tensors(batch)
        plain = modules.all.keys() - modules._modules.keys()
        return {k: v if k in plain else to_tensors(v) for k, v in batch.items()}

    def _per_module(self, method: str, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        if type(self)._forward is not RLModule._forward:  # A subclass' own _forward wins.
            return self._forward(batch, **kwargs)
        return {mid: getattr(self[mid], method)(b, **kwargs) for mid, b in batch.items()}

    def _check_action_outputs(self, out: Any, method: str) -> None:
        for module_id, module_out in out.items():
            self[module_id]._check_action_outputs(module_out, method)

    # ---- state ------------------------------------------------------------------------------

    def get_state(self, inference_only: bool = False,
                  module_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
        ids = list(self.keys()) if module_ids is None else module_ids
        return {mid: self[mid].get_state(inference_only=inference_only) for mid in ids}

    def set_state(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Load ``{module_id: module_state}``; module IDs left out keep their weights."""
        for module_id, module_state in state.items():
            self[module_id].set_state(module_state)

    def get_ctor_args(self) -> dict[str, Any]:
        """The specs without ``load_state_path``: the weights are what the module holds now."""
        args = {k: v for k, v in super().get_ctor_args().items()
                if k not in ("catalog_class", "learner_only")}
        return {**args, "rl_module_specs": {mid: dataclasses.replace(spec, load_state_path=None)
                                            for mid, spec in self.rl_module_specs.items()}}

    def as_multi_agent(self) -> "MultiRLModule":
        return self


RLModule.multi_agent_class = MultiRLModule


@dataclass
class MultiRLModuleSpec:
    """How to build a MultiRLModule: its class and one spec per module ID.

    ``rl_module_specs`` may be a single RLModuleSpec, used for every module ID (the
    algorithm expands it to its policies; built alone it becomes DEFAULT_MODULE_ID).
    """

    multi_rl_module_class: type[MultiRLModule] = MultiRLModule
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None
    inference_only: bool = False
    model_config: Mapping[str, Any] | None = None
    rl_module_specs: RLModuleSpec | dict[str, RLModuleSpec] | None = None
    load_state_path: str | os.PathLike | None = None
    """A MultiRLModule checkpoint written by ``save_to_path`` whose weights ``build()`` loads."""

    def module_specs(self, module_ids: list[str] | None = None) -> dict[str, RLModuleSpec]:
        """One spec per module ID, expanding a single shared spec to ``module_ids``."""
        specs = self.rl_module_specs
        if isinstance(specs, RLModuleSpec):
            return {mid: dataclasses.replace(specs) for mid in (module_ids or [DEFAULT_MODULE_ID])}
        return dict(specs or {})

    def build(self) -> MultiRLModule:
        module = self.multi_rl_module_class(
            observation_space=self.observation_space, action_space=self.action_space,
            inference_only=self.inference_only, model_config=self.model_config,
            rl_module_specs=self.module_specs())
        if self.load_state_path is not None:
            module.restore_from_path(self.load_state_path)
        return module

    def as_inference_only(self) -> "MultiRLModuleSpec":
        return dataclasses.replace(self, inference_only=True)


def spec_of(module: RLModule) -> RLModuleSpec | MultiRLModuleSpec:
    """The spec that rebuilds ``module`` (its class and constructor arguments)."""
    if isinstance(module, MultiRLModule):
        return MultiRLModuleSpec(multi_rl_module_class=type(module), **module.get_ctor_args())
    return RLModuleSpec(module_class=type(module), **module.get_ctor_args())
