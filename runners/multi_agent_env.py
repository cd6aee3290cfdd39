"""MultiAgentEnv: the interface of envs in which several agents act, keyed by agent id."""

from __future__ import annotations

from typing import Any, Hashable

import gymnasium as gym

AgentID = Hashable


class MultiAgentEnv(gym.Env):
    """Base class of multi-agent envs.

    ``reset()`` returns ``(obs, infos)`` and ``step(action_dict)`` returns ``(obs, rewards,
    terminateds, truncateds, infos)``, each a dict keyed by agent id. Only the agents present
    in the returned ``obs`` act next. ``terminateds``/``truncateds`` hold ``"__all__"``: True
    ends the episode for every agent. An agent that is done individually gets its final
    observation in the step it finishes and then leaves ``obs``.

    Subclasses set ``possible_agents`` and the per-agent ``observation_spaces`` and
    ``action_spaces`` dicts in their constructor.
    """

    possible_agents: list[AgentID] = []
    observation_spaces: dict[AgentID, gym.Space] = {}
    action_spaces: dict[AgentID, gym.Space] = {}

    def get_observation_space(self, agent_id: AgentID) -> gym.Space:
        return self._space(self.observation_spaces, "observation_spaces", agent_id)

    def get_action_space(self, agent_id: AgentID) -> gym.Space:
        return self._space(self.action_spaces, "action_spaces", agent_id)

    def _space(self, spaces: dict[AgentID, gym.Space], name: str, agent_id: AgentID) -> gym.Space:
        if agent_id not in spaces:
            raise KeyError(f"{type(self).__name__}.{name} has no entry for agent {agent_id!r} "
                           f"(it has {list(spaces)}); set one space per agent in possible_agents.")
        return spaces[agent_id]

    def reset(self, *, seed: int | None = None,
              options: dict | None = None) -> tuple[dict[AgentID, Any], dict[AgentID, Any]]:
        raise NotImplementedError

    def step(self, action_dict: dict[AgentID, Any]) -> tuple[dict, dict, dict, dict, dict]:
        raise NotImplementedError
