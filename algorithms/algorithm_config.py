"""AlgorithmConfig: the builder that says what to train, where, and how.

Each builder method sets one section of settings (declared once, see runners/config.py) and
returns the config, so calls chain; a key it does not know, or a value out of range, raises
at the call and names the key. Checks that need several keys run in ``validate()``, which
``build_algo()`` calls. Learners get the config itself; env runners ``env_runner_config()``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Mapping

import torch

from learners import Learner
from rlmodules import DEFAULT_MODULE_ID, DefaultModelConfig, MultiRLModuleSpec, RLModuleSpec
from runners import complete_module_spec
from runners.callbacks import HOOKS, make_callbacks
from runners.config import (BOOL, CONNECTOR_FACTORY, DICT, NON_NEGATIVE, POSITIVE, UNIT, CallbackSettings,
                            DebuggingSettings, EnvironmentSettings, EnvRunnerConfig,
                            EnvRunnersSettings, FaultToleranceSettings, PolicyMappingSettings,
                            ReportingSettings, check_setting, int_at_least, is_search_space,
                            optional, or_schedule, setting)

if TYPE_CHECKING:
    from algorithms.algorithm import Algorithm


class _NotProvided:
    """Default of every builder argument: "leave this setting as it is"."""

    def __repr__(self) -> str:
        return "NotProvided"


NotProvided: Any = _NotProvided()


DEFAULT_BATCH_PER_LEARNER = 2000
"""Timesteps per update and learner where neither batch size is set."""


@dataclass
class LearnersSettings:
    """How many learners update (0 = one in this process; >= 2 data-parallel)."""

    num_learners: int = setting(0, int_at_least(0), "Ray learner actors; 0: one in this process")
    num_gpus_per_learner: float = setting(0, NON_NEGATIVE, "0: learn on CPU")
    num_cpus_per_learner: float = setting(1.0, POSITIVE, "also the learner's torch threads")


@dataclass
class TrainingSettings:
    """Optimization settings; algorithm configs extend this section with their own keys."""

    flags: ClassVar[tuple[str, ...]] = ("_enable_learner_api",)
    lr: float | list = setting(1e-3, or_schedule(POSITIVE), "the optimizer's learning rate, "
                               "or [[timestep, lr], ...] interpolated over the learner's "
                               "trained env steps")
    gamma: float = setting(0.99, UNIT, "the discount factor")
    train_batch_size: int | None = setting(
        None, optional(int_at_least(1)), "timesteps per update over all learners, split among "
        "them (as in RLlib); ignored where train_batch_size_per_learner is set")
    train_batch_size_per_learner: int | None = setting(
        None, optional(int_at_least(1)), "timesteps per update and learner; None: "
        f"train_batch_size // max(1, num_learners), or {DEFAULT_BATCH_PER_LEARNER} where "
        "neither is set")
    minibatch_size: int | None = setting(256, optional(int_at_least(1)),
                                         "timesteps per gradient step; None: the whole batch")
    num_epochs: int = setting(1, int_at_least(1), "passes over each train batch")
    grad_clip: float | None = setting(None, optional(POSITIVE), "max. global gradient norm")
    grad_clip_by: str = setting(
        "global_norm", (lambda v: v == "global_norm", "'global_norm' (RLlib's 'value' and "
                        "'norm' are not supported: the learner clips the global norm of each "
                        "optimizer's gradients)"), "gradients are clipped by their global norm")
    # Hard updates every 500 timesteps are RLlib's DQN defaults, the classic target network;
    # for soft (SAC-style) updates set tau=0.005, target_network_update_freq=0.
    tau: float = setting(1.0, UNIT, "modules with target networks: how far each target moves "
                         "towards its main net per target update (1.0: a copy)")
    target_network_update_freq: int = setting(
        500, int_at_least(0), "trained timesteps of a module between its target updates; "
        "0: after every update")
    learner_class: type | None = setting(
        None, (lambda v: v is None or inspect.isclass(v), "None or a Learner subclass"),
        "None: the algorithm's default learner")
    learner_config_dict: dict = setting(
        {}, DICT,
        "custom settings for a custom learner, read there as config.learner_config_dict")
    learner_connector: Callable[..., Any] | None = setting(
        None, CONNECTOR_FACTORY, "called by every learner, (obs_space, action_space) -> "
        "pieces run on the fragments before the algorithm's own columns (runners.connectors)")
    add_default_connectors_to_learner_pipeline: bool = setting(
        True, (lambda v: v is True, "True (the learner always builds the default columns "
               "from the fragments; learner_connector pieces add to or replace them)"),
        "the default columns are built after the learner_connector pieces")


@dataclass
class RLModuleSettings:
    """The module to train; missing classes and spaces are filled in at build."""

    flags: ClassVar[tuple[str, ...]] = ("_enable_rl_module_api",)
    rl_module_spec: RLModuleSpec | MultiRLModuleSpec | None = setting(
        None, (lambda v: v is None or isinstance(v, (RLModuleSpec, MultiRLModuleSpec)),
               "None, an RLModuleSpec or a MultiRLModuleSpec"))
    model_config: dict | DefaultModelConfig | None = setting(
        None, (lambda v: v is None or isinstance(v, (Mapping, DefaultModelConfig)),
               "None, a dict or a DefaultModelConfig"),
        "a dict updates the algorithm's default model config; a DefaultModelConfig replaces it")


@dataclass
class MultiAgentSettings(PolicyMappingSettings):
    """Module IDs to train and which agent acts with which module."""

    policies: set[str] | None = setting(
        None, (lambda v: v is None or (isinstance(v, Collection) and not isinstance(v, str) and
               len(v) > 0 and all(isinstance(p, str) for p in v)),
               "a non-empty set of module ID strings"),
        "None: the rl_module_spec's modules, else DEFAULT_MODULE_ID",
        convert=lambda v: None if v is None else set(v))  # A {module_id: spec} dict: its keys.
    policies_to_train: set[str] | Callable[..., bool] | None = setting(
        None, (lambda v: v is None or callable(v) or (
            isinstance(v, Collection) and not isinstance(v, str)),
            "None (all policies), a collection of module IDs or a callable"),
        "the callable is called as fn(module_id, fragments) -> bool",
        convert=lambda v: v if v is None or callable(v) else set(v))


EVALUATION_SEED_OFFSET = 100_000
"""Evaluation runners act with ``seed + EVALUATION_SEED_OFFSET`` (as RLlib, their envs are
seeded apart from the training runners'), unless evaluation_config sets a seed."""


@dataclass
class EvaluationSettings:
    """Greedy evaluation runners, their own EnvRunnerGroup, every few iterations."""

    evaluation_interval: int | None = setting(
        None, optional(int_at_least(1)), "evaluate in every iteration whose number is a "
        "multiple of this; None: only when algo.evaluate() is called")
    evaluation_duration: int = setting(10, int_at_least(1), "episodes or timesteps per "
                                       "evaluation, over all evaluation runners")
    evaluation_duration_unit: str = setting(
        "episodes", (lambda v: v in ("episodes", "timesteps"), "'episodes' or 'timesteps'"))
    evaluation_num_env_runners: int = setting(
        0, int_at_least(0), "Ray actors for evaluation; 0: one evaluation runner in this process")
    evaluation_parallel_to_training: bool = setting(
        False, BOOL, "evaluate while the training step runs (with the weights from before it); "
        "with evaluation_num_env_runners=0 evaluation runs after the training step instead")
    evaluation_config: dict | None = setting(
        None, optional(DICT),
        "settings that differ for evaluation, e.g. AlgorithmConfig.overrides(explore=True, "
        "env_config={...}); explore is False unless given")
    evaluation_force_reset_envs_before_iteration: bool = setting(
        True, BOOL, "timesteps unit: start every env on a new episode before each evaluation "
        "(the episodes unit always does)")


@dataclass
class IterationReportingSettings(ReportingSettings):
    """How results are smoothed (the runners read that), and how long an iteration lasts."""

    min_time_s_per_iteration: float | None = setting(
        None, optional(NON_NEGATIVE), "train() repeats training_step() until at least this "
        "many seconds have passed (and runs it at least once); None or 0: once")
    min_sample_timesteps_per_iteration: int = setting(
        0, int_at_least(0), "train() also repeats training_step() until the env runners "
        "sampled at least this many env steps in the iteration; 0: no minimum")
    min_train_timesteps_per_iteration: int = setting(
        0, int_at_least(0), "train() also repeats training_step() until the learners "
        "trained on at least this many env steps in the iteration; 0: no minimum")


PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass
class ResourcesSettings:
    """What a trial asks Ray for besides its runners' and learners' own resources (see
    Algorithm.default_resource_request); RLlib's GPU keys moved to learners()."""

    num_cpus_for_main_process: float = setting(
        1.0, POSITIVE, "CPUs of the driver (with num_learners=0 the local learner's are "
        "num_cpus_per_learner)")
    placement_strategy: str = setting(
        "PACK", (lambda v: v in PLACEMENT_STRATEGIES, " or ".join(map(repr, PLACEMENT_STRATEGIES))),
        "how Ray places a trial's resource bundles (its placement group's strategy)")


@dataclass
class CheckpointingSettings:
    """RLlib's checkpoint options, accepted and stored; neither changes what is written here:
    a checkpoint holds every module's state (no native torch model files)."""

    export_native_model_files: bool = setting(False, BOOL, "does nothing here")
    checkpoint_trainable_policies_only: bool = setting(False, BOOL, "does nothing here")


def _is_scheduler_classes(v: Any) -> bool:
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and _is_scheduler_classes(c) for k, c in v.items())
    return isinstance(v, (list, tuple)) and all(callable(c) for c in v)


@dataclass
class ExperimentalSettings:
    """RLlib's experimental() keys that have an effect here."""

    _torch_lr_scheduler_classes: list | dict | None = setting(
        None, (lambda v: v is None or _is_scheduler_classes(v),
               "None, a list of torch lr scheduler classes (or callables optimizer -> "
               "scheduler, e.g. functools.partial) or a dict {module_id: such a list}"),
        "built on each module's optimizers, stepped after each update")


@dataclass
class ApiStackSettings:
    """Accepted so that code written for RLlib runs; there is only this one stack."""

    flags: ClassVar[tuple[str, ...]] = ("enable_rl_module_and_learner",
                                        "enable_env_runner_and_connector_v2")


class Builder:
    """A builder method made from a section: one keyword per setting (NotProvided: leave as is).

    ``positional``: the section's first setting may also be passed by position. RLlib's
    old/new-stack switches that a section lists in ``flags`` are accepted as True.
    """

    def __init__(self, section: type, positional: bool = False) -> None:
        self.settings = {f.name: f for f in dataclasses.fields(section)}
        self.positional, self.flags = positional, getattr(section, "flags", ())
        self.known = sorted([*self.settings, *(f for f in self.flags if not f.startswith("_"))])
        self.__doc__ = section.__doc__ + "".join(f"\n\n``{k}``: {f.metadata['doc']}" for k, f
                                                 in self.settings.items() if f.metadata["doc"])
        P = inspect.Parameter
        params = [P(k, P.KEYWORD_ONLY, default=NotProvided, annotation=getattr(f, "type", P.empty))
                  for k, f in {**self.settings, **dict.fromkeys(self.flags)}.items()]
        if positional:
            params[0] = params[0].replace(kind=P.POSITIONAL_OR_KEYWORD)
        self.__signature__ = inspect.Signature([P("self", P.POSITIONAL_ONLY), *params])

    def __set_name__(self, owner: type, name: str) -> None:
        self.__name__ = name

    def __get__(self, config: Any, owner: type | None = None) -> Any:
        return self if config is None else types.MethodType(self, config)

    def __call__(self, config: "AlgorithmConfig", *args: Any, **kwargs: Any
                 ) -> "AlgorithmConfig":
        method = f"{type(config).__name__}.{self.__name__}()"
        if len(args) > self.positional:
            raise TypeError(f"{method} got {len(args)} positional arguments; pass the settings "
                            f"by keyword{' (all but the first)' if self.positional else ''}.")
        kwargs.update(zip(self.settings, args))
        for flag in self.flags:  # Only the one stack there is can be switched on.
            if (value := kwargs.pop(flag, True)) is not True and value is not NotProvided:
                raise ValueError(f"{flag}={value!r}: this runtime only has the RLModule/Learner/"
                                 "EnvRunner stack; drop the argument or pass True.")
        _check_known(method, kwargs, self.known)
        return config._set(method, self.settings, kwargs)


class CallbacksBuilder(Builder):
    """``callbacks(MyCallback)``, ``callbacks([A, B])`` or per-hook callables such as
    ``callbacks(on_episode_end=fn, on_train_result=[f, g])``, as RLlib's. A hook given again
    replaces what it held; ``None`` removes it."""

    def __init__(self) -> None:
        super().__init__(CallbackSettings)
        P = inspect.Parameter
        self.__signature__ = inspect.Signature([
            P("self", P.POSITIONAL_ONLY),
            P("callbacks_class", P.POSITIONAL_OR_KEYWORD, default=NotProvided),
            *(P(hook, P.KEYWORD_ONLY, default=NotProvided) for hook in HOOKS)])
        self.__doc__ = type(self).__doc__ + "\n\nHooks: " + ", ".join(HOOKS) + "."

    def __call__(self, config: "AlgorithmConfig", callbacks_class: Any = NotProvided,
                 **hooks: Any) -> "AlgorithmConfig":
        method = f"{type(config).__name__}.callbacks()"
        _check_known(method, hooks, list(HOOKS))
        given = {hook: fn for hook, fn in hooks.items() if fn is not NotProvided}
        make_callbacks(None, given)  # Names a hook given something other than callables.
        values: dict[str, Any] = {"callbacks_class": callbacks_class}
        if given:
            merged = {**config.callbacks_hooks, **given}
            values["callbacks_hooks"] = {h: fn for h, fn in merged.items() if fn is not None}
        return config._set(method, self.settings, values)


class AlgorithmConfig:
    """All settings of an algorithm as flat attributes; each builder method sets a section."""

    # Shared settings whose default an algorithm changes: key -> its default there.
    defaults: ClassVar[Mapping[str, Any]] = {}
    # What an algorithm trains with unless the user says otherwise (RLlib's
    # get_default_learner_class() / get_default_rl_module_spec() return them).
    default_learner_class: ClassVar[type | None] = None
    default_rl_module_spec: ClassVar[RLModuleSpec | None] = None

    environment = Builder(EnvironmentSettings, positional=True)
    env_runners = Builder(EnvRunnersSettings)
    learners = Builder(LearnersSettings)
    training = Builder(TrainingSettings)
    rl_module = Builder(RLModuleSettings)
    multi_agent = Builder(MultiAgentSettings)
    debugging = Builder(DebuggingSettings)
    fault_tolerance = Builder(FaultToleranceSettings)
    evaluation = Builder(EvaluationSettings)
    reporting = Builder(IterationReportingSettings)
    callbacks = CallbacksBuilder()
    resources = Builder(ResourcesSettings)
    checkpointing = Builder(CheckpointingSettings)
    experimental = Builder(ExperimentalSettings)
    api_stack = Builder(ApiStackSettings)

    def __init__(self, algo_class: type["Algorithm"] | None = None) -> None:
        self.algo_class = algo_class
        vars(self).update({key: f.default_factory() for key, f in self.settings().items()})
        self.update_from_dict(copy.deepcopy(self.defaults))

    def __getattr__(self, name: str) -> Any:
        """Only called for missing attributes: RLlib's methods that do not exist here say
        what to use instead."""
        if name in RLLIB_METHODS:
            raise AttributeError(f"{type(self).__name__} has no {name}() (RLlib's config "
                                 f"method); use {RLLIB_METHODS[name]}.")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def framework(self, framework: str = NotProvided, **unknown: Any) -> "AlgorithmConfig":
        """Accepted so that code written for RLlib runs; only "torch" exists here."""
        _check_known(f"{type(self).__name__}.framework()", unknown, ["framework"])
        if framework not in (NotProvided, "torch"):
            raise ValueError(f"framework={framework!r} is not supported; only 'torch' is.")
        return self

    # ---- the settings as a whole ------------------------------------------------------------

    @classmethod
    def settings(cls) -> dict[str, dataclasses.Field]:
        """Every setting of this config (key -> declaration), from its builder methods."""
        return {key: declared for name in cls.sections()
                for key, declared in getattr(cls, name).settings.items()}

    @classmethod
    def sections(cls) -> list[str]:
        """The builder methods (``training``, ``env_runners``, ...), base classes' first."""
        return list(dict.fromkeys(name for klass in reversed(cls.__mro__)
                                  for name, value in vars(klass).items()
                                  if isinstance(value, Builder)))

    def __repr__(self) -> str:
        """The class and the settings that differ from its defaults, e.g.
        ``PPOConfig(env='CartPole-v1', lr=0.0003)``."""
        changed = ", ".join(f"{k}={v!r}" for k, v in self.non_default_settings().items())
        return f"{type(self).__name__}({changed})"

    def non_default_settings(self) -> dict[str, Any]:
        """``{key: value}`` of the settings that differ from a fresh config's of this class."""
        fresh = vars(type(self)())
        return {key: vars(self)[key] for key in self.settings()
                if _differs(vars(self)[key], fresh[key])}

    def to_dict(self) -> dict[str, Any]:
        """Every setting as a flat ``{key: value}`` dict (a deep copy), as set (unset batch
        sizes stay None). Module specs become dicts (tagged ``_spec_class``), so Tune resolves
        search spaces inside them; ``update_from_dict`` turns them back into specs."""
        return copy.deepcopy({key: _spec_to_dict(vars(self)[key]) for key in self.settings()})

    @classmethod
    def overrides(cls, **settings: Any) -> dict[str, Any]:
        """Settings that differ somewhere (e.g. ``evaluation_config``), checked by key."""
        _check_known(f"{cls.__name__}.overrides()", settings, sorted(cls.settings()))
        return dict(settings)

    @classmethod
    def from_dict(cls, config_dict: Mapping[str, Any]) -> "AlgorithmConfig":
        """A config of this class: its defaults, updated from ``config_dict``."""
        return cls().update_from_dict(config_dict)

    def update_from_dict(self, config_dict: Mapping[str, Any]) -> "AlgorithmConfig":
        """Set settings by key, checked as the builder methods check them."""
        method = f"{type(self).__name__}.update_from_dict()"
        settings = self.settings()
        _check_known(method, config_dict, sorted(settings))
        return self._set(method, settings,
                         {key: _spec_from_dict(value) for key, value in config_dict.items()})

    # ---- what the algorithm builds from the config -----------------------------------------

    def get_default_learner_class(self) -> type:
        """The Learner subclass this algorithm trains with unless ``learner_class`` is set."""
        if self.default_learner_class is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no default learner; use an algorithm config such as "
                "PPOConfig or VPGConfig, or set training(learner_class=...).")
        return self.default_learner_class

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        """The module this algorithm trains unless the user brings one."""
        if self.default_rl_module_spec is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no default RLModule; use an algorithm config such as "
                "PPOConfig or VPGConfig, or pass rl_module(rl_module_spec=...) with a "
                "module_class.")
        return copy.deepcopy(self.default_rl_module_spec)

    def get_learner_class(self) -> type:
        return self.learner_class or self.get_default_learner_class()

    @property
    def train_batch_size_per_learner(self) -> int:
        """What each learner trains on per update: the setting where set, else
        train_batch_size split over the learners (RLlib's rule), else the default."""
        per_learner = vars(self)["train_batch_size_per_learner"]
        if per_learner is not None:
            return per_learner
        if self.train_batch_size is not None:
            return max(1, self.train_batch_size // max(1, self.num_learners))
        return DEFAULT_BATCH_PER_LEARNER

    @train_batch_size_per_learner.setter
    def train_batch_size_per_learner(self, value: int | None) -> None:
        vars(self)["train_batch_size_per_learner"] = value

    @property
    def total_train_batch_size(self) -> int:
        return self.train_batch_size_per_learner * max(1, self.num_learners)

    def module_ids(self) -> list[str]:
        """IDs of the modules agents act with: the policies, else DEFAULT_MODULE_ID."""
        if self.policies:
            return sorted(self.policies)
        specs = getattr(self.rl_module_spec, "rl_module_specs", None)
        return sorted(specs) if isinstance(specs, dict) else [DEFAULT_MODULE_ID]

    def effective_model_config(self) -> dict | DefaultModelConfig:
        """The algorithm default's model config, updated (dict) or replaced (dataclass)."""
        if isinstance(self.model_config, DefaultModelConfig):
            return self.model_config
        default = self.get_default_rl_module_spec().model_config or {}
        if isinstance(default, DefaultModelConfig):
            default = dataclasses.asdict(default)
        return {**default, **(self.model_config or {})}

    def get_multi_rl_module_spec(self) -> MultiRLModuleSpec:
        """The complete spec: one sub-spec per module, classes and spaces all filled in."""
        default = self.get_default_rl_module_spec()
        model_config = self.effective_model_config()
        user = self.rl_module_spec
        multi = dataclasses.replace(user) if isinstance(user, MultiRLModuleSpec) else \
            MultiRLModuleSpec(rl_module_specs=user or RLModuleSpec())  # One spec for all IDs.
        specs = multi.module_specs(self.module_ids())
        for mid in self.module_ids():  # Policies the user gave no spec for get the default.
            specs.setdefault(mid, RLModuleSpec())
        for spec in specs.values():
            spec.module_class = spec.module_class or default.module_class
            if spec.module_class is default.module_class and spec.catalog_class is None:
                spec.catalog_class = default.catalog_class
            if spec.model_config is None:
                spec.model_config = copy.deepcopy(model_config)
        multi.rl_module_specs = specs
        return complete_module_spec(self.env_runner_config(multi))

    def get_rollout_fragment_length(self) -> int:
        """Vector steps per env per sample(); "auto": one sample() of all runners fills a batch."""
        if self.rollout_fragment_length != "auto":
            return self.rollout_fragment_length
        per_call = self.num_envs_per_env_runner * max(1, self.num_env_runners)
        return max(1, math.ceil(self.total_train_batch_size / per_call))

    def env_runner_config(self, rl_module_spec: MultiRLModuleSpec | None = None
                          ) -> EnvRunnerConfig:
        """The runners' sections of this config, with ``rl_module_spec`` to act with."""
        values = {f.name: copy.deepcopy(getattr(self, f.name))
                  for f in dataclasses.fields(EnvRunnerConfig) if f.metadata}
        values["rollout_fragment_length"] = self.get_rollout_fragment_length()
        return EnvRunnerConfig(**values, rl_module_spec=rl_module_spec,
                               module_ids=self.module_ids())

    def get_evaluation_config_object(self) -> "AlgorithmConfig":
        """The config evaluation runners act with: this one with ``explore=False`` and their
        own seed, ``evaluation_config`` applied, ``evaluation_num_env_runners`` runners; with
        the episodes unit their episode statistics cover one evaluation's episodes."""
        overrides = dict(self.evaluation_config or {})
        method = f"{type(self).__name__}.evaluation(evaluation_config=...)"
        settings = self.settings()
        _check_known(method, overrides, sorted(settings))
        config = self.copy()
        config.explore = False
        if self.seed is not None:
            config.seed = self.seed + EVALUATION_SEED_OFFSET
        if self.evaluation_duration_unit == "episodes":
            config.metrics_num_episodes_for_smoothing = self.evaluation_duration
        config._set(method, settings, overrides)
        config.num_env_runners = self.evaluation_num_env_runners
        return config

    def validate(self) -> None:
        """Checks that need more than one key; ``build_algo()`` runs them."""
        name = type(self).__name__
        if self.env is None:
            raise ValueError(f"{name}: no env set; call .environment('CartPole-v1') or pass an "
                             "env class / registered name.")
        if self.minibatch_size is not None and \
                self.minibatch_size > self.train_batch_size_per_learner:
            raise ValueError(
                f"{name}: minibatch_size ({self.minibatch_size}) is larger than "
                f"train_batch_size_per_learner ({self.train_batch_size_per_learner}); lower "
                "minibatch_size or raise the batch size in .training().")
        if isinstance(self.policies_to_train, set) and self.policies and not (
                self.policies_to_train <= self.policies):
            raise ValueError(
                f"{name}: policies_to_train {sorted(self.policies_to_train)} names modules that "
                f"are not among policies {sorted(self.policies)}.")
        if self.learner_class is not None and not issubclass(self.learner_class, Learner):
            raise TypeError(f"{name}: learner_class {self.learner_class.__name__} is not a "
                            "subclass of learners.Learner.")
        if self.num_gpus_per_learner > 0 and not torch.cuda.is_available():
            raise ValueError(f"{name}: num_gpus_per_learner={self.num_gpus_per_learner} but "
                             "torch sees no CUDA device; set it to 0 to learn on CPU.")
        if self.evaluation_config:
            self.get_evaluation_config_object()  # Names an unknown key.

    def build_algo(self) -> "Algorithm":
        """Validate, then build the algorithm (runners, learners, first weight sync)."""
        if self.algo_class is None:
            raise ValueError(f"{type(self).__name__} has no algo_class; use an algorithm's own "
                             "config (e.g. PPOConfig) or pass AlgorithmConfig(algo_class=...).")
        return self.algo_class(self.copy())

    build = build_algo

    def copy(self) -> "AlgorithmConfig":
        """An independent copy; callables and classes are shared, as deepcopy does."""
        return copy.deepcopy(self)

    # ---- internals --------------------------------------------------------------------------

    def _set(self, method: str, settings: Mapping[str, dataclasses.Field],
             values: Mapping[str, Any]) -> "AlgorithmConfig":
        """Check, then assign, the given values; NotProvided leaves a setting as it is.

        Tune search spaces (``tune.grid_search``, ``tune.uniform``, ..., also nested) are
        stored as given: the trial's resolved value is checked when its trainable builds
        the config (algorithms/tune.py)."""
        given = {key: value for key, value in values.items() if value is not NotProvided}
        searched = {key for key, value in given.items() if is_search_space(value)}
        for key, value in given.items():
            if key not in searched:
                check_setting(method, settings[key], value)
        for key, value in given.items():
            convert = settings[key].metadata["convert"]
            setattr(self, key, convert(value) if convert and key not in searched else value)
        return self


_SPEC_CLASSES = {"RLModuleSpec": RLModuleSpec, "MultiRLModuleSpec": MultiRLModuleSpec}


def _spec_to_dict(value: Any) -> Any:
    """A (Multi)RLModuleSpec as a dict of its fields (sub-specs too), tagged with its class."""
    if type(value) in _SPEC_CLASSES.values():
        return {"_spec_class": type(value).__name__,
                **{f.name: _spec_to_dict(getattr(value, f.name))
                   for f in dataclasses.fields(value)}}
    if isinstance(value, dict) and any(type(v) in _SPEC_CLASSES.values() for v in value.values()):
        return {k: _spec_to_dict(v) for k, v in value.items()}
    return value


def _spec_from_dict(value: Any) -> Any:
    """``_spec_to_dict`` undone (other values as they are)."""
    if isinstance(value, Mapping) and value.get("_spec_class") in _SPEC_CLASSES:
        fields = {k: _spec_from_dict(v) for k, v in value.items() if k != "_spec_class"}
        return _SPEC_CLASSES[value["_spec_class"]](**fields)
    if isinstance(value, Mapping) and any(isinstance(v, Mapping) and "_spec_class" in v
                                          for v in value.values()):
        return {k: _spec_from_dict(v) for k, v in value.items()}
    return value


_NOT_ON_CPU = "not supported: env runners act on CPU"
_SPACES = ("the spaces come from the env; to give the module others, set them in its "
           "RLModuleSpec(observation_space=..., action_space=...)")
RLLIB_NAMES: Mapping[str, str] = {
    # RLlib keys refused here -> what to do instead (a spelling hint would mislead).
    "num_sgd_iter": "use training(num_epochs=...)",
    "sgd_minibatch_size": "use training(minibatch_size=...)",
    "mini_batch_size_per_learner": "use training(minibatch_size=...)",
    "model": "use rl_module(model_config={...})",
    "model_config_dict": "use rl_module(model_config={...})",
    "vf_share_layers": "use rl_module(model_config={'vf_share_layers': True})",
    "optimizer": "override configure_optimizers_for_module() in a TorchLearner subclass",
    "lr_schedule": "use training(lr=[[timestep, lr], ...])",
    "entropy_coeff_schedule": "use training(entropy_coeff=[[timestep, coeff], ...])",
    "shuffle_batch_per_epoch": "minibatches are always drawn shuffled; drop the argument",
    "use_critic": "PPO always trains its value function here; drop the argument",
    "use_gae": "PPO always uses GAE here (lambda_=1.0 gives Monte-Carlo advantages)",
    "num_rollout_workers": "use env_runners(num_env_runners=...)",
    "num_envs_per_worker": "use env_runners(num_envs_per_env_runner=...)",
    "num_cpus_per_worker": "use env_runners(num_cpus_per_env_runner=...)",
    "num_gpus_per_worker": _NOT_ON_CPU,
    "num_gpus_per_env_runner": _NOT_ON_CPU,
    "observation_filter": "use env_runners(env_to_module_connector=...)",
    "num_gpus": "use learners(num_gpus_per_learner=...) (learners train, runners act on CPU)",
    "_fake_gpus": "not supported; set learners(num_gpus_per_learner=0) to learn on CPU",
    "num_learner_workers": "use learners(num_learners=...)",
    "num_cpus_per_learner_worker": "use learners(num_cpus_per_learner=...)",
    "num_gpus_per_learner_worker": "use learners(num_gpus_per_learner=...)",
    "num_cpus_for_local_worker": "use resources(num_cpus_for_main_process=...)",
    "custom_resources_per_worker": "not supported; runners ask Ray for CPUs only",
    "local_gpu_idx": "not supported; the local learner uses torch's current CUDA device",
    "num_aggregator_actors_per_learner": "not supported; learners take fragments directly",
    "algorithm_config_overrides_per_module": "not supported; one config trains all modules",
    "count_steps_by": "steps are counted per env step and per module; drop the argument",
    "recreate_failed_env_runners": "use fault_tolerance(restart_failed_env_runners=...)",
    "recreate_failed_workers": "use fault_tolerance(restart_failed_env_runners=...)",
    "max_num_worker_restarts": "use fault_tolerance(max_num_env_runner_restarts=...)",
    "disable_env_checking": "envs are not checked here; drop the argument",
    "observation_space": _SPACES,
    "action_space": _SPACES,
    "is_atari": "not needed: wrap the env with runners.envs.wrap_atari_for_new_api_stack("
                "env, dim=84, framestack=4) in the creator you register, and pass its name",
    "render_env": "not supported; render from the env or an on_episode_step callback",
    "log_level": "use Python's logging module",
}
RLLIB_METHODS: Mapping[str, str] = {
    # RLlib config methods that do not exist here -> what to call instead.
    "rollouts": "env_runners()",
    "exploration": "env_runners() (runners act with the module's forward_exploration())",
    "offline_data": "nothing: offline data is not supported",
}


def _differs(value: Any, default: Any) -> bool:
    try:
        return bool(value != default)
    except Exception:  # E.g. arrays, whose != is elementwise.
        return value is not default


def _check_known(method: str, keys: Collection[str], known: list[str]) -> None:
    """Raise a TypeError for the first unknown key, with what to use instead: for RLlib's
    names the replacement, else the closest known key."""
    unknown = sorted(set(keys) - set(known))
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, known, n=1)
        raise TypeError(f"{method} got an unknown key '{key}'"
                        + (f" (an RLlib name): {RLLIB_NAMES[key]}." if key in RLLIB_NAMES
                           else f"; did you mean '{hint[0]}'?" if hint else ".")
                        + f" Known keys: {', '.join(known) or 'none'}.")
