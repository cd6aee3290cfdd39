"""Making envs from what ``EnvRunnerConfig.env`` holds: a name, gymnasium id, class or callable."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from runners.spaces import map_space
from runners.multi_agent_env import MultiAgentEnv

EnvCreator = Callable[[dict], Any]

_CREATORS: dict[str, EnvCreator] = {}


class EnvError(RuntimeError):
    """An env failed in a way the runner cannot recover from by itself (e.g. in reset)."""


def register_env(name: str, creator: EnvCreator) -> None:
    """Make ``name`` usable as ``EnvRunnerConfig.env``; ``creator(env_config)`` returns the env."""
    if not callable(creator):
        raise TypeError(f"register_env('{name}', ...): the creator must be a callable "
                        f"env_config -> env, got {type(creator).__name__}.")
    _CREATORS[name] = creator


def registered_creators() -> list[EnvCreator]:
    """Every creator given to ``register_env`` (what an algorithm checkpoint may name)."""
    return list(_CREATORS.values())


def env_creator(env: Any) -> EnvCreator:
    """A picklable ``env_config -> env`` function for any form ``EnvRunnerConfig.env`` takes.

    Resolved in the driver, so Ray actors need neither the driver's ``register_env`` calls nor
    its gymnasium registrations.
    """
    if env is None:
        raise ValueError("No env set: EnvRunnerConfig.env is None. Pass a gymnasium id such as "
                         "'CartPole-v1', a name registered with runners.register_env, an env "
                         "class or a callable env_config -> env.")
    if isinstance(env, str):
        if env in _CREATORS:
            return _CREATORS[env]
        try:
            spec = gym.spec(env)
        except gym.error.Error as err:
            raise ValueError(
                f"Unknown env '{env}': it is neither registered with runners.register_env nor a "
                f"gymnasium id ({err}). Register it first with runners.register_env('{env}', "
                "lambda env_config: MyEnv(env_config)), or pass the env class itself.") from None
        return partial(_make_gymnasium_env, spec)
    if callable(env):  # An env class (called with env_config) or a creator function.
        return env
    raise TypeError(f"EnvRunnerConfig.env must be a str, an env class or a callable, got "
                    f"{type(env).__name__} ({env!r}).")


def make_env(env: Any, env_config: dict | None = None) -> Any:
    """One env instance from any form ``EnvRunnerConfig.env`` takes, given ``env_config``."""
    return env_creator(env)(dict(env_config or {}))


def is_multi_agent(env: Any, env_config: dict | None = None) -> bool:
    """Whether ``env`` makes a ``runners.MultiAgentEnv`` (builds one env unless it is a class)."""
    if isinstance(env, type):
        return issubclass(env, MultiAgentEnv)
    probe = make_env(env, env_config)
    try:
        return isinstance(probe, MultiAgentEnv)
    finally:
        probe.close()


_GYMNASIUM_API = (
    "Env runners use the gymnasium API: reset(*, seed=None, options=None) returns (obs, info) "
    "and step(action) returns (obs, reward, terminated, truncated, info). An old gym env "
    "(reset() -> obs, step() -> (obs, reward, done, info)) must be ported: return the info "
    "dict from reset() and split done into terminated and truncated.")


def reset_env(env: Any, name: str, seed: int | None = None) -> tuple[Any, Mapping]:
    """``env.reset(seed=seed)``'s ``(obs, info)``; a reset that raises, or that does not
    return ``(obs, info)``, is an EnvError."""
    try:
        result = env.reset(seed=seed)
    except Exception as err:
        raise EnvError(f"{name} raised in reset(): {err!r}") from err
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], Mapping)):
        raise EnvError(f"{name}: {env_label(env)}.reset() returned {_short(result)}, not "
                       f"(obs, info). {_GYMNASIUM_API}")
    return result


def check_step_result(env: Any, result: Any, name: str) -> None:
    """Raise an EnvError unless ``result`` is gymnasium's 5-tuple (an env's first step)."""
    if not (isinstance(result, tuple) and len(result) == 5):
        got = f"{len(result)} values" if isinstance(result, tuple) else _short(result)
        raise EnvError(f"{name}: {env_label(env)}.step() returned {got}, not (obs, reward, "
                       f"terminated, truncated, info). {_GYMNASIUM_API}")


def check_observation(env: Any, obs: Any, name: str) -> None:
    """Raise an EnvError naming the env, the space and the value unless ``obs`` (a
    MultiAgentEnv's: every agent's) has the structure, shapes and dtype kinds of the declared
    observation space. Bounds are not checked: many envs overshoot them a little. Runners
    call this on an env's first reset and step, not on every step."""
    if isinstance(env, MultiAgentEnv):
        if not isinstance(obs, Mapping):
            raise EnvError(f"{name}: {env_label(env)} returned observations "
                           f"{_short(obs)}; a MultiAgentEnv returns a dict {{agent_id: obs}}.")
        for agent_id, agent_obs in obs.items():
            _check_in_space(env, env.get_observation_space(agent_id), agent_obs,
                            f"{name}, agent {agent_id!r}")
    else:
        _check_in_space(env, env.observation_space, obs, name)


def _check_in_space(env: Any, space: gym.Space, obs: Any, name: str) -> None:
    try:
        map_space(space, obs, _check_leaf, "obs")
    except ValueError as err:
        raise EnvError(f"{name}: {env_label(env)} returned an observation that does not fit "
                       f"its observation space {space}: {err}. Got {_short(obs)}. Fix the "
                       "observations or the declared observation space.") from None


def _check_leaf(space: gym.Space, value: Any, path: str) -> None:
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete,
                              spaces.MultiBinary)):
        if not space.contains(value):
            raise ValueError(f"{path} is not in {space}")
        return
    try:
        array = np.asarray(value)
    except ValueError:
        raise ValueError(f"{path} is not an array") from None
    if array.shape != space.shape:
        raise ValueError(f"{path} has shape {array.shape}, but {space} has shape {space.shape}")
    if not np.can_cast(array.dtype, space.dtype, "same_kind"):
        raise ValueError(f"{path} has dtype {array.dtype}, but {space} has dtype {space.dtype}")


def env_label(env: Any) -> str:
    """What error messages call ``env``: its gymnasium id, else its (unwrapped) class."""
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def rebuild_env(env: Any, make: Callable[[], Any]) -> Any:
    """A fresh env from ``make()`` in place of ``env``, which raised (closed best effort)."""
    try:
        env.close()
    except Exception:  # The env is broken already.
        pass
    return make()


def _make_gymnasium_env(spec: gym.envs.registration.EnvSpec, env_config: dict) -> gym.Env:
    return gym.make(spec, **env_config)
