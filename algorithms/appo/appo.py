"""APPO: asynchronous PPO (IMPACT, Luo et al. 2020). Env runners sample all the time with
slightly old weights; the learner trains on batches as they fill, from a circular buffer;
V-trace and a target network keep the update sound for data of older policies."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from algorithms.algorithm import (ENV_RUNNER_SAMPLING_TIMER, LEARNER_UPDATE_TIMER,
                                  SYNCH_WORKER_WEIGHTS_TIMER, Algorithm, merge_update_results)
from algorithms.algorithm_config import AlgorithmConfig, Builder, TrainingSettings
from algorithms.appo.appo_torch_learner import APPOTorchLearner
from algorithms.appo.default_appo_rl_module import DefaultAPPOTorchRLModule
from algorithms.ppo.ppo_catalog import PPOCatalog
from learners import ALL_MODULES
from learners.learner_group import PendingUpdate
from rlmodules import RLModuleSpec
from runners.config import BOOL, NON_NEGATIVE, POSITIVE, UNIT, int_at_least, or_schedule, setting
from runners.fragment import Fragment, count_env_steps

POLL_S = 0.002
"""While an update runs, how long the driver waits for samples before it looks again."""


@dataclass
class APPOTrainingSettings(TrainingSettings):
    """Optimization settings, APPO's own keys included (RLlib's names and defaults)."""

    vtrace: bool = setting(True, BOOL, "V-trace value targets and advantages, corrected for "
                           "the older weights the data was sampled with; False: GAE (lambda_) "
                           "as if the data were on-policy")
    vtrace_clip_rho_threshold: float = setting(
        1.0, POSITIVE, "V-trace's rho-bar: the importance weights of the value targets are "
        "clipped there")
    vtrace_clip_pg_rho_threshold: float = setting(
        1.0, POSITIVE, "the importance weights of the policy-gradient advantages are clipped there")
    lambda_: float = setting(1.0, UNIT, "V-trace's trace coefficient c_t = lambda_ * "
                             "min(1, rho_t) (1: RLlib's V-trace); GAE's lambda with vtrace=False")
    clip_param: float = setting(0.4, POSITIVE, "how far the policy ratio (to the target "
                                "network's policy) may leave 1")
    target_worker_clipping: float = setting(
        2.0, POSITIVE, "the importance weight behaviour / target policy is clipped there")
    vf_loss_coeff: float = setting(0.5, NON_NEGATIVE, "weight of the value loss (0.5 * squared "
                                   "error); lower it with an encoder shared with the policy")
    entropy_coeff: float | list = setting(
        0.01, or_schedule(NON_NEGATIVE), "or [[timestep, coeff], ...] interpolated over the "
        "learner's trained env steps (reported as curr_entropy_coeff)")
    use_kl_loss: bool = setting(False, BOOL, "add kl_coeff * KL(target policy || policy)")
    kl_coeff: float = setting(1.0, NON_NEGATIVE, "initial value; adapted towards kl_target")
    kl_target: float = setting(0.01, POSITIVE)
    circular_buffer_num_batches: int = setting(
        4, int_at_least(1), "train batches the learner queue holds; a new batch pushes out the "
        "oldest when it is full (counted in num_batches_dropped)")
    circular_buffer_iterations_per_batch: int = setting(
        2, int_at_least(1), "how often each batch may be trained on before it leaves the queue")
    broadcast_interval: int = setting(
        1, int_at_least(1), "learner updates between two weight broadcasts to the env runners")


class APPOConfig(AlgorithmConfig):
    """APPO's settings: RLlib's names; defaults as RLlib's where they solve CartPole-v1
    quickly, else tuned for it (as PPOConfig's): more SGD per batch (lr 5e-3, 2 epochs of
    minibatches of 250, each batch trained on 3 times) on batches of 1000, V-trace with
    lambda_ 0.95, no entropy bonus. ``train_batch_size`` is the batch of one update over all
    learners, as in RLlib."""

    # target_network_update_freq counts trained timesteps (as everywhere here; RLlib counts
    # in circular_buffer_num_batches x circular_buffer_iterations_per_batch x train batches).
    defaults = {"num_envs_per_env_runner": 8, "rollout_fragment_length": 50,
                "train_batch_size": 1000, "lr": 5e-3, "num_epochs": 2, "minibatch_size": 250,
                "circular_buffer_iterations_per_batch": 3, "lambda_": 0.95, "entropy_coeff": 0.0,
                "grad_clip": 40.0, "tau": 1.0, "target_network_update_freq": 8000,
                "min_time_s_per_iteration": 10.0}
    training = Builder(APPOTrainingSettings)
    default_learner_class = APPOTorchLearner
    default_rl_module_spec = RLModuleSpec(
        module_class=DefaultAPPOTorchRLModule, catalog_class=PPOCatalog,
        model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or APPO)


@dataclass
class TrainBatch:
    """Fragments of about ``total_train_batch_size`` env steps, with the weights version
    each was sampled with."""

    fragments: list[Fragment] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    num_env_steps: int = 0


class CircularBuffer:
    """The learner queue: at most ``num_batches`` batches; each leaves it after being drawn
    ``iterations_per_batch`` times, or when a new batch comes while it is the oldest of a
    full queue (dropped). Draws are uniform over the batches held (seeded)."""

    def __init__(self, num_batches: int, iterations_per_batch: int, seed: int | None) -> None:
        self.num_batches, self.iterations_per_batch = num_batches, iterations_per_batch
        self._entries: deque[list] = deque()  # [batch, times drawn]
        self._rng = np.random.default_rng(seed)
        self.num_dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, batch: TrainBatch) -> None:
        if len(self._entries) == self.num_batches:
            self._entries.popleft()
            self.num_dropped += 1
        self._entries.append([batch, 0])

    def sample(self) -> TrainBatch:
        index = int(self._rng.integers(len(self._entries)))
        entry = self._entries[index]
        entry[1] += 1
        if entry[1] >= self.iterations_per_batch:
            del self._entries[index]
        return entry[0]

    def clear(self) -> None:
        self._entries.clear()


class APPO(Algorithm):
    """With Ray env runners every runner always has a sample request in flight
    (``RayEnvRunnerGroup.sample_async``); fragments go into train batches of
    ``total_train_batch_size`` env steps, which go into the circular buffer; whenever the
    learners are idle they start an update (``LearnerGroup.update_async``: in learner actors,
    or in a thread for the local learner) on a batch drawn from it, while the driver goes
    on collecting. Every ``broadcast_interval`` updates the new weights are broadcast
    without waiting (``sync_weights_async``). ``weights_seq_no`` is the learner's version:
    one more per update. With ``num_env_runners=0`` the same steps run one after the other
    in this process: sample a batch, ``circular_buffer_iterations_per_batch`` updates.

    Results add, per iteration: ``policy_lag_mean`` / ``policy_lag_max`` (learner version
    minus the version a trained fragment was sampled with, over the trained env steps),
    ``learner_queue_fill`` (batches held / circular_buffer_num_batches, at the end),
    ``num_batches_dropped`` and ``env_steps_trained_per_s``.
    """

    config_class = APPOConfig

    def __init__(self, config: APPOConfig) -> None:
        self._buffer = CircularBuffer(config.circular_buffer_num_batches,
                                      config.circular_buffer_iterations_per_batch, config.seed)
        self._filling = TrainBatch()
        self._pending: PendingUpdate | None = None
        self._updates_since_broadcast = 0
        self._iteration: dict[str, Any] = {}  # What the running training_step gathered.
        super().__init__(config)

    def training_step(self) -> dict[str, Any]:
        """Sample and train until ``min_time_s_per_iteration`` has passed and at least one
        update finished; no update is left running when it returns."""
        start = time.perf_counter()
        self._iteration = {"results": [], "lags": [], "lag_steps": [],
                           "dropped": self._buffer.num_dropped}
        if self.env_runner_group.local_env_runner is not None:
            self._sequential_steps(start)
        else:
            self._async_steps(start)
        if self._stateful_connectors:  # Merged once per iteration (waits for every runner).
            self.env_runner_group.sync_env_runner_states()
        return self._report(time.perf_counter() - start)

    def _sequential_steps(self, start: float) -> None:
        """Local mode: sample one batch, then train on the buffer as often as each batch may
        be trained on; again until the iteration's time is up."""
        runner = self.env_runner_group.local_env_runner
        while not self._iteration_done(start):
            with self._timer(ENV_RUNNER_SAMPLING_TIMER):
                fragments = self.env_runner_group.sample(
                    num_timesteps=self.config.total_train_batch_size)
            self._collect([(runner.weights_seq_no, fragments)])
            for _ in range(self.config.circular_buffer_iterations_per_batch):
                if not len(self._buffer):
                    break
                batch = self._draw_batch()
                with self._timer(LEARNER_UPDATE_TIMER):
                    result = self.learner_group.update(batch.fragments)
                self._broadcast(self._finish_update(result))

    def _async_steps(self, start: float) -> None:
        """Ray runners: collect what arrives, keep the learners busy with buffered batches,
        broadcast after their updates; the driver never waits for all runners."""
        group = self.env_runner_group
        while True:
            weights = None
            if self._pending is not None and self._pending.done():
                with self._timer(LEARNER_UPDATE_TIMER):
                    result = self._pending.result()
                self._pending = None
                weights = self._finish_update(result)
                if self._iteration_done(start):
                    self._broadcast(weights)
                    return  # Right after an update: no update is left running.
            if self._pending is None and len(self._buffer):
                fragments = self._draw_batch().fragments
                with self._timer(LEARNER_UPDATE_TIMER):
                    self._pending = self.learner_group.update_async(fragments)
            self._broadcast(weights)  # After the next update started: the learner never waits.
            with self._timer(ENV_RUNNER_SAMPLING_TIMER):  # Blocks only while nothing to train.
                self._collect(group.sample_async(None if self._pending is None else POLL_S))

    def _iteration_done(self, start: float) -> bool:
        return bool(self._iteration["results"]) and (
            time.perf_counter() - start >= (self.config.min_time_s_per_iteration or 0))

    def _collect(self, arrivals: Sequence[tuple[int, list[Fragment]]]) -> None:
        """Fragments into the filling batch; a full one goes into the circular buffer."""
        for version, fragments in arrivals:
            batch = self._filling
            batch.fragments += fragments
            batch.versions += [version] * len(fragments)
            batch.num_env_steps += count_env_steps(fragments)
            if batch.num_env_steps >= self.config.total_train_batch_size:
                self._buffer.add(batch)
                self._filling = TrainBatch()

    def _draw_batch(self) -> TrainBatch:
        """The next batch to train on, its policy lag recorded (it trains the current
        version)."""
        batch = self._buffer.sample()
        self._iteration["lags"] += [self.weights_seq_no - v for v in batch.versions]
        self._iteration["lag_steps"] += [len(f) for f in batch.fragments]
        return batch

    def _finish_update(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """One version more; its inference weights every ``broadcast_interval`` updates
        (taken before the learners start another update), else None."""
        self._iteration["results"].append(result)
        self.weights_seq_no += 1
        self._updates_since_broadcast += 1
        if self._updates_since_broadcast < self.config.broadcast_interval:
            return None
        self._updates_since_broadcast = 0
        with self._timer(SYNCH_WORKER_WEIGHTS_TIMER):
            return self.learner_group.get_weights(inference_only=True)

    def _broadcast(self, weights: dict[str, Any] | None) -> None:
        """The weights of version ``weights_seq_no`` to the env runners (None: nothing)."""
        if weights is None:
            return
        with self._timer(SYNCH_WORKER_WEIGHTS_TIMER):
            group = self.env_runner_group
            if group.local_env_runner is not None:
                group.sync_weights(weights, self.weights_seq_no)
            else:
                group.sync_weights_async(weights, self.weights_seq_no)

    def _report(self, seconds: float) -> dict[str, Any]:
        """The iteration's learner results (merged over its updates) and APPO's metrics."""
        it = self._iteration
        results = merge_update_results(it["results"])
        lags = np.asarray(it["lags"], float)
        for key, value in [
                ("policy_lag_mean", float(np.average(lags, weights=it["lag_steps"]))),
                ("policy_lag_max", float(lags.max())),
                ("learner_queue_fill", len(self._buffer) / self._buffer.num_batches),
                ("num_batches_dropped", self._buffer.num_dropped - it["dropped"]),
                ("env_steps_trained_per_s",
                 results.get(ALL_MODULES, {}).get("num_env_steps_trained", 0) / seconds)]:
            self.metrics.log_value(key, value, window=1)
        return results

    def set_state(self, state: dict[str, Any]) -> None:
        """As ``Algorithm.set_state``; data sampled before (buffered or in flight) is dropped."""
        super().set_state(state)
        self._buffer.clear()
        self._filling = TrainBatch()
        if self.env_runner_group.local_env_runner is None:
            self.env_runner_group.discard_async_samples()
