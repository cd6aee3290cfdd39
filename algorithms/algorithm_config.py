"""AlgorithmConfig: the builder that says what to train, where, and how.

Every builder method returns the config, so calls chain. A key the method does not know,
or a value out of range, raises at the call and names the key; checks that need several
keys (e.g. minibatch vs. batch size) run in ``validate()``, which ``build_algo()`` calls.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
from numbers import Real
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from rlmodules import DEFAULT_MODULE_ID, DefaultModelConfig, MultiRLModuleSpec, RLModuleSpec
from runners.config import EnvRunnerConfig, default_policy_mapping_fn

if TYPE_CHECKING:
    from algorithms.algorithm import Algorithm


class _NotProvided:
    """Default of every builder argument: "leave this setting as it is"."""

    def __repr__(self) -> str:
        return "NotProvided"


NotProvided: Any = _NotProvided()


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


# Value checks shared by all algorithms: key -> (predicate, what the value must be).
_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "env_config": (lambda v: isinstance(v, Mapping), "a dict"),
    "num_env_runners": (lambda v: is_int(v) and v >= 0, "an int >= 0"),
    "num_envs_per_env_runner": (lambda v: is_int(v) and v >= 1, "an int >= 1"),
    "num_cpus_per_env_runner": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "env_to_module_connector": (lambda v: v is None or callable(v),
                                "None or a callable env -> connector"),
    "rollout_fragment_length": (lambda v: v == "auto" or (is_int(v) and v >= 1),
                                "'auto' or an int >= 1"),
    "num_learners": (lambda v: is_int(v) and v >= 0, "an int >= 0"),
    "num_gpus_per_learner": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "num_cpus_per_learner": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "gamma": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "train_batch_size_per_learner": (lambda v: is_int(v) and v >= 1, "an int >= 1"),
    "minibatch_size": (lambda v: v is None or (is_int(v) and v >= 1),
                       "None (the whole batch) or an int >= 1"),
    "num_epochs": (lambda v: is_int(v) and v >= 1, "an int >= 1"),
    "grad_clip": (lambda v: v is None or (is_number(v) and v > 0), "None or a number > 0"),
    "learner_class": (lambda v: v is None or inspect.isclass(v), "None or a Learner subclass"),
    "rl_module_spec": (lambda v: v is None or isinstance(v, (RLModuleSpec, MultiRLModuleSpec)),
                       "None, an RLModuleSpec or a MultiRLModuleSpec"),
    "model_config": (lambda v: v is None or isinstance(v, (Mapping, DefaultModelConfig)),
                     "None, a dict or a DefaultModelConfig"),
    "policies": (lambda v: v is None or (isinstance(v, Collection) and not isinstance(v, str)
                                          and len(v) > 0 and all(isinstance(p, str) for p in v)),
                 "a non-empty set of module ID strings"),
    "policy_mapping_fn": (callable, "a callable (agent_id, episode, **kwargs) -> module ID"),
    "policies_to_train": (lambda v: v is None or callable(v) or (
        isinstance(v, Collection) and not isinstance(v, str)),
        "None (all policies), a collection of module IDs or a callable"),
    "seed": (lambda v: v is None or is_int(v), "None or an int"),
    "restart_failed_env_runners": (lambda v: isinstance(v, bool), "a bool"),
    "max_num_env_runner_restarts": (lambda v: is_int(v) and v >= 0, "an int >= 0"),
}


class AlgorithmConfig:
    """All settings of an algorithm, grouped by the builder method that sets them."""

    # Algorithm subclasses add their own keys' checks here.
    checks: dict[str, tuple[Callable[[Any], bool], str]] = _CHECKS

    def __init__(self, algo_class: type["Algorithm"] | None = None) -> None:
        self.algo_class = algo_class
        # environment()
        self.env: Any = None
        self.env_config: dict = {}
        # env_runners()
        self.num_env_runners = 0
        self.num_envs_per_env_runner = 1
        self.num_cpus_per_env_runner = 1.0
        self.env_to_module_connector: Callable | None = None
        self.rollout_fragment_length: int | str = "auto"
        # learners()
        self.num_learners = 0
        self.num_gpus_per_learner = 0
        self.num_cpus_per_learner = 1.0
        # training()
        self.lr = 1e-3
        self.gamma = 0.99
        self.train_batch_size_per_learner = 2000
        self.minibatch_size: int | None = 256
        self.num_epochs = 1
        self.grad_clip: float | None = None
        self.learner_class: type | None = None
        # rl_module()
        self.rl_module_spec: RLModuleSpec | MultiRLModuleSpec | None = None
        self.model_config: dict | DefaultModelConfig | None = None
        # multi_agent()
        self.policies: set[str] | None = None
        self.policy_mapping_fn: Callable[..., str] = default_policy_mapping_fn
        self.policies_to_train: set[str] | Callable[..., bool] | None = None
        # debugging()
        self.seed: int | None = None
        # fault_tolerance()
        self.restart_failed_env_runners = True
        self.max_num_env_runner_restarts = 1000

    # ---- builder methods --------------------------------------------------------------------

    def environment(self, env: Any = NotProvided, *, env_config: dict = NotProvided,
                    **unknown: Any) -> "AlgorithmConfig":
        """What to act in: a gymnasium id, a registered name, an env class or a creator."""
        return self._set("environment", unknown, env=env, env_config=env_config)

    def env_runners(self, *, num_env_runners: int = NotProvided,
                    num_envs_per_env_runner: int = NotProvided,
                    num_cpus_per_env_runner: float = NotProvided,
                    env_to_module_connector: Callable | None = NotProvided,
                    rollout_fragment_length: int | str = NotProvided,
                    **unknown: Any) -> "AlgorithmConfig":
        """How many runners act (0 = one in this process), each with how many envs."""
        return self._set("env_runners", unknown, num_env_runners=num_env_runners,
                         num_envs_per_env_runner=num_envs_per_env_runner,
                         num_cpus_per_env_runner=num_cpus_per_env_runner,
                         env_to_module_connector=env_to_module_connector,
                         rollout_fragment_length=rollout_fragment_length)

    def learners(self, *, num_learners: int = NotProvided,
                 num_gpus_per_learner: float = NotProvided,
                 num_cpus_per_learner: float = NotProvided,
                 **unknown: Any) -> "AlgorithmConfig":
        """How many learners update (0 = one in this process; >= 2 data-parallel)."""
        return self._set("learners", unknown, num_learners=num_learners,
                         num_gpus_per_learner=num_gpus_per_learner,
                         num_cpus_per_learner=num_cpus_per_learner)

    def training(self, *, lr: float = NotProvided, gamma: float = NotProvided,
                 train_batch_size_per_learner: int = NotProvided,
                 minibatch_size: int = NotProvided, num_epochs: int = NotProvided,
                 grad_clip: float | None = NotProvided, learner_class: type = NotProvided,
                 _enable_learner_api: bool = NotProvided,
                 **unknown: Any) -> "AlgorithmConfig":
        """Optimization settings; algorithm configs add their own keys to this method."""
        _check_new_stack_flag("_enable_learner_api", _enable_learner_api)
        return self._set("training", unknown, lr=lr, gamma=gamma,
                         train_batch_size_per_learner=train_batch_size_per_learner,
                         minibatch_size=minibatch_size, num_epochs=num_epochs,
                         grad_clip=grad_clip, learner_class=learner_class)

    def rl_module(self, *, rl_module_spec: RLModuleSpec | MultiRLModuleSpec = NotProvided,
                  model_config: dict | DefaultModelConfig = NotProvided,
                  _enable_rl_module_api: bool = NotProvided,
                  **unknown: Any) -> "AlgorithmConfig":
        """The module to train; missing classes and spaces are filled in at build.

        A ``model_config`` dict updates the algorithm's default model config; a
        DefaultModelConfig replaces it.
        """
        _check_new_stack_flag("_enable_rl_module_api", _enable_rl_module_api)
        return self._set("rl_module", unknown, rl_module_spec=rl_module_spec,
                         model_config=model_config)

    def multi_agent(self, *, policies: Collection[str] = NotProvided,
                    policy_mapping_fn: Callable[..., str] = NotProvided,
                    policies_to_train: Collection[str] | None = NotProvided,
                    **unknown: Any) -> "AlgorithmConfig":
        """Module IDs to train and which agent acts with which module.

        ``policies_to_train``: None (all), a collection of module IDs, or a callable
        ``(module_id, fragments) -> bool``.
        """
        if isinstance(policies, Mapping):  # {module_id: spec-or-None} as in older APIs.
            policies = list(policies)
        self._set("multi_agent", unknown, policies=policies, policy_mapping_fn=policy_mapping_fn,
                  policies_to_train=policies_to_train)
        if policies is not NotProvided:
            self.policies = set(policies)
        if policies_to_train not in (NotProvided, None) and not callable(policies_to_train):
            self.policies_to_train = set(policies_to_train)
        return self

    def debugging(self, *, seed: int | None = NotProvided, **unknown: Any) -> "AlgorithmConfig":
        """``seed`` makes sampling and network initialization reproducible."""
        return self._set("debugging", unknown, seed=seed)

    def fault_tolerance(self, *, restart_failed_env_runners: bool = NotProvided,
                        max_num_env_runner_restarts: int = NotProvided,
                        **unknown: Any) -> "AlgorithmConfig":
        """Whether a crashed env runner is recreated (and how often at most)."""
        return self._set("fault_tolerance", unknown,
                         restart_failed_env_runners=restart_failed_env_runners,
                         max_num_env_runner_restarts=max_num_env_runner_restarts)

    def api_stack(self, *, enable_rl_module_and_learner: bool = NotProvided,
                  enable_env_runner_and_connector_v2: bool = NotProvided,
                  **unknown: Any) -> "AlgorithmConfig":
        """Accepted so that code written for RLlib runs; there is only this one stack."""
        _check_new_stack_flag("enable_rl_module_and_learner", enable_rl_module_and_learner)
        _check_new_stack_flag("enable_env_runner_and_connector_v2",
                              enable_env_runner_and_connector_v2)
        return self._set("api_stack", unknown)

    def framework(self, framework: str = NotProvided, **unknown: Any) -> "AlgorithmConfig":
        """Accepted so that code written for RLlib runs; only "torch" exists here."""
        if framework not in (NotProvided, "torch"):
            raise ValueError(f"framework={framework!r} is not supported; only 'torch' is.")
        return self._set("framework", unknown)

    # ---- what the algorithm builds from the config -----------------------------------------

    def get_default_learner_class(self) -> type:
        """The Learner subclass this algorithm trains with unless ``learner_class`` is set."""
        raise NotImplementedError(
            f"{type(self).__name__} has no default learner; use an algorithm config such as "
            "PPOConfig or VPGConfig, or set training(learner_class=...).")

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        """The module this algorithm trains unless the user brings one."""
        raise NotImplementedError(
            f"{type(self).__name__} has no default RLModule; use an algorithm config such as "
            "PPOConfig or VPGConfig, or pass rl_module(rl_module_spec=...) with a module_class.")

    def get_learner_class(self) -> type:
        return self.learner_class or self.get_default_learner_class()

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
        from runners import complete_module_spec

        default = self.get_default_rl_module_spec()
        model_config = self.effective_model_config()
        user = self.rl_module_spec
        if isinstance(user, MultiRLModuleSpec):
            multi = dataclasses.replace(user)
            specs = multi.module_specs(self.module_ids())
        else:
            multi = MultiRLModuleSpec()
            specs = {mid: dataclasses.replace(user) if user else RLModuleSpec()
                     for mid in self.module_ids()}
        for mid in self.module_ids():  # Policies the user gave no spec for get the default.
            specs.setdefault(mid, RLModuleSpec())
        for spec in specs.values():
            spec.module_class = spec.module_class or default.module_class
            if spec.model_config is None:
                spec.model_config = copy.deepcopy(model_config)
        multi.rl_module_specs = specs
        return complete_module_spec(self.env_runner_config(multi), self.module_ids())

    def env_runner_config(self, rl_module_spec: MultiRLModuleSpec | None = None
                          ) -> EnvRunnerConfig:
        """What the env runners need, with ``rl_module_spec`` as the module to act with."""
        length = self.rollout_fragment_length
        if length == "auto":  # One sample() of all runners fills one train batch.
            per_call = self.num_envs_per_env_runner * max(1, self.num_env_runners)
            length = max(1, math.ceil(self.total_train_batch_size / per_call))
        return EnvRunnerConfig(
            env=self.env, env_config=dict(self.env_config), rl_module_spec=rl_module_spec,
            policy_mapping_fn=self.policy_mapping_fn, module_ids=self.module_ids(),
            env_to_module_connector=self.env_to_module_connector,
            num_env_runners=self.num_env_runners,
            num_envs_per_env_runner=self.num_envs_per_env_runner,
            num_cpus_per_env_runner=self.num_cpus_per_env_runner,
            rollout_fragment_length=length,
            restart_failed_env_runners=self.restart_failed_env_runners,
            max_num_env_runner_restarts=self.max_num_env_runner_restarts,
            seed=self.seed)

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
        if self.learner_class is not None:
            from learners import Learner

            if not issubclass(self.learner_class, Learner):
                raise TypeError(f"{name}: learner_class {self.learner_class.__name__} is not a "
                                "subclass of learners.Learner.")
        if self.num_gpus_per_learner > 0:
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"{name}: num_gpus_per_learner={self.num_gpus_per_learner} but "
                                 "torch sees no CUDA device; set it to 0 to learn on CPU.")

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

    def _set(self, method: str, unknown: Mapping[str, Any], **values: Any) -> "AlgorithmConfig":
        """Check then assign the given (not NotProvided) values; unknown keys are errors."""
        if unknown:
            known = self._known_keys(method)
            key = sorted(unknown)[0]
            hint = difflib.get_close_matches(key, known, n=1)
            raise TypeError(
                f"{type(self).__name__}.{method}() got an unknown key '{key}'"
                + (f"; did you mean '{hint[0]}'?" if hint else ".")
                + f" Known keys: {', '.join(known) or 'none'}.")
        for key, value in values.items():
            if value is NotProvided:
                continue
            predicate, expected = self.checks.get(key, (lambda v: True, ""))
            if not predicate(value):
                raise ValueError(f"{type(self).__name__}.{method}(): {key}={value!r} is invalid; "
                                 f"it must be {expected}.")
        for key, value in values.items():
            if value is not NotProvided:
                setattr(self, key, value)
        return self

    def _known_keys(self, method: str) -> list[str]:
        """Argument names of ``method`` in this class and the bases it forwards to."""
        keys: set[str] = set()
        for cls in type(self).__mro__:
            fn = cls.__dict__.get(method)
            if fn is not None:
                keys |= {p.name for p in inspect.signature(fn).parameters.values()
                         if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                         and p.name != "self" and not p.name.startswith("_")}
        return sorted(keys)


def _check_new_stack_flag(name: str, value: Any) -> None:
    if value is not NotProvided and value is not True:
        raise ValueError(f"{name}={value!r}: this runtime only has the RLModule/Learner/EnvRunner "
                         "stack; drop the argument or pass True.")
