"""Settings, each declared once in a section dataclass, and the EnvRunnerConfig made of the
sections the env runners read. AlgorithmConfig derives its builder methods from sections."""

from __future__ import annotations

import copy
import math
from dataclasses import Field, dataclass, field, fields
from numbers import Real
from typing import Any, Callable, Mapping

import gymnasium as gym

from rlmodules import DEFAULT_MODULE_ID, MultiRLModuleSpec, RLModuleSpec
from runners.callbacks import RLlibCallback
from runners.connectors.connector_v2 import ConnectorV2

Check = tuple[Callable[[Any], bool], str]  # A test of a value and what it asks for.


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def int_at_least(low: int) -> Check:
    return (lambda v: is_int(v) and v >= low), f"an int >= {low}"


def optional(check: Check) -> Check:
    return (lambda v: v is None or check[0](v)), f"None or {check[1]}"


POSITIVE: Check = (lambda v: is_number(v) and v > 0, "a number > 0")
NON_NEGATIVE: Check = (lambda v: is_number(v) and v >= 0, "a number >= 0")
UNIT: Check = (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
BOOL: Check = (lambda v: isinstance(v, bool), "a bool")
DICT: Check = (lambda v: isinstance(v, Mapping), "a dict")
CONNECTOR_FACTORY: Check = (
    lambda v: v is None or callable(v) or (
        isinstance(v, (list, tuple)) and all(isinstance(p, ConnectorV2) for p in v)),
    "None, a callable that makes the pieces (e.g. lambda env, spaces, device: "
    "MeanStdFilter()), or ConnectorV2 pieces (a piece or a list; each runner gets a copy)")


def is_schedule(v: Any) -> bool:
    """RLlib's piecewise-linear schedule ``[[timestep, value], ...]``: from timestep 0 on,
    timesteps increasing, values finite numbers."""
    try:
        points = [(t, x) for t, x in v]
    except (TypeError, ValueError):
        return False
    return bool(points) and all(is_number(t) and is_number(x) for t, x in points) and \
        points[0][0] == 0 and all(b[0] > a[0] for a, b in zip(points, points[1:]))


def or_schedule(check: Check) -> Check:
    """``check``, or a schedule whose values all pass it."""
    return (lambda v: check[0](v) or (is_schedule(v) and all(check[0](x) for _, x in v)),
            f"{check[1]} or a schedule [[timestep, value], ...] of such numbers starting at "
            "timestep 0 with increasing timesteps, e.g. [[0, 1e-3], [100000, 1e-4]]")


def _is_sync_mode(v: Any) -> bool:
    return v is gym.VectorizeMode.SYNC or (isinstance(v, str) and v.lower() == "sync")


def setting(default: Any, check: Check = (lambda v: True, ""), doc: str = "",
            convert: Callable[[Any], Any] | None = None) -> Any:
    """One setting's declaration (its type is the annotation); each config gets its own copy
    of ``default``; ``convert`` normalizes a value that passed ``check``."""
    return field(default_factory=lambda: copy.deepcopy(default),
                 metadata={"check": check, "doc": doc, "convert": convert})


def is_search_space(value: Any) -> bool:
    """Whether ``value`` is, or holds (in dicts, lists, tuples), a Ray Tune search space:
    ``tune.grid_search`` (the dict ``{"grid_search": [...]}``) or a ``tune.uniform/choice/
    sample_from/...`` object. Told apart by shape and class module, so Ray is not imported."""
    if type(value).__module__.startswith("ray.tune.search"):
        return True
    if isinstance(value, Mapping):
        return list(value) == ["grid_search"] or any(map(is_search_space, value.values()))
    return isinstance(value, (list, tuple)) and any(map(is_search_space, value))


def check_setting(owner: str, declared: Field, value: Any) -> None:
    """Raise a ValueError naming ``owner``, the key and what the value must be."""
    predicate, must_be = declared.metadata["check"]
    if not predicate(value):
        raise ValueError(f"{owner}: {declared.name}={value!r} is invalid; it must be {must_be}.")


def default_policy_mapping_fn(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    return DEFAULT_MODULE_ID


@dataclass
class EnvironmentSettings:
    """What to act in."""

    env: str | type | Callable[[dict], gym.Env] | None = setting(
        None, doc="a gymnasium id, a name registered with runners.register_env, a gym.Env / "
        "runners.MultiAgentEnv subclass, or a callable env_config -> env")
    env_config: dict = setting({}, DICT,
                               "passed to the env's creator or constructor")
    clip_rewards: bool | float | None = setting(
        None, (lambda v: v is None or isinstance(v, bool) or (is_number(v) and v > 0),
               "None, a bool or a number > 0"),
        "rewards for learning: None/False as they are, True: their sign, c: clipped to "
        "[-c, c]; episode returns in the metrics stay unclipped")
    normalize_actions: bool = setting(
        False, BOOL, "Box actions: the module acts in [-1, 1] (clipped to it), scaled to the "
        "space's bounds for the env (spaces bounded on both sides; fragments keep the "
        "module's actions). RLlib's default is True; here False, as the default "
        "hyperparameters were tuned with actions in the env's units")
    clip_actions: bool = setting(
        True, BOOL, "Box actions the env gets are clipped to the space's bounds (where "
        "normalize_actions does not scale them)")


@dataclass
class EnvRunnersSettings:
    """How many runners act (0 = one in this process), each with how many envs."""

    num_env_runners: int = setting(0, int_at_least(0), "Ray actors; 0: one in this process")
    num_envs_per_env_runner: int = setting(1, int_at_least(1), "vectorized envs per runner")
    num_cpus_per_env_runner: float = setting(1.0, POSITIVE, "CPUs Ray reserves per runner")
    env_to_module_connector: Callable[..., Any] | None = setting(
        None, CONNECTOR_FACTORY, "called by every env runner: its env-to-module pieces, run "
        "before the default one (runners.connectors)")
    module_to_env_connector: Callable[..., Any] | None = setting(
        None, CONNECTOR_FACTORY, "called by every env runner: its module-to-env pieces, run "
        "on the module's sampled actions before the envs get them")
    episode_lookback_horizon: int = setting(
        1, int_at_least(0), "past steps kept in the episodes connectors read across "
        "sample() calls (at least what the pieces say they read)")
    explore: bool = setting(True, BOOL, "sample() acts with forward_exploration (else "
                            "forward_inference); only calls with this setting count in metrics")
    rollout_fragment_length: int | str = setting(
        "auto", (lambda v: v == "auto" or (is_int(v) and v >= 1), "'auto' or an int >= 1"),
        "vector steps per env per sample(); 'auto': one sample() of all runners fills a batch")
    env_runner_start_timeout_s: float = setting(
        120.0, POSITIVE, "how long EnvRunnerGroup waits for Ray to place and build a runner")
    num_torch_threads: int = setting(1, int_at_least(1), "torch threads per remote runner")
    batch_mode: str = setting(
        "truncate_episodes", (lambda v: v in ("truncate_episodes", "complete_episodes"),
                              "'truncate_episodes' or 'complete_episodes'"),
        "'truncate_episodes': sample() cuts episodes at the requested timesteps and carries "
        "them on; 'complete_episodes': it returns whole episodes only (all that had started "
        "when the timesteps were reached), at least the requested timesteps")
    gym_env_vectorize_mode: Any = setting(
        "SYNC", (_is_sync_mode, "'SYNC' or gymnasium.VectorizeMode.SYNC (a runner steps its "
                 "envs one after the other in its own process; for envs stepping in parallel "
                 "use more env runners: num_env_runners)"),
        "how a runner's num_envs_per_env_runner envs are vectorized (RLlib's setting)")


@dataclass
class PolicyMappingSettings:
    """Which module each agent acts with (the runners' part of multi_agent())."""

    policy_mapping_fn: Callable[..., str] = setting(
        default_policy_mapping_fn, (callable, "a callable (agent_id, episode, **kwargs) -> ID"),
        "episode has id_ and env_index (is None while module specs are completed)")


@dataclass
class FaultToleranceSettings:
    """Whether a crashed env runner is recreated (and how often at most)."""

    restart_failed_env_runners: bool = setting(True, BOOL)
    max_num_env_runner_restarts: int = setting(1000, int_at_least(0))


def _is_callbacks_class(v: Any) -> bool:
    classes = list(v) if isinstance(v, (list, tuple)) else [v]
    return all(isinstance(c, type) and issubclass(c, RLlibCallback) for c in classes)


@dataclass
class CallbackSettings:
    """User code called at fixed points (runners.callbacks; builder: callbacks())."""

    callbacks_class: type | list[type] | None = setting(
        None, (lambda v: v is None or _is_callbacks_class(v),
               "None, an RLlibCallback subclass or a list of them (classes, not instances)"),
        "built once in every env runner (also remote and restarted ones) and the algorithm")
    callbacks_hooks: dict = setting(
        {}, (lambda v: isinstance(v, Mapping), "a dict {hook name: callable or list}"),
        "per-hook callables, e.g. {'on_episode_end': fn}, called after callbacks_class's")


@dataclass
class ReportingSettings:
    """How results are smoothed."""

    metrics_num_episodes_for_smoothing: int = setting(
        100, int_at_least(1), "episode stats are over this many most recent episodes")


@dataclass
class DebuggingSettings:
    """Reproducibility."""

    seed: int | None = setting(None, optional((is_int, "an int")),
                               "makes sampling and network initialization reproducible")


@dataclass
class EnvRunnerConfig(DebuggingSettings, ReportingSettings, CallbackSettings,
                      FaultToleranceSettings, PolicyMappingSettings, EnvRunnersSettings,
                      EnvironmentSettings):  # Fields: env first.
    """The settings of the runners' sections, plus the module spec they act with."""

    # The module to act with; missing spaces are filled from the (connector-processed) env.
    rl_module_spec: RLModuleSpec | MultiRLModuleSpec | None = None
    # Module ids to build when rl_module_spec is a MultiRLModuleSpec holding one shared
    # RLModuleSpec; None: the ids policy_mapping_fn maps the env's agents to.
    module_ids: list[str] | None = None

    def __post_init__(self) -> None:
        for declared in fields(self):
            if declared.metadata:
                check_setting("EnvRunnerConfig", declared, getattr(self, declared.name))
        if self.rollout_fragment_length == "auto":
            raise ValueError("EnvRunnerConfig: rollout_fragment_length='auto' needs a train batch "
                             "size; pass an int or use AlgorithmConfig.env_runner_config().")
