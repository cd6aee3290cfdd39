"""MultiAgentEnvRunner: steps copies of a MultiAgentEnv, one batched forward per module per step."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import torch

from rlmodules import Columns
from runners.action_sampling import ActionSampler
from runners.config import EnvRunnerConfig
from runners.connectors import batch_observations, make_connector
from runners.env_registry import EnvError
from runners.env_runner import EnvRunner, observation_layout, stateful_output
from runners.fragment import Fragment
from runners.multi_agent_env import MultiAgentEnv

logger = logging.getLogger(__name__)

_INITIAL_ROWS = 64  # A track's buffers start this long and double when full.


@dataclass(frozen=True)
class EpisodeRef:
    """What ``policy_mapping_fn(agent_id, episode)`` gets as ``episode``."""

    id_: str
    env_index: int


class _Track:
    """One agent's open piece of an episode: growable [rows, ...] buffers, one row per action."""

    def __init__(self, module_id: str, sampler: ActionSampler, explore: bool):
        self.module_id = module_id
        self.sampler = sampler
        self.explore = explore
        self.buf: dict[str, Any] | None = None  # Allocated at the first row.
        self.rows = 0
        self.waiting = False  # Acted, and the env has not sent its next observation yet.

    def add_row(self, batch: dict[str, Any], j: int) -> None:
        """Append row ``j`` of the batched ``batch`` columns."""
        if self.buf is None:
            self.buf = _allocate(batch, _INITIAL_ROWS)
            self.buf[Columns.REWARDS] = np.zeros(_INITIAL_ROWS, np.float32)
        elif self.rows == len(self.buf[Columns.REWARDS]):
            self.buf = _doubled(self.buf)
        if batch.keys() - {Columns.REWARDS} != self.buf.keys() - {Columns.REWARDS}:
            raise ValueError(
                f"Module '{self.module_id}' returned {sorted(batch)} now but "
                f"{sorted(self.buf)} before; return the same keys on every step.")
        _write_row(self.buf, batch, j, self.rows)
        self.rows += 1
        self.waiting = True

    def fragment(self, agent_id: Hashable, episode_id: str, stop: int, last_obs: np.ndarray,
                 terminated: bool = False, truncated: bool = False) -> Fragment:
        columns = _rows(self.buf, 0, stop)
        if self.explore:
            self.sampler.add_logp(columns, (stop,))
        columns[Columns.TERMINATEDS] = np.zeros(stop, bool)
        columns[Columns.TRUNCATEDS] = np.zeros(stop, bool)
        columns[Columns.TERMINATEDS][-1] = terminated
        columns[Columns.TRUNCATEDS][-1] = truncated
        return Fragment(module_id=self.module_id, agent_id=agent_id, episode_id=episode_id,
                        columns=columns, last_obs=last_obs, terminated=terminated,
                        truncated=truncated)


@dataclass
class _Slot:
    """One env copy and its current episode."""

    env: MultiAgentEnv
    episode: EpisodeRef
    obs: dict = field(default_factory=dict)  # Module-side obs of the agents that act next.
    last_obs: dict = field(default_factory=dict)  # Latest module-side obs of every agent.
    modules: dict = field(default_factory=dict)  # agent id -> module id, for this episode.
    tracks: dict = field(default_factory=dict)  # agent id -> _Track.
    states: dict = field(default_factory=dict)  # agent id -> {key: tensor} (stateful modules).
    episode_return: float = 0.0
    length: int = 0


class MultiAgentEnvRunner(EnvRunner):
    """Runs ``num_envs_per_env_runner`` copies of a MultiAgentEnv in a Python loop.

    Each step, the agents present in the observations act: all agents mapped to the same
    module go through one forward pass together. Every agent's piece of an episode becomes one
    Fragment (``agent_id`` and ``module_id`` set); the episode return is the sum over agents.
    """

    def __init__(self, config: EnvRunnerConfig, worker_index: int = 0):
        super().__init__(config, worker_index)
        envs = [self._new_env() for _ in range(self.num_envs)]
        self.connector = make_connector(config, envs[0])
        self._obs_dtypes = {  # agent id -> buffer dtype; also rejects spaces it cannot batch.
            aid: observation_layout(self._module_observation_space(
                envs[0].get_observation_space(aid)), env_name=config.env)[1]
            for aid in envs[0].possible_agents}
        self.module = self._build_module(envs[0])
        self._samplers = {mid: ActionSampler(m, mid, m.action_space)
                          for mid, m in self.module.items()}
        self._initial_states = {mid: m.get_initial_state() for mid, m in self.module.items()}
        self._slots = [_Slot(env, EpisodeRef(uuid.uuid4().hex, i)) for i, env in enumerate(envs)]
        for i, slot in enumerate(self._slots):
            self._reset(slot, seed=None if self.seed is None else self.seed + i)
        for i, sampler in enumerate(self._samplers.values()):  # For random_actions.
            sampler.action_space.seed(None if self.seed is None else self.seed + i)
        self._mode = (True, False)  # (explore, random_actions) of the last sample() call.

    @property
    def env(self) -> list[MultiAgentEnv]:
        """The env copies."""
        return [slot.env for slot in self._slots]

    def _new_env(self) -> MultiAgentEnv:
        env = self._make_env(dict(self.config.env_config))
        if not isinstance(env, MultiAgentEnv):
            raise TypeError(f"MultiAgentEnvRunner needs a runners.MultiAgentEnv, but the env "
                            f"creator returned a {type(env).__name__}; use "
                            "SingleAgentEnvRunner for gymnasium envs.")
        return env

    # ---- the step loop ----------------------------------------------------------------------

    def _collect(self, num_steps: int, explore: bool,
                 random_actions: bool) -> tuple[list[Fragment], list[str]]:
        fragments: list[Fragment] = []
        ended: list[str] = []
        if (explore, random_actions) != self._mode:  # Carried rows hold the other mode's columns.
            for slot in self._slots:
                slot.tracks.clear()
            self._mode = (explore, random_actions)
        for _ in range(num_steps):
            actions = self._act(explore, random_actions)
            for slot, slot_actions in zip(self._slots, actions):
                self._step(slot, slot_actions, fragments, ended)
        self.metrics.add_steps(num_steps * self.num_envs)
        for slot in self._slots:
            self._cut(slot, fragments)
        return fragments, ended

    def _act(self, explore: bool, random_actions: bool) -> list[dict]:
        """Every acting agent's action (one dict per env), one forward pass per module; each
        agent's row goes to its track."""
        groups: dict[str, list[tuple[int, Hashable]]] = {}
        for e, slot in enumerate(self._slots):
            for agent_id in slot.obs:
                groups.setdefault(self._module_of(slot, agent_id), []).append((e, agent_id))
        batch = {mid: self._batch(mid, members, random_actions)
                 for mid, members in groups.items()}
        if not random_actions:
            forward = self.module.forward_exploration if explore else \
                self.module.forward_inference
            outputs = forward({mid: dict(b) for mid, b in batch.items()})
        actions: list[dict] = [{} for _ in self._slots]
        for mid, members in groups.items():
            sampler = self._samplers[mid]
            if random_actions:
                cols = {Columns.ACTIONS: np.stack([sampler.action_space.sample()
                                                   for _ in members])}
            else:
                cols = sampler.columns(outputs[mid], explore, len(members))
            cols = {**_to_numpy(batch[mid]), **cols}
            next_states = None
            if Columns.STATE_IN in cols:
                cols[Columns.OBS] = cols[Columns.OBS][:, 0]
                next_states = stateful_output(outputs[mid], sampler.module)
            env_actions = sampler.to_env(cols[Columns.ACTIONS])
            for j, (e, agent_id) in enumerate(members):
                slot = self._slots[e]
                if next_states is not None:
                    slot.states[agent_id] = {k: v[j] for k, v in next_states.items()}
                track = slot.tracks.get(agent_id)
                if track is None:
                    track = slot.tracks[agent_id] = _Track(mid, sampler, explore)
                track.add_row(cols, j)
                actions[e][agent_id] = env_actions[j]
        return actions

    def _batch(self, module_id: str, members: list[tuple[int, Hashable]],
               random_actions: bool) -> dict[str, Any]:
        """The forward-pass input of one module: its acting agents' obs (and states)."""
        obs = torch.from_numpy(np.stack([self._slots[e].obs[aid] for e, aid in members]))
        if random_actions or not self._initial_states[module_id]:
            return {Columns.OBS: obs}
        state = {k: torch.stack([self._slots[e].states[aid][k] for e, aid in members])
                 for k in self._initial_states[module_id]}
        return {Columns.OBS: obs.unsqueeze(1), Columns.STATE_IN: state}

    def _step(self, slot: _Slot, actions: dict, fragments: list[Fragment],
              ended: list[str]) -> None:
        try:
            obs, rewards, terminateds, truncateds, _ = slot.env.step(actions)
        except Exception as err:
            self._drop_failed_episode(slot, err)
            return
        slot.length += 1
        slot.episode_return += float(sum(rewards.values()))
        for agent_id, reward in rewards.items():
            track = slot.tracks.get(agent_id)
            if track is not None and track.rows:
                track.buf[Columns.REWARDS][track.rows - 1] += reward
        all_terminated = bool(terminateds.get("__all__", False))
        episode_done = all_terminated or bool(truncateds.get("__all__", False))
        slot.obs = {}
        for agent_id, raw in obs.items():
            slot.last_obs[agent_id] = self._to_module(slot, agent_id, raw)
            if not (terminateds.get(agent_id) or truncateds.get(agent_id) or episode_done):
                slot.obs[agent_id] = slot.last_obs[agent_id]
            if agent_id in slot.tracks:
                slot.tracks[agent_id].waiting = False
        for agent_id in list(slot.tracks):
            term = bool(terminateds.get(agent_id, all_terminated))
            trunc = bool(truncateds.get(agent_id, episode_done and not term))
            if term or trunc:
                track = slot.tracks.pop(agent_id)
                fragments.append(track.fragment(agent_id, slot.episode.id_, track.rows,
                                                slot.last_obs[agent_id], term, trunc))
        if episode_done:
            ended.append(slot.episode.id_)
            self.metrics.add_episode(slot.episode_return, slot.length)
            self._reset(slot)

    def _cut(self, slot: _Slot, fragments: list[Fragment]) -> None:
        """End of a sample() call: every open track up to its last row with a known next
        observation; a row still waiting for one moves into a fresh track for the next call."""
        for agent_id, track in list(slot.tracks.items()):
            carry = 1 if track.waiting else 0
            if track.rows > carry:
                last_obs = track.buf[Columns.OBS][track.rows - 1] if carry else \
                    slot.last_obs[agent_id]
                fragments.append(track.fragment(agent_id, slot.episode.id_,
                                                track.rows - carry, last_obs))
            del slot.tracks[agent_id]
            if carry:
                fresh = slot.tracks[agent_id] = _Track(track.module_id, track.sampler,
                                                       track.explore)
                fresh.add_row(_rows(track.buf, track.rows - 1, track.rows), 0)

    # ---- episodes, envs, observations -------------------------------------------------------

    def _module_of(self, slot: _Slot, agent_id: Hashable) -> str:
        module_id = slot.modules.get(agent_id)
        if module_id is None:
            module_id = slot.modules[agent_id] = self.config.policy_mapping_fn(agent_id,
                                                                               slot.episode)
            if module_id not in self.module:
                raise KeyError(f"policy_mapping_fn mapped agent {agent_id!r} to module "
                               f"'{module_id}', which the runner's MultiRLModule does not hold "
                               f"(it holds {list(self.module.keys())}).")
            if agent_id not in slot.states and self._initial_states[module_id]:
                slot.states[agent_id] = {k: torch.as_tensor(v) for k, v in
                                         self._initial_states[module_id].items()}
        return module_id

    def _to_module(self, slot: _Slot, agent_id: Hashable, raw: Any) -> np.ndarray:
        if self.connector:
            space = slot.env.get_observation_space(agent_id)
            return self.connector(batch_observations(space, [raw]), space)[0]
        return np.asarray(raw, dtype=self._obs_dtypes[agent_id])

    def _reset(self, slot: _Slot, seed: int | None = None) -> None:
        """Start a new episode in ``slot`` (its open tracks are dropped)."""
        try:
            raw_obs, _ = slot.env.reset(seed=seed)
        except Exception as err:
            raise EnvError(f"EnvRunner {self.worker_index}: env {slot.episode.env_index} raised "
                           f"in reset(): {err!r}") from err
        slot.episode = EpisodeRef(uuid.uuid4().hex, slot.episode.env_index)
        slot.modules, slot.tracks, slot.states = {}, {}, {}
        slot.episode_return, slot.length = 0.0, 0
        slot.last_obs = {aid: self._to_module(slot, aid, raw) for aid, raw in raw_obs.items()}
        slot.obs = dict(slot.last_obs)

    def _drop_failed_episode(self, slot: _Slot, err: Exception) -> None:
        logger.warning("EnvRunner %d: env %d raised in step(); its episode is dropped and the "
                       "env rebuilt: %r", self.worker_index, slot.episode.env_index, err)
        self.metrics.add_env_error()
        try:
            slot.env.close()
        except Exception:  # The env is broken already; closing is best effort.
            pass
        slot.env = self._new_env()
        self._reset(slot)

    def _start_new_episodes(self) -> None:
        for slot in self._slots:
            self._reset(slot)

    def stop(self) -> None:
        for slot in self._slots:
            slot.env.close()


def _to_numpy(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: _to_numpy(v) if isinstance(v, dict) else v.numpy() for k, v in batch.items()}


def _allocate(batch: dict[str, Any], rows: int) -> dict[str, Any]:
    return {k: _allocate(v, rows) if isinstance(v, dict) else
            np.empty((rows, *v.shape[1:]), v.dtype) for k, v in batch.items()}


def _doubled(buf: dict[str, Any]) -> dict[str, Any]:
    return {k: _doubled(v) if isinstance(v, dict) else np.concatenate([v, np.zeros_like(v)])
            for k, v in buf.items()}


def _write_row(buf: dict[str, Any], batch: dict[str, Any], j: int, index: int) -> None:
    for key, value in batch.items():
        if isinstance(value, dict):
            _write_row(buf[key], value, j, index)
        else:
            buf[key][index] = value[j]


def _rows(buf: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
    return {k: _rows(v, start, stop) if isinstance(v, dict) else v[start:stop]
            for k, v in buf.items()}
