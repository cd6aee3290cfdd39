"""APPO: local mode learns sequentially without Ray; with Ray runners sampling never waits for
the learner, policy lag is reported, a killed runner costs no iteration; checkpoints resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import torch

from algorithms import Algorithm
from algorithms.appo import APPOConfig
from algorithms.algorithm import merge_update_results
from algorithms.appo.appo import CircularBuffer, TrainBatch
from learners import ALL_MODULES
from rlmodules import TARGET_NETWORK_ACTION_DIST_INPUTS, Columns, RLModuleSpec
import rllib_ports as ports
from test_algorithm_ray import assert_every_runner_has_the_learner_weights

APPO_KEYS = ("policy_lag_mean", "policy_lag_max", "learner_queue_fill", "num_batches_dropped",
             "env_steps_trained_per_s")


def small_appo(num_env_runners: int = 0) -> APPOConfig:
    return (APPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=num_env_runners, num_cpus_per_env_runner=0.5,
                         num_envs_per_env_runner=4)
            .training(train_batch_size=500)
            .reporting(min_time_s_per_iteration=0)
            .debugging(seed=0))


def returns(results):
    return [r["env_runners"]["episode_return_mean"] for r in results]


def train_until(algo, reward, max_iterations):
    results = []
    while len(results) < max_iterations:
        results.append(algo.train())
        if returns(results)[-1] >= reward:
            break
    return results


def test_local_mode_learns_cartpole_one_step_after_the_other():
    algo = small_appo().build_algo()
    try:
        results = train_until(algo, 150, 60)
        runner = algo.env_runner
    finally:
        algo.stop()
    assert returns(results)[-1] >= 150 > 3 * returns(results)[0], returns(results)
    last = results[-1]
    assert all(key in last for key in APPO_KEYS)
    # Sequentially: each batch is sampled with the newest weights, then trained on twice
    # (circular_buffer_iterations_per_batch=2), the second time one version later.
    assert 0 <= last["policy_lag_mean"] <= last["policy_lag_max"] <= 4
    assert runner.weights_seq_no == algo.weights_seq_no  # broadcast_interval=1.
    learner = last["learners"]["default_policy"]
    assert {"policy_loss", "vf_loss", "entropy", "vf_explained_var"} <= set(learner)
    assert last["learners"][ALL_MODULES]["num_env_steps_trained"] >= 2 * 500


def test_loss_settings_reach_the_learner():
    config = small_appo().training(use_kl_loss=True, kl_coeff=0.3, vtrace=False, grad_clip=0.5,
                                   broadcast_interval=3, circular_buffer_iterations_per_batch=1)
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(4)]
        lags = [algo.weights_seq_no - algo.env_runner.weights_seq_no]
    finally:
        algo.stop()
    learner = results[-1]["learners"]["default_policy"]
    assert learner["mean_kl_loss"] >= 0 and learner["curr_kl_coeff"] != 0.3  # Adapted.
    assert learner["gradients_default_optimizer_global_norm"] > 0
    # Broadcasts every 3 updates: after 4 updates (one per iteration) the runner holds 3.
    assert lags == [1]
    assert [r["policy_lag_max"] for r in results] == [0, 1, 2, 0]


def test_importance_weights_are_behaviour_over_target_clipped_once_per_update():
    """The surrogate's weight pi_behaviour / pi_target (clipped at target_worker_clipping)
    comes as a column computed once per update; the target's inputs only with the KL loss."""
    for use_kl_loss in (False, True):
        algo = small_appo().training(target_worker_clipping=1.2,
                                     use_kl_loss=use_kl_loss).build_algo()
        try:
            fragments = algo.env_runner_group.sample(num_timesteps=200)
            learner = algo.learner_group.foreach_learner(lambda learner: learner)[0]
            module = learner.module["default_policy"]
            with torch.no_grad():  # The target network too moves off the sampling weights.
                for p in module.parameters():
                    p.add_(0.3 * torch.randn_like(p))
            columns = learner.compute_extra_columns_for_module("default_policy", fragments)
            obs = torch.from_numpy(np.concatenate([f.columns[Columns.OBS] for f in fragments]))
            actions = np.concatenate([f.columns[Columns.ACTIONS] for f in fragments])
            with torch.no_grad():
                target_logits = module.forward_target({Columns.OBS: obs})[
                    TARGET_NETWORK_ACTION_DIST_INPUTS]
            target_p = torch.softmax(target_logits, -1).numpy()[np.arange(len(actions)), actions]
            behaviour_p = np.exp(np.concatenate([f.columns[Columns.ACTION_LOGP]
                                                 for f in fragments]))
        finally:
            algo.stop()
        weights = np.concatenate(columns["target_is_weights"])
        expected = np.minimum(behaviour_p / target_p, 1.2)
        np.testing.assert_allclose(weights, expected, rtol=1e-5)
        assert 0 < weights.min() and weights.max() == np.float32(1.2)  # Some were clipped.
        assert (TARGET_NETWORK_ACTION_DIST_INPUTS in columns) == use_kl_loss


def test_a_recurrent_module_with_target_networks_trains():
    """The stateful path: target network and value forward passes run over sequences."""
    spec = RLModuleSpec(module_class=ports.LSTMTargetNetworkRLModule,
                        model_config={"lstm_cell_size": 16, "max_seq_len": 10})
    algo = small_appo().rl_module(rl_module_spec=spec).build_algo()
    try:
        results = [algo.train() for _ in range(3)]
    finally:
        algo.stop()
    learner = results[-1]["learners"]["default_policy"]
    assert np.isfinite(learner["total_loss"]) and learner["num_module_steps_trained"] >= 500


def test_circular_buffer_draws_each_batch_at_most_k_times_and_drops_the_oldest():
    buffer = CircularBuffer(num_batches=2, iterations_per_batch=2, seed=0)
    batches = [TrainBatch(num_env_steps=i) for i in range(3)]
    for batch in batches:
        buffer.add(batch)
    assert len(buffer) == 2 and buffer.num_dropped == 1  # Batch 0 was pushed out.
    drawn = [buffer.sample().num_env_steps for _ in range(4)]
    assert sorted(drawn) == [1, 1, 2, 2] and len(buffer) == 0


def test_update_results_merge_counts_sum_and_terms_average():
    merged = merge_update_results([
        {"p": {"policy_loss": 1.0, "num_module_steps_trained": 10,
               "num_module_steps_trained_lifetime": 10, "default_optimizer_lr": 0.1}},
        {"p": {"policy_loss": 3.0, "num_module_steps_trained": 20,
               "num_module_steps_trained_lifetime": 30, "default_optimizer_lr": 0.2}}])
    assert merged == {"p": {"policy_loss": 2.0, "num_module_steps_trained": 30,
                            "num_module_steps_trained_lifetime": 30,
                            "default_optimizer_lr": 0.2}}


def test_checkpoint_resumes_counters_weights_and_target_networks(tmp_path):
    algo = small_appo().build_algo()
    try:
        for _ in range(2):
            algo.train()
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        state = algo.learner_group.get_weights(inference_only=False)
        version, iteration = algo.weights_seq_no, algo.training_iteration
    finally:
        algo.stop()
    assert any("_old_pi" in key for key in state["default_policy"])
    restored = Algorithm.from_checkpoint(path)
    try:
        restored_state = restored.learner_group.get_weights(inference_only=False)
        for key, value in state["default_policy"].items():
            np.testing.assert_array_equal(restored_state["default_policy"][key], value)
        assert restored.weights_seq_no == version + 1  # The restore's sync is a version.
        result = restored.train()
    finally:
        restored.stop()
    assert result["training_iteration"] == iteration + 1
    assert result["policy_lag_max"] <= 2  # Nothing sampled before the restore is trained on.


def test_local_mode_never_imports_ray():
    code = ("import sys\n"
            "from algorithms.appo import APPOConfig\n"
            "algo = APPOConfig().environment('CartPole-v1')"
            ".training(train_batch_size=200, minibatch_size=100)"
            ".reporting(min_time_s_per_iteration=0).build_algo()\n"
            "algo.train(); algo.stop()\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---- with Ray env runners ---------------------------------------------------------------------


def test_two_ray_runners_sample_while_the_learner_trains(ray_session, tmp_path):
    algo = small_appo(num_env_runners=2).build_algo()
    try:
        results = train_until(algo, 150, 80)
        # Between iterations both runners go on sampling: each has its next request in flight.
        assert sorted(algo.env_runner_group.pool.in_flight) == [1, 2]
        versions = algo.env_runner_group.foreach_env_runner(lambda r: r.weights_seq_no)
        # A restore in the middle: requests in flight are dropped, every runner gets the
        # restored weights, training goes on from them.
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
        algo.train()
        algo.restore_from_path(path)
        assert_every_runner_has_the_learner_weights(algo)
        after_restore = algo.train()
    finally:
        algo.stop()
    assert after_restore["policy_lag_max"] <= 4
    assert returns(results)[-1] >= 150 > 3 * returns(results)[0], returns(results)
    assert all(0 < v <= algo.weights_seq_no for v in versions)
    lags = [(r["policy_lag_mean"], r["policy_lag_max"]) for r in results]
    assert all(0 <= mean <= high for mean, high in lags)
    assert max(high for _, high in lags) >= 1  # Runners sample with weights a little behind.
    assert all(0 <= r["learner_queue_fill"] <= 1 for r in results)


def test_killed_runners_cost_no_iteration(ray_session):
    algo = small_appo(num_env_runners=2).reporting(min_time_s_per_iteration=0.25).build_algo()
    metrics = []
    try:
        for kill in range(3):
            metrics += [algo.train()["env_runners"] for _ in range(3)]
            pid = algo.env_runner_group.foreach_env_runner(lambda r: os.getpid())[kill % 2]
            os.kill(pid, signal.SIGKILL)  # Its request in flight dies with it.
        metrics += [algo.train()["env_runners"] for _ in range(3)]
    finally:
        algo.stop()
    assert metrics[-1]["num_env_runner_restarts"] == 3
    steps = [m["num_env_steps_sampled_lifetime"] for m in metrics]
    assert all(a < b for a, b in zip(steps, steps[1:])), steps  # Every iteration sampled.
    episodes = [m["num_episodes_lifetime"] for m in metrics]  # Long ones may not end in one.
    assert all(a <= b for a, b in zip(episodes, episodes[1:])) and episodes[-1] > episodes[0]
    assert metrics[-1]["episode_return_mean"] > 2 * metrics[0]["episode_return_mean"]


def test_data_parallel_learners_update_while_runners_sample(ray_session):
    config = small_appo(num_env_runners=2).learners(num_learners=2, num_cpus_per_learner=0.5)
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(6)]
        weights = algo.learner_group.foreach_learner(
            lambda learner: learner.get_weights(inference_only=False))
    finally:
        algo.stop()
    for key, value in weights[0]["default_policy"].items():
        np.testing.assert_array_equal(weights[1]["default_policy"][key], value)
    trained = [r["learners"][ALL_MODULES]["num_env_steps_trained"] for r in results]
    assert all(n >= 500 for n in trained)  # Both shards of every batch count.
    assert results[-1]["env_runners"]["episode_return_mean"] > 0
