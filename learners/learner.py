"""TorchLearner: turns fragments into gradient updates of the full (training) MultiRLModule.

An algorithm subclasses it and overrides the hooks that ``update`` calls, in this order
(after the config's ``learner_connector`` pieces, if any, ran on the fragments):

1. ``group_fragments``: which fragments each module trains on (by default its own).
2. ``compute_extra_columns_for_module``: once per trained module, with that module's
   fragments; columns computed before the loss (PPO: advantages, value targets).
3. ``compute_loss_for_module``: the loss of one module on one minibatch (a module that
   implements SelfSupervisedLossAPI computes its own, and gets no extra columns).
4. ``after_update``: the update's metrics, already reduced over data-parallel learners, so
   every learner decides alike (PPO: adapts its KL coefficient).

Modules that are not torch modules (e.g. numpy heuristics) and modules outside
``policies_to_train`` are never trained: no optimizer, no batch, no loss. Modules that
implement TargetNetworkAPI get their target nets made at build and moved by ``tau`` every
``target_network_update_freq`` trained timesteps.

``configure_optimizers_for_module`` picks the optimizers (one Adam per module by default,
named DEFAULT_OPTIMIZER) with ``register_optimizer``, as in RLlib: several per module, each with
its own learning rate or ``[[timestep, lr], ...]`` schedule, plus torch lr schedulers
(``register_lr_scheduler``). ``self.metrics`` is a MetricsLogger: what a loss logs under
``(module_id, name)`` comes back as ``results[module_id][name]``.

The minibatch loop is a hot path: the batch goes to the device once per update, minibatches
are index views into it, and logged metrics stay tensors until the logger reduces them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodules.apis import SelfSupervisedLossAPI, TargetNetworkAPI, update_target_network
from rlmodules.columns import ALL_MODULES, DEFAULT_MODULE_ID, Columns
from rlmodules.multi_rl_module import MultiRLModule, MultiRLModuleSpec
from rlmodules.tree import first_leaf, map_tree
from runners.connectors import LearnerConnectorPipeline, build_learner_connector
from runners.connectors.learner import apply_learner_connector
from runners.fragment import Fragment, count_env_steps
from runners.metrics_logger import MetricsLogger
from learners import distributed, optim
from learners.batching import (concat_fragments, cut_sequences, group_by_module,
                               iterate_minibatches, minibatch_plan)

DEFAULT_OPTIMIZER = "default_optimizer"
"""Name of an optimizer registered without one (RLlib's)."""

LearningRateOrSchedule = float | Sequence[Sequence[float]]
"""A learning rate, or RLlib's piecewise-linear schedule ``[[timestep, lr], ...]``."""

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


def check_required_apis(learner_class: type["TorchLearner"], spec: MultiRLModuleSpec,
                        policies_to_train: PoliciesToTrain = None) -> None:
    """Raise a TypeError if a module to train lacks an API ``learner_class`` requires.

    Checks the spec's module classes before anything is built. Skipped: unset classes,
    modules that are never trained (excluded by a ``policies_to_train`` collection, or not
    torch modules) and modules that bring their own loss (SelfSupervisedLossAPI).
    """
    for module_id, sub in spec.module_specs().items():
        cls = sub.module_class
        if (cls is None or not issubclass(cls, nn.Module) or issubclass(cls, SelfSupervisedLossAPI)
                or not is_trainable(policies_to_train, module_id)):
            continue
        for api in learner_class.rl_module_required_apis():
            if not issubclass(cls, api):
                methods = sorted(getattr(api, "__abstractmethods__", ()))
                raise TypeError(
                    f"Module '{module_id}' ({cls.__module__}.{cls.__qualname__}) does not "
                    f"implement {api.__name__}, which {learner_class.__name__} requires. Make "
                    f"the class inherit from {api.__name__} and implement {methods}, or "
                    f"leave '{module_id}' out of policies_to_train.")


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real steps of a sequence batch (``LOSS_MASK``), or over all of them."""
    if mask is None:
        return values.mean()
    return (values * mask).sum() / mask.sum().clamp(min=1)


class TorchLearner:
    """Owns the training MultiRLModule and its optimizers; ``update(fragments)`` trains it.

    ``config`` is read duck-typed: lr, grad_clip, num_epochs, minibatch_size,
    train_batch_size_per_learner, policies_to_train, seed, num_gpus_per_learner (tau and
    target_network_update_freq with target networks), plus the algorithm's own keys in its
    hooks (a custom learner's in ``config.learner_config_dict``). ``learner_index`` /
    ``world_size`` place this learner among data-parallel peers (the LearnerGroup sets up
    their process group).
    """

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
        self.device = torch.device("cpu")  # Chosen at build from num_gpus_per_learner.
        self._module: MultiRLModule | None = None
        self._max_seq_len: dict[str, int | None] = {}
        self._runner_keys: dict[str, list[str]] = {}  # State keys env runners' modules hold.
        self._ssl_ids: set[str] = set()  # Modules with their own (self-supervised) loss.
        # Columns compute_values added to (or rewrote in) its batch, for the train batch.
        self._value_batch_rewrites: dict[str, dict[str, Any]] = {}
        # Per module with target nets: lifetime trained steps, last update's step, updates.
        self._target_updates: dict[str, dict[str, int]] = {}
        # Optimizers by "<module_id>_<optimizer_name>" (RLlib's full name, their state key).
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._optimizer_ids: dict[str, tuple[str, str]] = {}  # -> (module_id, optimizer_name)
        self._optimizer_params: dict[str, list[torch.Tensor]] = {}
        self._lr_schedules: dict[str, tuple[list[float], list[float]]] = {}  # Piecewise ones.
        self._lr_schedulers: dict[str, list[torch.optim.lr_scheduler.LRScheduler]] = {}
        self._params: list[torch.Tensor] = []  # Cheaper to clear than zero_grad().
        self._synced_params: list[torch.Tensor] = []  # All-reduced, in a fixed order.
        self._stepped: set[str] = set()  # Optimizers that stepped in the current update.
        # Lifetime trained steps (reduced over data-parallel learners): key -> name -> count.
        self._lifetime: dict[str, dict[str, int]] = {}
        self.metrics = MetricsLogger()
        """What losses and hooks log to (RLlib's ``self.metrics``); reduced once per update."""
        self._learner_connector: LearnerConnectorPipeline | None = None  # From the config.
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
        """Build the full MultiRLModule on the device (target nets included), check its
        APIs, create the optimizers."""
        if self._module is not None:
            return
        self.device = self._select_device()
        if self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        check_required_apis(type(self), self.module_spec, self.config.policies_to_train)
        # Learners need every branch, so inference_only is switched off everywhere.
        module = dataclasses.replace(self.module_spec, inference_only=False, rl_module_specs={
            mid: dataclasses.replace(sub, inference_only=False)
            for mid, sub in self.module_spec.module_specs().items()}).build().to(self.device)
        self._target_updates = {}
        for mid, sub in module.items():
            if isinstance(sub, TargetNetworkAPI):
                sub.make_target_networks()  # Frozen copies: left out of optimizers below.
                if self._may_train(mid, sub):
                    self._target_updates[mid] = dict.fromkeys(
                        ("module_steps_trained", "last_target_update_ts", "num_target_updates"), 0)
        self._ssl_ids = {mid for mid, sub in module.items()
                         if isinstance(sub, SelfSupervisedLossAPI)}
        self._runner_keys = self._runner_state_keys(module)
        if self.world_size > 1:
            if not torch.distributed.is_initialized():
                raise RuntimeError(
                    f"{type(self).__name__} with world_size={self.world_size} needs a "
                    "torch.distributed process group; create data-parallel learners through "
                    "LearnerGroup, which sets it up.")
            distributed.broadcast_module(module)
        self._module = module
        self._max_seq_len = {
            mid: (sub.model_config.get("max_seq_len", 20) if sub.is_stateful() else None)
            for mid, sub in module.items()}
        optim.skip_dynamo_import()  # Saves ~1.5 s of start-up (learners/optim.py).
        self.configure_optimizers()
        self._add_config_lr_schedulers()
        unique = {id(p): p for params in self._optimizer_params.values() for p in params}
        self._synced_params = [p for p in unique.values() if p.requires_grad]
        self._params = [p for p in module.parameters() if p.requires_grad]
        self._learner_connector = build_learner_connector(
            getattr(self.config, "learner_connector", None), *self._connector_spaces(module))

    def _connector_spaces(self, module: MultiRLModule) -> tuple[Any, Any]:
        """The spaces the learner connector factory gets: the module's (the one module's
        when there is one, else Dicts keyed by module ID)."""
        subs = {mid: sub for mid, sub in module.items() if not getattr(sub, "learner_only", 0)}
        if len(subs) == 1:
            sub = next(iter(subs.values()))
            return sub.observation_space, sub.action_space
        return (gym.spaces.Dict({mid: sub.observation_space for mid, sub in subs.items()}),
                gym.spaces.Dict({mid: sub.action_space for mid, sub in subs.items()}))

    def _may_train(self, module_id: str, module: Any,
                   fragments: Sequence[Fragment] | None = None) -> bool:
        """Only torch modules that policies_to_train selects are trained."""
        return isinstance(module, nn.Module) and is_trainable(
            self.config.policies_to_train, module_id, fragments)

    def _runner_state_keys(self, module: MultiRLModule) -> dict[str, list[str]]:
        """The state keys of each module as env runners build it (the spec's inference-only
        build, without learner_only and non-torch modules): exactly what a sync sends."""
        with torch.random.fork_rng(devices=[]):  # Leaves the seeded RNG stream as it was.
            runner_module = self.module_spec.as_inference_only().build()
        keys = {}
        for mid, sub in runner_module.items():
            if not isinstance(sub, nn.Module):
                continue
            keys[mid] = list(sub.state_dict())
            missing = sorted(set(keys[mid]) - set(module[mid].state_dict()))
            if missing:
                raise KeyError(
                    f"Module '{mid}' ({type(sub).__qualname__}): its inference-only build holds "
                    f"parameter(s) {missing[:3]} that the full (learner) build lacks; an "
                    "inference-only build may only leave attributes out, not add or rename them.")
        return keys

    def _select_device(self) -> torch.device:
        """CPU for num_gpus_per_learner=0, else the first CUDA device this process sees
        (Ray shows each GPU learner only its own GPU(s)); an error if it sees none."""
        gpus = self.config.num_gpus_per_learner or 0
        if gpus <= 0:
            return torch.device("cpu")
        if not torch.cuda.is_available():
            why = (f"this torch {torch.__version__} is built without CUDA"
                   if torch.version.cuda is None else
                   "no GPU is visible to this process; check CUDA_VISIBLE_DEVICES")
            raise RuntimeError(
                f"num_gpus_per_learner={gpus} but learner {self.learner_index} sees no CUDA "
                f"device ({why}); set num_gpus_per_learner=0 to train on CPU, or run it "
                "where torch.cuda.is_available() is True.")
        return torch.device("cuda", 0)

    def configure_optimizers(self) -> None:
        """One ``configure_optimizers_for_module`` call per module that may be trained."""
        for module_id, module in self.module.items():
            if self._may_train(module_id, module):
                self.configure_optimizers_for_module(module_id, self.config)

    def configure_optimizers_for_module(self, module_id: str, config: Any) -> None:
        """One Adam (DEFAULT_OPTIMIZER) over the module's trainable parameters at
        ``config.lr``; none for a parameter-free module."""
        params = self.get_parameters(self.module[module_id])
        if params:
            # The fused kernel steps all tensors at once: ~2x faster than the default on CPU.
            self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(
                params, fused=True), params=params, lr_or_lr_schedule=config.lr)

    def get_parameters(self, module: nn.Module) -> list[torch.Tensor]:
        """The trainable parameters of ``module`` (frozen ones, e.g. target nets, left out)."""
        return [p for p in module.parameters() if p.requires_grad]

    def register_optimizer(self, *, module_id: str = ALL_MODULES,
                           optimizer_name: str = DEFAULT_OPTIMIZER,
                           optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor],
                           lr_or_lr_schedule: LearningRateOrSchedule | None = None) -> None:
        """Register ``optimizer`` over ``params`` as ``optimizer_name`` of ``module_id``
        (ALL_MODULES: one optimizer over several modules).

        Its state is the learner state's "optimizer/<module_id>_<optimizer_name>"; its
        gradients are clipped by config.grad_clip on their own; its lr is reported in
        ``results[module_id]`` as "<optimizer_name>_lr" and, with a grad_clip (as in RLlib),
        the unclipped norm as "gradients_<optimizer_name>_global_norm".
        ``lr_or_lr_schedule``: a float sets the lr; ``[[timestep, lr], ...]`` (first
        timestep 0) interpolates linearly over the learner's lifetime trained env steps,
        updated after every update; None keeps the optimizer's own lr.
        """
        name = f"{module_id}_{optimizer_name}"
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"register_optimizer('{name}'): optimizer must be a "
                            f"torch.optim.Optimizer, got {type(optimizer).__name__}.")
        if name in self._optimizers:
            raise ValueError(f"An optimizer is already registered as '{optimizer_name}' of "
                             f"'{module_id}'; give each optimizer its own optimizer_name.")
        self._optimizers[name] = optimizer
        self._optimizer_ids[name] = (module_id, optimizer_name)
        self._optimizer_params[name] = list(params)
        if lr_or_lr_schedule is not None:
            timesteps, lrs = schedule_points(
                lr_or_lr_schedule, f"Optimizer '{name}': lr_or_lr_schedule")
            if len(timesteps) > 1:
                self._lr_schedules[name] = (timesteps, lrs)
            _set_lr(optimizer, lrs[0])

    def register_lr_scheduler(self, *, module_id: str = ALL_MODULES,
                              optimizer_name: str = DEFAULT_OPTIMIZER,
                              scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        """Step ``scheduler`` (a torch lr scheduler built on that registered optimizer) once
        after every update in which its optimizer stepped, after those registered before it;
        its state is part of the learner state. ``config._torch_lr_scheduler_classes``
        (RLlib's ``experimental()`` setting) registers one per class for every optimizer."""
        optimizer = self.get_optimizer(module_id, optimizer_name)
        name = f"{module_id}_{optimizer_name}"
        if getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValueError(f"register_lr_scheduler('{name}'): the scheduler was built on "
                             "another optimizer; build it on get_optimizer(module_id, "
                             "optimizer_name).")
        if name in self._lr_schedules:
            raise ValueError(f"Optimizer '{name}' already follows an lr schedule "
                             "(lr_or_lr_schedule); give it a constant lr or no scheduler.")
        self._lr_schedulers.setdefault(name, []).append(scheduler)

    def _add_config_lr_schedulers(self) -> None:
        """RLlib's ``_torch_lr_scheduler_classes``: a list of scheduler classes (or partials)
        for every optimizer, or ``{module_id: [classes]}``."""
        classes = getattr(self.config, "_torch_lr_scheduler_classes", None)
        if not classes:
            return
        for name, (module_id, optimizer_name) in self._optimizer_ids.items():
            for scheduler_class in (classes.get(module_id, ()) if isinstance(classes, Mapping)
                                    else classes):
                self.register_lr_scheduler(module_id=module_id, optimizer_name=optimizer_name,
                                           scheduler=scheduler_class(self._optimizers[name]))

    def get_optimizer(self, module_id: str = DEFAULT_MODULE_ID,
                      optimizer_name: str = DEFAULT_OPTIMIZER) -> torch.optim.Optimizer:
        """The optimizer registered as ``optimizer_name`` (or by that full name) of
        ``module_id``."""
        optimizer = (self._optimizers.get(optimizer_name)
                     or self._optimizers.get(f"{module_id}_{optimizer_name}"))
        if optimizer is None:
            raise KeyError(f"No optimizer '{optimizer_name}' registered for module "
                           f"'{module_id}'; registered: {list(self._optimizers)}.")
        return optimizer

    def get_optimizers_for_module(self, module_id: str = ALL_MODULES
                                  ) -> list[tuple[str, torch.optim.Optimizer]]:
        """``(optimizer_name, optimizer)`` of every optimizer registered for ``module_id``."""
        return [(optimizer_name, self._optimizers[name])
                for name, (mid, optimizer_name) in self._optimizer_ids.items()
                if mid == module_id]

    # ---- the hooks --------------------------------------------------------------------------

    def group_fragments(self, fragments: Sequence[Fragment]) -> dict[str, list[Fragment]]:
        """``{module_id: fragments to train it on}``; by default each fragment goes to its own
        module. Override to give a module data of other modules (e.g. a model of the env
        trained on the policy's fragments); modules not selected for training are dropped."""
        return group_by_module(fragments)

    def compute_extra_columns_for_module(self, module_id: str, fragments: Sequence[Fragment]
                                         ) -> dict[str, Sequence[np.ndarray]]:
        """Columns to train on besides the fragments' own: ``{name: one array per fragment}``.

        Called once per update for each trained module, with all of its fragments (so
        batch-wide steps such as normalization fit here). None by default.
        """
        return {}

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        """The scalar loss of one module on one minibatch; log extra terms with
        ``self.metrics.log_value((module_id, name), value, ...)`` or ``log_metric``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_loss_for_module().")

    def after_update(self, results: dict[str, dict[str, Any]]) -> None:
        """Act on the update's ``results`` (and add to them); they are the same on every
        data-parallel learner, so decisions taken here agree. Nothing by default."""

    # ---- updating ---------------------------------------------------------------------------

    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """Train on ``fragments`` for num_epochs x minibatches; return metrics per module.

        ``results[module_id]`` holds what was logged under ``(module_id, ...)`` plus
        "num_module_steps_trained" (and "_lifetime"); ``results[ALL_MODULES]`` the update's
        "num_env_steps_trained" (``count_env_steps``: a step in which several agents act
        counts once) and "num_module_steps_trained" (and their "_lifetime"). With
        data-parallel peers the metrics are reduced over all learners (ints summed, the
        rest averaged over the learners that reported them), identical on every one.
        """
        module = self.module
        if self._learner_connector is not None:
            fragments = apply_learner_connector(self._learner_connector, module, fragments,
                                                self.metrics)
        groups = self.group_fragments(fragments)
        unknown = sorted(set(groups) - set(module.keys()))
        if unknown:
            raise KeyError(f"Fragments for module ID(s) {unknown}, but the learner's "
                           f"MultiRLModule holds {list(module.keys())}. Check the "
                           "policy_mapping_fn and the module specs.")
        groups = {mid: frags for mid, frags in groups.items()
                  if self._may_train(mid, module[mid], frags)}
        if groups or self.world_size > 1:  # Data-parallel peers step even without data.
            self._train({mid: self.build_module_batch(mid, frags)
                         for mid, frags in groups.items()})
        counts = {mid: sum(map(len, frags)) for mid, frags in groups.items()}
        for key, name, count in [
                *((mid, "num_module_steps_trained", n) for mid, n in counts.items()),
                (ALL_MODULES, "num_module_steps_trained", sum(counts.values())),
                (ALL_MODULES, "num_env_steps_trained",
                 count_env_steps([f for f in fragments if f.module_id in groups]))]:
            self.metrics.log_value((key, name), count, reduce="sum", clear_on_reduce=True)
        results = self._reduce_metrics()
        self._count_lifetime_steps(results)
        self._update_target_networks(results)
        self._update_learning_rates(results)
        self.after_update(results)
        return results

    def _update_target_networks(self, results: dict[str, dict[str, Any]]) -> None:
        """Move each trained module's target nets by ``tau`` once it has trained on
        ``target_network_update_freq`` timesteps since the last move (counts are reduced over
        data-parallel learners, so all move alike)."""
        for mid, track in self._target_updates.items():
            if mid not in results or "num_module_steps_trained" not in results[mid]:
                continue
            track["module_steps_trained"] += results[mid]["num_module_steps_trained"]
            if (track["module_steps_trained"] - track["last_target_update_ts"]
                    >= self.config.target_network_update_freq):
                for main_net, target_net in self.module[mid].get_target_network_pairs():
                    update_target_network(main_net=main_net, target_net=target_net,
                                          tau=self.config.tau)
                track["last_target_update_ts"] = track["module_steps_trained"]
                track["num_target_updates"] += 1
            results[mid]["num_target_updates"] = track["num_target_updates"]
            results[mid]["last_target_update_ts"] = track["last_target_update_ts"]

    def build_module_batch(self, module_id: str, fragments: Sequence[Fragment]
                           ) -> dict[str, Any]:
        """One module's batch on the device, extra columns included: flat [N, ...] columns,
        or [B, max_seq_len, ...] sequences with LOSS_MASK and STATE_IN for stateful modules.
        """
        columns = concat_fragments(
            fragments, self.compute_extra_columns_for_module(module_id, fragments))
        columns.update(self._value_batch_rewrites.pop(module_id, {}))
        max_seq_len = self._max_seq_len[module_id]
        if max_seq_len:
            columns = cut_sequences(columns, [len(f) for f in fragments], max_seq_len)
        else:
            columns.pop(Columns.STATE_IN, None)
        return self._to_device(columns)

    def log_metric(self, key: str, name: str, value: torch.Tensor | float) -> None:
        """Short form of ``self.metrics.log_value((key, name), value)`` for a per-update
        term: ``results[key][name]`` is its mean over the update's minibatches (RLlib's
        built-in terms report the last minibatch's, ``window=1``). Tensors stay tensors
        until the logger reduces them, so logging inside the loss costs no device sync."""
        self.metrics.log_value((key, name), value, window=math.inf, clear_on_reduce=True)

    def _train(self, batch: dict[str, dict[str, Any]]) -> None:
        """num_epochs x minibatches steps; the number of minibatches per epoch,
        max(1, train_batch_size_per_learner // minibatch_size), is the same on every
        data-parallel learner whatever its share of the data, so their collectives pair up."""
        size, total = self.config.minibatch_size, self.config.train_batch_size_per_learner
        steps = self.config.num_epochs * (1 if size is None or total is None
                                          else max(1, total // size))
        streams = []
        for mid, module_batch in batch.items():
            seq_len = self._max_seq_len[mid]  # Stateful modules draw whole sequences.
            rows = max(1, size // seq_len) if size and seq_len else size
            plan = minibatch_plan(len(first_leaf(module_batch)), rows, steps, self._rng)
            if plan is not None:
                plan = torch.from_numpy(plan).to(self.device)
            streams.append(iterate_minibatches(module_batch, plan, steps))
        for minibatches in zip(*streams) if streams else [()] * steps:
            self._update_minibatch(dict(zip(batch, minibatches)))

    def _update_minibatch(self, minibatch: dict[str, dict[str, Any]]) -> None:
        for param in self._params:
            param.grad = None
        if minibatch:  # A data-parallel learner without local data still joins the all-reduce.
            if type(self.module) is MultiRLModule:  # It only routes: skip that layer.
                fwd_out = {mid: self.module[mid].forward_train(module_batch)
                           for mid, module_batch in minibatch.items()}
            else:
                fwd_out = self.module.forward_train(minibatch)
            total_loss = 0.0
            for module_id, module_batch in minibatch.items():
                out = fwd_out[module_id]
                if module_id in self._ssl_ids:
                    loss = self.module[module_id].compute_self_supervised_loss(
                        learner=self, module_id=module_id, config=self.config,
                        batch=module_batch, fwd_out=out)
                else:
                    if Columns.ACTION_DIST_INPUTS in out:
                        self._check_leading_dims(
                            module_id, f"forward_train()['{Columns.ACTION_DIST_INPUTS}']",
                            out[Columns.ACTION_DIST_INPUTS], module_batch)
                    loss = self.compute_loss_for_module(module_id=module_id, config=self.config,
                                                        batch=module_batch, fwd_out=out)
                self.log_metric(module_id, "total_loss", loss)
                total_loss = total_loss + loss
            total_loss.backward()
        if self.world_size > 1:
            distributed.all_reduce_gradients(self._synced_params)
        self.apply_gradients()

    def apply_gradients(self) -> None:
        """Clip each optimizer's gradients by global norm (config.grad_clip), logging the
        norm, and step it. Without a grad_clip no norm is computed (RLlib logs none then):
        it would cost a reduction over every gradient per minibatch.

        Optimizers whose parameters got no gradient (modules without data) are skipped.
        """
        grad_clip = self.config.grad_clip
        for name, optimizer in self._optimizers.items():
            params = [p for p in self._optimizer_params[name] if p.grad is not None]
            if not params:
                continue
            if grad_clip is not None:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params])
                torch.nn.utils.clip_grads_with_norm_(params, grad_clip, norm)
                module_id, optimizer_name = self._optimizer_ids[name]
                self.log_metric(module_id, f"gradients_{optimizer_name}_global_norm", norm)
            optim.step(optimizer)
            self._stepped.add(name)

    def _reduce_metrics(self) -> dict[str, Any]:
        """The update's results from ``self.metrics``, reduced over data-parallel learners.

        Per-update terms (``clear_on_reduce``) that got no value this update (a module
        without data) are left out rather than reported as NaN.
        """
        stats = self.metrics.stats
        for path in [p for p, s in stats.items() if s.clear_on_reduce and not s.values]:
            del stats[path]
        results = self.metrics.reduce()
        return distributed.all_reduce_metrics(results) if self.world_size > 1 else results

    def _count_lifetime_steps(self, results: dict[str, Any]) -> None:
        """Add "<count>_lifetime" next to each trained-steps count (counts already reduced
        over data-parallel learners, so every learner's lifetime agrees)."""
        for key, metrics in results.items():
            for count in ("num_module_steps_trained", "num_env_steps_trained"):
                if isinstance(metrics, dict) and count in metrics:
                    lifetime = self._lifetime.setdefault(key, {})
                    lifetime[f"{count}_lifetime"] = lifetime.get(f"{count}_lifetime", 0) + \
                        metrics[count]
                    metrics[f"{count}_lifetime"] = lifetime[f"{count}_lifetime"]

    @property
    def num_env_steps_trained_lifetime(self) -> int:
        """Env steps trained on so far (over all data-parallel learners): the timestep that
        schedules ``[[timestep, value], ...]`` are interpolated at."""
        return self._lifetime.get(ALL_MODULES, {}).get("num_env_steps_trained_lifetime", 0)

    def _update_learning_rates(self, results: dict[str, Any]) -> None:
        """After an update: schedules move to the lifetime trained env steps, torch lr
        schedulers of the optimizers that stepped take one step; each stepped optimizer's
        lr (the next update's) is reported as results[module_id]["<optimizer_name>_lr"]."""
        timestep = self.num_env_steps_trained_lifetime
        for name, (timesteps, lrs) in self._lr_schedules.items():
            _set_lr(self._optimizers[name], float(np.interp(timestep, timesteps, lrs)))
        for name in self._stepped:
            for scheduler in self._lr_schedulers.get(name, ()):
                scheduler.step()
            module_id, optimizer_name = self._optimizer_ids[name]
            results.setdefault(module_id, {})[f"{optimizer_name}_lr"] = float(
                self._optimizers[name].param_groups[0]["lr"])
        self._stepped.clear()

    # ---- batches ------------------------------------------------------------------------------

    def _check_leading_dims(self, module_id: str, what: str, value: Any,
                            batch: Mapping[str, Any], exact: bool = False) -> None:
        """Raise if a module output does not start with the batch's dims, [B] (flat) or
        [B, T] (sequences); with ``exact`` it must have just those dims."""
        mask = batch.get(Columns.LOSS_MASK)
        lead = tuple(mask.shape) if mask is not None else (len(first_leaf(batch)),)
        shape = tuple(first_leaf(value).shape)
        if (shape != lead) if exact else (shape[:len(lead)] != lead):
            dims = "[B, T] (sequences)" if mask is not None else "[B]"
            raise ValueError(
                f"{type(self.module[module_id]).__qualname__} (module '{module_id}'): {what} "
                f"has shape {shape}, but the batch's is {lead}, i.e. {dims}; "
                + (f"return exactly {dims}, e.g. `.squeeze(-1)` a [B, 1] output." if exact
                   else f"return {dims} followed by the output's own dims."))

    def _to_device(self, columns: dict[str, Any]) -> dict[str, Any]:
        """Numpy columns as tensors on the learner's device, dtypes kept (uint8 images stay
        uint8 until the module; float64 becomes float32). On the CPU they share the arrays'
        memory where they can; to a GPU each goes through pinned memory without blocking, so
        the copies of all columns queue up on the GPU while the host moves on."""
        to_gpu = self.device.type == "cuda"

        def convert(array: np.ndarray) -> torch.Tensor:
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if tensor.dtype == torch.float64:  # Modules compute in float32.
                tensor = tensor.float()
            if to_gpu:
                return tensor.pin_memory().to(self.device, non_blocking=True)
            return tensor

        return map_tree(convert, columns)

    def compute_values_for_fragments(self, module_id: str,
                                     fragments: Sequence[Fragment]) -> list[np.ndarray]:
        """Value estimates [T+1] per fragment: V(obs_0..obs_{T-1}) and V(last_obs).

        One no-grad forward for all fragments of the module. A stateful module runs each
        fragment (plus its last_obs) as one sequence starting from the fragment's first
        ``state_in``. Whether to bootstrap from V(last_obs) (not when ``terminated``) is
        the algorithm's call.
        """
        module = self.module[module_id]
        if not hasattr(module, "compute_values"):
            raise TypeError(
                f"compute_values_for_fragments('{module_id}'): {type(module).__name__} has no "
                "compute_values(); implement ValueFunctionAPI in the module.")
        lengths = [len(f) + 1 for f in fragments]
        obs = map_tree(lambda *xs: np.concatenate(xs), *[
            map_tree(lambda o, last: np.concatenate([o, np.asarray(last)[None]]),
                     f.columns[Columns.OBS], f.last_obs) for f in fragments])
        if self._max_seq_len[module_id]:
            batch = cut_sequences({Columns.OBS: obs}, lengths, max(lengths))
            batch[Columns.STATE_IN] = map_tree(lambda *xs: np.stack(xs), *[
                map_tree(lambda x: x[0], f.columns[Columns.STATE_IN]) for f in fragments])
            mask = batch[Columns.LOSS_MASK]
        else:
            batch, mask = {Columns.OBS: obs}, None
        device_batch = self._to_device(batch)
        before = map_tree(id, device_batch)
        with torch.no_grad():
            values = module.compute_values(device_batch)
        self._check_leading_dims(module_id, "compute_values()", values, batch, exact=True)
        if map_tree(id, device_batch) != before:
            self._keep_value_batch_rewrites(module_id, device_batch, before, lengths, mask)
        values = values.float().cpu().numpy()
        if mask is not None:
            values = values[mask]  # Row by row: fragment after fragment.
        return np.split(values, np.cumsum(lengths)[:-1])

    def _keep_value_batch_rewrites(self, module_id: str, batch: dict[str, Any],
                                   before: dict[str, Any], lengths: Sequence[int],
                                   mask: np.ndarray | None) -> None:
        """compute_values rewrote its batch (RLlib's action-masking modules pop the mask out
        of a dict observation and add it as a column): the train batch gets the same
        columns, without the bootstrap rows, so forward_train sees what compute_values saw."""
        keep = np.ones(sum(lengths), bool)
        keep[np.cumsum(lengths) - 1] = False  # The last_obs row of each fragment.

        def train_rows(value: Any) -> Any:
            array = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            return (array if mask is None else array[mask])[keep]

        self._value_batch_rewrites[module_id] = {
            key: map_tree(train_rows, value) for key, value in batch.items()
            if key not in (Columns.STATE_IN, Columns.LOSS_MASK)
            and map_tree(id, value) != before.get(key)}

    # ---- state --------------------------------------------------------------------------------

    def get_state(self, components: str | Sequence[str] | None = None) -> dict[str, Any]:
        """``{"rl_module": {mid: weights}, "optimizer": {"<module_id>_<optimizer_name>":
        state}}`` as numpy (module weights include target nets); whole-state requests add
        the lifetime trained steps, torch lr schedulers' states and target-update counters
        (where there are any).

        ``components`` selects paths such as "rl_module", "rl_module/default_policy" or
        "optimizer/p0_default_optimizer".
        """
        selection = select_components(
            components, {"rl_module": self.module.keys(), "optimizer": self._optimizers},
            "rl_module/default_policy")
        state: dict[str, Any] = {}
        if "rl_module" in selection:
            state["rl_module"] = self.get_weights(selection["rl_module"])
        if "optimizer" in selection:
            state["optimizer"] = {
                name: map_tree(_to_numpy, self._optimizers[name].state_dict(), sequences=True)
                for name in selection["optimizer"] or self._optimizers}
        if components is None:
            state["steps_trained_lifetime"] = copy.deepcopy(self._lifetime)
            if self._lr_schedulers:
                state["lr_schedulers"] = {name: [copy.deepcopy(s.state_dict()) for s in sched]
                                          for name, sched in self._lr_schedulers.items()}
            if self._target_updates:
                state["target_updates"] = copy.deepcopy(self._target_updates)
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Load a (possibly partial) state from ``get_state``; what it leaves out is kept."""
        unknown = sorted(set(state) - {"rl_module", "optimizer", "steps_trained_lifetime",
                                       "lr_schedulers", "target_updates"})
        if unknown:
            raise KeyError(f"{type(self).__name__}.set_state(): unknown component(s) {unknown};"
                           " a learner state holds 'rl_module', 'optimizer', "
                           "'steps_trained_lifetime', 'lr_schedulers' and 'target_updates'.")
        if "rl_module" in state:
            self.set_weights(state["rl_module"])
        unknown = sorted(set(state.get("optimizer", {})) - set(self._optimizers))
        if unknown:
            raise KeyError(f"{type(self).__name__}.set_state(): no optimizer named {unknown}; "
                           f"this learner has {list(self._optimizers)}.")
        for name, optimizer_state in state.get("optimizer", {}).items():
            self._optimizers[name].load_state_dict(
                map_tree(_to_torch, optimizer_state, sequences=True))
        for name, scheduler_states in state.get("lr_schedulers", {}).items():
            schedulers = self._lr_schedulers.get(name, [])
            if len(schedulers) != len(scheduler_states):
                raise KeyError(f"{type(self).__name__}.set_state(): {len(scheduler_states)} lr "
                               f"scheduler state(s) for optimizer '{name}', which has "
                               f"{len(schedulers)} lr scheduler(s); register the same ones.")
            for scheduler, scheduler_state in zip(schedulers, scheduler_states):
                scheduler.load_state_dict(scheduler_state)
        for key, counts in state.get("steps_trained_lifetime", {}).items():
            self._lifetime[key] = {name: int(n) for name, n in counts.items()}
        for mid, track in state.get("target_updates", {}).items():
            if mid in self._target_updates:
                self._target_updates[mid].update({k: int(v) for k, v in track.items()})

    def get_weights(self, module_ids: Sequence[str] | None = None,
                    inference_only: bool = False) -> dict[str, dict[str, np.ndarray]]:
        """Module weights as numpy; ``inference_only``: exactly what env runners' modules hold
        (their inference-only build's parameters; learner_only and non-torch modules left
        out), target nets and other learner-only parts never included."""
        if not inference_only:
            return self.module.get_state(module_ids=None if module_ids is None
                                         else list(module_ids))
        ids = self._runner_keys if module_ids is None else [
            mid for mid in module_ids if mid in self._runner_keys]
        weights = {}
        for mid in ids:
            own = self.module[mid].state_dict()
            weights[mid] = {k: _to_numpy(own[k]) for k in self._runner_keys[mid]}
        return weights

    def set_weights(self, weights: Mapping[str, Mapping[str, Any]]) -> None:
        self.module.set_state(weights)


Learner = TorchLearner
"""RLlib's name for the learner base class; here the one (torch) learner is the base."""


def schedule_points(value: LearningRateOrSchedule, what: str
                    ) -> tuple[list[float], list[float]]:
    """A number or a schedule ``[[timestep, value], ...]`` as (timesteps, values), for
    ``np.interp``; ``what`` names the setting in the error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [0.0], [float(value)]
    try:
        points = [(float(t), float(x)) for t, x in value]
    except (TypeError, ValueError):
        points = []
    if not points or points[0][0] != 0 or any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise ValueError(
            f"{what}={value!r} is neither a number nor a schedule [[timestep, value], ...] "
            "starting at timestep 0 with increasing "
            "timesteps, e.g. [[0, 1e-3], [100000, 1e-4]].")
    timesteps, lrs = zip(*points)
    return list(timesteps), list(lrs)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _to_numpy(leaf: Any) -> Any:
    return leaf.detach().cpu().numpy().copy() if isinstance(leaf, torch.Tensor) else leaf


def _to_torch(leaf: Any) -> Any:
    return torch.from_numpy(leaf.copy()) if isinstance(leaf, np.ndarray) else leaf


def select_components(components: str | Sequence[str] | None,
                      available: Mapping[str, Collection[str] | None],
                      example: str) -> dict[str, list[str] | None]:
    """Component paths ("rl_module/p0", "optimizer") -> {top-level key: sub-paths}.

    None stands for all of a component. Sub-paths are checked where ``available`` lists the
    keys below a top-level one; ``example`` shows a valid path in the errors.
    """
    if components is None:
        return dict.fromkeys(available)
    selection: dict[str, list[str] | None] = {}
    for path in [components] if isinstance(components, str) else components:
        top, _, sub = path.strip("/").partition("/")
        if top not in available:
            raise KeyError(f"Unknown component '{path}': component paths start with one of "
                           f"{list(available)}, e.g. '{example}'.")
        if sub and available[top] is not None and sub not in available[top]:
            raise KeyError(f"Unknown component '{path}': '{top}' holds {list(available[top])}, "
                           f"e.g. '{example}'.")
        if not sub or selection.get(top, []) is None:
            selection[top] = None
        elif sub not in selection.setdefault(top, []):
            selection[top].append(sub)
    return selection
