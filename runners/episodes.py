"""Episodes as RLlib's callbacks see them: ``SingleAgentEpisode`` and ``MultiAgentEpisode``.

Runners build them only when a callback uses an episode hook (``on_episode_*``,
``on_sample_end``); otherwise sampling never touches this module. Data is kept in Python
lists (RLlib's un-numpy'ized episodes, without a lookback buffer): ``observations`` and
``infos`` have ``len(episode) + 1`` entries (the first from the reset), ``actions``,
``rewards`` and each ``extra_model_outputs[key]`` one per step. A ``sample()`` call ends
with ``cut()``: the returned object is the chunk of that call, the next call goes on in a
successor with the same ``id_`` (as RLlib's, ``get_return()`` of a chunk counts its steps).

Index rules of every ``get_*`` (as RLlib's): ``None`` = all, an int = one item, negative
counting from the end, a list of ints or a slice = a list of items (a slice clips at the
ends, or pads with ``fill``); an int out of range is an IndexError unless ``fill`` is given.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any, Callable, Collection, Hashable, Sequence

Indices = int | Sequence[int] | slice | None


def get_items(data: list, indices: Indices, fill: Any = None, what: str = "item") -> Any:
    """``data`` read with the index rules above."""
    n = len(data)
    if indices is None:
        return list(data)
    if isinstance(indices, slice):
        if fill is None or indices.step not in (None, 1):
            return data[indices]
        start = 0 if indices.start is None else indices.start + (n if indices.start < 0 else 0)
        stop = n if indices.stop is None else indices.stop + (n if indices.stop < 0 else 0)
        return [data[i] if 0 <= i < n else fill for i in range(start, stop)]
    if isinstance(indices, int):
        i = indices + n if indices < 0 else indices
        if 0 <= i < n:
            return data[i]
        if fill is not None:
            return fill
        raise IndexError(f"Episode {what} index {indices} is out of range: the episode holds "
                         f"{n} {what}s (pass fill=... to pad).")
    return [get_items(data, i, fill, what) for i in indices]


class SingleAgentEpisode:
    """One agent's trajectory in one env (or a chunk of it)."""

    def __init__(self, id_: str | None = None, *, agent_id: Hashable | None = None,
                 module_id: str | None = None, t_started: int = 0) -> None:
        self.id_ = id_ or uuid.uuid4().hex
        self.agent_id = agent_id
        self.module_id = module_id
        self.observations: list = []
        self.infos: list = []
        self.actions: list = []
        self.rewards: list = []
        self.extra_model_outputs: dict[str, list] = {}
        self.is_terminated = False
        self.is_truncated = False
        self.t_started = self.t = t_started
        self.custom_data: dict = {}
        self._temporary: dict[str, list] = {}
        self._start_time: float | None = None
        self._last_step_time: float | None = None

    # ---- building (runners) -----------------------------------------------------------------

    def add_env_reset(self, observation: Any, infos: dict | None = None) -> None:
        self.observations.append(observation)
        self.infos.append(infos or {})
        self._start_time = time.perf_counter()

    def add_env_step(self, observation: Any, action: Any, reward: float,
                     infos: dict | None = None, *, terminated: bool = False,
                     truncated: bool = False,
                     extra_model_outputs: dict[str, Any] | None = None) -> None:
        if self.is_done:
            raise RuntimeError(f"Episode {self.id_} is done; add_env_step() cannot extend it.")
        self.observations.append(observation)
        self.infos.append(infos or {})
        self.actions.append(action)
        self.rewards.append(float(reward))
        for key, value in (extra_model_outputs or {}).items():
            self.extra_model_outputs.setdefault(key, []).append(value)
        self.is_terminated, self.is_truncated = bool(terminated), bool(truncated)
        self.t += 1
        self._last_step_time = time.perf_counter()
        if self._start_time is None:
            self._start_time = self._last_step_time

    def cut(self) -> "SingleAgentEpisode":
        """The successor chunk (same id, length 0) that starts at this chunk's last obs."""
        successor = SingleAgentEpisode(self.id_, agent_id=self.agent_id,
                                       module_id=self.module_id, t_started=self.t)
        successor.observations, successor.infos = self.observations[-1:], self.infos[-1:]
        successor.custom_data = copy.deepcopy(self.custom_data)
        successor._start_time = time.perf_counter()
        return successor

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.t - self.t_started

    def __repr__(self) -> str:
        return f"SAEps(len={len(self)} done={self.is_done} R={self.get_return()} id_={self.id_})"

    @property
    def is_done(self) -> bool:
        return self.is_terminated or self.is_truncated

    def get_observations(self, indices: Indices = None, *, fill: Any = None) -> Any:
        return get_items(self.observations, indices, fill, "observation")

    def get_infos(self, indices: Indices = None, *, fill: Any = None) -> Any:
        return get_items(self.infos, indices, fill, "info")

    def get_actions(self, indices: Indices = None, *, fill: Any = None) -> Any:
        return get_items(self.actions, indices, fill, "action")

    def get_rewards(self, indices: Indices = None, *, fill: Any = None) -> Any:
        return get_items(self.rewards, indices, fill, "reward")

    def get_extra_model_outputs(self, key: str, indices: Indices = None, *,
                                fill: Any = None) -> Any:
        if key not in self.extra_model_outputs:
            raise KeyError(f"Episode {self.id_} has no extra model output '{key}'; it has "
                           f"{sorted(self.extra_model_outputs)}.")
        return get_items(self.extra_model_outputs[key], indices, fill, key)

    def get_return(self) -> float:
        """The sum of this chunk's rewards (undiscounted)."""
        return float(sum(self.rewards))

    def get_duration_s(self) -> float:
        if self._last_step_time is None:
            return 0.0
        return self._last_step_time - self._start_time

    def env_steps(self) -> int:
        return len(self)

    def agent_steps(self) -> int:
        return len(self)

    def add_temporary_timestep_data(self, key: str, data: Any) -> None:
        """Per-step scratch data (RLlib's older API; not part of the state)."""
        self._temporary.setdefault(key, []).append(data)

    def get_temporary_timestep_data(self, key: str) -> list:
        if key not in self._temporary:
            raise KeyError(f"Episode {self.id_}: no temporary timestep data under '{key}' "
                           f"(it has {sorted(self._temporary)}).")
        return self._temporary[key]

    # ---- state ------------------------------------------------------------------------------

    _STATE = ("id_", "agent_id", "module_id", "observations", "infos", "actions", "rewards",
              "extra_model_outputs", "is_terminated", "is_truncated", "t_started", "t",
              "custom_data", "_start_time", "_last_step_time")

    def get_state(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "SingleAgentEpisode":
        episode = SingleAgentEpisode(state["id_"])
        for name in SingleAgentEpisode._STATE:
            setattr(episode, name, copy.deepcopy(state[name]))
        return episode


class MultiAgentEpisode:
    """One episode of a MultiAgentEnv: a SingleAgentEpisode per agent (``agent_episodes``)
    plus the env steps at which each agent got its observations.

    An agent's step is recorded when its next observation (or its end) arrives: its action
    and the rewards it got since it acted. ``get_*`` return ``{agent_id: data}``; with
    ``env_steps=True`` (default) indices count env steps and only agents with data at those
    steps appear, with ``env_steps=False`` they index each agent's own steps.
    """

    def __init__(self, id_: str | None = None, *,
                 agent_to_module_mapping_fn: Callable[..., str] | None = None,
                 env_t_started: int = 0) -> None:
        self.id_ = id_ or uuid.uuid4().hex
        self.agent_to_module_mapping_fn = agent_to_module_mapping_fn
        self.agent_episodes: dict[Hashable, SingleAgentEpisode] = {}
        self.env_t_started = self.env_t = env_t_started
        self.env_t_to_agent_t: dict[Hashable, list[int]] = {}  # Env step of each agent obs.
        self.is_terminated = False
        self.is_truncated = False
        self.custom_data: dict = {}
        self._agent_to_module: dict[Hashable, str] = {}
        self._hanging: dict[Hashable, list] = {}  # agent -> [action, extra, reward so far].
        self._temporary: dict[str, list] = {}
        self._start_time: float | None = None
        self._last_step_time: float | None = None

    # ---- building (runners) -----------------------------------------------------------------

    def add_env_reset(self, observations: dict, infos: dict | None = None) -> None:
        self._start_time = time.perf_counter()
        for agent_id, obs in observations.items():
            self._agent(agent_id).add_env_reset(obs, (infos or {}).get(agent_id))
            self.env_t_to_agent_t[agent_id].append(self.env_t)

    def add_agent_action(self, agent_id: Hashable, action: Any,
                         extra_model_outputs: dict[str, Any] | None = None) -> None:
        """``agent_id`` acted on its latest observation (the step is added with its result)."""
        self._agent(agent_id).module_id = self._agent_to_module.get(agent_id)
        self._hanging[agent_id] = [action, extra_model_outputs or {}, 0.0]

    def add_env_step(self, observations: dict, rewards: dict, infos: dict | None,
                     terminateds: dict, truncateds: dict) -> None:
        self.env_t += 1
        infos = infos or {}
        for agent_id, reward in rewards.items():
            if agent_id in self._hanging:
                self._hanging[agent_id][2] += reward
        episode_done = bool(terminateds.get("__all__") or truncateds.get("__all__"))
        for agent_id in set(observations) | (set(self._hanging) if episode_done else set()):
            terminated = bool(terminateds.get(agent_id, terminateds.get("__all__", False)))
            truncated = bool(truncateds.get(agent_id, episode_done and not terminated))
            agent = self._agent(agent_id)
            if agent_id not in self._hanging:  # Its first observation.
                if agent_id in observations and not agent.observations:
                    agent.add_env_reset(observations[agent_id], infos.get(agent_id))
                    self.env_t_to_agent_t[agent_id].append(self.env_t)
                continue
            action, extra, reward = self._hanging.pop(agent_id)
            obs = observations.get(agent_id, agent.observations[-1])
            agent.add_env_step(obs, action, reward, infos.get(agent_id), terminated=terminated,
                               truncated=truncated, extra_model_outputs=extra)
            self.env_t_to_agent_t[agent_id].append(self.env_t)
        if episode_done:
            self.is_terminated = bool(terminateds.get("__all__"))
            self.is_truncated = not self.is_terminated
        self._last_step_time = time.perf_counter()

    def cut(self) -> "MultiAgentEpisode":
        """The successor chunk (same id, length 0); agents still in the episode go on."""
        successor = MultiAgentEpisode(self.id_, env_t_started=self.env_t,
                                      agent_to_module_mapping_fn=self.agent_to_module_mapping_fn)
        for agent_id, agent in self.agent_episodes.items():
            if not agent.is_done and agent.observations:
                successor.agent_episodes[agent_id] = agent.cut()
                successor.env_t_to_agent_t[agent_id] = self.env_t_to_agent_t[agent_id][-1:]
        successor._agent_to_module = self._agent_to_module  # Fixed for the whole episode.
        successor._hanging = copy.deepcopy(self._hanging)
        successor.custom_data = copy.deepcopy(self.custom_data)
        successor._start_time = time.perf_counter()
        return successor

    def _agent(self, agent_id: Hashable) -> SingleAgentEpisode:
        if agent_id not in self.agent_episodes:
            self.agent_episodes[agent_id] = SingleAgentEpisode(
                agent_id=agent_id, module_id=self._agent_to_module.get(agent_id),
                t_started=0)
            self.env_t_to_agent_t[agent_id] = []
        return self.agent_episodes[agent_id]

    # ---- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.env_t - self.env_t_started

    def __repr__(self) -> str:
        returns = {a: e.get_return() for a, e in self.agent_episodes.items()}
        return f"MAEps(len={len(self)} done={self.is_done} Rs={returns} id_={self.id_})"

    @property
    def is_done(self) -> bool:
        return self.is_terminated or self.is_truncated

    @property
    def agent_ids(self) -> set:
        return set(self.agent_episodes)

    def module_for(self, agent_id: Hashable) -> str | None:
        """The module ``agent_id`` acts with (mapped on first use, then fixed)."""
        if agent_id not in self._agent_to_module and self.agent_to_module_mapping_fn:
            self._agent_to_module[agent_id] = self.agent_to_module_mapping_fn(agent_id, self)
        return self._agent_to_module.get(agent_id)

    def _get(self, what: str, indices: Indices, agent_ids: Any, env_steps: bool, fill: Any,
             key: str | None = None) -> dict:
        if agent_ids is None:
            agent_ids = list(self.agent_episodes)
        elif isinstance(agent_ids, (str, int)) or not isinstance(agent_ids, Collection):
            agent_ids = [agent_ids]
        out = {}
        for agent_id in agent_ids:
            agent = self.agent_episodes.get(agent_id)
            if agent is None:
                continue
            data = agent.extra_model_outputs.get(key, []) if key else getattr(agent, what)
            if not env_steps:
                out[agent_id] = get_items(data, indices, fill, what)
                continue
            # Env step of each item: obs/infos where they arrived, actions/rewards/extra
            # outputs at the step of the observation they acted on.
            steps = self.env_t_to_agent_t[agent_id][:len(data)]
            # Env steps are absolute here; chunk-relative indices start at env_t_started.
            span = list(range(self.env_t_started, self.env_t + int(what in ("observations",
                                                                               "infos"))))
            wanted = get_items(span, indices, None, "env step") if indices is not None \
                else span
            if isinstance(wanted, int):
                if wanted in steps:
                    out[agent_id] = data[steps.index(wanted)]
                elif fill is not None:
                    out[agent_id] = fill
                continue
            wanted = set(wanted)
            items = [item for step, item in zip(steps, data) if step in wanted]
            if items:
                out[agent_id] = items
        return out

    def get_observations(self, indices: Indices = None, agent_ids: Any = None, *,
                         env_steps: bool = True, fill: Any = None) -> dict:
        return self._get("observations", indices, agent_ids, env_steps, fill)

    def get_infos(self, indices: Indices = None, agent_ids: Any = None, *,
                  env_steps: bool = True, fill: Any = None) -> dict:
        return self._get("infos", indices, agent_ids, env_steps, fill)

    def get_actions(self, indices: Indices = None, agent_ids: Any = None, *,
                    env_steps: bool = True, fill: Any = None) -> dict:
        return self._get("actions", indices, agent_ids, env_steps, fill)

    def get_rewards(self, indices: Indices = None, agent_ids: Any = None, *,
                    env_steps: bool = True, fill: Any = None) -> dict:
        return self._get("rewards", indices, agent_ids, env_steps, fill)

    def get_extra_model_outputs(self, key: str, indices: Indices = None, agent_ids: Any = None,
                                *, env_steps: bool = True, fill: Any = None) -> dict:
        return self._get("extra_model_outputs", indices, agent_ids, env_steps, fill, key)

    def get_terminateds(self) -> dict:
        return {"__all__": self.is_terminated,
                **{a: e.is_terminated for a, e in self.agent_episodes.items()}}

    def get_truncateds(self) -> dict:
        return {"__all__": self.is_truncated,
                **{a: e.is_truncated for a, e in self.agent_episodes.items()}}

    def get_return(self) -> float:
        """All agents' rewards summed (rewards of an agent still waiting for its next
        observation are not in yet)."""
        return float(sum(e.get_return() for e in self.agent_episodes.values()))

    def agent_steps(self) -> int:
        return sum(len(e) for e in self.agent_episodes.values())

    get_duration_s = SingleAgentEpisode.get_duration_s
    env_steps = SingleAgentEpisode.env_steps
    add_temporary_timestep_data = SingleAgentEpisode.add_temporary_timestep_data
    get_temporary_timestep_data = SingleAgentEpisode.get_temporary_timestep_data

    # ---- state ------------------------------------------------------------------------------

    _STATE = ("id_", "agent_to_module_mapping_fn", "env_t_started", "env_t",
              "env_t_to_agent_t", "is_terminated", "is_truncated", "custom_data",
              "_agent_to_module", "_hanging", "_start_time", "_last_step_time")

    def get_state(self) -> dict[str, Any]:
        state = {name: getattr(self, name) if name == "agent_to_module_mapping_fn" else
                 copy.deepcopy(getattr(self, name)) for name in self._STATE}
        state["agent_episodes"] = [(a, e.get_state()) for a, e in self.agent_episodes.items()]
        return state

    @staticmethod
    def from_state(state: dict[str, Any]) -> "MultiAgentEpisode":
        episode = MultiAgentEpisode(state["id_"])
        for name in MultiAgentEpisode._STATE:
            setattr(episode, name, state[name] if name == "agent_to_module_mapping_fn" else
                    copy.deepcopy(state[name]))
        episode.agent_episodes = {a: SingleAgentEpisode.from_state(s)
                                  for a, s in state["agent_episodes"]}
        return episode
