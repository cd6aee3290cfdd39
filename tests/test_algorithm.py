"""Algorithm in local mode: train() results, learning, weight sync, get_module, multi-agent."""

import subprocess
import sys

import numpy as np
import pytest

from algorithms.ppo import PPOConfig
from learners import ALL_MODULES
from algorithms.vpg import VPGConfig
from runners.envs import MultiAgentCartPole
from test_algorithm_support import assert_states_equal


def assert_return_rises(config, num_steps, factor):
    """Build, train for ``num_steps`` env steps: the mean return ends ``factor`` x the first."""
    algo = config.build_algo()
    try:
        first, last = train_until(algo, num_steps)
        assert last["env_runners"]["episode_return_mean"] > factor * first["env_runners"][
            "episode_return_mean"]
        return algo, last
    finally:
        algo.stop()


def train_until(algo, num_steps):
    first = None
    while True:
        result = algo.train()
        first = first or result
        if result["num_env_steps_sampled_lifetime"] >= num_steps:
            return first, result


def test_ppo_learns_cartpole_and_reports_results():
    algo = PPOConfig().environment("CartPole-v1").debugging(seed=1).build_algo()
    try:
        first, last = train_until(algo, 20_000)
        assert last["env_runners"]["episode_return_mean"] > max(
            100.0, 3 * first["env_runners"]["episode_return_mean"])
        assert last["training_iteration"] == 10
        assert last["num_env_steps_sampled_lifetime"] == 20_000
        assert set(last["timers"]) == {"training_iteration", "training_step",
                                       "env_runner_sampling_timer", "learner_update_timer",
                                       "synch_weights"}
        assert last["num_env_steps_trained_lifetime"] == 20_000
        losses = last["learners"]["default_policy"]
        assert {"total_loss", "policy_loss", "vf_loss", "entropy"} <= set(losses)
        assert last["learners"][ALL_MODULES]["num_env_steps_trained"] == 2000
        # After the sync the runner acts with exactly the learner's weights.
        assert_states_equal(algo.env_runner_group.local_env_runner.module.get_state(),
                            algo.learner_group.get_weights(inference_only=True))
        assert algo.env_runner_group.local_env_runner.weights_seq_no == 11  # build + 10 syncs
        # Local learner: get_module is its (full) module, value function included.
        assert hasattr(algo.get_module(), "vf") and algo.get_module("no_such_id") is None
    finally:
        algo.stop()


def test_ppo_learns_with_a_recurrent_module():
    # Sequences with state_in and loss masks through GAE and the loss; the LSTM encoder is
    # shared by policy and value function, hence the small vf_loss_coeff.
    config = (PPOConfig().environment("CartPole-v1")
              .rl_module(model_config={"use_lstm": True, "lstm_cell_size": 32,
                                       "fcnet_hiddens": [32], "max_seq_len": 20})
              .training(vf_loss_coeff=0.01)
              .debugging(seed=0))
    assert_return_rises(config, 24_000, factor=2)


def test_ppo_on_continuous_actions():
    # Pendulum: Box actions through the diagonal-Gaussian logp, entropy and KL terms
    # (learning it is in scripts/bench_learning.py). The learner sees the unclipped actions.
    config = (PPOConfig().environment("Pendulum-v1")
              .training(train_batch_size_per_learner=1000, minibatch_size=250, use_kl_loss=True)
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        fragments = algo.sample()
        actions = np.concatenate([f.columns["actions"] for f in fragments])
        assert actions.shape == (1000, 1) and np.abs(actions).max() > 2.0  # Beyond the bounds.
        metrics = algo.learner_group.update(fragments)["default_policy"]
        assert all(np.isfinite(metrics[k]) for k in ("policy_loss", "vf_loss", "entropy"))
        assert metrics["mean_kl_loss"] > 0.0
    finally:
        algo.stop()


def test_vpg_learns_cartpole_from_whole_episodes():
    _, last = assert_return_rises(VPGConfig().environment("CartPole-v1").debugging(seed=0),
                                  25_000, factor=2.5)
    # Whole episodes only: the steps of episodes still running when the batch was full
    # were sampled but not trained on.
    assert last["learners"][ALL_MODULES]["num_env_steps_trained"] < last["env_runners"][
        "num_env_steps_sampled"]


def test_multi_agent_ppo_trains_two_policies_independently():
    config = (PPOConfig()
              .environment(MultiAgentCartPole, env_config={"num_agents": 2})
              .multi_agent(policies={"p0", "p1"},
                           policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
              .rl_module(model_config={"fcnet_hiddens": [32, 32]})
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        optimizers = algo.learner_group.get_state(components="optimizer")["learner"]["optimizer"]
        assert sorted(optimizers) == ["p0_default_optimizer", "p1_default_optimizer"]
        first, last = train_until(algo, 16_000)
        assert {"p0", "p1"} <= set(last["learners"])
        assert last["learners"]["p0"]["num_module_steps_trained"] > 0
        assert last["env_runners"]["episode_return_mean"] > 2 * first["env_runners"][
            "episode_return_mean"]
        assert_states_equal(algo.env_runner_group.local_env_runner.module.get_state(),
                            algo.learner_group.get_weights(inference_only=True))
    finally:
        algo.stop()


def test_policies_to_train_leaves_the_others_untouched():
    config = (PPOConfig()
              .environment(MultiAgentCartPole, env_config={"num_agents": 2})
              .multi_agent(policies={"p0", "p1"}, policies_to_train=["p0"],
                           policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
              .training(train_batch_size_per_learner=500, minibatch_size=250))
    algo = config.build_algo()
    try:
        before = algo.learner_group.get_weights(inference_only=False)
        algo.train()
        after = algo.learner_group.get_weights(inference_only=False)
        assert_states_equal({"p1": before["p1"]}, {"p1": after["p1"]})
        assert any(not np.array_equal(before["p0"][k], after["p0"][k]) for k in before["p0"])
    finally:
        algo.stop()


def test_local_mode_never_imports_ray():
    code = ("import sys\n"
            "from algorithms.ppo import PPOConfig\n"
            "algo = PPOConfig().environment('CartPole-v1').training("
            "train_batch_size_per_learner=200, minibatch_size=100).build_algo()\n"
            "algo.train(); algo.stop()\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_same_seed_same_training():
    def run():
        algo = PPOConfig().environment("CartPole-v1").training(
            train_batch_size_per_learner=400, minibatch_size=200).debugging(seed=5).build_algo()
        try:
            for _ in range(2):
                result = algo.train()
            loss = result["learners"]["default_policy"]["total_loss"]
            return loss, algo.learner_group.get_weights()
        finally:
            algo.stop()

    (loss_a, weights_a), (loss_b, weights_b) = run(), run()
    assert loss_a == loss_b
    assert_states_equal(weights_a, weights_b)


def test_min_time_s_per_iteration_repeats_the_training_step_within_one_iteration():
    """RLlib's reporting(min_time_s_per_iteration=): train() runs training_step() until that
    much time has passed, the learner results of all of them merged; by default once."""
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
              .training(train_batch_size=64, minibatch_size=32, num_epochs=1)
              .debugging(seed=0))
    for min_time_s in (None, 0.3):
        algo = config.copy().reporting(min_time_s_per_iteration=min_time_s).build_algo()
        steps, step = [], algo.training_step
        algo.training_step = lambda: steps.append(1) or step()
        try:
            result = algo.train()
        finally:
            algo.stop()
        assert (len(steps) == 1) == (min_time_s is None), len(steps)
        assert result["time_this_iter_s"] >= (min_time_s or 0)
        assert result["training_iteration"] == 1
        trained = result["learners"][ALL_MODULES]["num_env_steps_trained"]
        assert trained == 64 * len(steps) == result["num_env_steps_trained_lifetime"]


@pytest.mark.parametrize("key", ["min_sample_timesteps_per_iteration",
                                 "min_train_timesteps_per_iteration"])
def test_min_timesteps_per_iteration_repeat_the_training_step_until_reached(key):
    """RLlib's reporting(min_sample_/min_train_timesteps_per_iteration=): with a train batch
    of 64 env steps, a minimum of 150 takes three training steps in one iteration; the
    next iteration counts from zero again."""
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
              .training(train_batch_size=64, minibatch_size=32, num_epochs=1)
              .reporting(**{key: 150}).debugging(seed=0))
    algo = config.build_algo()
    steps, step = [], algo.training_step
    algo.training_step = lambda: steps.append(1) or step()
    try:
        first, second = algo.train(), algo.train()
    finally:
        algo.stop()
    assert len(steps) == 6
    assert first["learners"][ALL_MODULES]["num_env_steps_trained"] == 192
    assert first["env_runners"]["num_env_steps_sampled"] == 192
    assert second["num_env_steps_sampled_lifetime"] == 384 == \
        second["num_env_steps_trained_lifetime"]
