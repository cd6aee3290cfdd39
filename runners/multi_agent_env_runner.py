"""MultiAgentEnvRunner: steps copies of a MultiAgentEnv, one batched forward per module per step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np
import torch

from rlmodules import Columns
from rlmodules.tree import map_tree
from runners.action_sampling import ActionSampler
from runners.config import EnvRunnerConfig
from runners.connectors import (FrameStackingEnvToModule, build_env_to_module,
                                build_module_to_env)
from runners.env_registry import check_observation, check_step_result, rebuild_env, reset_env
from runners.env_runner import EnvRunner, clip_rewards, observation_prototype, stateful_output
from runners.episodes import MultiAgentEpisode
from runners.fragment import Episode, Fragment
from runners.metrics import log_steps
from runners.multi_agent_env import MultiAgentEnv

_INITIAL_ROWS = 64  # A track's buffers start this long and double when full.


class _Track:
    """One agent's open piece of an episode: growable [rows, ...] buffers, one row per action."""

    def __init__(self, sampler: ActionSampler, explore: bool):
        self.module_id = sampler.module_id
        self.sampler = sampler
        self.explore = explore
        self.buf: dict[str, Any] | None = None  # Allocated at the first row.
        self.rows = 0
        self.infos: list[dict] = []  # Those that came with each row's obs.

    def add_row(self, batch: dict[str, Any], j: int, infos: dict) -> None:
        """Append row ``j`` of the batched ``batch`` columns."""
        if self.buf is None:
            self.buf = map_tree(lambda v: np.empty((_INITIAL_ROWS, *v.shape[1:]), v.dtype), batch)
            self.buf[Columns.REWARDS] = np.zeros(_INITIAL_ROWS, np.float32)
        elif self.rows == len(self.buf[Columns.REWARDS]):
            self.buf = map_tree(lambda v: np.concatenate([v, np.zeros_like(v)]), self.buf)
        if batch.keys() - {Columns.REWARDS} != self.buf.keys() - {Columns.REWARDS}:
            raise ValueError(
                f"Module '{self.module_id}' returned {sorted(batch)} now but "
                f"{sorted(self.buf)} before; return the same keys on every step.")
        def write(column: np.ndarray, buf: np.ndarray) -> None:
            buf[self.rows] = column[j]

        map_tree(write, batch, self.buf)
        self.infos.append(infos)
        self.rows += 1

    def fragment(self, episode: Episode, agent_id: Hashable, num_rows: int, last_obs: Any,
                 clip: bool | float | None, terminated: bool = False,
                 truncated: bool = False) -> Fragment:
        """The first ``num_rows`` rows as ``agent_id``'s fragment of ``episode`` (rewards
        clipped as ``clip_rewards`` says)."""
        columns = map_tree(lambda v: v[:num_rows], self.buf)
        if clip:
            columns[Columns.REWARDS] = clip_rewards(columns[Columns.REWARDS].copy(), clip)
        columns[Columns.INFOS] = self.infos[:num_rows]
        if self.explore:
            self.sampler.add_logp(columns, (num_rows,))
        last = np.arange(num_rows) == num_rows - 1
        columns[Columns.TERMINATEDS] = last & terminated
        columns[Columns.TRUNCATEDS] = last & truncated
        return episode.fragment(self.module_id, columns, last_obs, terminated, truncated, agent_id)


@dataclass(eq=False)
class OpenEpisode(Episode):
    """An open episode of a MultiAgentEnv: per agent, its module, open track and state. Its
    return sums all agents' rewards; its length counts env steps."""

    obs: dict = field(default_factory=dict)  # Module-side obs of the agents that act next.
    last_obs: dict = field(default_factory=dict)  # Latest module-side obs of every agent.
    infos: dict = field(default_factory=dict)  # agent id -> infos that came with last_obs.
    agent_returns: dict = field(default_factory=dict)  # agent id -> its rewards summed.
    agent_to_module: dict = field(default_factory=dict)  # Module ids, mapped at first action.
    tracks: dict = field(default_factory=dict)  # agent id -> _Track.
    states: dict = field(default_factory=dict)  # agent id -> {key: tensor} (stateful modules).


class MultiAgentEnvRunner(EnvRunner):
    """Runs ``num_envs_per_env_runner`` copies of a MultiAgentEnv in a Python loop.

    Each step, the agents present in the observations act: all agents mapped to the same
    module go through one forward pass together. Every agent's piece of an episode becomes one
    Fragment (``agent_id`` and ``module_id`` set); the episode return is the sum over agents.
    """

    def __init__(self, config: EnvRunnerConfig, worker_index: int = 0):
        super().__init__(config, worker_index)
        self.env: list[MultiAgentEnv] = [self._new_env(e) for e in range(self.num_envs)]
        self.connector = build_env_to_module(config, self.env[0])
        self.module_to_env = build_module_to_env(config, self.env[0])
        if self.connector:
            check_multi_agent_pipeline(self.connector)
            self._lookback = max(config.episode_lookback_horizon,
                                 self.connector.required_lookback)
        if self.connector or self.module_to_env:
            self._recording = True  # The pipelines read the episode objects.
        self._obs_protos = {  # agent id -> one obs; also rejects spaces it cannot batch.
            aid: observation_prototype(
                self.connector.observation_space[aid] if self.connector
                else self.env[0].get_observation_space(aid), config.env)
            for aid in self.env[0].possible_agents}
        self._unchecked = True  # The first reset and step check what the env returns.
        self.module = self._build_module(self.env[0])
        self._samplers = {mid: ActionSampler(m, mid, m.action_space,
                                             normalize_actions=config.normalize_actions,
                                             clip_actions=config.clip_actions)
                          for mid, m in self.module.items()}
        self._initial_states = {mid: m.get_initial_state() for mid, m in self.module.items()}
        self._agent_steps: dict[Hashable, int] = {}  # In the current sample() call.
        self._module_steps: dict[str, int] = {}
        self._user_episodes = [None] * self.num_envs if self._recording else []
        self._episodes = [self._new_episode(e, None if self.seed is None else self.seed + e)
                          for e in range(self.num_envs)]
        for i, sampler in enumerate(self._samplers.values()):  # For random_actions.
            sampler.action_space.seed(None if self.seed is None else self.seed + i)
        self._mode = (True, False)  # (explore, random_actions) of the last sample() call.

    def _new_env(self, e: int) -> MultiAgentEnv:
        env = self._make_env(self._env_context(e))
        if not isinstance(env, MultiAgentEnv):
            raise TypeError(f"MultiAgentEnvRunner needs a runners.MultiAgentEnv, but the env "
                            f"creator returned a {type(env).__name__}; use "
                            "SingleAgentEnvRunner for gymnasium envs.")
        self._environment_created(env)  # Once per env: each is its own MultiAgentEnv.
        return env

    # ---- the step loop ----------------------------------------------------------------------

    def _collect(self, num_steps: int, explore: bool,
                 random_actions: bool) -> tuple[list[Fragment], list[str]]:
        fragments: list[Fragment] = []
        ended: list[str] = []
        if (explore, random_actions) != self._mode:  # Carried rows hold the other mode's columns.
            for episode in self._episodes:
                episode.tracks.clear()
            self._mode = (explore, random_actions)
        self._agent_steps, self._module_steps, self._explore = {}, {}, explore
        for _ in range(num_steps):
            actions = self._act(explore, random_actions)
            for e, env_actions in enumerate(actions):
                self._step(e, env_actions, fragments, ended)
        log_steps(self._call_metrics, num_steps * self.num_envs, self._agent_steps,
                  self._module_steps)
        for episode in self._episodes:
            self._cut(episode, fragments)
        return fragments, ended

    def _act(self, explore: bool, random_actions: bool) -> list[dict]:
        """Every acting agent's action (one dict per env), one forward pass per module; each
        agent's row goes to its track."""
        groups: dict[str, list[tuple[OpenEpisode, Hashable]]] = {}
        for episode in self._episodes:
            for agent_id in episode.obs:
                groups.setdefault(self._module_of(episode, agent_id), []).append(
                    (episode, agent_id))
        batch = {mid: self._batch(mid, members, random_actions)
                 for mid, members in groups.items()}
        if not random_actions:
            forward = self.module.forward_exploration if explore else \
                self.module.forward_inference
            outputs = forward({mid: dict(b) for mid, b in batch.items()})
        module_cols = {}
        for mid, members in groups.items():
            sampler = self._samplers[mid]
            if random_actions:
                module_cols[mid] = {Columns.ACTIONS: map_tree(lambda *a: np.stack(a), *(
                    sampler.action_space.sample() for _ in members))}
            else:
                module_cols[mid] = sampler.columns(outputs[mid], explore, len(members))
        if self.module_to_env:
            module_cols = self.module_to_env(
                rl_module=self.module, batch=module_cols, episodes=self._user_episodes,
                explore=explore, shared_data=self._shared_data, metrics=self._call_metrics)
        actions: list[dict] = [{} for _ in self._episodes]
        for mid, members in groups.items():
            sampler = self._samplers[mid]
            cols = {**map_tree(lambda v: v.numpy(), batch[mid]), **module_cols[mid]}
            next_states = None
            if Columns.STATE_IN in cols:
                cols[Columns.OBS] = map_tree(lambda v: v[:, 0], cols[Columns.OBS])
                next_states = stateful_output(outputs[mid], sampler.module)
            env_actions = sampler.env_actions(cols, random_actions)
            self._module_steps[mid] = self._module_steps.get(mid, 0) + len(members)
            for j, (episode, agent_id) in enumerate(members):
                if next_states is not None:
                    episode.states[agent_id] = {k: v[j] for k, v in next_states.items()}
                episode.tracks.setdefault(agent_id, _Track(sampler, explore)).add_row(
                    cols, j, episode.infos.get(agent_id, {}))
                actions[episode.env_index][agent_id] = env_actions[j]
                self._agent_steps[agent_id] = self._agent_steps.get(agent_id, 0) + 1
                if self._recording:
                    row = {k: map_tree(lambda v: v[j], c) for k, c in cols.items()
                           if k not in (Columns.OBS, Columns.STATE_IN)}
                    self._user_episodes[episode.env_index].add_agent_action(
                        agent_id, row.pop(Columns.ACTIONS), row)
        return actions

    def _batch(self, module_id: str, members: list[tuple[OpenEpisode, Hashable]],
               random_actions: bool) -> dict[str, Any]:
        """The forward-pass input of one module: its acting agents' obs (and states)."""
        obs = map_tree(lambda *o: torch.from_numpy(np.stack(o)),
                       *(episode.obs[aid] for episode, aid in members))
        if random_actions or not self._initial_states[module_id]:
            return {Columns.OBS: obs}
        state = {k: torch.stack([episode.states[aid][k] for episode, aid in members])
                 for k in self._initial_states[module_id]}
        return {Columns.OBS: map_tree(lambda v: v.unsqueeze(1), obs), Columns.STATE_IN: state}

    def _step(self, e: int, actions: dict, fragments: list[Fragment], ended: list[str]) -> None:
        episode = self._episodes[e]
        try:
            result = self.env[e].step(actions)
        except Exception as err:
            self._drop_failed_episode(e, err)
            self.env[e] = rebuild_env(self.env[e], lambda: self._new_env(e))
            self._episodes[e] = self._new_episode(e)
            return
        if self._unchecked:
            name = f"EnvRunner {self.worker_index}: env {e}, step()"
            check_step_result(self.env[e], result, name)
            check_observation(self.env[e], result[0], name)
            self._unchecked = False
        obs, rewards, terminateds, truncateds, infos = result
        if self._recording:
            self._user_episodes[e].add_env_step(obs, rewards, infos, terminateds, truncateds)
            if self.connector:
                obs = self._through_pipeline(e, obs)
        episode.add_steps(1, sum(rewards.values()))
        for agent_id, reward in rewards.items():
            episode.agent_returns[agent_id] = episode.agent_returns.get(agent_id, 0.0) + reward
            track = episode.tracks.get(agent_id)
            if track is not None:
                track.buf[Columns.REWARDS][track.rows - 1] += reward
        all_terminated = bool(terminateds.get("__all__", False))
        episode_done = all_terminated or bool(truncateds.get("__all__", False))
        episode.obs = {}
        for agent_id, raw in obs.items():
            episode.last_obs[agent_id] = self._to_module(agent_id, raw)
            episode.infos[agent_id] = infos.get(agent_id, {})
            if not (terminateds.get(agent_id) or truncateds.get(agent_id) or episode_done):
                episode.obs[agent_id] = episode.last_obs[agent_id]
        for agent_id in list(episode.tracks):
            term = bool(terminateds.get(agent_id, all_terminated))
            trunc = bool(truncateds.get(agent_id, episode_done and not term))
            if term or trunc:
                track = episode.tracks.pop(agent_id)
                fragments.append(track.fragment(episode, agent_id, track.rows,
                                                episode.last_obs[agent_id],
                                                self.config.clip_rewards, term, trunc))
        if self._recording:
            self._episode_hook("on_episode_step", e, self.env[e])
            if episode_done:
                self._episode_hook("on_episode_end", e, self.env[e])
                self._done_episodes.append(self._user_episodes[e])
        if episode_done:
            ended.append(episode.id_)
            module_returns: dict[str, float] = {}
            for agent_id, agent_return in episode.agent_returns.items():
                module_id = episode.agent_to_module.get(agent_id)
                if module_id is not None:
                    module_returns[module_id] = module_returns.get(module_id, 0.0) + agent_return
            self._log_episode(episode, episode.agent_returns, module_returns)
            self._episodes[e] = self._new_episode(e)

    def _cut(self, episode: OpenEpisode, fragments: list[Fragment]) -> None:
        """End of a sample() call: every open track up to its last row with a known next
        observation; a row still waiting for one moves into a fresh track for the next call."""
        for agent_id, track in list(episode.tracks.items()):
            carry = int(agent_id not in episode.obs)  # Acted; its next obs has not come yet.
            if track.rows > carry:
                last_obs = map_tree(lambda v: v[track.rows - 1], track.buf[Columns.OBS]) \
                    if carry else episode.last_obs[agent_id]
                fragments.append(track.fragment(episode, agent_id, track.rows - carry, last_obs,
                                                self.config.clip_rewards))
            del episode.tracks[agent_id]
            if carry:
                fresh = episode.tracks[agent_id] = _Track(track.sampler, track.explore)
                fresh.add_row(map_tree(lambda v: v[track.rows - 1:track.rows], track.buf), 0,
                              track.infos[-1])

    # ---- episodes, envs, observations -------------------------------------------------------

    def _module_of(self, episode: OpenEpisode, agent_id: Hashable) -> str:
        module_id = episode.agent_to_module.get(agent_id)
        if module_id is None:
            module_id = self.config.policy_mapping_fn(agent_id, episode)
            episode.agent_to_module[agent_id] = module_id
            if module_id not in self.module:
                raise KeyError(f"policy_mapping_fn mapped agent {agent_id!r} to module "
                               f"'{module_id}', which the runner's MultiRLModule does not hold "
                               f"(it holds {list(self.module.keys())}).")
            if self._initial_states[module_id]:
                episode.states[agent_id] = map_tree(torch.as_tensor,
                                                    self._initial_states[module_id])
        return module_id

    def _to_module(self, agent_id: Hashable, obs: Any) -> Any:
        """One agent's module-side observation (after the pipeline, if any): arrays of the
        buffer dtypes, nested as its observation space."""
        return map_tree(lambda p, v: np.asarray(v, p.dtype), self._obs_protos[agent_id], obs)

    def _through_pipeline(self, e: int, obs: dict) -> dict:
        """The env-to-module pipeline on env ``e``'s episode (which holds ``obs`` now):
        ``{agent_id: what its module sees}`` for the agents in ``obs``."""
        batch = self.connector(rl_module=self.module, batch={}, episodes=[self._user_episodes[e]],
                               explore=self._explore, shared_data=self._shared_data,
                               metrics=self._call_metrics)
        seen = {key[1]: items[-1] for key, items in batch.get(Columns.OBS, {}).items()}
        return {agent_id: seen.get(agent_id, raw) for agent_id, raw in obs.items()}

    def _new_episode(self, e: int, seed: int | None = None) -> OpenEpisode:
        """Reset env ``e``: its new episode (the old one's open tracks are dropped), and its
        episode object when recording."""
        env = self.env[e]
        name = f"EnvRunner {self.worker_index}: env {e}"
        raw_obs, reset_infos = reset_env(env, name, seed)
        if self._unchecked:
            check_observation(env, raw_obs, f"{name}, reset()")
        episode = OpenEpisode(e)
        if self._recording:
            user = self._user_episodes[e] = MultiAgentEpisode(
                episode.id_, agent_to_module_mapping_fn=self.config.policy_mapping_fn)
            user._agent_to_module = episode.agent_to_module  # One mapping for both.
            self._episode_hook("on_episode_created", e, env)
            user.add_env_reset(raw_obs, reset_infos)
            if self.connector:
                raw_obs = self._through_pipeline(e, raw_obs)
            self._episode_hook("on_episode_start", e, env)
        episode.last_obs = {aid: self._to_module(aid, raw) for aid, raw in raw_obs.items()}
        episode.obs = dict(episode.last_obs)
        return episode

    def _start_new_episodes(self) -> None:
        self._episodes = [self._new_episode(e) for e in range(self.num_envs)]

    def stop(self) -> None:
        for env in self.env:
            env.close()


def check_multi_agent_pipeline(pipeline: Any) -> None:
    """Multi-agent runners train on what the module saw; frame stacking, which keeps single
    frames in the episodes for its learner twin to restack, is single-agent only here."""
    for piece in pipeline.connectors:
        if isinstance(piece, FrameStackingEnvToModule):
            raise TypeError("FrameStackingEnvToModule runs in single-agent env runners only; "
                            "in a MultiAgentEnv stack frames in the env itself (e.g. "
                            "gymnasium.wrappers.FrameStackObservation on each agent's "
                            "observations).")
