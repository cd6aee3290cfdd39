"""MultiAgentEnv: the interface of envs in which several agents act, keyed by agent id, as
RLlib defines it; agent groups (``with_agent_groups``) and ``make_multi_agent``."""

from __future__ import annotations

import copy
from typing import Any, Callable, Hashable, Mapping

import gymnasium as gym

AgentID = Hashable

ENV_STATE = "state"  # RLlib's key for a global env state in observations (e.g. for QMIX).


class MultiAgentEnv(gym.Env):
    """Base class of multi-agent envs.

    ``reset()`` returns ``(obs, infos)`` and ``step(action_dict)`` returns ``(obs, rewards,
    terminateds, truncateds, infos)``, each a dict keyed by agent id. Only the agents present
    in the returned ``obs`` act next: all of them at once, or one at a time (turn-based).
    ``terminateds``/``truncateds`` hold ``"__all__"``: True ends the episode for every agent.
    An agent that is done individually gets its final observation in the step it finishes
    and then leaves ``obs``.

    Subclasses set ``possible_agents`` (``agents``: those active now) and the per-agent
    ``observation_spaces`` and ``action_spaces`` dicts, or ``observation_space`` /
    ``action_space`` as gym Dict spaces keyed by agent (or one space every agent shares), or
    override ``get_observation_space`` / ``get_action_space``.
    """

    observation_spaces: dict[AgentID, gym.Space] | None = None
    action_spaces: dict[AgentID, gym.Space] | None = None
    agents: list[AgentID] = []
    possible_agents: list[AgentID] = []
    observation_space: gym.Space | None = None
    action_space: gym.Space | None = None

    def __init__(self) -> None:
        super().__init__()
        if not self.possible_agents:
            self.possible_agents = list(self.agents)

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    def get_observation_space(self, agent_id: AgentID) -> gym.Space:
        return self._space(self.observation_spaces, self.observation_space, "observation",
                           agent_id)

    def get_action_space(self, agent_id: AgentID) -> gym.Space:
        return self._space(self.action_spaces, self.action_space, "action", agent_id)

    def _space(self, per_agent: Mapping[AgentID, gym.Space] | None, space: gym.Space | None,
               kind: str, agent_id: AgentID) -> gym.Space:
        if per_agent is not None:
            if agent_id not in per_agent:
                raise KeyError(f"{type(self).__name__}.{kind}_spaces has no entry for agent "
                               f"{agent_id!r} (it has {list(per_agent)}); set one space per "
                               "agent in possible_agents.")
            return per_agent[agent_id]
        if isinstance(space, gym.spaces.Dict) and agent_id in space.spaces:
            return space[agent_id]
        if space is None:
            raise ValueError(f"{type(self).__name__} declares no {kind} space for agent "
                             f"{agent_id!r}: set {kind}_spaces = {{agent_id: space}} (or "
                             f"{kind}_space) in its constructor.")
        return space  # One space for all agents.

    def with_agent_groups(self, groups: dict[str, list[AgentID]], obs_space: gym.Space = None,
                          act_space: gym.Space = None) -> "MultiAgentEnv":
        """This env with each group of agents acting as one agent (see GroupAgentsWrapper)."""
        return GroupAgentsWrapper(self, groups, obs_space, act_space)

    def reset(self, *, seed: int | None = None,
              options: dict | None = None) -> tuple[dict[AgentID, Any], dict[AgentID, Any]]:
        raise NotImplementedError

    def step(self, action_dict: dict[AgentID, Any]) -> tuple[dict, dict, dict, dict, dict]:
        raise NotImplementedError

    def render(self) -> None:
        return None


GROUP_REWARDS = "_group_rewards"  # Info key of a group's members' own rewards.
GROUP_INFO = "_group_info"  # Info key of a group's members' infos.


class GroupAgentsWrapper(MultiAgentEnv):
    """``env`` with agents grouped: group ``g`` of agents ``[a, b]`` is one agent ``g`` whose
    observation is the tuple ``(obs_a, obs_b)``, whose action is the tuple of the members'
    actions and whose reward is the sum of theirs (kept in ``infos[g]["_group_rewards"]``).
    A group is done when all its members are; its members must act in the same steps.
    Agents in no group stay as they are. Its spaces are Tuples of the members' unless
    ``obs_space`` / ``act_space`` is given (used for every group).
    """

    def __init__(self, env: MultiAgentEnv, groups: dict[str, list[AgentID]],
                 obs_space: gym.Space | None = None, act_space: gym.Space | None = None):
        self.env = env
        self.groups = {g: list(members) for g, members in groups.items()}
        self._group_of: dict[AgentID, str] = {}
        for group, members in self.groups.items():
            for agent_id in members:
                if agent_id in self._group_of:
                    raise ValueError(f"with_agent_groups: agent {agent_id!r} is in groups "
                                     f"{self._group_of[agent_id]!r} and {group!r}; put each "
                                     "agent in one group.")
                self._group_of[agent_id] = group
        self.possible_agents = self._grouped_ids(env.possible_agents)
        ungrouped = [a for a in env.possible_agents if a not in self._group_of]
        self.observation_spaces = {a: env.get_observation_space(a) for a in ungrouped}
        self.action_spaces = {a: env.get_action_space(a) for a in ungrouped}
        for group, members in self.groups.items():
            self.observation_spaces[group] = obs_space or gym.spaces.Tuple(
                [env.get_observation_space(a) for a in members])
            self.action_spaces[group] = act_space or gym.spaces.Tuple(
                [env.get_action_space(a) for a in members])
        super().__init__()

    @property
    def agents(self) -> list[AgentID]:
        return self._grouped_ids(self.env.agents)

    def _grouped_ids(self, agent_ids: list[AgentID]) -> list[AgentID]:
        return list(dict.fromkeys(self._group_of.get(a, a) for a in agent_ids))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._group(obs, tuple), self._group(infos, lambda v: {GROUP_INFO: list(v)})

    def step(self, action_dict: dict[AgentID, Any]):
        actions = {}
        for agent_id, action in action_dict.items():
            if agent_id in self.groups:
                actions.update(zip(self.groups[agent_id], action))
            else:
                actions[agent_id] = action
        obs, rewards, terminateds, truncateds, infos = self.env.step(actions)
        infos = self._group(infos, lambda v: {GROUP_INFO: list(v)})
        for group, members in self._group(rewards, list).items():
            if group in self.groups:
                infos.setdefault(group, {})[GROUP_REWARDS] = members
        return (self._group(obs, tuple), self._group(rewards, sum),
                self._group(terminateds, all), self._group(truncateds, all), infos)

    def _group(self, items: dict[AgentID, Any], combine: Callable) -> dict[AgentID, Any]:
        """``items`` keyed by grouped id; a group's value is ``combine`` of its members'."""
        out: dict[AgentID, Any] = {}
        for agent_id, value in items.items():
            group = self._group_of.get(agent_id)
            if group is None:
                out[agent_id] = value
            elif group not in out:
                missing = [a for a in self.groups[group] if a not in items]
                if missing:
                    raise ValueError(
                        f"GroupAgentsWrapper: agents {missing} of group {group!r} are missing "
                        f"from the env's output (it has {list(items)}); the members of a group "
                        "must act and be observed in the same steps.")
                out[group] = combine(items[a] for a in self.groups[group])
        return out

    def close(self) -> None:
        self.env.close()


def make_multi_agent(env_name_or_creator: str | Callable[[dict], gym.Env]
                     ) -> type[MultiAgentEnv]:
    """A MultiAgentEnv class of ``config["num_agents"]`` (default 1) independent copies of a
    single-agent env, agent ids ``0..N-1``; the rest of ``config`` goes to the creator (a
    gymnasium id is made with ``gym.make``). The episode ends when every copy's has; copy
    ``i`` is reset with ``seed + i``."""

    class MultiEnv(MultiAgentEnv):
        def __init__(self, config: dict | None = None):
            super().__init__()
            config = copy.deepcopy(dict(config or {}))
            num = int(config.pop("num_agents", 1))
            self.envs = [gym.make(env_name_or_creator) if isinstance(env_name_or_creator, str)
                         else env_name_or_creator(config) for _ in range(num)]
            self.possible_agents = list(range(num))
            self.agents = list(self.possible_agents)
            self.observation_spaces = {i: e.observation_space for i, e in enumerate(self.envs)}
            self.action_spaces = {i: e.action_space for i, e in enumerate(self.envs)}
            self._terminated: set[int] = set()
            self._truncated: set[int] = set()

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            self.agents = list(self.possible_agents)
            self._terminated, self._truncated = set(), set()
            obs, infos = {}, {}
            for i, env in enumerate(self.envs):
                obs[i], infos[i] = env.reset(seed=None if seed is None else seed + i,
                                             options=options)
            return obs, infos

        def step(self, action_dict: dict[int, Any]):
            if not action_dict:
                raise ValueError(f"{type(self).__name__}.step() needs an action for at least "
                                 "one agent.")
            obs, rewards, terminateds, truncateds, infos = {}, {}, {}, {}, {}
            for i, action in action_dict.items():
                obs[i], rewards[i], terminateds[i], truncateds[i], infos[i] = \
                    self.envs[i].step(action)
                if terminateds[i]:
                    self._terminated.add(i)
                if truncateds[i]:
                    self._truncated.add(i)
                if terminateds[i] or truncateds[i]:
                    self.agents.remove(i)
            terminateds["__all__"] = len(self._terminated | self._truncated) == len(self.envs)
            truncateds["__all__"] = len(self._truncated) == len(self.envs)
            return obs, rewards, terminateds, truncateds, infos

        def close(self) -> None:
            for env in self.envs:
                env.close()

    return MultiEnv
