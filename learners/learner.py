"""Learner: turns fragments into gradient updates of the full (training) MultiRLModule.

This base class holds the framework-neutral structure: which modules train, how fragments
become per-module batches, the epochs x minibatches schedule, and the state/weights API.
``TorchLearner`` fills in the torch parts; algorithms subclass it and implement
``compute_loss_for_module`` (and may override ``build_batch`` to add columns).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from rlmodules.columns import Columns
from rlmodules.multi_rl_module import MultiRLModule, MultiRLModuleSpec
from runners.fragment import Fragment
from learners.batching import (concat_fragments, cut_sequences, group_by_module, map_nested,
                               minibatch_plan)

ALL_MODULES = "__all__"
"""Metrics key for numbers about the whole update (and for optimizers spanning modules)."""

PoliciesToTrain = Collection[str] | Callable[[str, Any], bool] | None


def is_trainable(policies_to_train: PoliciesToTrain, module_id: str,
                 fragments: Sequence[Fragment] | None = None) -> bool:
    """None trains every module; a collection lists module IDs; a callable decides per ID
    and batch (without ``fragments``, e.g. at build time, every module may be trained)."""
    if policies_to_train is None:
        return True
    if callable(policies_to_train):
        return fragments is None or bool(policies_to_train(module_id, fragments))
    return module_id in policies_to_train


def check_required_apis(learner_class: type["Learner"],
                        module: MultiRLModuleSpec | MultiRLModule,
                        policies_to_train: PoliciesToTrain = None) -> None:
    """Raise a TypeError if a module to train lacks an API ``learner_class`` requires.

    Works on a spec (checks the module classes before anything is built; unset classes are
    skipped) or on a built MultiRLModule. Modules excluded by a ``policies_to_train``
    collection are not checked: they are never trained by this learner.
    """
    required = learner_class.rl_module_required_apis()
    if not required:
        return
    if isinstance(module, MultiRLModuleSpec):
        classes = {mid: spec.module_class for mid, spec in module.module_specs().items()}
    else:
        classes = {mid: type(sub) for mid, sub in module.items()}
    for module_id, cls in classes.items():
        if cls is None or not is_trainable(policies_to_train, module_id):
            continue
        for api in required:
            if not issubclass(cls, api):
                methods = sorted(getattr(api, "__abstractmethods__", ()))
                raise TypeError(
                    f"Module '{module_id}' ({cls.__module__}.{cls.__qualname__}) does not "
                    f"implement {api.__name__}, which {learner_class.__name__} requires. Make "
                    f"the class inherit from {api.__name__} and implement {methods}, or "
                    f"leave '{module_id}' out of policies_to_train.")


class Learner:
    """Owns the training MultiRLModule and its optimizers; ``update(fragments)`` trains it.

    ``config`` is read duck-typed: lr, grad_clip, num_epochs, minibatch_size,
    train_batch_size_per_learner, policies_to_train, seed, num_gpus_per_learner, plus the
    algorithm's own keys in its loss. ``learner_index``/``world_size`` place this learner
    among data-parallel peers (the LearnerGroup sets up their process group).
    """

    framework: str | None = None

    def __init__(self, *, config: Any, module_spec: MultiRLModuleSpec, learner_index: int = 0,
                 world_size: int = 1) -> None:
        if not isinstance(module_spec, MultiRLModuleSpec):
            raise TypeError(
                f"{type(self).__name__}: module_spec must be a MultiRLModuleSpec, got "
                f"{type(module_spec).__name__}. Wrap a single RLModuleSpec as "
                "MultiRLModuleSpec(rl_module_specs={DEFAULT_MODULE_ID: spec}).")
        self.config = config
        self.module_spec = module_spec
        self.learner_index = learner_index
        self.world_size = world_size
        self._module: MultiRLModule | None = None
        self._max_seq_len: dict[str, int | None] = {}
        self._optimizers: dict[str, Any] = {}
        self._optimizer_params: dict[str, list[Any]] = {}
        self._logged: dict[tuple[str, str], list[Any]] = defaultdict(list)
        # Minibatch shuffling; seeded per learner so that runs repeat.
        self._rng = np.random.default_rng(
            None if config.seed is None else [config.seed, learner_index])

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        """APIs (e.g. ValueFunctionAPI) every module this learner trains must implement."""
        return []

    @property
    def module(self) -> MultiRLModule:
        if self._module is None:
            raise RuntimeError(f"{type(self).__name__} is not built yet; call build() first.")
        return self._module

    def build(self) -> None:
        """Build the full MultiRLModule, check its APIs, create the optimizers."""
        if self._module is not None:
            return
        self._module = self._make_module(_training_spec(self.module_spec))
        check_required_apis(type(self), self._module, self.config.policies_to_train)
        self._max_seq_len = {
            mid: (sub.model_config.get("max_seq_len", 20) if sub.is_stateful() else None)
            for mid, sub in self._module.items()}
        self.configure_optimizers()

    def configure_optimizers(self) -> None:
        """One ``configure_optimizers_for_module`` call per module that may be trained."""
        for module_id in self.module.keys():
            if is_trainable(self.config.policies_to_train, module_id):
                self.configure_optimizers_for_module(module_id, self.config)

    def configure_optimizers_for_module(self, module_id: str, config: Any) -> None:
        raise NotImplementedError

    def register_optimizer(self, module_id: str, optimizer: Any, params: Iterable[Any]) -> None:
        """Register ``optimizer`` over ``params`` under ``module_id`` (metrics and state key).

        A key may be a module ID or any other name (e.g. ALL_MODULES for one optimizer over
        several modules); each key holds one optimizer.
        """
        if module_id in self._optimizers:
            raise ValueError(f"An optimizer is already registered under '{module_id}'; use "
                             "one key per optimizer.")
        self._optimizers[module_id] = optimizer
        self._optimizer_params[module_id] = list(params)

    # ---- updating ---------------------------------------------------------------------------

    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """Train on ``fragments`` for num_epochs x minibatches; return metrics per module.

        The number of minibatches per epoch, max(1, train_batch_size_per_learner //
        minibatch_size), is the same on every data-parallel learner whatever its share of
        the data, so their gradient collectives always pair up.
        """
        module = self.module
        unknown = sorted({f.module_id for f in fragments} - set(module.keys()))
        if unknown:
            raise KeyError(f"Fragments for module ID(s) {unknown}, but the learner's "
                           f"MultiRLModule holds {list(module.keys())}. Check the "
                           "policy_mapping_fn and the module specs.")
        groups = {mid: frags for mid, frags in group_by_module(fragments).items()
                  if is_trainable(self.config.policies_to_train, mid, frags)}
        trained = [f for frags in groups.values() for f in frags]
        counts = {mid: sum(len(f) for f in frags) for mid, frags in groups.items()}
        self._logged.clear()
        if trained or self.world_size > 1:  # Data-parallel peers step even without data.
            batch = self.build_batch(trained) if trained else {}
            steps = self.config.num_epochs * self._num_minibatches()
            plans = {mid: self._index(plan) for mid, module_batch in batch.items()
                     if (plan := self._plan(mid, module_batch, steps)) is not None}
            for step in range(steps):
                self._update_minibatch({
                    mid: (map_nested(lambda x: x[plans[mid][step]], module_batch)
                          if mid in plans else module_batch)
                    for mid, module_batch in batch.items()})
        results = self._metrics_results()
        for mid, count in counts.items():
            results.setdefault(mid, {})["num_module_steps_trained"] = count
        results.setdefault(ALL_MODULES, {})["num_env_steps_trained"] = sum(counts.values())
        return results

    def build_batch(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """``{module_id: batch}`` on the learner's device; override to add columns."""
        return {mid: self.build_module_batch(mid, frags)
                for mid, frags in group_by_module(fragments).items()}

    def build_module_batch(self, module_id: str, fragments: Sequence[Fragment],
                           extra_columns: dict[str, Sequence[np.ndarray]] | None = None
                           ) -> dict[str, Any]:
        """One module's batch: flat [N, ...] columns, or [B, max_seq_len, ...] sequences with
        LOSS_MASK and STATE_IN for stateful modules. ``extra_columns`` holds one array per
        fragment (e.g. advantages) to batch alongside the fragments' own columns."""
        columns = concat_fragments(fragments, extra_columns)
        max_seq_len = self._max_seq_len[module_id]
        if max_seq_len:
            columns = cut_sequences(columns, [len(f) for f in fragments], max_seq_len)
        else:
            columns.pop(Columns.STATE_IN, None)
        return self._to_device(columns)

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> Any:
        """The scalar loss of one module on one minibatch; log extra terms with log_metric."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_loss_for_module().")

    def log_metric(self, key: str, name: str, value: Any) -> None:
        """Record ``value`` (a scalar tensor or number) under ``results[key][name]``.

        Values are averaged over the update's minibatches and converted to Python floats
        once at the end, so logging inside the loss costs no device sync.
        """
        self._logged[(key, name)].append(value.detach() if hasattr(value, "detach") else value)

    def _num_minibatches(self) -> int:
        size, total = self.config.minibatch_size, self.config.train_batch_size_per_learner
        if size is None or total is None:
            return 1
        return max(1, total // size)

    def _plan(self, module_id: str, module_batch: dict[str, Any],
              steps: int) -> np.ndarray | None:
        size = self.config.minibatch_size
        max_seq_len = self._max_seq_len[module_id]
        if size is not None and max_seq_len:
            size = max(1, size // max_seq_len)  # Sequences per minibatch.
        rows = len(module_batch[Columns.LOSS_MASK] if max_seq_len else
                   next(v for v in module_batch.values() if not isinstance(v, dict)))
        return minibatch_plan(rows, size, steps, self._rng)

    # ---- framework hooks ----------------------------------------------------------------------

    def _make_module(self, spec: MultiRLModuleSpec) -> MultiRLModule:
        raise NotImplementedError

    def _to_device(self, columns: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _index(self, plan: np.ndarray) -> Any:
        raise NotImplementedError

    def _update_minibatch(self, minibatch: dict[str, dict[str, Any]]) -> None:
        raise NotImplementedError

    def _metrics_results(self) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def _get_optimizer_state(self, names: Sequence[str]) -> dict[str, Any]:
        raise NotImplementedError

    def _set_optimizer_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # ---- state --------------------------------------------------------------------------------

    def get_state(self, components: str | Sequence[str] | None = None) -> dict[str, Any]:
        """``{"rl_module": {mid: weights}, "optimizer": {name: state}}`` as numpy.

        ``components`` selects paths such as "rl_module", "rl_module/default_policy" or
        "optimizer/p0".
        """
        selection = _select(components, {"rl_module": list(self.module.keys()),
                                          "optimizer": list(self._optimizers)})
        state: dict[str, Any] = {}
        if "rl_module" in selection:
            state["rl_module"] = self.get_weights(selection["rl_module"])
        if "optimizer" in selection:
            state["optimizer"] = self._get_optimizer_state(selection["optimizer"])
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Load a (possibly partial) state from ``get_state``; what it leaves out is kept."""
        unknown = sorted(set(state) - {"rl_module", "optimizer"})
        if unknown:
            raise KeyError(f"{type(self).__name__}.set_state(): unknown component(s) {unknown};"
                           " a learner state holds 'rl_module' and 'optimizer'.")
        if "rl_module" in state:
            self.set_weights(state["rl_module"])
        if "optimizer" in state:
            self._set_optimizer_state(state["optimizer"])

    def get_weights(self, module_ids: Sequence[str] | None = None,
                    inference_only: bool = False) -> dict[str, dict[str, np.ndarray]]:
        return self.module.get_state(inference_only=inference_only,
                                     module_ids=None if module_ids is None else list(module_ids))

    def set_weights(self, weights: Mapping[str, Mapping[str, Any]]) -> None:
        self.module.set_state(weights)


def _training_spec(spec: MultiRLModuleSpec) -> MultiRLModuleSpec:
    """``spec`` with inference_only switched off everywhere: learners need every branch."""
    return dataclasses.replace(spec, inference_only=False, rl_module_specs={
        mid: dataclasses.replace(sub, inference_only=False)
        for mid, sub in spec.module_specs().items()})


def _select(components: str | Sequence[str] | None,
            available: dict[str, list[str]]) -> dict[str, list[str]]:
    """Component paths ("rl_module/p0", "optimizer") -> {top-level key: selected sub-keys}."""
    if components is None:
        return available
    selection: dict[str, list[str]] = {}
    for path in [components] if isinstance(components, str) else components:
        top, _, sub = path.strip("/").partition("/")
        if top not in available:
            raise KeyError(f"Unknown learner state component '{path}'; paths start with one of "
                           f"{sorted(available)}.")
        if not sub:
            selection[top] = available[top]
        elif sub not in available[top]:
            raise KeyError(f"Unknown learner state component '{path}': '{top}' holds "
                           f"{available[top]}.")
        elif sub not in selection.setdefault(top, []):
            selection[top].append(sub)
    return selection
