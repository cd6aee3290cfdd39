"""Algorithm: env runners that act, learners that update, and the loop that joins them."""

from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from algorithms.algorithm_config import AlgorithmConfig
from algorithms.checkpoints import (check_component, load_algorithm, read_component,
                                    save_algorithm, select_algorithm_components)
from learners import LearnerGroup, check_required_apis
from rlmodules import DEFAULT_MODULE_ID, RLModule
from runners import EnvRunnerGroup, Fragment


class Algorithm:
    """One ``train()`` call = sample, update the learners, sync weights to every runner.

    Subclasses say how to sample (``sample``) and which config, learner and module they
    default to (through their config class).
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
        self.env_runner_group = EnvRunnerGroup(config.env_runner_config(self.module_spec))
        try:
            self.learner_group = LearnerGroup(config=config, module_spec=self.module_spec,
                                              learner_class=learner_class)
            self.sync_weights()  # Runners start acting with the learner's initial weights.
        except BaseException:
            self.env_runner_group.stop()
            raise

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        return cls.config_class()

    # ---- the training loop ------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """One iteration; returns the results of the runners, the learners and the timers."""
        t0 = time.perf_counter()
        fragments = self.sample()  # 1. Act in the envs with the current weights.
        t1 = time.perf_counter()
        learner_results = self.learner_group.update(fragments)  # 2. Learn from that data.
        t2 = time.perf_counter()
        self.sync_weights()  # 3. Every runner acts with the new weights from now on.
        t3 = time.perf_counter()

        self.training_iteration += 1
        runner_metrics = self.env_runner_group.get_metrics()
        return {
            "training_iteration": self.training_iteration,
            "num_env_steps_sampled_lifetime": runner_metrics["num_env_steps_sampled_lifetime"],
            "env_steps_per_s": runner_metrics["num_env_steps_sampled"] / (
                time.perf_counter() - t0),
            "env_runners": runner_metrics,
            "learners": learner_results,
            "timers": {"sample_s": t1 - t0, "learn_s": t2 - t1, "sync_s": t3 - t2,
                       "iteration_s": t3 - t0},
        }

    def sample(self) -> list[Fragment]:
        """One train batch from all runners; PPO samples timesteps, VPG whole episodes."""
        return self.env_runner_group.sample(num_timesteps=self.config.total_train_batch_size)

    def sync_weights(self) -> None:
        """Put the learner's (inference-only) weights into every env runner."""
        self.weights_seq_no += 1
        weights = self.learner_group.get_weights(inference_only=True)
        self.env_runner_group.sync_weights(weights, self.weights_seq_no)

    # ---- access -----------------------------------------------------------------------------

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
        """Free every runner and learner (actors included)."""
        self.env_runner_group.stop()
        self.learner_group.stop()

    # ---- state and checkpoints (the file format lives in algorithms/checkpoints.py) ---------

    def get_state(self, components: str | list[str] | None = None) -> dict[str, Any]:
        """Nested state by component path, e.g. components="learner_group/learner/rl_module/p0".

        Top-level components: "learner_group", "env_runner" and "counters".
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
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a (possibly partial) state, then sync the learner's weights to every runner."""
        select_algorithm_components(list(state))  # Names an unknown component.
        if "counters" in state:
            self.training_iteration = int(state["counters"]["training_iteration"])
            self.weights_seq_no = int(state["counters"]["weights_seq_no"])
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

    @classmethod
    def from_checkpoint(cls, path: str, config: AlgorithmConfig | None = None,
                        trusted: Sequence[Any] = ()) -> "Algorithm":
        """Rebuild the algorithm saved at ``path`` and resume where it stopped.

        ``config`` replaces the saved config (needed when it held lambdas, which are not saved).
        ``trusted``: classes and functions the checkpoint may name beyond what loading allows
        by itself (see rlmodules/checkpoint.py); they are used, unchecked, for their names.
        """
        return load_algorithm(path, config, trusted)
