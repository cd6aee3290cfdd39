"""Env runners: act in envs with an inference-only MultiRLModule and return Fragments."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from rlmodules import DEFAULT_AGENT_ID, DEFAULT_MODULE_ID, Columns, MultiRLModule
from rlmodules.tree import map_tree
from runners.action_sampling import ActionSampler
from runners.callbacks import make_callbacks
from runners.config import EnvRunnerConfig
from runners.connectors import build_env_to_module, build_module_to_env
from runners.env_registry import EnvError, env_creator
from runners.episodes import SingleAgentEpisode
from runners.fragment import (Episode, Fragment, PackedFragments, concat_fragments,
                              pack_fragments)
from runners.metrics import log_count, log_episode, log_steps, with_defaults
from runners.metrics_logger import MetricsLogger
from runners.module_spec import fill_module_spec
from runners.spaces import batch_observations
from runners.vector_env import EnvVector
from runners.weights import held_digest, verify_loaded

logger = logging.getLogger(__name__)

# Episode-mode sampling gives up once envs raised this many times more than episodes asked for.
_MAX_ENV_ERRORS_PER_EPISODE = 10

# Hooks that need episode objects: with none of them used, the runner builds none.
EPISODE_HOOKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end",
                 "on_sample_end")


class EnvContext(dict):
    """RLlib's EnvContext: the env_config dict, plus where the env runs (env creators get
    one; so does ``on_environment_created``)."""

    def __init__(self, env_config: dict, worker_index: int, num_workers: int,
                 vector_index: int = 0) -> None:
        super().__init__(env_config)
        self.worker_index = worker_index
        self.num_workers = num_workers
        self.vector_index = vector_index
        self.remote = worker_index > 0


def clip_rewards(rewards: np.ndarray, clip: bool | float | None) -> np.ndarray:
    """``rewards`` clipped as ``clip_rewards`` says (True: sign, c: to [-c, c]), in place."""
    if clip is True:
        np.sign(rewards, out=rewards)
    elif clip:
        np.clip(rewards, -clip, clip, out=rewards)
    return rewards


class EnvRunner:
    """What the single- and multi-agent runners share: seeding, module and weights, metrics,
    state and whole-episode sampling.

    ``worker_index`` 0 is the in-process runner; remote runners are 1..N. Each derives its own
    seed (``seed + 1000 * worker_index``, env ``i`` adding ``i``) and seeds torch with it.

    ``self.metrics`` (a MetricsLogger) holds the built-in stats and whatever callbacks log;
    a sample() call whose ``explore`` differs from ``config.explore`` (e.g. a greedy look at
    a training runner) counts in none of them: its callbacks get a scratch logger. Episode
    objects (``runners.episodes``) are built only for callbacks that use episode hooks.
    """

    def __init__(self, config: EnvRunnerConfig, worker_index: int = 0):
        self.config = config
        self.worker_index = worker_index
        self.num_envs = config.num_envs_per_env_runner
        if worker_index > 0:  # A Ray actor: its own process, sized by num_cpus_per_env_runner.
            torch.set_num_threads(config.num_torch_threads)
        self.seed = None if config.seed is None else config.seed + 1000 * worker_index
        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.metrics = MetricsLogger()
        self._call_metrics = self.metrics  # The current sample() call's (scratch if not counted).
        self._episodes_to_log: int | None = None  # Episodes sample(num_episodes=N) still counts.
        self.callbacks = make_callbacks(config.callbacks_class, config.callbacks_hooks)
        self._recording = any(self.callbacks.uses(hook) for hook in EPISODE_HOOKS)
        self._lookback = 0  # Past steps the episodes keep across sample() calls.
        self._explore = config.explore  # The current sample() call's (connectors get it).
        self._user_episodes: list[Any] = []  # Per env, when recording.
        self._done_episodes: list[Any] = []  # Completed in the current sample() call.
        self._num_env_errors = 0
        self.weights_seq_no = 0
        self.connector: Any = None  # The env-to-module pipeline (None: the fast path).
        self.module_to_env: Any = None
        self._shared_data: dict = {}  # What connector pieces share across calls.
        self.module: MultiRLModule | None = None
        self._make_env = env_creator(config.env)

    def _env_context(self, vector_index: int = 0) -> EnvContext:
        return EnvContext(self.config.env_config, self.worker_index, self.config.num_env_runners,
                          vector_index)

    def _environment_created(self, env: Any) -> None:
        self.callbacks.call("on_environment_created", env_runner=self,
                            metrics_logger=self.metrics, env=env,
                            env_context=self._env_context())

    def _episode_hook(self, hook: str, env_index: int, env: Any) -> None:
        if self.callbacks.uses(hook):
            self.callbacks.call(hook, episode=self._user_episodes[env_index], env_runner=self,
                                metrics_logger=self._call_metrics, env=env,
                                env_index=env_index, rl_module=self.module)

    def _log_episode(self, episode: Episode, agent_returns: dict, module_returns: dict) -> None:
        if self._episodes_to_log is not None:  # sample(num_episodes=N) counts the N it returns.
            if self._episodes_to_log == 0:
                return
            self._episodes_to_log -= 1
        log_episode(self._call_metrics, self.config.metrics_num_episodes_for_smoothing,
                    len(episode), episode.get_return(), time.perf_counter() - episode.started_at,
                    agent_returns, module_returns)

    def _build_module(self, env: Any) -> MultiRLModule:
        """The inference-only module for ``env``'s spaces as the connector presents them."""
        module = fill_module_spec(self.config, env, self.connector).as_inference_only().build()
        return module.eval()

    # ---- sampling ---------------------------------------------------------------------------

    def sample(self, num_timesteps: int | None = None, num_episodes: int | None = None,
               explore: bool | None = None, random_actions: bool = False) -> list[Fragment]:
        """Fragments of at least ``num_timesteps`` env steps (over all envs; default:
        rollout_fragment_length per env), or exactly ``num_episodes`` complete episodes.

        Timestep sampling carries episodes on across calls (with batch_mode=
        "complete_episodes" it returns whole episodes instead, see
        ``_sample_complete_episodes``); episode sampling starts every env on a fresh episode
        and returns each episode whole (one fragment per agent).
        ``explore`` defaults to ``config.explore``; a call with the other value is not
        counted in ``self.metrics``. ``on_sample_end`` gets the episode chunks of this call.
        """
        if num_timesteps is not None and num_episodes is not None:
            raise ValueError("sample(): pass num_timesteps or num_episodes, not both.")
        explore = self.config.explore if explore is None else explore
        self._call_metrics = self.metrics if explore == self.config.explore else MetricsLogger()
        self._done_episodes = []
        steps = self.config.rollout_fragment_length if num_timesteps is None else \
            max(1, math.ceil(num_timesteps / self.num_envs))
        if num_episodes is not None or self.config.batch_mode == "complete_episodes":
            fragments = self._sample_episodes(num_episodes, explore, random_actions) \
                if num_episodes is not None else \
                self._sample_complete_episodes(steps * self.num_envs, explore, random_actions)
            keep = {fragment.episode_id for fragment in fragments}
            samples = [e for e in self._done_episodes if e.id_ in keep]
        else:
            fragments = self._collect(steps, explore, random_actions)[0]
            samples = self._done_episodes + [e for e in self._user_episodes if len(e)]
            self._user_episodes = [e.cut(self._lookback) if len(e) else e
                                   for e in self._user_episodes]
        if self.callbacks.uses("on_sample_end"):
            self.callbacks.call("on_sample_end", env_runner=self,
                                metrics_logger=self._call_metrics, samples=samples)
        self._call_metrics = self.metrics
        return fragments

    def sample_packed(self, **kwargs: Any) -> PackedFragments:
        """``sample(**kwargs)`` packed for the trip to the driver (what Ray groups call)."""
        return pack_fragments(self.sample(**kwargs))

    def _sample_episodes(self, num_episodes: int, explore: bool,
                         random_actions: bool) -> list[Fragment]:
        self._start_new_episodes()
        self._episodes_to_log = num_episodes
        try:
            return self._collect_episodes(num_episodes, explore, random_actions)
        finally:
            self._episodes_to_log = None

    def _collect_episodes(self, num_episodes: int, explore: bool,
                          random_actions: bool) -> list[Fragment]:
        pieces: dict[tuple, list[Fragment]] = {}  # (episode_id, agent_id) -> in order
        ended: list[str] = []
        errors_before = self._num_env_errors
        while len(ended) < num_episodes:
            fragments, ended_now = self._collect(self.config.rollout_fragment_length, explore,
                                                 random_actions)
            for fragment in fragments:
                pieces.setdefault((fragment.episode_id, fragment.agent_id), []).append(fragment)
            ended += ended_now
            errors = self._num_env_errors - errors_before
            if errors > _MAX_ENV_ERRORS_PER_EPISODE * (num_episodes + 1):
                raise EnvError(f"EnvRunner {self.worker_index}: the env raised in {errors} "
                               f"episodes while {len(ended)} of {num_episodes} completed; see "
                               "the logged errors.")
        keep = set(ended[:num_episodes])
        return [concat_fragments(p) for (episode_id, _), p in pieces.items() if episode_id in keep]

    def _sample_complete_episodes(self, num_timesteps: int, explore: bool,
                                  random_actions: bool) -> list[Fragment]:
        """batch_mode="complete_episodes": every env on a new episode, then chunks of
        rollout_fragment_length until ``num_timesteps`` env steps are sampled and every
        episode begun by then has ended; returns those episodes whole (one fragment per
        agent). Keeping all of them, not only the first to end, keeps long episodes from
        being under-represented; episodes lost to an env error are left out."""
        self._start_new_episodes()
        pieces: dict[tuple, list[Fragment]] = {}  # (episode_id, agent_id) -> in order
        ended: set[str] = set()
        kept: set[str] | None = None  # The episodes begun before num_timesteps was reached.
        sampled = 0
        while True:
            fragments, ended_now = self._collect(self.config.rollout_fragment_length, explore,
                                                 random_actions)
            for fragment in fragments:
                pieces.setdefault((fragment.episode_id, fragment.agent_id), []).append(fragment)
            ended.update(ended_now)
            sampled += self.config.rollout_fragment_length * self.num_envs
            if kept is None and sampled >= num_timesteps:
                kept = {episode_id for episode_id, _ in pieces}
            going_on = {fragment.episode_id for fragment in fragments} - ended
            if kept is not None and not kept & going_on:
                return [concat_fragments(p) for (episode_id, _), p in pieces.items()
                        if episode_id in kept and episode_id in ended]

    def _collect(self, num_steps: int, explore: bool,
                 random_actions: bool) -> tuple[list[Fragment], list[str]]:
        """``num_steps`` steps of every env: the fragments, and the ids of episodes that ended."""
        raise NotImplementedError

    def _start_new_episodes(self) -> None:
        raise NotImplementedError

    def _drop_failed_episode(self, env_index: int, err: Exception) -> None:
        """Env ``env_index`` raised in step() and was rebuilt: its unfinished episode is not
        returned (the caller starts a new one)."""
        logger.warning("EnvRunner %d: env %d raised in step(); its episode is dropped and the "
                       "env rebuilt: %r", self.worker_index, env_index, err)
        self._num_env_errors += 1
        log_count(self._call_metrics, "num_env_errors", 1)

    # ---- weights, metrics, state ------------------------------------------------------------

    def set_weights(self, weights: dict[str, dict[str, Any]], weights_seq_no: int | None = None,
                    digest: dict[str, str] | None = None) -> int:
        """Load ``{module_id: {param: array}}`` and check it against ``digest`` (from
        ``runners.weights.weights_digest``); returns the weights version now in use. A
        version this runner holds already (same number, and the module matches ``digest``:
        after a restore a number may come again with other weights) is not loaded again."""
        if digest is not None and weights_seq_no == self.weights_seq_no and \
                held_digest(self.module, weights) == digest:
            return self.weights_seq_no
        self.module.set_state(weights)
        if digest is not None:
            verify_loaded(self.module, weights, digest, f"EnvRunner {self.worker_index}")
        self.weights_seq_no = self.weights_seq_no + 1 if weights_seq_no is None else weights_seq_no
        return self.weights_seq_no

    def get_metrics(self) -> dict[str, Any]:
        """``self.metrics`` reduced: episode stats over the last
        ``metrics_num_episodes_for_smoothing`` episodes, counts since the last call and over
        the lifetime, and what callbacks logged."""
        return with_defaults(self.metrics.reduce())

    def get_state(self) -> dict[str, Any]:
        return {"rl_module": self.module.get_state(),
                "connector": self.get_connector_state(),
                "weights_seq_no": self.weights_seq_no, "metrics": self.metrics.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load any subset of ``get_state()``'s keys."""
        if "rl_module" in state:
            self.module.set_state(state["rl_module"])
        if state.get("connector"):
            self.set_connector_state(state["connector"])
        self.weights_seq_no = int(state.get("weights_seq_no", self.weights_seq_no))
        if "metrics" in state:
            self.metrics.set_state(state["metrics"])

    def get_connector_state(self) -> dict[str, Any]:
        """The connector pipelines' states (``{}`` without stateful pieces)."""
        state = {}
        for name, pipeline in (("env_to_module", self.connector),
                               ("module_to_env", self.module_to_env)):
            if pipeline is not None and pipeline.get_state():
                state[name] = pipeline.get_state()
        return state

    def merge_connector_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge the connector states of several runners (this one's among them) with this
        runner's pipelines, load the result and return it. Every runner merging the same
        states gets the same result, so a group does it in one round."""
        merged = {}
        for name, pipeline in (("env_to_module", self.connector),
                               ("module_to_env", self.module_to_env)):
            parts = [state[name] for state in states if name in state]
            if pipeline is not None and parts:
                merged[name] = pipeline.merge_states(parts)
        self.set_connector_state(merged)
        return merged

    def set_connector_state(self, state: dict[str, Any]) -> None:
        for name, pipeline in (("env_to_module", self.connector),
                               ("module_to_env", self.module_to_env)):
            if pipeline is not None and name in state:
                pipeline.set_state(state[name])

    def apply(self, fn: Callable[["EnvRunner"], Any]) -> Any:
        """``fn(self)``: how EnvRunnerGroup.foreach_env_runner reaches remote runners."""
        return fn(self)

    def stop(self) -> None:
        raise NotImplementedError


class SingleAgentEnvRunner(EnvRunner):
    """Steps ``num_envs_per_env_runner`` copies of a gymnasium env with one batched forward
    pass per vector step, writing into preallocated [T, num_envs, ...] buffers."""

    def __init__(self, config: EnvRunnerConfig, worker_index: int = 0):
        super().__init__(config, worker_index)
        self.env = EnvVector(lambda i: self._make_env(self._env_context(i)), self.num_envs)
        self._environment_created(self.env)
        self.connector = build_env_to_module(config, self.env.envs[0])
        self.module_to_env = build_module_to_env(config, self.env.envs[0])
        self._raw_space = self.env.single_observation_space
        self._module_space = self.connector.observation_space if self.connector else \
            self._raw_space
        self._module_proto = observation_prototype(self._module_space, env_name=config.env)
        # What fragments store: the module's input, or with connectors the episodes'
        # observations as the pieces left them (read from the first reset's).
        self._obs_proto = None if self.connector else self._module_proto
        self._module_in: dict[str, Any] = {}  # Connector path: the next forward's input.
        if self.connector or self.module_to_env:
            self._recording = True  # Connectors read the episode objects.
            self._lookback = max(config.episode_lookback_horizon,
                                 self.connector.required_lookback if self.connector else 0)
        self._nested_obs = not isinstance(self._module_proto, np.ndarray)
        self.module = self._build_module(self.env.envs[0])
        sub_module = self.module[DEFAULT_MODULE_ID]
        self._sampler = ActionSampler(sub_module, DEFAULT_MODULE_ID, self.env.single_action_space,
                                      normalize_actions=config.normalize_actions,
                                      clip_actions=config.clip_actions)
        self._initial_state = sub_module.get_initial_state()
        self._state = {k: torch.stack([torch.as_tensor(v)] * self.num_envs)
                       for k, v in self._initial_state.items()}
        self.env.action_space.seed(self.seed)  # For random_actions.
        self._episodes = [Episode(i) for i in range(self.num_envs)]
        self._reset_all(seed=self.seed)

    def _collect(self, num_steps: int, explore: bool,
                 random_actions: bool) -> tuple[list[Fragment], list[str]]:
        T, N = num_steps, self.num_envs
        obs = map_tree(lambda p: np.empty((T + 1, N, *p.shape), p.dtype), self._obs_proto)
        write_row(obs, 0, self._obs)
        rewards = np.empty((T, N), np.float32)
        terminateds, truncateds = np.empty((T, N), bool), np.empty((T, N), bool)
        infos = np.empty((T + 1, N), object)  # infos[t]: those that came with obs[t].
        infos[0] = self._infos
        buf: dict[str, Any] = {Columns.OBS: obs, Columns.REWARDS: rewards,
                               Columns.TERMINATEDS: terminateds, Columns.TRUNCATEDS: truncateds}
        if self._state and not random_actions:
            buf[Columns.STATE_IN] = {k: np.empty((T, *v.shape), v.numpy().dtype)
                                     for k, v in self._state.items()}
        module_cols: dict[str, Any] | None = None  # Allocated after the first forward.
        pieces: list[tuple[Fragment, tuple]] = []  # With its rows' index into the buffers.
        ended: list[str] = []
        forward, env_actions_of, step_envs = (self._forward_fn(explore),
                                              self._sampler.env_actions, self.env.step)
        self._explore = explore
        for t in range(T):
            if random_actions:
                step_cols = {Columns.ACTIONS: self.env.action_space.sample()}
            else:
                module_in = self._module_in if self.connector else \
                    {Columns.OBS: map_tree(lambda v: v[t], obs)}
                step_cols = self._act(forward, module_in, explore, buf.get(Columns.STATE_IN), t)
            if self.module_to_env:
                step_cols = self._run_module_to_env(step_cols, explore)
            env_actions = env_actions_of(step_cols, random_actions)
            if module_cols is None:
                module_cols = map_tree(lambda v: np.empty((T, *v.shape), v.dtype), step_cols)
            elif step_cols.keys() != module_cols.keys():
                raise ValueError(
                    f"Module '{DEFAULT_MODULE_ID}' ({type(self._sampler.module).__name__}) "
                    f"returned {sorted(step_cols)} at step {t} but {sorted(module_cols)} at the "
                    "first step of this sample() call; return the same keys on every step.")
            for key, value in step_cols.items():
                write_row(module_cols[key], t, value)
            next_obs, final_obs, errors = step_envs(env_actions, rewards[t],
                                                    terminateds[t], truncateds[t], infos[t + 1])
            if self.connector:
                self._connector_step(t, step_cols, next_obs, final_obs, errors, buf,
                                     infos[t + 1], pieces, ended)
            else:
                write_row(obs, t + 1, self._to_module(next_obs))
                if final_obs or errors:
                    self._end_episodes(t, final_obs, errors, buf, pieces, ended)
                if self._recording:
                    self._record_step(t, step_cols, next_obs, final_obs, errors, buf,
                                      infos[t + 1])
            for i, info in self.env.reset_infos.items():  # The next obs is a reset's.
                infos[t + 1, i] = info
        log_steps(self._call_metrics, T * N, {DEFAULT_AGENT_ID: T * N}, {DEFAULT_MODULE_ID: T * N})
        if explore:
            self._sampler.add_logp(module_cols, (T, N))
        buf.update(module_cols)
        self._obs = map_tree(lambda v: v[T].copy(), obs)
        self._infos = infos[T].copy()
        for episode in self._episodes:
            if episode.start < T:  # The episode goes on in the next call.
                last_obs = map_tree(lambda v: v[T, episode.env_index], obs)
                pieces.append(self._end_piece(episode, T, rewards, last_obs))
            episode.start = 0
        clip_rewards(rewards, self.config.clip_rewards)  # Returns were summed unclipped.
        for fragment, rows in pieces:  # Every column is filled now.
            fragment.columns = map_tree(lambda v: v[rows], buf)
            fragment.columns[Columns.INFOS] = infos[rows].tolist()
        return [fragment for fragment, _ in pieces], ended

    # ---- the connector path -----------------------------------------------------------------

    def _connector_step(self, t: int, step_cols: dict[str, Any], next_obs: list[Any],
                        final_obs: dict[int, Any], errors: list[tuple[int, Exception]],
                        buf: dict[str, Any], step_infos: np.ndarray,
                        pieces: list[tuple[Fragment, tuple]], ended: list[str]) -> None:
        """Step ``t`` into the episodes, then the env-to-module pipeline: once on the
        episodes that just ended (so their final observations are processed as every other
        one, e.g. by a filter, before their fragments take them), then on every env's
        ongoing episode (new ones from their reset observation) for the next forward."""
        failed = {i for i, _ in errors}
        for i, err in errors:
            self._drop_failed_episode(i, err)
            self._start_episode(i, start=t + 1)
        for i in range(self.num_envs):
            if i not in failed:
                self._add_env_step(i, t, step_cols, final_obs.get(i, next_obs[i]), buf,
                                   step_infos[i])
        done = [i for i in final_obs if i not in failed]
        if done:
            self._env_to_module([self._user_episodes[i] for i in done])
        for i in done:
            user, episode = self._user_episodes[i], self._episodes[i]
            pieces.append(self._end_piece(episode, t + 1, buf[Columns.REWARDS],
                                          map_tree(lambda v: v[0], self._episode_obs([user])),
                                          user.is_terminated, user.is_truncated))
            ended.append(episode.id_)
            self._log_episode(episode, {DEFAULT_AGENT_ID: episode.get_return()},
                              {DEFAULT_MODULE_ID: episode.get_return()})
            self._episode_hook("on_episode_step", i, self.env)
            self._episode_hook("on_episode_end", i, self.env)
            self._done_episodes.append(user)
            self._start_episode(i, start=t + 1)
        fresh = failed.union(done)
        for i in fresh:
            self._new_user_episode(i, next_obs[i], start_hook=False)
        self._env_to_module(self._user_episodes)
        write_row(buf[Columns.OBS], t + 1, self._episode_obs(self._user_episodes))
        for i in range(self.num_envs):  # Hooks see the observations as the pieces left them.
            self._episode_hook("on_episode_start" if i in fresh else "on_episode_step", i,
                               self.env)

    def _env_to_module(self, episodes: list[SingleAgentEpisode]) -> None:
        """Run the env-to-module pipeline on ``episodes``; for all envs' episodes, keep its
        batch (one row per env) as the next forward's input."""
        batch = self.connector(rl_module=self.module[DEFAULT_MODULE_ID], batch={},
                               episodes=episodes, explore=self._explore,
                               shared_data=self._shared_data, metrics=self._call_metrics)
        if len(episodes) < self.num_envs:
            return
        module_in = {}
        for column, items in batch.items():
            try:
                rows = [items[(episode.id_,)][-1] for episode in episodes]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"The env-to-module pipeline {self.connector!r} left column {column!r} "
                    "without one item per episode; add items with "
                    "ConnectorV2.add_batch_item(batch, column, item, episode).") from None
            if column == Columns.OBS:
                module_in[column] = map_tree(lambda p, v: np.asarray(v, p.dtype),
                                             self._module_proto,
                                             batch_observations(self._module_space, rows))
            else:
                module_in[column] = map_tree(lambda *xs: np.stack(xs), *rows)
        self._module_in = module_in

    def _episode_obs(self, episodes: list[SingleAgentEpisode]) -> Any:
        """The episodes' latest observations (as the pieces left them) stacked as the
        fragments store them."""
        latest = [episode.get_observations(-1) for episode in episodes]
        if self._obs_proto is None:  # The first reset: the layout for the buffers.
            self._obs_proto = map_tree(
                lambda v: np.zeros(np.shape(v), np.float32 if np.issubdtype(
                    np.asarray(v).dtype, np.floating) else np.asarray(v).dtype), latest[0])
        return map_tree(lambda p, *xs: np.stack(xs).astype(p.dtype, copy=False),
                        self._obs_proto, *latest)

    def _run_module_to_env(self, step_cols: dict[str, Any], explore: bool) -> dict[str, Any]:
        batch = self.module_to_env(rl_module=self.module[DEFAULT_MODULE_ID],
                                   batch=dict(step_cols), episodes=self._user_episodes,
                                   explore=explore, shared_data=self._shared_data,
                                   metrics=self._call_metrics)
        return batch

    def _record_step(self, t: int, step_cols: dict[str, Any], next_obs: list[Any],
                     final_obs: dict[int, Any], errors: list[tuple[int, Exception]],
                     buf: dict[str, Any], step_infos: np.ndarray) -> None:
        """Step ``t`` into the episode objects, with their callbacks (only when recording)."""
        failed = {i for i, _ in errors}
        for i, episode in enumerate(self._user_episodes):
            if i in failed:  # Its episode was dropped.
                self._new_user_episode(i, next_obs[i])
                continue
            self._add_env_step(i, t, step_cols, final_obs.get(i, next_obs[i]), buf,
                               step_infos[i])
            self._episode_hook("on_episode_step", i, self.env)
            if episode.is_done:
                self._episode_hook("on_episode_end", i, self.env)
                self._done_episodes.append(episode)
                self._new_user_episode(i, next_obs[i])

    def _add_env_step(self, i: int, t: int, step_cols: dict[str, Any], obs: Any,
                      buf: dict[str, Any], info: dict) -> None:
        """Env ``i``'s step ``t`` (reaching ``obs``) into its episode object."""
        row = {k: map_tree(lambda v: v[i], col) for k, col in step_cols.items()}
        self._user_episodes[i].add_env_step(
            obs, row.pop(Columns.ACTIONS), buf[Columns.REWARDS][t, i], info,
            terminated=buf[Columns.TERMINATEDS][t, i], truncated=buf[Columns.TRUNCATEDS][t, i],
            extra_model_outputs=row)

    def _new_user_episode(self, i: int, raw_obs: Any, start_hook: bool = True) -> None:
        """The episode object of env ``i``'s new episode, from its reset observation
        (``on_episode_start`` is the caller's with connectors: after the pipeline ran)."""
        self._user_episodes[i] = SingleAgentEpisode(self._episodes[i].id_,
                                                    module_id=DEFAULT_MODULE_ID)
        self._episode_hook("on_episode_created", i, self.env)
        self._user_episodes[i].add_env_reset(raw_obs, self.env.reset_infos.get(i))
        if start_hook:
            self._episode_hook("on_episode_start", i, self.env)

    def _end_episodes(self, t: int, final_obs: dict[int, Any], errors: list[tuple[int, Exception]],
                      buf: dict[str, Any], pieces: list[tuple[Fragment, tuple]],
                      ended: list[str]) -> None:
        """Close the episodes step ``t`` ended or lost to an env error; new ones start at t+1."""
        for i, err in errors:
            self._drop_failed_episode(i, err)
            self._start_episode(i, start=t + 1)
        for i, raw in final_obs.items():
            episode = self._episodes[i]
            last_obs = map_tree(lambda v: v[0], self._module_obs([raw]))
            pieces.append(self._end_piece(episode, t + 1, buf[Columns.REWARDS], last_obs,
                                          bool(buf[Columns.TERMINATEDS][t, i]),
                                          bool(buf[Columns.TRUNCATEDS][t, i])))
            ended.append(episode.id_)
            self._log_episode(episode, {DEFAULT_AGENT_ID: episode.get_return()},
                              {DEFAULT_MODULE_ID: episode.get_return()})
            self._start_episode(i, start=t + 1)

    def _end_piece(self, episode: Episode, stop: int, rewards: np.ndarray, last_obs: Any,
                   terminated: bool = False, truncated: bool = False) -> tuple[Fragment, tuple]:
        """The episode's rows up to ``stop`` in this call, their steps added to the episode;
        with a lookback, a piece that goes on from the last call gets the observations
        before it (what its episode object kept)."""
        rows = (slice(episode.start, stop), episode.env_index)
        t_started = episode.length
        episode.add_steps(stop - episode.start, rewards[rows].sum())
        fragment = episode.fragment(DEFAULT_MODULE_ID, {}, last_obs, terminated, truncated,
                                    t_started=t_started)
        if self._lookback and episode.start == 0 and t_started:
            user = self._user_episodes[episode.env_index]
            before = user.get_observations(slice(-self._lookback, 0), neg_index_as_lookback=True)
            if before:
                fragment.lookback_obs = map_tree(
                    lambda p, *xs: np.stack(xs).astype(p.dtype, copy=False), self._obs_proto,
                    *before)
        return fragment, rows

    def _forward_fn(self, explore: bool) -> Callable[[dict], dict]:
        """The sub-module's forward_exploration/forward_inference, batch -> output."""
        name = "forward_exploration" if explore else "forward_inference"
        if type(self.module) is MultiRLModule:  # It only routes: skip that layer every step.
            return getattr(self.module[DEFAULT_MODULE_ID], name)
        multi_forward = getattr(self.module, name)
        return lambda batch: multi_forward({DEFAULT_MODULE_ID: batch})[DEFAULT_MODULE_ID]

    def _act(self, forward: Callable[[dict], dict], module_in: dict[str, Any], explore: bool,
             state_in: dict | None, t: int) -> dict[str, Any]:
        """One batched forward pass on ``module_in`` (numpy columns, a row per env: the obs
        buffers' row ``t``, or the env-to-module pipeline's batch); the step's module
        columns. Nested obs reach the module in fresh dicts/tuples (it may pop keys, e.g. an
        action mask) of tensors that share the numpy memory."""
        batch: dict[str, Any] = {k: map_tree(torch.from_numpy, v) for k, v in module_in.items()}
        if self._state:
            for key, value in self._state.items():
                state_in[key][t] = value.numpy()
            batch = {**{k: map_tree(lambda v: v.unsqueeze(1), v) for k, v in batch.items()},
                     Columns.STATE_IN: self._state}
        out = forward(batch)
        if self._state:
            self._state = stateful_output(out, self._sampler.module)
        return self._sampler.columns(out, explore, self.num_envs)

    def _to_module(self, raw_obs: list[Any]) -> Any:
        """Module-side observations of all envs (no connectors): what ``write_row`` takes
        (a plain Box's stay a list, numpy stacks it while writing)."""
        return batch_observations(self._raw_space, raw_obs) if self._nested_obs else raw_obs

    def _module_obs(self, raw_obs: list[Any]) -> Any:
        """``_to_module(raw_obs)`` as arrays [n, ...] of the buffers' dtypes (a copy)."""
        return map_tree(lambda p, v: np.array(v, p.dtype), self._obs_proto,
                        self._to_module(raw_obs))

    def _start_episode(self, i: int, start: int = 0) -> None:
        """A new episode in env ``i`` from buffer row ``start`` on, with the initial state."""
        self._episodes[i] = Episode(i, start=start)
        for key, value in self._state.items():
            value[i] = torch.as_tensor(self._initial_state[key])

    def _reset_all(self, seed: int | None = None) -> None:
        """Every env on a new episode (and its episode object, when recording)."""
        raw_obs = self.env.reset(seed=seed)
        self._infos = np.empty(self.num_envs, object)
        self._infos[:] = [self.env.reset_infos[i] for i in range(self.num_envs)]
        if self._recording:
            self._user_episodes = [None] * self.num_envs
        for i in range(self.num_envs):
            self._start_episode(i)
            if self._recording:
                self._new_user_episode(i, raw_obs[i], start_hook=not self.connector)
        if self.connector:
            self._env_to_module(self._user_episodes)
            self._obs = self._episode_obs(self._user_episodes)
            for i in range(self.num_envs):
                self._episode_hook("on_episode_start", i, self.env)
        else:
            self._obs = self._module_obs(raw_obs)

    def _start_new_episodes(self) -> None:
        self._reset_all()

    def stop(self) -> None:
        self.env.close()


def observation_prototype(space: gym.Space, env_name: Any, path: str = "") -> Any:
    """One module-side observation of ``space`` as zeros of the runner's buffer dtypes
    (floats kept as float32), nested as the space: dicts for Dict, tuples for Tuple."""
    if isinstance(space, gym.spaces.Dict):
        return {k: observation_prototype(s, env_name, f"{path}[{k!r}]")
                for k, s in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(observation_prototype(s, env_name, f"{path}[{i}]")
                     for i, s in enumerate(space.spaces))
    if not isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                              gym.spaces.MultiBinary)):
        raise TypeError(
            f"Env {env_name!r} has observation space {space}" + (f" at obs{path}" if path else "")
            + ", which the runner cannot batch into arrays. Configure an env_to_module_connector "
            "that returns arrays, e.g. lambda env, spaces, device: FlattenObservations() "
            "(runners.connectors).")
    dtype = np.dtype(np.float32) if np.issubdtype(space.dtype, np.floating) else space.dtype
    return np.zeros(space.shape, dtype)


def write_row(buffers: Any, row: int, value: Any) -> None:
    """``buffers[row] = value`` for an array or, leaf by leaf, a dict/tuple tree of arrays."""
    if isinstance(buffers, np.ndarray):
        buffers[row] = value
    else:
        map_tree(lambda b, v: b.__setitem__(row, v), buffers, value)


def stateful_output(out: dict[str, Any], module: Any) -> dict[str, torch.Tensor]:
    """The recurrent state a stateful module returned, checked to be there."""
    state = out.get(Columns.STATE_OUT)
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"{type(module).__name__} is stateful (get_initial_state() is not empty) but its "
            f"forward pass returned no '{Columns.STATE_OUT}' dict (got keys {sorted(out)}); "
            f"return the next state as {{{Columns.STATE_OUT}: {{key: [B, ...] tensor}}}}.")
    return state
