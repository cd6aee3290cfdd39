"""Pipelines from the config's connector hooks, called as RLlib calls them.

``env_to_module_connector`` and ``module_to_env_connector`` are called by every env runner,
``factory(env, spaces, device)`` (or ``factory(env, spaces)`` / ``factory(env)``, whatever
the factory takes); ``learner_connector`` by every learner, ``factory(obs_space,
act_space)``. Each returns a piece, a list of pieces or a pipeline; pieces given instead of
a factory are copied for each runner or learner. None when the hook is
unset: runners and learners then keep their connector-free fast paths.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Callable

import gymnasium as gym
from gymnasium import spaces

from runners.connectors.connector_v2 import ConnectorV2
from runners.connectors.env_to_module import AddObservationsFromEpisodesToBatch
from runners.connectors.pipeline import (ConnectorPipelineV2, EnvToModulePipeline,
                                         LearnerConnectorPipeline, ModuleToEnvPipeline)
from runners.multi_agent_env import MultiAgentEnv

# Keys of the ``spaces`` dict connector factories get, as RLlib names them.
INPUT_ENV_SPACES = "__env__"
INPUT_ENV_SINGLE_SPACES = "__env_single__"


def env_spaces(env: Any, num_envs: int) -> dict[str, tuple[gym.Space, gym.Space]]:
    """RLlib's ``spaces`` argument of connector factories for ``env`` (before any connector)."""
    single = agent_spaces(env)
    if isinstance(env, MultiAgentEnv):
        return {INPUT_ENV_SPACES: single, INPUT_ENV_SINGLE_SPACES: single}
    batched = tuple(gym.vector.utils.batch_space(s, num_envs) for s in single)
    return {INPUT_ENV_SPACES: batched, INPUT_ENV_SINGLE_SPACES: single}


def agent_spaces(env: Any) -> tuple[gym.Space, gym.Space]:
    """(observation, action) space of one env; a MultiAgentEnv's as Dicts keyed by agent."""
    if isinstance(env, MultiAgentEnv):
        return (spaces.Dict({a: env.get_observation_space(a) for a in env.possible_agents}),
                spaces.Dict({a: env.get_action_space(a) for a in env.possible_agents}))
    return env.observation_space, env.action_space


def build_env_to_module(config: Any, env: Any) -> EnvToModulePipeline | None:
    """The runner's env-to-module pipeline: the user's pieces, then the default one."""
    pieces = _call_env_factory(config.env_to_module_connector, "env_to_module_connector",
                               env, config.num_envs_per_env_runner)
    if pieces is None:
        return None
    pipeline = EnvToModulePipeline(connectors=pieces + [AddObservationsFromEpisodesToBatch()])
    pipeline.set_input_spaces(*agent_spaces(env))
    return pipeline


def build_module_to_env(config: Any, env: Any) -> ModuleToEnvPipeline | None:
    pieces = _call_env_factory(config.module_to_env_connector, "module_to_env_connector",
                               env, config.num_envs_per_env_runner)
    if pieces is None:
        return None
    pipeline = ModuleToEnvPipeline(connectors=pieces)
    pipeline.set_input_spaces(*agent_spaces(env))
    return pipeline


def build_learner_connector(factory: Callable[..., Any] | None, observation_space: gym.Space,
                            action_space: gym.Space) -> LearnerConnectorPipeline | None:
    if factory is None:
        return None
    made = copy.deepcopy(factory) if isinstance(factory, (ConnectorV2, list, tuple)) else \
        factory(observation_space, action_space)
    pieces = _pieces(made, "learner_connector")
    pipeline = LearnerConnectorPipeline(connectors=pieces)
    pipeline.set_input_spaces(observation_space, action_space)
    return pipeline


def _call_env_factory(factory: Callable[..., Any] | None, name: str, env: Any,
                      num_envs: int) -> list[ConnectorV2] | None:
    if factory is None:
        return None
    if isinstance(factory, (ConnectorV2, list, tuple)):  # Pieces given as such: a copy each.
        return _pieces(copy.deepcopy(factory), name)
    arity = _positional_arity(factory)
    args = (env, env_spaces(env, num_envs), None)[:min(max(arity, 1), 3)]
    return _pieces(factory(*args), name)


def _pieces(made: Any, name: str) -> list[ConnectorV2]:
    """What a factory returned, as a list of pieces."""
    if isinstance(made, ConnectorPipelineV2):
        return list(made.connectors)
    items = list(made) if isinstance(made, (list, tuple)) else [made]
    for item in items:
        if not isinstance(item, ConnectorV2):
            raise TypeError(f"{name} returned {type(item).__name__} ({item!r}); it must return "
                            "a runners.connectors.ConnectorV2 piece, a list of them or a "
                            "pipeline, e.g. lambda env, spaces, device: MeanStdFilter().")
    return items


def _positional_arity(fn: Callable) -> int:
    """How many positional arguments ``fn`` takes (3 if it takes ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # No signature (some builtins): call it RLlib's way.
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
