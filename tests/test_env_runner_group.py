"""EnvRunnerGroup with real Ray actors (the shared local Ray of the `ray_session` fixture)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import torch

import test_runner
from conftest import shipped_by_value
from runners import EnvRunnerGroup
from runners.envs import MultiAgentCartPole
from test_runner import CounterEnv, check_fragment, make_config

pytestmark = pytest.mark.ray


class ResetFailsEnv(CounterEnv):
    """Raises in its 4th reset() in each process: a failure the runner cannot repair itself."""

    resets = 0

    def reset(self, *, seed=None, options=None):
        ResetFailsEnv.resets += 1
        if ResetFailsEnv.resets == 4:
            raise RuntimeError("simulated reset crash")
        return super().reset(seed=seed, options=options)


class StragglerEnv(CounterEnv):
    """The first of these envs made (it claims the file ``config["claim"]``) sleeps 10 ms per
    step; obs = [step, 1.0 if slow else 0.0]."""

    def __init__(self, config):
        super().__init__({"length": 1000})
        try:
            os.close(os.open(config["claim"], os.O_CREAT | os.O_EXCL))
            self.slow = True
        except FileExistsError:
            self.slow = False

    def _obs(self):
        return np.array([self.t, float(self.slow)], np.float32)

    def step(self, action):
        if self.slow:
            time.sleep(0.01)
        return super().step(action)


@pytest.fixture(scope="module")
def ray(ray_session):
    """Ray, with the classes of the test files shipped to actors by value."""
    with shipped_by_value(sys.modules[__name__], test_runner):
        yield ray_session


def remote_config(**kwargs):
    kwargs.setdefault("num_env_runners", 1)
    kwargs.setdefault("num_cpus_per_env_runner", 0.5)
    kwargs.setdefault("rollout_fragment_length", 25)
    return make_config(**kwargs)


@pytest.fixture(scope="module")
def group(ray):
    group = EnvRunnerGroup(remote_config(num_env_runners=2, seed=0))
    yield group
    group.stop()


def random_weights(group, seed):
    state = group.foreach_env_runner(lambda runner: runner.module.get_state())[0]
    rng = np.random.default_rng(seed)
    return {mid: {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}
            for mid, params in state.items()}


def assert_runners_hold(group, weights, seq_no):
    states = group.foreach_env_runner(lambda r: (r.weights_seq_no, r.module.get_state()))
    assert len(states) == group.num_remote_env_runners
    for runner_seq_no, state in states:
        assert runner_seq_no == seq_no
        for k, v in weights["default_policy"].items():
            np.testing.assert_array_equal(state["default_policy"][k], v)


def test_remote_runners_sample_with_their_own_seeds(group):
    assert group.local_env_runner is None
    fragments = group.sample()
    assert sum(len(f) for f in fragments) >= 25 * 2 * 2
    for f in fragments:
        check_fragment(f)
    assert group.foreach_env_runner(lambda r: r.worker_index) == [1, 2]
    first_obs = group.foreach_env_runner(lambda r: r.sample(num_timesteps=2)[0].columns["obs"])
    assert not np.array_equal(first_obs[0], first_obs[1])
    metrics = group.get_metrics()
    assert metrics["num_healthy_env_runners"] == 2 and metrics["num_episodes"] > 0
    assert metrics["num_env_steps_sampled_lifetime"] >= 100


def test_whole_episodes_from_remote_runners(group):
    episodes = group.sample(num_episodes=3)
    assert len(episodes) == 3 and len({f.episode_id for f in episodes}) == 3
    assert all(f.terminated or f.truncated for f in episodes)


def test_sync_weights_reaches_every_runner_exactly(group):
    weights = random_weights(group, seed=1)
    group.sync_weights(weights, weights_seq_no=7)
    assert_runners_hold(group, weights, 7)


def test_a_killed_runner_is_restarted_with_the_synced_weights(group, ray):
    weights = random_weights(group, seed=2)
    group.sync_weights(weights, weights_seq_no=9)
    for i in range(4):  # Training-style: sample, (learn), sample...
        if i == 1:
            ray.kill(group.remote_env_runners[0])
        assert sum(len(f) for f in group.sample()) >= 100
    assert group.num_env_runner_restarts == 1
    assert_runners_hold(group, weights, 9)
    assert group.get_metrics()["num_env_runner_restarts"] == 1


def test_without_restarts_the_error_names_the_runner(ray):
    group = EnvRunnerGroup(remote_config(env=MultiAgentCartPole, env_config={"num_agents": 2},
                                         restart_failed_env_runners=False))
    try:
        fragments = group.sample()  # A multi-agent runner as an actor.
        assert {f.agent_id for f in fragments} == {0, 1}
        ray.kill(group.remote_env_runners[0])
        with pytest.raises(RuntimeError, match="EnvRunner 1 failed and was not restarted: "
                                               "restart_failed_env_runners is False"):
            group.sample()
        with pytest.raises(RuntimeError, match="EnvRunnerGroup was stopped"):
            group.sample()
    finally:
        group.stop()


def test_env_failing_in_reset_restarts_the_runner_until_the_limit(ray):
    group = EnvRunnerGroup(remote_config(env=ResetFailsEnv, env_config={"length": 5},
                                         num_envs_per_env_runner=1, rollout_fragment_length=10,
                                         max_num_env_runner_restarts=1))
    try:
        group.sample()  # Resets 2 and 3.
        assert len(group.sample()) > 0  # Reset 4 fails; a new runner samples instead.
        assert group.num_env_runner_restarts == 1
        with pytest.raises(RuntimeError, match="EnvRunner 1 failed and was not restarted: "
                                               "max_num_env_runner_restarts=1 reached.*"
                                               "simulated reset crash"):
            group.sample()
    finally:
        group.stop()


def test_a_straggling_runner_does_not_hold_the_others_back(ray, tmp_path):
    group = EnvRunnerGroup(remote_config(num_env_runners=2, env=StragglerEnv,
                                         env_config={"claim": str(tmp_path / "slow")},
                                         num_envs_per_env_runner=1, rollout_fragment_length=20))
    try:
        first = group.sample()  # One request each; the fast runner takes over the second.
        assert sum(len(f) for f in first) == 40
        assert all((f.columns["obs"][:, 1] == 0).all() for f in first)
        for _ in range(100):  # The straggler's result arrives in a later call.
            later = group.sample()
            if any(f.columns["obs"][0, 1] == 1 for f in later):
                break
        assert any(f.columns["obs"][0, 1] == 1 for f in later)
    finally:
        group.stop()


def test_more_cpus_than_the_cluster_has_is_a_clear_error(ray):
    with pytest.raises(RuntimeError, match=r"3 env runners x 1 CPUs = 3 CPUs requested, but the "
                                           r"Ray cluster has 2.0 CPUs"):
        EnvRunnerGroup(remote_config(num_env_runners=3, num_cpus_per_env_runner=1))


def test_remote_runner_bad_input_is_not_retried(ray):
    config = remote_config(module_class=test_runner.FixedActionModule,
                           model_config={"action": 3})
    group = EnvRunnerGroup(config)
    try:
        with pytest.raises(RuntimeError, match=r"EnvRunner 1 failed\. Cause:.*Discrete\(2\)"):
            group.sample()
        assert group.num_env_runner_restarts == 0
    finally:
        group.stop()


class DropsALoadedParam(test_runner.MLPModule):
    """A module whose set_state forgets one parameter: what it holds is not what was sent."""

    def set_state(self, state):
        super().set_state(state)
        with torch.no_grad():
            next(self.parameters()).add_(1.0)


def test_metrics_report_the_weights_version_of_every_runner(group):
    group.sync_weights(random_weights(group, seed=2), weights_seq_no=9)
    assert group.get_metrics()["weights_seq_nos"] == [9, 9]


@pytest.mark.parametrize("num_env_runners, runner", [(0, "EnvRunner 0"), (1, "EnvRunner 1")])
def test_a_runner_holding_other_weights_than_sent_is_an_error_naming_it(request, num_env_runners,
                                                                        runner):
    if num_env_runners:
        request.getfixturevalue("ray")
    group = EnvRunnerGroup(remote_config(num_env_runners=num_env_runners,
                                         module_class=DropsALoadedParam))
    try:
        with pytest.raises(RuntimeError, match=rf"{runner}.*module 'default_policy' holds weights "
                                               r"with digest \w+ after a sync, but \w+ was sent"):
            group.sync_weights(random_weights(group, seed=3))
    finally:
        group.stop()
