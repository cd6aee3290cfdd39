"""Env-to-module pieces: they read the ongoing episodes (and may rewrite their latest
observation in place) and add the module's forward input to the batch.

Pieces that rewrite observations in the episode (FlattenObservations, MeanStdFilter,
PrevActionsPrevRewards, observation preprocessors) change what learners train on as well;
pieces that only add to the batch (FrameStackingEnvToModule) need their learner twin
(FrameStackingLearner) so that training sees what the module saw.
"""

from __future__ import annotations

import functools
from typing import Any, Hashable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlmodules.columns import Columns
from runners.connectors.connector_v2 import ConnectorV2
from runners.spaces import batch_observations, flatten_batch


class AddObservationsFromEpisodesToBatch(ConnectorV2):
    """Default last piece: each episode's latest observation under ``obs``, unless a piece
    before it already put observations there."""

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        if Columns.OBS not in batch:
            for episode in self.single_agent_episode_iterator(episodes):
                self.add_batch_item(batch, Columns.OBS, episode.get_observations(-1), episode)
        return batch


class _PerAgentSpaces(ConnectorV2):
    """A piece that maps each agent's observation space on its own: with ``multi_agent``
    its input space is a Dict keyed by agent id (``agent_ids`` limits it to those)."""

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, multi_agent: bool = False,
                 agent_ids: Sequence[Hashable] | None = None, **kwargs: Any) -> None:
        self.multi_agent = multi_agent
        self.agent_ids = None if agent_ids is None else set(agent_ids)
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def applies_to(self, agent_id: Hashable) -> bool:
        return not self.multi_agent or self.agent_ids is None or agent_id in self.agent_ids

    def agent_space(self, space: gym.Space | None, agent_id: Hashable) -> gym.Space | None:
        """The part of a (Dict-keyed-by-agent, with multi_agent) space for ``agent_id``."""
        if space is None or not self.multi_agent:
            return space
        return space[agent_id]

    def recompute_output_observation_space(self, input_observation_space: gym.Space,
                                           input_action_space: gym.Space) -> gym.Space:
        if not self.multi_agent:
            return self.recompute_agent_space(input_observation_space, input_action_space)
        return spaces.Dict({
            aid: (self.recompute_agent_space(s, self.agent_space(input_action_space, aid))
                  if self.applies_to(aid) else s)
            for aid, s in input_observation_space.spaces.items()})

    def recompute_agent_space(self, obs_space: gym.Space, act_space: gym.Space | None
                              ) -> gym.Space:
        return obs_space

    def rewrite_latest(self, episode: Any, new_obs: Any) -> None:
        episode.set_observations(at_indices=-1, new_data=new_obs)
        episode.observation_space = self.agent_space(self.observation_space, episode.agent_id)


class FlattenObservations(_PerAgentSpaces):
    """Every observation as one float32 vector: one-hot for Discrete and each MultiDiscrete
    component, flattened Box and MultiBinary, Dict and Tuple parts concatenated in space order
    (``gymnasium.spaces.flatten``'s layout), written back into the episode."""

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, multi_agent: bool = False,
                 agent_ids: Sequence[Hashable] | None = None,
                 as_learner_connector: bool = False, **kwargs: Any) -> None:
        if as_learner_connector:
            raise ValueError("FlattenObservations(as_learner_connector=True): flattening "
                             "happens on the env runners and is written into the episodes, "
                             "so learners already train on flat observations; drop it from "
                             "the learner connector.")
        super().__init__(input_observation_space, input_action_space,
                         multi_agent=multi_agent, agent_ids=agent_ids, **kwargs)

    def recompute_agent_space(self, obs_space: gym.Space, act_space: gym.Space | None
                              ) -> gym.Space:
        _check_flattenable(obs_space)
        flat = spaces.flatten_space(obs_space)
        return spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32),
                          dtype=np.float32)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes):
            if self.applies_to(episode.agent_id):
                space = self.agent_space(self.input_observation_space, episode.agent_id)
                obs = episode.get_observations(-1)
                self.rewrite_latest(episode,
                                    flatten_batch(batch_observations(space, [obs]), space)[0])
        return batch


def _check_flattenable(space: gym.Space, path: str = "") -> None:
    """Refuse, when the pipeline is built, a space whose observations ``flatten_batch``
    could not flatten at the first step (gymnasium's flatten_space takes e.g. Text)."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            _check_flattenable(sub, f"{path}[{key!r}]")
    elif isinstance(space, spaces.Tuple):
        for i, sub in enumerate(space.spaces):
            _check_flattenable(sub, f"{path}[{i}]")
    elif not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete,
                                spaces.MultiBinary)):
        raise TypeError(f"FlattenObservations cannot flatten observation space {space}"
                        + (f" at obs{path}" if path else "") + "; it handles Box, Discrete, "
                        "MultiDiscrete, MultiBinary, Dict and Tuple. Write your own ConnectorV2 "
                        "piece for this space.")


class _RunningStats:
    """Welford mean/variance of observations, kept as the merged stats of all runners
    (``base``) plus what this copy saw since the last merge (``delta``)."""

    def __init__(self, shape: tuple) -> None:
        self.base = _moments(shape)
        self.delta = _moments(shape)

    def push(self, x: np.ndarray) -> None:
        _push(self.delta, x)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        total = _merge(self.base, self.delta)  # Every step: no copies when one side is empty.
        if total["n"] > 1:
            return total["mean"], np.sqrt(total["m2"] / (total["n"] - 1))
        return total["mean"], np.ones_like(total["mean"])


def _moments(shape: tuple) -> dict[str, Any]:
    return {"n": 0, "mean": np.zeros(shape, np.float64), "m2": np.zeros(shape, np.float64)}


def _push(m: dict[str, Any], x: np.ndarray) -> None:
    m["n"] += 1
    d = x - m["mean"]
    m["mean"] = m["mean"] + d / m["n"]
    m["m2"] = m["m2"] + d * (x - m["mean"])


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Chan et al.'s parallel merge of two sets of Welford moments (one of them as it is
    when the other is empty)."""
    if b["n"] == 0:
        return a
    if a["n"] == 0:
        return b
    n = a["n"] + b["n"]
    d = b["mean"] - a["mean"]
    return {"n": n, "mean": a["mean"] + d * (b["n"] / n),
            "m2": a["m2"] + b["m2"] + d * d * (a["n"] * b["n"] / n)}


def _combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """All parts' moments merged, as a new dict."""
    return dict(functools.reduce(_merge, parts))


class MeanStdFilter(_PerAgentSpaces):
    """Observations normalized by their running mean and std (per agent with
    ``multi_agent``), clipped to [-clip_by_value, clip_by_value], written back into the
    episode (RLlib's arguments; ``update_stats=False`` normalizes with the statistics as
    they are, e.g. for inference).

    Each runner's copy counts what it saw since the last merge; ``merge_states`` of all
    runners' states (the algorithm does it every iteration and sends the result back to
    every runner, evaluation runners included) adds those counts to the shared statistics.
    The state is numpy arrays, saved in checkpoints.
    """

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, multi_agent: bool = False,
                 de_mean_to_zero: bool = True, de_std_to_one: bool = True,
                 clip_by_value: float | None = 10.0, update_stats: bool = True,
                 **kwargs: Any) -> None:
        self.de_mean_to_zero, self.de_std_to_one = de_mean_to_zero, de_std_to_one
        self.clip_by_value, self.update_stats = clip_by_value, update_stats
        self._stats: dict[str, _RunningStats] = {}
        super().__init__(input_observation_space, input_action_space, multi_agent=multi_agent,
                         **kwargs)

    def recompute_agent_space(self, obs_space: gym.Space, act_space: gym.Space | None
                              ) -> gym.Space:
        if not isinstance(obs_space, spaces.Box):
            raise TypeError(f"MeanStdFilter normalizes Box observations, not {obs_space}; "
                            "put FlattenObservations before it.")
        bound = np.inf if self.clip_by_value is None else float(self.clip_by_value)
        return spaces.Box(-bound, bound, obs_space.shape, np.float32)

    def _stats_for(self, agent_id: Hashable, shape: tuple) -> _RunningStats:
        key = str(agent_id) if self.multi_agent else "default"
        if key not in self._stats:
            self._stats[key] = _RunningStats(shape)
        return self._stats[key]

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes):
            if not self.applies_to(episode.agent_id):
                continue
            obs = np.asarray(episode.get_observations(-1), np.float64)
            stats = self._stats_for(episode.agent_id, obs.shape)
            if self.update_stats:
                stats.push(obs)
            mean, std = stats.mean_std()
            if self.de_mean_to_zero:
                obs = obs - mean
            if self.de_std_to_one:
                obs = obs / (std + 1e-8)
            if self.clip_by_value is not None:
                obs = np.clip(obs, -self.clip_by_value, self.clip_by_value)
            self.rewrite_latest(episode, obs.astype(np.float32))
        return batch

    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        return {key: {"base": dict(s.base), "delta": dict(s.delta)}
                for key, s in self._stats.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a state; after a merge (no deltas) this copy starts counting anew."""
        self._stats = {}
        for key, parts in state.items():
            stats = self._stats[key] = _RunningStats(np.shape(parts["base"]["mean"]))
            stats.base = {k: np.array(v) if k != "n" else int(v)
                          for k, v in parts["base"].items()}
            stats.delta = {k: np.array(v) if k != "n" else int(v)
                           for k, v in parts["delta"].items()}

    def reset_state(self) -> None:
        self._stats = {}

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """All copies share ``base`` (the last merge): the merged base adds every copy's
        ``delta``; the deltas start empty."""
        merged = {}
        for key in {k for s in states for k in s}:
            parts = [s[key] for s in states if key in s]
            base = max((p["base"] for p in parts), key=lambda b: int(b["n"]))
            total = _combine([_as_moments(base)] + [_as_moments(p["delta"]) for p in parts])
            merged[key] = {"base": total, "delta": _moments(np.shape(total["mean"]))}
        return merged


def _as_moments(m: dict[str, Any]) -> dict[str, Any]:
    return {"n": int(m["n"]), "mean": np.asarray(m["mean"], np.float64),
            "m2": np.asarray(m["m2"], np.float64)}


class PrevActionsPrevRewards(_PerAgentSpaces):
    """The observation becomes a dict of the original one (``_orig_obs``), the last
    ``n_prev_actions`` actions (one-hot for Discrete, zeros before the first) and the last
    ``n_prev_rewards`` rewards, written back into the episode. Put FlattenObservations after
    it for modules that take flat vectors."""

    ORIG_OBS_KEY = "_orig_obs"
    PREV_ACTIONS_KEY = "prev_n_actions"
    PREV_REWARDS_KEY = "prev_n_rewards"

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, multi_agent: bool = False,
                 n_prev_actions: int = 1, n_prev_rewards: int = 1, **kwargs: Any) -> None:
        self.n_prev_actions, self.n_prev_rewards = n_prev_actions, n_prev_rewards
        super().__init__(input_observation_space, input_action_space, multi_agent=multi_agent,
                         **kwargs)

    @property
    def required_lookback(self) -> int:  # type: ignore[override]
        return max(self.n_prev_actions, self.n_prev_rewards)

    def recompute_agent_space(self, obs_space: gym.Space, act_space: gym.Space | None
                              ) -> gym.Space:
        parts = {self.ORIG_OBS_KEY: obs_space}
        if self.n_prev_actions:
            size = self.n_prev_actions * _action_size(act_space)
            parts[self.PREV_ACTIONS_KEY] = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        if self.n_prev_rewards:
            parts[self.PREV_REWARDS_KEY] = spaces.Box(-np.inf, np.inf, (self.n_prev_rewards,),
                                                      np.float32)
        return spaces.Dict(parts)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes):
            if not self.applies_to(episode.agent_id):
                continue
            act_space = self.agent_space(self.input_action_space, episode.agent_id)
            new = {self.ORIG_OBS_KEY: episode.get_observations(-1)}
            if self.n_prev_actions:  # Those before the episode's first: zeros.
                k = self.n_prev_actions
                actions = episode.get_actions(slice(-k, None))
                none = [np.zeros(_action_size(act_space), np.float32)] * (k - len(actions))
                new[self.PREV_ACTIONS_KEY] = np.concatenate(
                    none + [_encode_action(a, act_space) for a in actions]).astype(np.float32)
            if self.n_prev_rewards:
                new[self.PREV_REWARDS_KEY] = np.asarray(episode.get_rewards(
                    slice(-self.n_prev_rewards, None), fill=0.0), np.float32)
            self.rewrite_latest(episode, new)
        return batch


def _action_size(space: gym.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return int(spaces.flatdim(space))


def _encode_action(action: Any, space: gym.Space) -> np.ndarray:
    if isinstance(space, spaces.Discrete):
        out = np.zeros(int(space.n), np.float32)
        out[int(action) - int(space.start)] = 1.0
        return out
    return np.asarray(spaces.flatten(space, action), np.float32)


class FrameStackingEnvToModule(_PerAgentSpaces):
    """The module sees the last ``num_frames`` observations concatenated along the last
    axis (zeros before the episode's first); episodes keep single frames, so add
    ``FrameStackingLearner(num_frames)`` as the learner connector."""

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *, num_frames: int = 1,
                 multi_agent: bool = False, **kwargs: Any) -> None:
        if num_frames < 1:
            raise ValueError(f"FrameStackingEnvToModule: num_frames={num_frames} must be >= 1.")
        self.num_frames = num_frames
        super().__init__(input_observation_space, input_action_space, multi_agent=multi_agent,
                         **kwargs)

    @property
    def required_lookback(self) -> int:  # type: ignore[override]
        return self.num_frames - 1

    def recompute_agent_space(self, obs_space: gym.Space, act_space: gym.Space | None
                              ) -> gym.Space:
        return stacked_space(obs_space, self.num_frames, type(self).__name__)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes):
            if not self.applies_to(episode.agent_id):
                continue
            frames = episode.get_observations(slice(-self.num_frames, None), fill=0.0)
            last = np.asarray(frames[-1])  # Zeros before the episode's first frame:
            frames = [np.broadcast_to(np.asarray(f, last.dtype), last.shape) for f in frames]
            self.add_batch_item(batch, Columns.OBS, np.concatenate(frames, axis=-1), episode)
        return batch


def stacked_space(space: gym.Space, num_frames: int, who: str) -> spaces.Box:
    """``space`` with ``num_frames`` copies concatenated along the last axis."""
    if not isinstance(space, spaces.Box) or not space.shape:
        raise TypeError(f"{who} stacks Box observations with at least one axis, not {space}.")
    low = np.concatenate([space.low] * num_frames, axis=-1)
    high = np.concatenate([space.high] * num_frames, axis=-1)
    return spaces.Box(low, high, dtype=space.dtype)


class SingleAgentObservationPreprocessor(ConnectorV2):
    """Subclass with ``preprocess(observation, episode)`` (and
    ``recompute_output_observation_space`` if it changes the space): each agent's latest
    observation is replaced in its episode by what ``preprocess`` returns."""

    def preprocess(self, observation: Any, episode: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  "preprocess(observation, episode).")

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes):
            episode.set_observations(at_indices=-1, new_data=self.preprocess(
                episode.get_observations(-1), episode))
            episode.observation_space = self.observation_space
        return batch


class MultiAgentObservationPreprocessor(ConnectorV2):
    """Subclass with ``preprocess(observations, episode)``: ``observations`` is
    ``{agent_id: latest observation}`` of the agents that just got one; the returned dict
    replaces them in the MultiAgentEpisode (agents left out keep theirs)."""

    def preprocess(self, observations: dict, episode: Any) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  "preprocess(observations, episode).")

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in episodes:
            if not hasattr(episode, "agent_episodes"):
                raise TypeError(f"{type(self).__name__} is a MultiAgentObservationPreprocessor "
                                "and needs a MultiAgentEnv; for a single-agent env subclass "
                                "SingleAgentObservationPreprocessor.")
            agents = list(self.single_agent_episode_iterator([episode]))
            new = self.preprocess({a.agent_id: a.get_observations(-1) for a in agents}, episode)
            for agent in agents:
                if agent.agent_id in new:
                    agent.set_observations(at_indices=-1, new_data=new[agent.agent_id])
        return batch


__all__ = ["AddObservationsFromEpisodesToBatch", "FlattenObservations", "MeanStdFilter",
           "PrevActionsPrevRewards", "FrameStackingEnvToModule",
           "SingleAgentObservationPreprocessor", "MultiAgentObservationPreprocessor",
           "stacked_space"]

