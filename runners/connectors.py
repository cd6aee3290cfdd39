"""Env-to-module connectors: what turns the env's observations into the module's input, and
the helpers that walk gymnasium spaces (Dict and Tuple nest; every other space is a leaf).

A connector sees whole batches (one row per env or agent, in gymnasium's batched layout for
the space: arrays with a leading dim, dicts/tuples of such arrays for Dict/Tuple spaces) and
tells the runner which observation space the module is built for.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Hashable, Mapping, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from runners.multi_agent_env import MultiAgentEnv

# Keys of the ``spaces`` dict connector factories get, as RLlib names them.
INPUT_ENV_SPACES = "__env__"
INPUT_ENV_SINGLE_SPACES = "__env_single__"


class EnvToModuleConnector:
    """Base class and protocol; this one passes observations through unchanged."""

    def recompute_observation_space(self, space: gym.Space) -> gym.Space:
        """The observation space the module sees, given the env's (per agent) space."""
        return space

    def __call__(self, obs: Any, space: gym.Space) -> Any:
        """Transform a batch of observations from ``space`` (the env's space)."""
        return obs

    def for_agent(self, agent_id: Hashable) -> "EnvToModuleConnector | None":
        """The connector for ``agent_id``'s observations in a MultiAgentEnv (None: pass
        them through); by default this one, for every agent."""
        return self

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass


class FlattenObservations(EnvToModuleConnector):
    """Every observation as one float32 vector: one-hot for Discrete and each MultiDiscrete
    component, flattened Box and MultiBinary, Dict and Tuple parts concatenated in space order
    (the layout of ``gymnasium.spaces.flatten``).

    In a MultiAgentEnv it flattens every agent's observations; with ``multi_agent=True`` and
    ``agent_ids`` only those agents' (the others reach their modules as the env gives them).
    """

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, multi_agent: bool = False,
                 agent_ids: Sequence[Hashable] | None = None, **kwargs: Any):
        # The spaces (and RLlib's other options) are accepted for RLlib's signature; the
        # runner hands this connector each space it flattens.
        self.agent_ids = None if agent_ids is None or not multi_agent else set(agent_ids)

    def for_agent(self, agent_id: Hashable) -> "FlattenObservations | None":
        return self if self.agent_ids is None or agent_id in self.agent_ids else None

    def recompute_observation_space(self, space: gym.Space) -> spaces.Box:
        flat = spaces.flatten_space(space)
        return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32),
                          dtype=np.float32)

    def __call__(self, obs: Any, space: gym.Space) -> np.ndarray:
        return _flatten_batch(obs, space)


def make_connector(config: Any, env: Any) -> EnvToModuleConnector | None:
    """The connector ``config.env_to_module_connector`` makes for ``env``, or None without one.

    The factory is called as RLlib calls it, ``factory(env, spaces, device)`` (``spaces``:
    ``{"__env__": (obs_space, act_space) of the vector, "__env_single__": those of one env}``;
    a MultiAgentEnv's are Dict spaces keyed by agent; ``device`` is None, runners act on CPU),
    or ``factory(env)`` when it takes one argument.
    """
    factory = config.env_to_module_connector
    if factory is None:
        return None
    if _positional_arity(factory) < 3:
        connector = factory(env)
    else:
        connector = factory(env, env_spaces(env, config.num_envs_per_env_runner), None)
    if not isinstance(connector, EnvToModuleConnector):
        raise TypeError(
            f"env_to_module_connector returned {type(connector).__name__}; it must return one "
            "runners.connectors.EnvToModuleConnector (e.g. FlattenObservations()). Lists of "
            "connectors are not supported: combine them in one EnvToModuleConnector subclass.")
    return connector


def _positional_arity(fn: Callable) -> int:
    """How many positional arguments ``fn`` takes (3 if it takes ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # No signature (some builtins): call it RLlib's way.
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def env_spaces(env: Any, num_envs: int) -> dict[str, tuple[gym.Space, gym.Space]]:
    """RLlib's ``spaces`` argument of connector factories for ``env`` (before any connector)."""
    if isinstance(env, MultiAgentEnv):  # One Dict space keyed by agent.
        single = (spaces.Dict({a: env.get_observation_space(a) for a in env.possible_agents}),
                  spaces.Dict({a: env.get_action_space(a) for a in env.possible_agents}))
        return {INPUT_ENV_SPACES: single, INPUT_ENV_SINGLE_SPACES: single}
    single = (env.observation_space, env.action_space)
    batched = tuple(gym.vector.utils.batch_space(s, num_envs) for s in single)
    return {INPUT_ENV_SPACES: batched, INPUT_ENV_SINGLE_SPACES: single}


def observed_space(connector: EnvToModuleConnector | None, space: gym.Space) -> gym.Space:
    """What the module sees of an env observation space: after the connector, if any."""
    return connector.recompute_observation_space(space) if connector else space


# ---- walking spaces -----------------------------------------------------------------------------

def map_space(space: gym.Space, value: Any, fn: Callable[[gym.Space, Any, str], Any],
              path: str = "") -> Any:
    """``fn(leaf_space, leaf_value, path)`` for each leaf of ``space`` with the matching part
    of ``value``; the results nested as the space (dicts for Dict, tuples for Tuple).

    Raises a ValueError naming the path (e.g. ``['pos'][1]``) where ``value``'s structure
    differs from the space's.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(value, Mapping) or value.keys() != space.spaces.keys():
            got = f"a dict with keys {list(value)}" if isinstance(value, Mapping) else \
                f"a {type(value).__name__}"
            raise ValueError(f"{path or 'the value'} is {got}, but the space needs a dict "
                             f"with keys {list(space.spaces)}")
        return {k: map_space(s, value[k], fn, f"{path}[{k!r}]") for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        if not isinstance(value, (tuple, list)) or len(value) != len(space.spaces):
            got = f"a {type(value).__name__}" + (f" of {len(value)}" if isinstance(
                value, (tuple, list)) else "")
            raise ValueError(f"{path or 'the value'} is {got}, but the space needs a tuple of "
                             f"{len(space.spaces)}")
        return tuple(map_space(s, v, fn, f"{path}[{i}]")
                     for i, (s, v) in enumerate(zip(space.spaces, value)))
    return fn(space, value, path)


def _flatten_batch(obs: Any, space: gym.Space) -> np.ndarray:
    if isinstance(space, (spaces.Box, spaces.MultiBinary)):
        obs = np.asarray(obs, dtype=np.float32)
        return obs.reshape(len(obs), -1)
    if isinstance(space, spaces.Discrete):
        return _one_hot(np.asarray(obs) - space.start, int(space.n))
    if isinstance(space, spaces.MultiDiscrete):
        obs = np.asarray(obs)
        comps = (obs - space.start).reshape(len(obs), -1).T
        nvec = space.nvec.ravel()
        return np.concatenate([_one_hot(c, int(n)) for c, n in zip(comps, nvec)], axis=1)
    if isinstance(space, spaces.Dict):
        return np.concatenate([_flatten_batch(obs[k], s) for k, s in space.spaces.items()],
                              axis=1)
    if isinstance(space, spaces.Tuple):
        return np.concatenate([_flatten_batch(o, s) for o, s in zip(obs, space.spaces)], axis=1)
    raise TypeError(f"FlattenObservations cannot flatten observation space {space!r}; it "
                    "handles Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple. Write "
                    "your own EnvToModuleConnector for this space.")


def _one_hot(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(index), n), dtype=np.float32)
    out[np.arange(len(index)), index] = 1.0
    return out


def batch_observations(space: gym.Space, items: list[Any]) -> Any:
    """Single observations of ``space`` stacked into gymnasium's batched layout."""
    return gym.vector.utils.concatenate(space, items,
                                        gym.vector.utils.create_empty_array(space, len(items)))
