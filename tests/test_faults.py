"""Faults while PPO trains on the session's real local Ray: a runner process killed, an env that
raises in step(), a learner process that dies; and a run restored from its checkpoint, which
must go on with its episode statistics."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from algorithms import Algorithm
from algorithms.ppo import DefaultPPOTorchRLModule, PPOTorchLearner
from learners import LearnerGroup
from rlmodules import RLModuleSpec
from runners import EnvRunnerConfig, EnvRunnerGroup
from conftest import shipped_by_value
from test_algorithm_ray import assert_every_runner_has_the_learner_weights, small_ppo


class FlakyCartPole(gym.Wrapper):
    """CartPole whose step() raises on every ``fail_every``-th step of each instance."""

    def __init__(self, config):
        super().__init__(gym.make("CartPole-v1"))
        self.fail_every, self.steps = config["fail_every"], 0

    def step(self, action):
        self.steps += 1
        if self.steps % self.fail_every == 0:
            raise RuntimeError("simulated env crash")
        return self.env.step(action)


class DiesInSecondUpdate(PPOTorchLearner):
    """Learner 0's process is killed in its second update, while its peers wait for its
    gradients in the all-reduce."""

    num_updates = 0

    def update(self, fragments):
        self.num_updates += 1
        return super().update(fragments)

    def compute_loss_for_module(self, **kwargs):
        if self.learner_index == 0 and self.num_updates == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().compute_loss_for_module(**kwargs)


class Blocker:
    """An actor that only holds its CPUs."""

    def ready(self):
        return True


class RaisesInSecondUpdate(PPOTorchLearner):
    """Learner 1 raises in its second update, before the all-reduce learner 0 waits in."""

    num_updates = 0

    def update(self, fragments):
        self.num_updates += 1
        if self.learner_index == 1 and self.num_updates == 2:
            raise ValueError("simulated learner bug")
        return super().update(fragments)


@pytest.fixture(scope="module")
def ray(ray_session):
    """Ray, with this file's classes shipped to actors by value."""
    with shipped_by_value(sys.modules[__name__]):
        yield ray_session


def ppo(num_learners=0):
    return small_ppo(num_env_runners=2 if num_learners == 0 else 1, num_learners=num_learners) \
        .training(train_batch_size_per_learner=1000, num_epochs=4)


def runner_pids(algo_or_group):
    group = getattr(algo_or_group, "env_runner_group", algo_or_group)
    return group.foreach_env_runner(lambda r: (r.worker_index, os.getpid()))


def train(algo, iterations):
    return [algo.train()["env_runners"] for _ in range(iterations)]


def assert_counts_rise(metrics, key):
    counts = [m[key] for m in metrics]
    assert all(a < b for a, b in zip(counts, counts[1:])), counts


def test_a_killed_runner_comes_back_with_the_current_weights(ray):
    algo = ppo().build_algo()
    try:
        metrics = train(algo, 3)
        before = runner_pids(algo)
        os.kill(before[0][1], signal.SIGKILL)
        metrics += train(algo, 1)  # Raises nothing.
        assert_every_runner_has_the_learner_weights(algo)
        after = runner_pids(algo)
        assert after[0][0] == 1 and after[0][1] != before[0][1] and after[1] == before[1]
        metrics += train(algo, 8)
    finally:
        algo.stop()
    assert [m["num_env_runner_restarts"] for m in metrics] == [0] * 3 + [1] * 9
    assert all(m["num_healthy_env_runners"] == 2 for m in metrics)
    assert_counts_rise(metrics, "num_env_steps_sampled_lifetime")
    assert_counts_rise(metrics, "num_episodes_lifetime")
    assert metrics[-1]["episode_return_mean"] > 2 * metrics[2]["episode_return_mean"]


def test_env_errors_drop_episodes_are_counted_and_survive_runner_restarts(ray):
    algo = ppo().environment(FlakyCartPole, env_config={"fail_every": 300}).build_algo()
    try:
        metrics = train(algo, 4)
        os.kill(runner_pids(algo)[1][1], signal.SIGKILL)
        metrics += train(algo, 8)
    finally:
        algo.stop()
    errors = [m["num_env_errors_lifetime"] for m in metrics]
    assert errors == np.cumsum([m["num_env_errors"] for m in metrics]).tolist()
    # Failed steps are repaired inside the runner (env rebuilt, episode dropped): no restart.
    assert errors[3] > 0 and metrics[3]["num_env_runner_restarts"] == 0
    assert errors[-1] > errors[3] and metrics[-1]["num_env_runner_restarts"] == 1
    assert metrics[-1]["episode_return_mean"] > 2 * metrics[0]["episode_return_mean"]


def test_a_runner_without_room_to_restart_shrinks_the_group_until_it_fits(ray):
    config = EnvRunnerConfig(env="CartPole-v1", num_env_runners=2, num_cpus_per_env_runner=1,
                             rl_module_spec=RLModuleSpec(module_class=DefaultPPOTorchRLModule),
                             rollout_fragment_length=50)
    wait_for_free_cpus(ray, 2)  # Actors the previous tests stopped may still be releasing theirs.
    group = EnvRunnerGroup(config)  # The session's 2 CPUs, one per runner.
    # Starting may take long on a loaded machine; the restart below should wait only 5 s.
    group.config = dataclasses.replace(config, env_runner_start_timeout_s=5)
    blocker = None
    try:
        os.kill(runner_pids(group)[0][1], signal.SIGKILL)
        blocker = ray.remote(num_cpus=1)(Blocker).remote()  # Takes the freed CPU.
        ray.get(blocker.ready.remote())
        assert len(group.sample()) > 0  # Runner 1 is restarted, but Ray has no room for it.
        metrics = group.get_metrics()  # Waits for it env_runner_start_timeout_s.
        assert metrics["num_env_runner_restarts"] == 1
        assert metrics["num_healthy_env_runners"] == 1
        weights = group.foreach_env_runner(lambda runner: runner.module.get_state())[0]
        group.sync_weights(weights, weights_seq_no=5)
        assert sum(len(f) for f in group.sample()) >= 100  # Runner 2 samples for both.
        ray.kill(blocker)  # Room again: the restarted runner is placed and joins.
        deadline = time.monotonic() + 60
        while group.get_metrics()["num_healthy_env_runners"] < 2:
            assert time.monotonic() < deadline, "the restarted runner never joined"
            group.sample()
        assert [(index, seq_no) for index, seq_no in group.foreach_env_runner(
            lambda runner: (runner.worker_index, runner.weights_seq_no))] == [(1, 5), (2, 5)]
    finally:
        group.stop()
        if blocker is not None:
            ray.kill(blocker)


def wait_for_free_cpus(ray, num_cpus, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < num_cpus:
        assert time.monotonic() < deadline, f"Ray never had {num_cpus} free CPUs"
        time.sleep(0.2)


def assert_train_names_the_dead_learner(algo, num_learners, timeout_s=120):
    """algo.train() raises the error for learner 0's death (and fails instead of hanging the
    suite if it does not return)."""
    outcome = []

    def run():
        try:
            algo.train()
        except Exception as error:
            outcome.append(error)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert outcome, f"algo.train() hung for {timeout_s} s after a learner died"
    error = outcome[0]
    assert isinstance(error, RuntimeError), f"not the learner's death: {error!r}"
    assert f"LearnerGroup.update: learner 0 (of {num_learners}) died" in str(error)
    assert "Cause: The actor died unexpectedly" in str(error)


def test_a_learner_killed_between_iterations_is_a_clear_error(ray):
    algo = ppo(num_learners=1).build_algo()
    try:
        algo.train()
        os.kill(algo.learner_group.foreach_learner(lambda learner: os.getpid())[0],
                signal.SIGKILL)
        assert_train_names_the_dead_learner(algo, num_learners=1)
    finally:
        algo.stop()


def test_a_learner_dying_inside_a_collective_is_a_clear_error(ray):
    algo = ppo(num_learners=2).training(learner_class=DiesInSecondUpdate).build_algo()
    try:
        algo.train()
        assert_train_names_the_dead_learner(algo, num_learners=2)  # Learner 1 waits for it.
    finally:
        algo.stop()


def test_a_learner_raising_alone_stops_the_group_instead_of_hanging(ray, monkeypatch):
    monkeypatch.setattr(LearnerGroup, "PEER_WAIT_S", 2.0)
    algo = ppo(num_learners=2).training(learner_class=RaisesInSecondUpdate).build_algo()
    try:
        algo.train()
        with pytest.raises(RuntimeError, match=r"learner 1 \(of 2\) raised ValueError: simulated "
                                               r"learner bug\. Learner\(s\) \[0\] still wait"):
            algo.train()
        with pytest.raises(RuntimeError, match="LearnerGroup was stopped"):
            algo.train()
    finally:
        algo.stop()


def test_a_restored_run_keeps_its_recent_episodes_and_counters(tmp_path):
    algo = small_ppo(num_env_runners=0, num_learners=0).build_algo()
    try:
        last = train(algo, 2)[-1]
        path = algo.save_to_path(str(tmp_path / "checkpoint"))
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(path)
    try:
        metrics = restored.env_runner_group.get_metrics()  # No new episode yet.
        first = train(restored, 1)[0]
    finally:
        restored.stop()
    assert metrics["num_episodes"] == 0 and last["num_episodes"] > 0
    for key in ("episode_return_mean", "episode_return_min", "episode_return_max",
                "episode_len_mean", "num_episodes_lifetime", "num_env_steps_sampled_lifetime",
                "num_env_errors_lifetime"):
        assert metrics[key] == last[key], key
    assert first["num_episodes_lifetime"] == last["num_episodes_lifetime"] + first["num_episodes"]
