"""config.evaluation(...): evaluation runners of their own, at the stated interval and duration,
greedy unless evaluation_config says explore=True, parallel to training when asked, and never
counted into the training metrics."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms import Algorithm
from algorithms.algorithm_config import EVALUATION_SEED_OFFSET
from algorithms.ppo import PPOConfig
from algorithms.vpg import VPGConfig
from conftest import shipped_by_value
from rlmodules import Columns, RLModuleSpec, TorchRLModule


class RewardIsAction(gym.Env):
    """Five steps; the reward is the action (0 or 1)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, config=None):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), float(action), self.t >= 5, False, {}


class ExploresOneActsZero(TorchRLModule):
    """Sampling picks action 1 (almost surely); the greedy action is 0."""

    def setup(self):
        self.bias = torch.nn.Parameter(torch.zeros(2))

    def _logits(self, batch, explore_logits):
        n = batch[Columns.OBS].shape[0]
        return {Columns.ACTION_DIST_INPUTS: torch.tensor(explore_logits).expand(n, 2) + self.bias}

    def _forward_inference(self, batch, **kwargs):
        return self._logits(batch, [1.0, 0.0])

    def _forward_exploration(self, batch, **kwargs):
        return self._logits(batch, [-30.0, 30.0])

    def _forward_train(self, batch, **kwargs):
        return self._forward_exploration(batch)


def vpg(**evaluation):
    return (VPGConfig().environment(RewardIsAction)
            .rl_module(rl_module_spec=RLModuleSpec(module_class=ExploresOneActsZero))
            .env_runners(num_envs_per_env_runner=2, rollout_fragment_length=5)  # An episode.
            .training(num_episodes_per_train_batch=4)
            .evaluation(**evaluation)
            .debugging(seed=0))


def small_ppo(**evaluation):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
            .evaluation(**evaluation)
            .debugging(seed=0))


def test_evaluation_runs_exactly_at_the_interval_for_its_episodes_and_greedily():
    algo = vpg(evaluation_interval=2, evaluation_duration=4).build_algo()
    try:
        results = [algo.train() for _ in range(4)]
    finally:
        algo.stop()
    assert ["evaluation" in r for r in results] == [False, True, False, True]
    for r in results:
        assert r["env_runners"]["episode_return_mean"] == 5.0  # Training explores: action 1.
        assert r["env_runners"]["num_episodes"] == 4  # Evaluation episodes are not counted.
    for r in results[1::2]:
        evaluation = r["evaluation"]["env_runners"]
        assert evaluation["num_episodes"] == 4
        assert evaluation["episode_return_mean"] == 0.0  # Greedy: action 0.
        assert r["timers"]["evaluation_iteration"] > 0
    assert results[-1]["num_episodes_lifetime"] == 16


def test_evaluation_config_overrides_settings_and_explore():
    config = vpg(evaluation_interval=1, evaluation_duration=2,
                 evaluation_config=VPGConfig.overrides(explore=True, num_envs_per_env_runner=1))
    algo = config.build_algo()
    try:
        evaluation = algo.train()["evaluation"]["env_runners"]
        runner = algo.eval_env_runner_group.local_env_runner
        assert evaluation["episode_return_mean"] == 5.0
        assert runner.num_envs == 1 and algo.env_runner_group.local_env_runner.num_envs == 2
        assert runner.seed == EVALUATION_SEED_OFFSET  # seed 0, offset for evaluation.
    finally:
        algo.stop()
    with pytest.raises(TypeError, match=r"evaluation\(evaluation_config=\.\.\.\) got an unknown "
                                        "key 'num_env_runner'; did you mean 'num_env_runners'"):
        vpg(evaluation_config={"num_env_runner": 2}).validate()
    with pytest.raises(TypeError, match="overrides.*unknown key 'lrr'"):
        VPGConfig.overrides(lrr=0.1)
    with pytest.raises(ValueError, match="evaluation_duration_unit='steps' is invalid"):
        VPGConfig().evaluation(evaluation_duration_unit="steps")


def test_evaluation_in_timesteps_and_evaluate_by_hand_leave_training_metrics_alone():
    algo = small_ppo(evaluation_duration=100, evaluation_duration_unit="timesteps").build_algo()
    try:
        assert algo.eval_env_runner_group is None  # No interval: built on first evaluate().
        first = algo.train()
        evaluation = algo.evaluate()
        assert evaluation["env_runners"]["num_env_steps_sampled"] == 100
        second = algo.train()
        assert "evaluation" not in second
        assert second["num_env_steps_sampled_lifetime"] == 400  # Training steps only.
        assert second["env_runners"]["num_env_steps_sampled"] == 200
        assert second["num_episodes_lifetime"] == first["num_episodes_lifetime"] + second[
            "env_runners"]["num_episodes"]
        # The evaluation runners got the weights the training runners had then.
        assert evaluation["env_runners"]["weights_seq_nos"] == first["env_runners"][
            "weights_seq_nos"]
    finally:
        algo.stop()


@pytest.mark.parametrize("force_reset, episodes", [(True, [0, 0]), (False, [0, 2])])
def test_timesteps_evaluation_starts_new_episodes_unless_told_not_to(force_reset, episodes):
    # 3 steps per env and evaluation; an episode lasts 5: only carried on does one end.
    algo = vpg(evaluation_duration=6, evaluation_duration_unit="timesteps",
               evaluation_force_reset_envs_before_iteration=force_reset).build_algo()
    try:
        assert [algo.evaluate()["env_runners"]["num_episodes"] for _ in range(2)] == episodes
    finally:
        algo.stop()


def test_results_carry_rllibs_names():
    algo = small_ppo(evaluation_interval=1, evaluation_duration=1).build_algo()
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert {"training_iteration", "num_env_steps_sampled_lifetime",
            "num_env_steps_trained_lifetime", "num_episodes_lifetime", "time_this_iter_s",
            "env_steps_per_s", "env_runners", "learners", "evaluation", "timers"} <= set(result)
    assert set(result["timers"]) == {"training_iteration", "training_step",
                                     "env_runner_sampling_timer", "learner_update_timer",
                                     "synch_weights", "evaluation_iteration"}
    assert result["time_this_iter_s"] == result["timers"]["training_iteration"] >= result[
        "timers"]["training_step"]
    assert result["num_env_steps_trained_lifetime"] == 200


def test_checkpoints_restore_with_an_evaluation_group(tmp_path):
    config = small_ppo(evaluation_interval=1, evaluation_duration=1)
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path))
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path))
    try:
        result = restored.train()
        assert result["training_iteration"] == 2 and "evaluation" in result
        assert result["num_env_steps_trained_lifetime"] == 400
        # Evaluation acts with the restored (then trained) learner weights.
        assert result["evaluation"]["env_runners"]["weights_seq_nos"] == [restored.weights_seq_no]
    finally:
        restored.stop()


def test_parallel_evaluation_without_ray_runners_runs_after_the_training_step():
    algo = small_ppo(evaluation_interval=1, evaluation_duration=1,
                     evaluation_parallel_to_training=True).build_algo()
    try:
        result = algo.train()
        assert result["evaluation"]["env_runners"]["weights_seq_nos"] == [algo.weights_seq_no]
    finally:
        algo.stop()


@pytest.mark.ray
def test_ray_evaluation_runners_evaluate_parallel_to_training(ray_session):
    with shipped_by_value(sys.modules[__name__]):
        algo = vpg(evaluation_interval=1, evaluation_duration=4, evaluation_num_env_runners=2,
                   evaluation_parallel_to_training=True).env_runners(
            num_cpus_per_env_runner=0.5).build_algo()
        try:
            results = [algo.train() for _ in range(2)]
            manual = algo.evaluate()
        finally:
            algo.stop()
    for result in results:
        evaluation = result["evaluation"]["env_runners"]
        assert evaluation["num_episodes"] == 4 and evaluation["episode_return_mean"] == 0.0
        assert evaluation["num_healthy_env_runners"] == 2
        assert result["env_runners"]["num_episodes"] == 4
        # Overlapping the training step, it acted with the weights from before it.
        assert evaluation["weights_seq_nos"] == [result["training_iteration"]] * 2
    assert manual["env_runners"]["weights_seq_nos"] == [algo.weights_seq_no] * 2
