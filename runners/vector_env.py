"""EnvVector: the single-agent runner's copies of one gymnasium env, stepped in one loop.

Unlike gymnasium's SyncVectorEnv it writes rewards and flags straight into the caller's
arrays, and an env whose ``step()`` raises is replaced by a fresh one instead of failing the
whole vector; the caller learns which env failed and drops that episode.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

from runners.env_registry import check_observation, check_step_result, rebuild_env, reset_env
from runners.multi_agent_env import MultiAgentEnv


class EnvVector:
    """``num_envs`` envs from ``make(vector_index)``; a finished env is reset in the same
    step."""

    def __init__(self, make: Callable[[int], Any], num_envs: int):
        self._make = make  # Vector index -> env.
        self.envs = [self._new_env(i) for i in range(num_envs)]
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._unchecked = True  # The first step() checks what the envs return.

    def _new_env(self, vector_index: int) -> gym.Env:
        env = self._make(vector_index)
        if isinstance(env, MultiAgentEnv) or not isinstance(env, gym.Env):
            raise TypeError(f"The env creator returned a {type(env).__name__}; "
                            "SingleAgentEnvRunner needs a gymnasium.Env. For a MultiAgentEnv use "
                            "MultiAgentEnvRunner (EnvRunnerGroup picks it by itself).")
        return env

    def reset(self, seed: int | None = None) -> list[Any]:
        """Reset every env (env ``i`` with ``seed + i``); their observations (those of the
        first reset checked against the observation space); their infos in ``reset_infos``."""
        results = [reset_env(env, f"Env {i}", None if seed is None else seed + i)
                   for i, env in enumerate(self.envs)]
        obs = [o for o, _ in results]
        self.reset_infos = {i: info for i, (_, info) in enumerate(results)}
        if self._unchecked:
            for i, (env, o) in enumerate(zip(self.envs, obs)):
                check_observation(env, o, f"Env {i}, reset()")
        return obs

    def step(self, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
             truncated: np.ndarray, infos: np.ndarray
             ) -> tuple[list[Any], dict[int, Any], list[tuple[int, Exception]]]:
        """Step env ``i`` with ``actions[i]``; fills ``rewards``/``terminated``/``truncated``
        and ``infos`` (step()'s info dicts; ``{}`` for an env that raised).

        Returns the next observations (the first of a new episode where one ended), the final
        observations of the episodes that ended ``{env_index: obs}``, and ``(env_index, error)``
        for every env whose step() raised: that env was rebuilt and reset, and its flags and
        reward are left False/0. An env that breaks the gymnasium API or its observation
        space in the first step raises an EnvError. The infos of the resets the step did
        (ended or failed episodes) are in ``reset_infos``.
        """
        obs: list[Any] = []
        self.reset_infos = {}
        final_obs: dict[int, Any] = {}
        errors: list[tuple[int, Exception]] = []
        for i, env in enumerate(self.envs):
            try:
                result = env.step(actions[i])
            except Exception as err:
                errors.append((i, err))
                rewards[i], terminated[i], truncated[i], infos[i] = 0.0, False, False, {}
                env = self.envs[i] = rebuild_env(env, lambda: self._new_env(i))
                o, self.reset_infos[i] = reset_env(env, f"Env {i}")
            else:
                if self._unchecked:
                    check_step_result(env, result, f"Env {i}")
                    check_observation(env, result[0], f"Env {i}, step()")
                o, rewards[i], terminated[i], truncated[i], infos[i] = result
                if terminated[i] or truncated[i]:
                    final_obs[i] = o
                    o, self.reset_infos[i] = reset_env(env, f"Env {i}")
            obs.append(o)
        self._unchecked = False
        return obs, final_obs, errors

    def close(self) -> None:
        for env in self.envs:
            env.close()
