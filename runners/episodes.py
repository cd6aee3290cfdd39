"""Episodes as RLlib's callbacks see them: ``SingleAgentEpisode`` and ``MultiAgentEpisode``.

Runners build them only when a callback uses an episode hook (``on_episode_*``,
``on_sample_end``) or an env-to-module connector reads them; otherwise sampling never
touches this module. Data is kept in Python lists (RLlib's un-numpy'ized episodes):
``observations`` and
``infos`` have ``len(episode) + 1`` entries (the first from the reset), ``actions``,
``rewards`` and each ``extra_model_outputs[key]`` one per step. A ``sample()`` call ends
with ``cut()``: the returned object is the chunk of that call, the next call goes on in a
successor with the same ``id_`` (as RLlib's, ``get_return()`` of a chunk counts its steps).

Index rules of every ``get_*`` and ``set_*`` (as RLlib's): ``None`` = all, an int = one
item, negative counting from the end (into the lookback buffer too, see ``get_items``), a
list of ints or a slice = a list of items (a slice clips at the ends, or pads with
``fill``); an int out of range is an IndexError unless ``fill`` is given.
"""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any, Callable, Collection, Hashable, Sequence

import numpy as np

from rlmodules.tree import map_tree

Indices = int | Sequence[int] | slice | None


def get_items(data: Any, indices: Indices, fill: Any = None, what: str = "item",
              lookback: int = 0, neg_index_as_lookback: bool = False) -> Any:
    """``data`` (a list, or a numpy array of rows) read with the index rules above.

    The first ``lookback`` entries of ``data`` come before the chunk: index 0 is the entry
    after them (``indices=None`` and a slice without a start leave them out). Negative
    indices count from the end of ``data``, so they reach into the lookback too (as RLlib's:
    ``slice(-4, None)`` is the last four items even right after a cut); with
    ``neg_index_as_lookback`` they count back from index 0 instead (-1 is the last entry
    before the chunk). ``fill`` pads what lies beyond both ends, shaped like the entries
    when they are arrays (zeros for frame stacking, as RLlib's fill for a Box space).
    """
    n = len(data)

    def item(p: int) -> Any:
        if 0 <= p < n:
            return data[p]
        if fill is None:
            raise IndexError(f"Episode {what} index {p - lookback} is out of range: the "
                             f"episode holds {n - lookback} {what}s after {lookback} of "
                             "lookback (pass fill=... to pad).")
        template = data[-1] if n else None
        return np.full_like(template, fill) if isinstance(template, np.ndarray) else fill

    if indices is None:
        return data[lookback:] if isinstance(data, np.ndarray) else list(data[lookback:])
    positions = _positions(indices, n, lookback, neg_index_as_lookback, what)
    if isinstance(positions, int):
        return item(positions)
    if isinstance(indices, slice) and fill is None:  # Clipped at both ends.
        start, stop = max(positions.start, 0), min(positions.stop, n)
        return data[start:max(start, stop)] if isinstance(data, np.ndarray) else \
            list(data[start:max(start, stop)])
    rows = [item(p) for p in positions]
    return np.stack(rows) if isinstance(data, np.ndarray) and rows else rows


def set_items(data: Any, new_data: Any, at_indices: Indices, what: str, lookback: int = 0,
              neg_index_as_lookback: bool = False) -> None:
    """Overwrite entries of ``data`` in place (index rules of ``get_items``; ``None`` = the
    chunk's entries; a slice or list takes one new item per entry it names)."""
    n = len(data)
    positions = _positions(slice(None, None) if at_indices is None else at_indices, n,
                           lookback, neg_index_as_lookback, what)
    if isinstance(positions, int):
        positions, new_data = [positions], [new_data]
    if len(new_data) != len(positions):
        raise ValueError(f"Episode {what}s: {len(new_data)} new items for the "
                         f"{len(positions)} at {at_indices!r}; give one per entry.")
    for p in positions:
        if not 0 <= p < n:
            raise IndexError(f"Episode {what} index {p - lookback} is out of range: the "
                             f"episode holds {n - lookback} {what}s after {lookback} of "
                             "lookback.")
    for p, value in zip(positions, new_data):
        data[p] = value


def _positions(indices: int | Sequence[int] | slice, n: int, lookback: int,
               neg_index_as_lookback: bool, what: str) -> int | range | list[int]:
    """Where ``indices`` point in data of ``n`` entries whose first ``lookback`` come
    before the chunk (positions may lie outside ``range(n)``)."""
    def position(i: int) -> int:
        return lookback + i if i >= 0 or neg_index_as_lookback else n + i

    if isinstance(indices, (int, np.integer)):
        return position(int(indices))
    if isinstance(indices, slice):
        if indices.step not in (None, 1):
            raise ValueError(f"Episode {what}s: slices with a step are not supported.")
        start = lookback if indices.start is None else position(indices.start)
        stop = n if indices.stop is None else position(indices.stop)
        return range(start, max(start, stop))
    return [position(int(i)) for i in indices]


def _nested(data: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` on each leaf of numpy-backed data nested as a Dict/Tuple space (dicts/tuples
    of arrays, as learners hold observations); on ``data`` itself otherwise."""
    return fn(data) if isinstance(data, (list, np.ndarray)) else map_tree(fn, data)


class SingleAgentEpisode:
    """One agent's trajectory in one env (or a chunk of it).

    A chunk may start with a lookback buffer: the last ``len_lookback_buffer`` steps of its
    predecessor (``cut(len_lookback_buffer=k)``), which connectors such as frame stacking
    read with ``neg_index_as_lookback=True`` (or with negative indices from the end);
    ``len()``, returns, ``indices=None`` and indices >= 0 leave it out.
    Learner-side episodes hold numpy arrays instead of lists (the same ``get_*`` rules;
    slices return arrays).
    """

    def __init__(self, id_: str | None = None, *, agent_id: Hashable | None = None,
                 module_id: str | None = None, t_started: int = 0,
                 multi_agent_episode_id: str | None = None) -> None:
        self.id_ = id_ or uuid.uuid4().hex
        self.agent_id = agent_id
        self.module_id = module_id
        self.multi_agent_episode_id = multi_agent_episode_id
        self.observations: Any = []
        self.infos: list = []
        self.actions: Any = []
        self.rewards: Any = []
        self.extra_model_outputs: dict[str, Any] = {}
        self.is_terminated = False
        self.is_truncated = False
        self.t_started = self.t = t_started
        self.custom_data: dict = {}
        self.observation_space: Any = None  # Set by connectors that change observations.
        self.action_space: Any = None
        self._lookback = 0  # Leading entries of every list that belong to the predecessor.
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

    def cut(self, len_lookback_buffer: int = 0) -> "SingleAgentEpisode":
        """The successor chunk (same id, length 0) that starts at this chunk's last obs, with
        up to ``len_lookback_buffer`` earlier steps as its lookback buffer."""
        successor = SingleAgentEpisode(self.id_, agent_id=self.agent_id,
                                       module_id=self.module_id, t_started=self.t,
                                       multi_agent_episode_id=self.multi_agent_episode_id)
        keep = min(len_lookback_buffer, len(self.actions))
        successor.observations = self.observations[len(self.observations) - keep - 1:]
        successor.infos = self.infos[len(self.infos) - keep - 1:]
        successor.actions = self.actions[len(self.actions) - keep:]
        successor.rewards = self.rewards[len(self.rewards) - keep:]
        successor.extra_model_outputs = {k: v[len(v) - keep:]
                                         for k, v in self.extra_model_outputs.items()}
        successor._lookback = keep
        successor.observation_space, successor.action_space = (self.observation_space,
                                                               self.action_space)
        successor.custom_data = copy.deepcopy(self.custom_data)
        successor._start_time = time.perf_counter()
        return successor

    # ---- reading and writing ----------------------------------------------------------------

    def __len__(self) -> int:
        return self.t - self.t_started

    def __repr__(self) -> str:
        return f"SAEps(len={len(self)} done={self.is_done} R={self.get_return()} id_={self.id_})"

    @property
    def is_done(self) -> bool:
        return self.is_terminated or self.is_truncated

    def _read(self, data: Any, what: str, indices: Indices, fill: Any,
              neg_index_as_lookback: bool) -> Any:
        return _nested(data, lambda d: get_items(d, indices, fill, what, self._lookback,
                                                 neg_index_as_lookback))

    def get_observations(self, indices: Indices = None, *, fill: Any = None,
                         neg_index_as_lookback: bool = False) -> Any:
        return self._read(self.observations, "observation", indices, fill,
                          neg_index_as_lookback)

    def get_infos(self, indices: Indices = None, *, fill: Any = None,
                  neg_index_as_lookback: bool = False) -> Any:
        return self._read(self.infos, "info", indices, fill, neg_index_as_lookback)

    def get_actions(self, indices: Indices = None, *, fill: Any = None,
                    neg_index_as_lookback: bool = False) -> Any:
        return self._read(self.actions, "action", indices, fill, neg_index_as_lookback)

    def get_rewards(self, indices: Indices = None, *, fill: Any = None,
                    neg_index_as_lookback: bool = False) -> Any:
        return self._read(self.rewards, "reward", indices, fill, neg_index_as_lookback)

    def get_extra_model_outputs(self, key: str, indices: Indices = None, *,
                                fill: Any = None, neg_index_as_lookback: bool = False) -> Any:
        if key not in self.extra_model_outputs:
            raise KeyError(f"Episode {self.id_} has no extra model output '{key}'; it has "
                           f"{sorted(self.extra_model_outputs)}.")
        return self._read(self.extra_model_outputs[key], key, indices, fill,
                          neg_index_as_lookback)

    def _write(self, data: Any, what: str, new_data: Any, at_indices: Indices,
               neg_index_as_lookback: bool) -> None:
        if isinstance(data, (list, np.ndarray)):
            set_items(data, new_data, at_indices, what, self._lookback, neg_index_as_lookback)
        else:  # Numpy leaves nested as the space.
            map_tree(lambda d, new: set_items(d, new, at_indices, what, self._lookback,
                                              neg_index_as_lookback), data, new_data)

    def set_observations(self, *, new_data: Any, at_indices: Indices = None,
                         neg_index_as_lookback: bool = False) -> None:
        """Overwrite observations in place (connectors that transform them, e.g.
        MeanStdFilter, write the result back so learners train on what modules saw)."""
        self._write(self.observations, "observation", new_data, at_indices,
                    neg_index_as_lookback)

    def set_actions(self, *, new_data: Any, at_indices: Indices = None,
                    neg_index_as_lookback: bool = False) -> None:
        self._write(self.actions, "action", new_data, at_indices, neg_index_as_lookback)

    def set_rewards(self, *, new_data: Any, at_indices: Indices = None,
                    neg_index_as_lookback: bool = False) -> None:
        self._write(self.rewards, "reward", new_data, at_indices, neg_index_as_lookback)

    def set_extra_model_outputs(self, *, key: str, new_data: Any, at_indices: Indices = None,
                                neg_index_as_lookback: bool = False) -> None:
        self._write(self.extra_model_outputs[key], key, new_data, at_indices,
                    neg_index_as_lookback)

    def get_return(self) -> float:
        """The sum of this chunk's rewards (undiscounted; the lookback buffer not counted)."""
        return float(np.sum(self.rewards[self._lookback:]))

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

    _STATE = ("id_", "agent_id", "module_id", "multi_agent_episode_id", "observations",
              "infos", "actions", "rewards", "extra_model_outputs", "is_terminated",
              "is_truncated", "t_started", "t", "custom_data", "_lookback", "_start_time",
              "_last_step_time")

    def get_state(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self._STATE}

    @staticmethod
    def from_state(state: dict[str, Any]) -> "SingleAgentEpisode":
        episode = SingleAgentEpisode(state["id_"])
        for name in SingleAgentEpisode._STATE:
            if name in state:
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

    def cut(self, len_lookback_buffer: int = 0) -> "MultiAgentEpisode":
        """The successor chunk (same id, length 0); agents still in the episode go on (each
        with up to ``len_lookback_buffer`` earlier steps of lookback)."""
        successor = MultiAgentEpisode(self.id_, env_t_started=self.env_t,
                                      agent_to_module_mapping_fn=self.agent_to_module_mapping_fn)
        for agent_id, agent in self.agent_episodes.items():
            if not agent.is_done and agent.observations:
                chunk = successor.agent_episodes[agent_id] = agent.cut(len_lookback_buffer)
                successor.env_t_to_agent_t[agent_id] = \
                    self.env_t_to_agent_t[agent_id][-1 - chunk._lookback:]
        successor._agent_to_module = self._agent_to_module  # Fixed for the whole episode.
        successor._hanging = copy.deepcopy(self._hanging)
        successor.custom_data = copy.deepcopy(self.custom_data)
        successor._start_time = time.perf_counter()
        return successor

    def _agent(self, agent_id: Hashable) -> SingleAgentEpisode:
        if agent_id not in self.agent_episodes:
            self.agent_episodes[agent_id] = SingleAgentEpisode(
                agent_id=agent_id, module_id=self._agent_to_module.get(agent_id),
                t_started=0, multi_agent_episode_id=self.id_)
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
                out[agent_id] = get_items(data, indices, fill, what, agent._lookback)
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
