"""EnvRunnerConfig: everything the acting side needs, produced by AlgorithmConfig."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym

from rlmodules import MultiRLModuleSpec, RLModuleSpec


def default_policy_mapping_fn(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    from rlmodules import DEFAULT_MODULE_ID

    return DEFAULT_MODULE_ID


@dataclass
class EnvRunnerConfig:
    # What to act in: an env id string, a name registered with runners.register_env,
    # a gym.Env / runners.MultiAgentEnv subclass, or a callable env_config -> env.
    env: str | type | Callable[[dict], gym.Env] | None = None
    env_config: dict = None
    # The module to act with; missing spaces are filled from the (connector-processed) env.
    rl_module_spec: RLModuleSpec | MultiRLModuleSpec | None = None
    # Multi-agent routing: agent id -> module id, called as fn(agent_id, episode) where
    # episode has `id_` (the episode id) and `env_index`; None while specs are completed.
    policy_mapping_fn: Callable[..., str] = default_policy_mapping_fn
    # Module ids to build when rl_module_spec is a MultiRLModuleSpec holding one shared
    # RLModuleSpec; None: the ids policy_mapping_fn maps the env's agents to.
    module_ids: list[str] | None = None
    # env -> connector (e.g. lambda env: FlattenObservations()), or None.
    env_to_module_connector: Callable[[gym.Env], Any] | None = None
    num_env_runners: int = 0
    num_envs_per_env_runner: int = 1
    num_cpus_per_env_runner: float = 1
    # Timesteps per env per sample() call of a runner (vector steps).
    rollout_fragment_length: int = 200
    restart_failed_env_runners: bool = True
    max_num_env_runner_restarts: int = 1000
    # How long EnvRunnerGroup waits for its Ray actors to be scheduled and built (at the start;
    # after a restart it then goes on without the runner until Ray has placed it).
    env_runner_start_timeout_s: float = 120.0
    seed: int | None = None
    # Torch intra-op threads in each remote runner process.
    num_torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.env_config is None:
            self.env_config = {}
