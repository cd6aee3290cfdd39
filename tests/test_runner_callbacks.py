"""Runner-side callbacks, metrics and reward clipping: each hook fires with RLlib's keyword
arguments and counts, in local runners and Ray actors (also restarted ones); what a callback
logs reaches EnvRunnerGroup.get_metrics(); greedy calls stay out of the training stats."""

from __future__ import annotations

import math
import sys

import gymnasium as gym
import numpy as np
import pytest

from rlmodules import Columns
from runners import (EnvContext, EnvRunnerGroup, MultiAgentEnvRunner, MultiAgentEpisode,
                     SingleAgentEnvRunner, SingleAgentEpisode)
from runners.callbacks import RLlibCallback
from conftest import shipped_by_value
from test_multi_agent import MultiAgentCounter, ma_config, two_policies
from test_runner import CounterEnv, make_config

EPISODE_KWARGS = {"episode", "env_runner", "metrics_logger", "env", "env_index", "rl_module"}


class Recorder(RLlibCallback):
    """Records every runner-side call; logs a custom metric at each episode end."""

    def __init__(self):
        self.calls = []

    def _record(self, hook, kwargs):
        self.calls.append((hook, kwargs))

    def on_environment_created(self, **kwargs):
        self._record("on_environment_created", kwargs)

    def on_episode_created(self, **kwargs):
        self._record("on_episode_created", kwargs)

    def on_episode_start(self, **kwargs):
        self._record("on_episode_start", kwargs)
        kwargs["episode"].custom_data["steps"] = 0

    def on_episode_step(self, **kwargs):
        self._record("on_episode_step", kwargs)
        kwargs["episode"].custom_data["steps"] += 1

    def on_episode_end(self, *, episode, metrics_logger, **kwargs):
        self._record("on_episode_end", {"episode": episode, "metrics_logger": metrics_logger,
                                        **kwargs})
        metrics_logger.log_value("my_return", episode.get_return() * 10, reduce="mean")
        metrics_logger.log_value("my_count", 1, reduce="sum")

    def on_sample_end(self, **kwargs):
        self._record("on_sample_end", kwargs)


def recorder(runner):
    return runner.callbacks.instances[0]


def count(rec, hook):
    return sum(1 for h, _ in rec.calls if h == hook)


def test_single_agent_hooks_fire_with_rllibs_arguments_and_counts():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 4},
                                              rollout_fragment_length=10,
                                              callbacks_class=Recorder))
    rec = recorder(runner)
    (hook, kwargs), = [c for c in rec.calls if c[0] == "on_environment_created"]
    assert set(kwargs) == {"env_runner", "metrics_logger", "env", "env_context"}
    assert isinstance(kwargs["env_context"], EnvContext) and kwargs["env_context"] == {
        "length": 4} and kwargs["env_context"].worker_index == 0
    assert count(rec, "on_episode_created") == count(rec, "on_episode_start") == 2
    runner.sample()  # 2 envs x 10 steps: 2 episodes of 4 end in each env.
    assert count(rec, "on_episode_step") == 20 and count(rec, "on_episode_end") == 4
    assert count(rec, "on_episode_start") == 6 and count(rec, "on_sample_end") == 1
    for hook, kwargs in rec.calls:
        if hook.startswith("on_episode"):
            assert set(kwargs) == EPISODE_KWARGS, hook
            assert kwargs["env_runner"] is runner and kwargs["rl_module"] is runner.module
            assert kwargs["metrics_logger"] is runner.metrics and kwargs["env"] is runner.env
    ends = [k for h, k in rec.calls if h == "on_episode_end"]
    for kwargs in ends:
        episode = kwargs["episode"]
        assert isinstance(episode, SingleAgentEpisode) and episode.is_terminated
        assert len(episode) == 4 and episode.get_return() == 4.0
        assert episode.custom_data["steps"] == 4
        assert episode.get_observations(-1)[0] == 4 and episode.get_observations(0)[0] == 0
        assert len(episode.get_actions()) == 4 and episode.get_infos(-1) == {}
        assert "action_dist_inputs" in episode.extra_model_outputs
    assert sorted(k["env_index"] for k in ends) == [0, 0, 1, 1]
    samples = [k for h, k in rec.calls if h == "on_sample_end"][0]["samples"]
    assert [len(e) for e in samples] == [4, 4, 4, 4, 2, 2]  # Done ones, then ongoing chunks.
    fragment_ids = {f.episode_id for f in runner.sample()}
    assert {e.id_ for e in samples[4:]} <= fragment_ids  # The chunks go on, with the same id.
    metrics = runner.get_metrics()
    # reduce="mean" without a window is an EMA (coeff 0.01); as RLlib's, an episode that
    # went on from the last call's chunk reports the return of its final chunk (2 steps).
    assert 20 < metrics["my_return"] < 40 and metrics["my_count"] == 4 + 6


def test_multi_agent_hooks_and_per_agent_episodes():
    policies = two_policies()
    config = ma_config(MultiAgentCounter, policies["spec"], env_config={"lengths": [3, 3]},
                       rollout_fragment_length=6, callbacks_class=Recorder,
                       policy_mapping_fn=policies["policy_mapping_fn"])
    runner = MultiAgentEnvRunner(config)
    runner.sample()
    rec = recorder(runner)
    assert count(rec, "on_environment_created") == 1  # One MultiAgentEnv per env.
    assert count(rec, "on_episode_step") == 6 and count(rec, "on_episode_end") == 2
    ends = [k for h, k in rec.calls if h == "on_episode_end"]
    for kwargs in ends:
        episode = kwargs["episode"]
        assert isinstance(episode, MultiAgentEpisode) and episode.is_done
        assert kwargs["env"] is runner.env[0]
        assert episode.agent_ids == {0, 1} and episode.module_for(1) == "p1"
        assert set(episode.get_rewards(-1)) == {0, 1} and len(episode) == 3
        assert episode.agent_episodes[0].module_id == "p0"
    metrics = runner.get_metrics()
    assert metrics["agent_episode_returns_mean"].keys() == {"0", "1"}
    assert metrics["module_episode_returns_mean"].keys() == {"p0", "p1"}
    assert metrics["num_agent_steps_sampled"] == {"0": 6, "1": 6}
    assert metrics["my_count"] == 2


def test_hook_functions_without_a_class_and_no_episodes_when_unused():
    starts = []
    runner = SingleAgentEnvRunner(make_config(
        env=CounterEnv, callbacks_hooks={"on_episode_start": lambda **kw: starts.append(kw)}))
    assert len(starts) == 2 and starts[0]["env_index"] == 0
    bare = SingleAgentEnvRunner(make_config(env=CounterEnv))
    bare.sample()
    assert bare._user_episodes == []  # Nothing is built for callbacks that are not there.


def test_group_metrics_have_rllibs_keys_and_the_custom_metric():
    group = EnvRunnerGroup(make_config(env=CounterEnv, env_config={"length": 5},
                                       callbacks_class=Recorder))
    group.sample()
    metrics = group.get_metrics()
    for key in ("episode_return_mean", "episode_return_min", "episode_return_max",
                "episode_len_mean", "episode_len_min", "episode_len_max",
                "episode_duration_sec_mean", "num_episodes", "num_episodes_lifetime",
                "num_env_steps_sampled", "num_env_steps_sampled_lifetime", "num_env_errors",
                "num_env_errors_lifetime", "num_healthy_env_runners", "weights_seq_nos"):
        assert key in metrics, key
    assert metrics["num_agent_steps_sampled"] == {"default_agent": 60}
    assert metrics["num_module_steps_sampled_lifetime"] == {"default_policy": 60}
    assert metrics["module_episode_returns_mean"] == {"default_policy": 5.0}
    assert metrics["my_return"] == 50 and metrics["my_count"] == metrics["num_episodes"] == 12
    group.sample()
    again = group.get_metrics()
    assert again["my_count"] == 24 and again["num_env_steps_sampled_lifetime"] == 120
    group.stop()


def test_greedy_samples_do_not_count_in_the_training_metrics():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 5},
                                              callbacks_class=Recorder))
    runner.sample()
    before = runner.get_metrics()
    runner.sample(explore=False)
    runner.sample(num_episodes=2, explore=False)
    after = runner.get_metrics()
    assert after["num_env_steps_sampled"] == 0 and after["num_episodes"] == 0
    assert after["num_env_steps_sampled_lifetime"] == before["num_env_steps_sampled_lifetime"]
    assert after["my_count"] == before["my_count"]
    greedy = SingleAgentEnvRunner(make_config(env=CounterEnv, explore=False))
    greedy.sample()  # A runner configured not to explore counts its greedy samples.
    assert greedy.get_metrics()["num_env_steps_sampled"] == 60


class ScaledReward(gym.Wrapper):
    def __init__(self, config):
        super().__init__(CounterEnv({"length": 4}))

    def reset(self, **kwargs):
        obs, _ = self.env.reset(**kwargs)
        return obs, {"t": int(obs[0]), "reset": True}

    def step(self, action):
        obs, _, term, trunc, info = self.env.step(action)
        return obs, -3.0 if obs[0] % 2 else 0.5, term, trunc, {"t": int(obs[0])}


@pytest.mark.parametrize("clip, expected", [(None, [-3.0, 0.5]), (True, [-1.0, 1.0]),
                                            (1.0, [-1.0, 0.5])])
def test_clip_rewards_for_learning_keeps_returns_unclipped(clip, expected):
    runner = SingleAgentEnvRunner(make_config(env=ScaledReward, clip_rewards=clip,
                                              rollout_fragment_length=8))
    fragments = runner.sample()
    rewards = np.concatenate([f.columns[Columns.REWARDS] for f in fragments])
    np.testing.assert_array_equal(np.unique(rewards), expected)
    assert runner.get_metrics()["episode_return_mean"] == -5.0  # 2 x (-3 + 0.5).
    # Infos come with the obs they arrived with: the first with the reset's, also for the
    # episode that started inside the sample() call.
    for f in fragments:
        assert f.columns[Columns.INFOS] == [{"t": 0, "reset": True}, {"t": 1}, {"t": 2},
                                            {"t": 3}]


def test_clip_rewards_setting_is_checked():
    with pytest.raises(ValueError, match="clip_rewards=-1"):
        make_config(clip_rewards=-1)


# ---- Ray runners -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray(ray_session):
    with shipped_by_value(sys.modules[__name__], sys.modules["test_runner"],
                          sys.modules["test_multi_agent"]):
        yield ray_session


@pytest.mark.ray
def test_callbacks_run_in_ray_runners_and_in_restarted_ones(ray):
    group = EnvRunnerGroup(make_config(env=CounterEnv, env_config={"length": 5},
                                       num_env_runners=2, callbacks_class=Recorder))
    try:
        calls = group.foreach_env_runner(
            lambda r: (r.worker_index, r.callbacks.instances[0].calls[0][1]["env_context"]
                       .worker_index, count(r.callbacks.instances[0], "on_episode_start")))
        assert calls == [(1, 1, 2), (2, 2, 2)]
        group.sample()
        metrics = group.get_metrics()
        # 24 episodes of 5 steps at least (a straggler's share may go to the other runner).
        assert metrics["my_count"] == metrics["num_episodes"] >= 24
        assert metrics["my_return"] == 50
        assert group.restarted_env_runner_indices() == []
        ray.kill(group.remote_env_runners[0])
        group.sample()
        assert group.restarted_env_runner_indices() == [1]
        assert group.restarted_env_runner_indices() == []
        created = group.foreach_env_runner(lambda r: count(r.callbacks.instances[0],
                                                           "on_environment_created"))
        assert created == [1, 1]  # The new runner built its own callbacks.
        group.sample()
        after = group.get_metrics()
        assert after["my_count"] > 24 and not math.isnan(after["my_return"])
    finally:
        group.stop()
