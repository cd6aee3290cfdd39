"""Algorithm: env runners that act, learners that update, and the loop that joins them."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from algorithms.algorithm_config import AlgorithmConfig
from algorithms.checkpoints import (check_component, load_algorithm, read_component,
                                    save_algorithm, select_algorithm_components)
from learners import ALL_MODULES, LearnerGroup, check_required_apis
from rlmodules import DEFAULT_MODULE_ID, RLModule
from runners import EnvRunnerGroup, Fragment
from runners.callbacks import make_callbacks
from runners.env_runner import EnvRunner
from runners.metrics_logger import MetricsLogger

# RLlib's names of the timers in result["timers"] (seconds spent in this iteration).
TRAINING_ITERATION_TIMER = "training_iteration"
TRAINING_STEP_TIMER = "training_step"
ENV_RUNNER_SAMPLING_TIMER = "env_runner_sampling_timer"
LEARNER_UPDATE_TIMER = "learner_update_timer"
SYNCH_WORKER_WEIGHTS_TIMER = "synch_weights"
EVALUATION_ITERATION_TIMER = "evaluation_iteration"


@dataclass(frozen=True)
class Checkpoint:
    """Where ``Algorithm.save()`` wrote (``.path``), as Ray's Checkpoint names it."""

    path: str


@dataclass(frozen=True)
class TrainingResult:
    """What ``Algorithm.save()`` returns, shaped as Ray Tune's: ``result.checkpoint.path``."""

    checkpoint: Checkpoint
    metrics: dict[str, Any] = field(default_factory=dict)


class Algorithm:
    """One ``train()`` call = sample, update the learners, sync weights to every runner
    (``training_step``), evaluate when ``evaluation_interval`` says, call ``on_train_result``.

    Subclasses say how to sample (``sample``) and which config, learner and module they
    default to (through their config class). ``self.metrics`` is the algorithm's
    MetricsLogger: what is logged there lands at the top level of the next result.
    """

    config_class: type[AlgorithmConfig] = AlgorithmConfig

    def __init__(self, config: AlgorithmConfig) -> None:
        config.validate()
        if config.num_learners == 0:  # As learner actors do: threads = the learner's CPUs.
            torch.set_num_threads(max(1, int(config.num_cpus_per_learner)))
        self.config = config
        self.module_spec = config.get_multi_rl_module_spec()
        learner_class = config.get_learner_class()
        check_required_apis(learner_class, self.module_spec, config.policies_to_train)
        self.training_iteration = 0
        self.weights_seq_no = 0  # Version of the weights the runners act with.
        self._module_copy: RLModule | None = None
        self._timers: dict[str, float] = {}
        self.metrics = MetricsLogger()
        self.callbacks = make_callbacks(config.callbacks_class, config.callbacks_hooks)
        self.eval_env_runner_group: EnvRunnerGroup | None = None
        self.env_runner_group = EnvRunnerGroup(config.env_runner_config(self.module_spec))
        # Runner connectors whose states are merged every iteration (and sent to evaluation).
        self._stateful_connectors = any(
            self.env_runner_group.foreach_env_runner(_connector_state)) if (
            config.env_to_module_connector or config.module_to_env_connector) else False
        try:
            if config.evaluation_interval or config.evaluation_num_env_runners:
                self._build_eval_env_runner_group()
            self.learner_group = LearnerGroup(config=config, module_spec=self.module_spec,
                                              learner_class=learner_class)
            self.sync_weights()  # Runners start acting with the learner's initial weights.
        except BaseException:
            self.env_runner_group.stop()
            if self.eval_env_runner_group is not None:
                self.eval_env_runner_group.stop()
            raise
        self.callbacks.call("on_algorithm_init", algorithm=self, metrics_logger=self.metrics)

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        return cls.config_class()

    @classmethod
    def default_resource_request(cls, config: AlgorithmConfig | Mapping[str, Any]
                                 ) -> list[dict[str, float]]:
        """The resource bundles one trial of ``config`` (a config or its ``to_dict()``)
        needs, as RLlib requests them from Tune: first the driver (with num_learners=0 also
        the local learner, which runs in the driver's thread: the larger of both CPU counts
        and num_gpus_per_learner), then one per env runner, one per evaluation env runner
        and one per learner actor. ``config.placement_strategy`` says how to place them."""
        if not isinstance(config, AlgorithmConfig):
            config = cls.get_default_config().update_from_dict(config)
        local_learner = config.num_learners == 0
        driver = {"CPU": max(config.num_cpus_for_main_process, config.num_cpus_per_learner)
                  if local_learner else config.num_cpus_for_main_process,
                  "GPU": config.num_gpus_per_learner if local_learner else 0}
        eval_cpus = config.get_evaluation_config_object().num_cpus_per_env_runner
        return [driver,
                *({"CPU": config.num_cpus_per_env_runner, "GPU": 0}
                  for _ in range(config.num_env_runners)),
                *({"CPU": eval_cpus, "GPU": 0} for _ in range(config.evaluation_num_env_runners)),
                *({"CPU": config.num_cpus_per_learner, "GPU": config.num_gpus_per_learner}
                  for _ in range(config.num_learners))]

    # ---- the training loop ------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """One iteration: the results of the runners (``env_runners``), the learners
        (``learners``), the evaluation (``evaluation``, in iterations the interval says),
        lifetime counters, timers and whatever was logged to ``self.metrics``; as RLlib names
        them. ``on_train_result`` may change the result before it is returned."""
        t0 = time.perf_counter()
        self._timers = {}
        iteration = self.training_iteration + 1
        interval = self.config.evaluation_interval
        evaluate_now = interval is not None and iteration % interval == 0
        # Parallel evaluation needs runners of its own process: Ray actors.
        parallel = evaluate_now and self.config.evaluation_parallel_to_training and \
            self.config.evaluation_num_env_runners > 0
        with ThreadPoolExecutor(1) if parallel else contextlib.nullcontext() as pool:
            if parallel:  # With the weights from before this training step, as RLlib.
                self._start_evaluation()
                evaluating = pool.submit(self._evaluate_on_runners)
            with self._timer(TRAINING_STEP_TIMER):
                learner_results = self._training_steps()
            train_s = time.perf_counter() - t0
            evaluation = self._end_evaluation(*evaluating.result()) if parallel else None
        self.training_iteration = iteration
        if evaluate_now and not parallel:
            evaluation = self.evaluate()
        runner_metrics = self.env_runner_group.get_metrics()
        self._report_recreated_env_runners()
        result: dict[str, Any] = {
            "training_iteration": self.training_iteration,
            "num_env_steps_sampled_lifetime": runner_metrics["num_env_steps_sampled_lifetime"],
            "num_env_steps_trained_lifetime": learner_results.get(ALL_MODULES, {}).get(
                "num_env_steps_trained_lifetime", 0),
            "num_episodes_lifetime": runner_metrics["num_episodes_lifetime"],
            "env_steps_per_s": runner_metrics["num_env_steps_sampled"] / train_s,
            "env_runners": runner_metrics,
            "learners": learner_results,
        }
        if evaluation is not None:
            result["evaluation"] = evaluation
        self._timers[TRAINING_ITERATION_TIMER] = time.perf_counter() - t0
        result["timers"] = dict(self._timers)
        result["time_this_iter_s"] = self._timers[TRAINING_ITERATION_TIMER]
        self.callbacks.call("on_train_result", algorithm=self, metrics_logger=self.metrics,
                            result=result)
        _merge_into(result, self.metrics.reduce())
        return result

    def _training_steps(self) -> dict[str, Any]:
        """``training_step()`` until the iteration is long enough (at least once, as RLlib);
        the learner results of several steps merged as of one update."""
        group, start, results, trained = self.env_runner_group, time.perf_counter(), [], 0
        sampled_before = group.num_env_steps_sampled
        while not results or not self._iteration_complete(
                time.perf_counter() - start, group.num_env_steps_sampled - sampled_before,
                trained):
            results.append(self.training_step())
            trained += results[-1].get(ALL_MODULES, {}).get("num_env_steps_trained", 0)
        return results[0] if len(results) == 1 else merge_update_results(results)

    def _iteration_complete(self, seconds: float, sampled: int, trained: int) -> bool:
        """RLlib's three minimums per iteration: time, env steps sampled and trained."""
        cfg = self.config
        return seconds >= (cfg.min_time_s_per_iteration or 0) and \
            sampled >= cfg.min_sample_timesteps_per_iteration and \
            trained >= cfg.min_train_timesteps_per_iteration

    def training_step(self) -> dict[str, Any]:
        """Sample, update the learners on that data, sync the new weights to every runner;
        returns the learner results. Override to change the loop (as in RLlib)."""
        with self._timer(ENV_RUNNER_SAMPLING_TIMER):
            fragments = self.sample()  # 1. Act in the envs with the current weights.
        with self._timer(LEARNER_UPDATE_TIMER):
            learner_results = self.learner_group.update(fragments)  # 2. Learn from that data.
        with self._timer(SYNCH_WORKER_WEIGHTS_TIMER):
            self.sync_weights()  # 3. Every runner acts with the new weights from now on.
        return learner_results

    @contextlib.contextmanager
    def _timer(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._timers[name] = self._timers.get(name, 0.0) + time.perf_counter() - start

    def _report_recreated_env_runners(self) -> None:
        """``on_env_runners_recreated`` for runners of either group recreated since the last
        iteration."""
        for group, is_evaluation in ((self.env_runner_group, False),
                                     (self.eval_env_runner_group, True)):
            indices = group.restarted_env_runner_indices() if group is not None else []
            if indices:
                self.callbacks.call("on_env_runners_recreated", algorithm=self,
                                    env_runner_group=group, env_runner_indices=indices,
                                    is_evaluation=is_evaluation)

    # ---- evaluation -------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Run the evaluation runners for ``evaluation_duration`` episodes or timesteps with
        the current weights (greedy unless ``evaluation_config`` says ``explore=True``);
        returns ``{"env_runners": their metrics}``. Evaluation never counts into the training
        runners' metrics."""
        self._start_evaluation()
        return self._end_evaluation(*self._evaluate_on_runners())

    def _build_eval_env_runner_group(self) -> None:
        eval_config = self.config.get_evaluation_config_object()
        self.eval_env_runner_group = EnvRunnerGroup(eval_config.env_runner_config(self.module_spec))

    def _start_evaluation(self) -> None:
        """``on_evaluate_start``, then the learner's current weights into every evaluation
        runner (in the driver's thread: the learners are not touched while training runs)."""
        if self.eval_env_runner_group is None:
            self._build_eval_env_runner_group()
        self.callbacks.call("on_evaluate_start", algorithm=self, metrics_logger=self.metrics)
        self.eval_env_runner_group.sync_weights(
            self.learner_group.get_weights(inference_only=True), self.weights_seq_no)
        if self._stateful_connectors:  # Evaluation normalizes as training does.
            state = self.env_runner_group.foreach_env_runner(_connector_state)[0]
            self.eval_env_runner_group.foreach_env_runner(
                lambda runner: runner.set_connector_state(state))

    def _evaluate_on_runners(self) -> tuple[dict[str, Any], float]:
        """Sample ``evaluation_duration`` episodes or timesteps; their metrics, seconds taken."""
        start, cfg, group = time.perf_counter(), self.config, self.eval_env_runner_group
        if cfg.evaluation_duration_unit == "episodes":  # Explore as the group's config says.
            group.sample(num_episodes=cfg.evaluation_duration)
        else:
            if cfg.evaluation_force_reset_envs_before_iteration:
                group.foreach_env_runner(_start_new_episodes)
            group.sample(num_timesteps=cfg.evaluation_duration)
        return group.get_metrics(), time.perf_counter() - start

    def _end_evaluation(self, runner_metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
        self._timers[EVALUATION_ITERATION_TIMER] = seconds
        evaluation_metrics = {"env_runners": runner_metrics}
        self.callbacks.call("on_evaluate_end", algorithm=self, metrics_logger=self.metrics,
                            evaluation_metrics=evaluation_metrics)
        return evaluation_metrics

    def sample(self) -> list[Fragment]:
        """One train batch from all runners; PPO samples timesteps, VPG whole episodes."""
        return self.env_runner_group.sample(num_timesteps=self.config.total_train_batch_size)

    def sync_weights(self) -> None:
        """Put the learner's (inference-only) weights into every env runner, and merge the
        runners' connector states (e.g. MeanStdFilter counts) into one they all use."""
        self.weights_seq_no += 1
        weights = self.learner_group.get_weights(inference_only=True)
        self.env_runner_group.sync_weights(weights, self.weights_seq_no)
        if self._stateful_connectors:
            self.env_runner_group.sync_env_runner_states()

    # ---- access -----------------------------------------------------------------------------

    @property
    def env_runner(self) -> EnvRunner | None:
        """The env runner in this process (RLlib's ``algo.env_runner``); None where all
        runners are Ray actors."""
        return self.env_runner_group.local_env_runner

    def get_module(self, module_id: str = DEFAULT_MODULE_ID) -> RLModule | None:
        """The module with the learner's current weights; None if there is no such ID.

        Local learner: its module itself. Otherwise the local env runner's (inference-only)
        module, or, where runners do not hold it (no local runner, or a learner_only module),
        a full copy built here and loaded with the learner's weights.
        """
        if module_id not in self.module_spec.rl_module_specs:
            return None
        if self.learner_group.is_local:
            return self.learner_group.foreach_learner(lambda learner: learner.module)[0][module_id]
        runner = self.env_runner_group.local_env_runner
        if runner is not None and module_id in runner.module:
            return runner.module[module_id]
        if self._module_copy is None:
            self._module_copy = self.module_spec.build()
        self._module_copy.set_state(self.learner_group.get_weights(inference_only=False))
        return self._module_copy[module_id]

    def stop(self) -> None:
        """Free every runner (evaluation runners included) and learner (actors included)."""
        self.env_runner_group.stop()
        if self.eval_env_runner_group is not None:
            self.eval_env_runner_group.stop()
        self.learner_group.stop()

    # ---- state and checkpoints (the file format lives in algorithms/checkpoints.py) ---------

    def get_state(self, components: str | list[str] | None = None) -> dict[str, Any]:
        """Nested state by component path, e.g. components="learner_group/learner/rl_module/p0".

        Top-level components: "learner_group", "env_runner", "counters" and
        "metrics_logger" (``algo.metrics``, so e.g. lifetime sums go on after a restore).
        """
        wanted = select_algorithm_components(components)
        state: dict[str, Any] = {}
        if "learner_group" in wanted:
            state["learner_group"] = self.learner_group.get_state(
                components=wanted["learner_group"])
        if "env_runner" in wanted:
            state["env_runner"] = self.env_runner_group.get_state()
        if "counters" in wanted:
            state["counters"] = {"training_iteration": self.training_iteration,
                                 "weights_seq_no": self.weights_seq_no}
        if "metrics_logger" in wanted:
            state["metrics_logger"] = self.metrics.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a (possibly partial) state, then sync the learner's weights to every runner."""
        select_algorithm_components(list(state))  # Names an unknown component.
        if "counters" in state:
            self.training_iteration = int(state["counters"]["training_iteration"])
            self.weights_seq_no = int(state["counters"]["weights_seq_no"])
        if "metrics_logger" in state:
            self.metrics.set_state(state["metrics_logger"])
        if "env_runner" in state:
            self.env_runner_group.set_state(state["env_runner"])
        if "learner_group" in state:
            self.learner_group.set_state(state["learner_group"])
        self.sync_weights()

    def save_to_path(self, path: str) -> str:
        """Write the whole algorithm (config, learners, runners, counters) to directory ``path``."""
        return save_algorithm(self, path)

    def restore_from_path(self, path: str, component: str | None = None) -> None:
        """Load a checkpoint (or, with ``component``, that part of one) into this algorithm.

        E.g. ``component="learner_group/learner/rl_module/default_policy"`` loads a module
        checkpoint from ``RLModule.save_to_path`` into the learner(s) and every runner.
        """
        if component is not None:
            check_component(component, list(self.module_spec.rl_module_specs))
        self.set_state(read_component(path, component))
        self.callbacks.call("on_checkpoint_loaded", algorithm=self)

    def save(self, checkpoint_dir: str | os.PathLike | None = None) -> TrainingResult:
        """RLlib's (Ray Tune Trainable's) name for ``save_to_path``: write a checkpoint to
        ``checkpoint_dir`` (default: a new temporary directory) and return where it is
        (``result.checkpoint.path``)."""
        if checkpoint_dir is None:
            checkpoint_dir = tempfile.mkdtemp(
                prefix=f"{type(self).__name__}_checkpoint_{self.training_iteration:06d}_")
        path = self.save_to_path(os.fspath(checkpoint_dir))
        return TrainingResult(Checkpoint(path), {"training_iteration": self.training_iteration})

    def restore(self, checkpoint_path: str | os.PathLike | Checkpoint | TrainingResult) -> None:
        """RLlib's (Trainable's) name for ``restore_from_path``: load a whole checkpoint, given
        as a path or as what ``save()`` returned (any object with ``.path`` or
        ``.checkpoint.path``, such as a Ray Checkpoint)."""
        checkpoint = getattr(checkpoint_path, "checkpoint", checkpoint_path)
        self.restore_from_path(os.fspath(getattr(checkpoint, "path", checkpoint)))

    @classmethod
    def from_checkpoint(cls, path: str, config: AlgorithmConfig | None = None,
                        trusted: Sequence[Any] = ()) -> "Algorithm":
        """Rebuild the algorithm saved at ``path`` and resume where it stopped.

        ``config`` replaces the saved config (needed when it held lambdas, which are not saved).
        ``trusted``: classes and functions the checkpoint may name beyond what loading allows
        by itself (see rlmodules/checkpoint.py); they are used, unchecked, for their names.
        """
        return load_algorithm(path, config, trusted)


def _connector_state(runner: Any) -> dict[str, Any]:
    return runner.get_connector_state()


def _start_new_episodes(runner: Any) -> None:
    """Evaluation in timesteps: every env of ``runner`` starts a new episode."""
    runner._start_new_episodes()


def _merge_into(result: dict[str, Any], logged: Mapping[str, Any]) -> None:
    """Metrics logged to the algorithm's MetricsLogger, nested into ``result``."""
    for key, value in logged.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            _merge_into(result[key], value)
        else:
            result[key] = value


_SUMMED = ("num_env_steps_trained", "num_module_steps_trained")
_LAST = ("num_target_updates", "last_target_update_ts", "curr_kl_coeff", "curr_entropy_coeff")


def merge_update_results(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several updates' results as one: trained-step counts summed, lifetime counts, target
    update counters, adapted coefficients and learning rates as after the last update, every
    other number (loss terms) averaged over the updates that reported it."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for r in results for k in r):
        values = [r[key] for r in results if key in r]
        if isinstance(values[-1], dict):
            merged[key] = merge_update_results(values)
        elif key in _SUMMED:
            merged[key] = sum(values)
        elif key.endswith(("_lifetime", "_lr")) or key in _LAST or not all(
                isinstance(v, (int, float)) for v in values):
            merged[key] = values[-1]
        else:
            merged[key] = float(np.mean(values))
    return merged
