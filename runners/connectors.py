"""Env-to-module connectors: what turns the env's observations into the module's input.

A connector sees whole batches (one row per env or agent, in gymnasium's batched layout for
the space: arrays with a leading dim, dicts/tuples of such arrays for Dict/Tuple spaces) and
tells the runner which observation space the module is built for.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class EnvToModuleConnector:
    """Base class and protocol; this one passes observations through unchanged."""

    def recompute_observation_space(self, space: gym.Space) -> gym.Space:
        """The observation space the module sees, given the env's (per agent) space."""
        return space

    def __call__(self, obs: Any, space: gym.Space) -> Any:
        """Transform a batch of observations from ``space`` (the env's space)."""
        return obs

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass


class FlattenObservations(EnvToModuleConnector):
    """Every observation as one float32 vector: one-hot for Discrete and each MultiDiscrete
    component, flattened Box and MultiBinary, Dict and Tuple parts concatenated in space order
    (the layout of ``gymnasium.spaces.flatten``).
    """

    def recompute_observation_space(self, space: gym.Space) -> spaces.Box:
        flat = spaces.flatten_space(space)
        return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32),
                          dtype=np.float32)

    def __call__(self, obs: Any, space: gym.Space) -> np.ndarray:
        return _flatten_batch(obs, space)


def make_connector(config: Any, env: Any) -> EnvToModuleConnector | None:
    """The connector ``config.env_to_module_connector(env)`` makes, or None without one."""
    factory = config.env_to_module_connector
    return factory(env) if factory else None


def observed_space(connector: EnvToModuleConnector | None, space: gym.Space) -> gym.Space:
    """What the module sees of an env observation space: after the connector, if any."""
    return connector.recompute_observation_space(space) if connector else space


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
