"""Example envs."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from runners.multi_agent_env import MultiAgentEnv


class MultiAgentCartPole(MultiAgentEnv):
    """``num_agents`` independent CartPole-v1 games, agent ids ``0..num_agents-1``.

    An agent is done when its pole falls (or its game hits the 500-step limit); the episode
    ends when every agent is done.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        num_agents = int((config or {}).get("num_agents", 2))
        self._games = [gym.make("CartPole-v1") for _ in range(num_agents)]
        self.possible_agents = list(range(num_agents))
        self.observation_spaces = {i: g.observation_space for i, g in enumerate(self._games)}
        self.action_spaces = {i: g.action_space for i, g in enumerate(self._games)}
        self.agents: list[int] = []
        self._terminated: set[int] = set()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        self._terminated = set()
        obs, infos = {}, {}
        for i, game in enumerate(self._games):
            obs[i], infos[i] = game.reset(seed=None if seed is None else seed + i)
        return obs, infos

    def step(self, action_dict: dict[int, Any]):
        obs, rewards, terminateds, truncateds, infos = {}, {}, {}, {}, {}
        for i, action in action_dict.items():
            if i not in self.agents:
                raise KeyError(f"MultiAgentCartPole: agent {i!r} is done or unknown; only the "
                               f"agents in the last observations act ({self.agents}).")
            obs[i], rewards[i], terminateds[i], truncateds[i], infos[i] = \
                self._games[i].step(action)
            if terminateds[i] or truncateds[i]:
                self.agents.remove(i)
                if terminateds[i]:
                    self._terminated.add(i)
        all_done = not self.agents
        terminateds["__all__"] = all_done and len(self._terminated) == len(self._games)
        truncateds["__all__"] = all_done and not terminateds["__all__"]
        return obs, rewards, terminateds, truncateds, infos

    def close(self) -> None:
        for game in self._games:
            game.close()
