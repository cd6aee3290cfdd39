"""Walking gymnasium spaces (Dict and Tuple nest; every other space is a leaf) and batching
single observations into gymnasium's batched layout."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces


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


def flatten_batch(obs: Any, space: gym.Space) -> np.ndarray:
    """A batch of observations of ``space`` as float32 rows (gymnasium.spaces.flatten's
    layout: one-hot Discrete parts, Dict/Tuple parts concatenated in space order)."""
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
        return np.concatenate([flatten_batch(obs[k], s) for k, s in space.spaces.items()],
                              axis=1)
    if isinstance(space, spaces.Tuple):
        return np.concatenate([flatten_batch(o, s) for o, s in zip(obs, space.spaces)], axis=1)
    raise TypeError(f"FlattenObservations cannot flatten observation space {space!r}; it "
                    "handles Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple. Write "
                    "your own ConnectorV2 piece for this space.")


def _one_hot(index: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(index), n), dtype=np.float32)
    out[np.arange(len(index)), index] = 1.0
    return out


def batch_observations(space: gym.Space, items: list[Any]) -> Any:
    """Single observations of ``space`` stacked into gymnasium's batched layout."""
    return gym.vector.utils.concatenate(space, items,
                                        gym.vector.utils.create_empty_array(space, len(items)))


def box_actions_for_env(space: spaces.Box, actions: np.ndarray, normalize: bool,
                        clip: bool) -> np.ndarray:
    """What the env gets for actions of a Box space: with ``normalize`` (bounds finite on
    both sides) the module's [-1, 1] (clipped to it) scaled to the bounds, else with ``clip``
    clipped to the bounds, else as they are; in the space's dtype."""
    if normalize and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
        actions = space.low + (np.clip(actions, -1.0, 1.0) + 1.0) * 0.5 * \
            (space.high - space.low)
    elif clip:
        actions = np.clip(actions, space.low, space.high)
    return np.asarray(actions).astype(space.dtype, copy=False)
