"""Making envs from what ``EnvRunnerConfig.env`` holds: a name, gymnasium id, class or callable."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import gymnasium as gym

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


def reset_env(env: Any, name: str, seed: int | None = None) -> Any:
    """``env.reset(seed=seed)``'s first observation; a reset that raises is an EnvError."""
    try:
        return env.reset(seed=seed)[0]
    except Exception as err:
        raise EnvError(f"{name} raised in reset(): {err!r}") from err


def rebuild_env(env: Any, make: Callable[[], Any]) -> Any:
    """A fresh env from ``make()`` in place of ``env``, which raised (closed best effort)."""
    try:
        env.close()
    except Exception:  # The env is broken already.
        pass
    return make()


def _make_gymnasium_env(spec: gym.envs.registration.EnvSpec, env_config: dict) -> gym.Env:
    return gym.make(spec, **env_config)
