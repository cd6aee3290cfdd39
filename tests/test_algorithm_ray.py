"""Algorithms on a real local Ray: remote env runners and data-parallel learners stay in sync."""

import os

import pytest

from algorithms import Algorithm
from algorithms.ppo import PPOConfig
from rlmodules import ALL_MODULES
from test_algorithm_support import assert_states_equal


def assert_every_runner_has_the_learner_weights(algo):
    learner_weights = algo.learner_group.get_weights(inference_only=True)
    runner_weights = algo.env_runner_group.foreach_env_runner(
        lambda runner: (runner.module.get_state(), runner.weights_seq_no))
    assert len(runner_weights) == algo.config.num_env_runners
    for weights, seq_no in runner_weights:
        assert_states_equal(weights, learner_weights)
        assert seq_no == algo.weights_seq_no


def small_ppo(num_env_runners, num_learners, seed=0):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=num_env_runners, num_cpus_per_env_runner=0.5,
                         num_envs_per_env_runner=4)
            .learners(num_learners=num_learners, num_cpus_per_learner=0.5)
            .training(train_batch_size_per_learner=500, minibatch_size=250, num_epochs=2)
            .debugging(seed=seed))


def test_two_remote_runners_sync_and_restore(ray_session, tmp_path):
    algo = small_ppo(num_env_runners=2, num_learners=0).build_algo()
    try:
        assert algo.env_runner_group.local_env_runner is None
        assert_every_runner_has_the_learner_weights(algo)  # The sync at build.
        for _ in range(2):
            result = algo.train()
            assert_every_runner_has_the_learner_weights(algo)
        assert result["num_env_steps_sampled_lifetime"] >= 1000
        assert result["env_runners"]["num_healthy_env_runners"] == 2

        # A module checkpoint from another run lands in the learner and in both runners.
        other = small_ppo(0, 0, seed=42).build_algo()
        module_dir = str(tmp_path / "module")
        other.get_module().save_to_path(module_dir)
        other.stop()
        algo.restore_from_path(module_dir,
                               component="learner_group/learner/rl_module/default_policy")
        saved = algo.get_module().__class__.from_checkpoint(module_dir).get_state()
        assert_states_equal(algo.learner_group.get_weights(inference_only=False),
                            {"default_policy": saved})
        assert_every_runner_has_the_learner_weights(algo)
    finally:
        algo.stop()
    assert algo.env_runner_group.num_remote_env_runners == 0


def test_two_learners_and_two_runners(ray_session, tmp_path):
    algo = small_ppo(num_env_runners=2, num_learners=2).build_algo()
    try:
        for _ in range(2):
            result = algo.train()
            learner_weights = algo.learner_group.foreach_learner(
                lambda learner: learner.get_weights())
            assert_states_equal(learner_weights[0], learner_weights[1])
            assert_every_runner_has_the_learner_weights(algo)
        # Each of the 2 learners trained on its share of the 2 x 500 sampled steps.
        assert result["learners"][ALL_MODULES]["num_env_steps_trained"] >= 1000
        # No local learner or runner: get_module is a local copy with the learner's weights.
        module = algo.get_module()
        assert_states_equal({"default_policy": module.get_state()},
                            algo.learner_group.get_weights(inference_only=False))

        path = algo.save_to_path(str(tmp_path / "algo"))
        assert os.path.isdir(os.path.join(path, "learner_group", "learner", "optimizer"))
        state = algo.learner_group.get_state()
    finally:
        algo.stop()

    restored = Algorithm.from_checkpoint(path)  # Same config: 2 learners, 2 runners.
    try:
        for learner_state in restored.learner_group.foreach_learner(lambda l: l.get_state()):
            assert_states_equal(learner_state["rl_module"], state["learner"]["rl_module"])
        assert_every_runner_has_the_learner_weights(restored)
        assert restored.train()["training_iteration"] == 3
    finally:
        restored.stop()


def test_not_enough_cpus_is_a_clear_error(ray_session):
    config = small_ppo(num_env_runners=8, num_learners=0).env_runners(num_cpus_per_env_runner=1)
    with pytest.raises(RuntimeError, match="CPUs"):
        config.build_algo()
