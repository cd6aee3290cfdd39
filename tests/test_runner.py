"""SingleAgentEnvRunner in this process (no Ray): fragments, forward-pass rules, state, errors.

The small modules defined here are also used by the other runner test files.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlmodules import Columns, RLModuleSpec, TorchRLModule
from runners import (EnvRunnerConfig, EnvRunnerGroup, Fragment, SingleAgentEnvRunner,
                     complete_module_spec, make_env, register_env)
from runners.env_registry import EnvError, rebuild_env, reset_env
from runners.fragment import concat_fragments


# ---- modules ------------------------------------------------------------------------------------

class MLPModule(TorchRLModule):
    """Logits from a small MLP: the runner samples and computes logp."""

    def setup(self):
        self.pi = nn.Sequential(nn.Linear(self.observation_space.shape[0], 16), nn.Tanh(),
                                nn.Linear(16, self.action_space.n))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


class ValueModule(MLPModule):
    """Adds vf_preds = sum of the observation, an extra output the runner must record."""

    def _forward(self, batch, **kwargs):
        return {**super()._forward(batch), Columns.VF_PREDS: batch[Columns.OBS].sum(-1)}


class FixedActionModule(MLPModule):
    """Chooses action ``model_config["action"]`` itself, with or without dist inputs."""

    def _forward(self, batch, **kwargs):
        n = len(batch[Columns.OBS])
        out = {Columns.ACTIONS: torch.full((n,), self.model_config["action"])}
        if self.model_config.get("with_dist_inputs"):
            out.update(super()._forward(batch))
        return out


class TorchDistModule(MLPModule):
    """Returns a torch.distributions object under ``model_config["key"]``: action_dist_inputs
    (notebook style) or action_dist (alpha API)."""

    def _forward(self, batch, **kwargs):
        return {self.model_config["key"]:
                torch.distributions.Categorical(logits=self.pi(batch[Columns.OBS]))}


class NoActionModule(MLPModule):
    def _forward(self, batch, **kwargs):
        return {"embeddings": self.pi(batch[Columns.OBS])}


class CountingLSTMModule(MLPModule):
    """Stateful: its state counts the steps of the episode; checks the [B, T=1] layout."""

    def get_initial_state(self):
        return {"count": torch.zeros(1)}

    def _forward(self, batch, **kwargs):
        obs, count = batch[Columns.OBS], batch[Columns.STATE_IN]["count"]
        assert obs.dim() == 3 and obs.shape[1] == 1 and count.shape == (len(obs), 1)
        return {Columns.ACTION_DIST_INPUTS: self.pi(obs),
                Columns.STATE_OUT: {"count": count + 1}}


class BoxActionModule(TorchRLModule):
    """Always chooses the action 5.0 (outside a [-2, 2] Box) and a Gaussian around it."""

    def setup(self):
        self.dummy = nn.Parameter(torch.zeros(1))

    def _forward(self, batch, **kwargs):
        n = len(batch[Columns.OBS])
        return {Columns.ACTIONS: torch.full((n, 1), 5.0),
                Columns.ACTION_DIST_INPUTS: torch.cat([torch.full((n, 1), 5.0),
                                                       torch.zeros(n, 1)], dim=1)}


# ---- envs ---------------------------------------------------------------------------------------

class CounterEnv(gym.Env):
    """obs = [step in episode, episode number]; episodes last ``length`` steps (terminated).

    With ``fail_every=k``, every k-th episode raises in step() at its 3rd step.
    """

    observation_space = gym.spaces.Box(0, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, config=None):
        config = config or {}
        self.length, self.fail_every = config.get("length", 6), config.get("fail_every", 0)
        self.episode, self.t = -1, 0

    def _obs(self):
        return np.array([self.t, self.episode], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        if self.fail_every and self.episode % self.fail_every == 1 and self.t == 3:
            raise RuntimeError("simulated env crash")
        return self._obs(), 1.0, self.t >= self.length, False, {}


class RecordingBoxEnv(gym.Env):
    """Box action space [-2, 2]; records the actions it receives."""

    observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    received: list = []

    def __init__(self, config=None):
        pass

    def reset(self, *, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        RecordingBoxEnv.received.append(np.array(action))
        return np.zeros(3, np.float32), 0.0, False, False, {}


def make_config(module_class=MLPModule, env="CartPole-v1", **kwargs) -> EnvRunnerConfig:
    model_config = kwargs.pop("model_config", None)
    kwargs.setdefault("num_envs_per_env_runner", 2)
    kwargs.setdefault("rollout_fragment_length", 30)
    return EnvRunnerConfig(env=env, rl_module_spec=RLModuleSpec(module_class=module_class,
                                                                model_config=model_config),
                           **kwargs)


def check_fragment(fragment):
    """Invariants every fragment keeps."""
    n = len(fragment)
    assert n > 0
    for key, column in fragment.columns.items():
        if key == Columns.STATE_IN:
            assert all(len(v) == n for v in column.values())
        else:
            assert len(column) == n, key
    flags = fragment.columns[Columns.TERMINATEDS] | fragment.columns[Columns.TRUNCATEDS]
    assert not flags[:-1].any()
    assert fragment.columns[Columns.TERMINATEDS][-1] == fragment.terminated
    assert fragment.columns[Columns.TRUNCATEDS][-1] == fragment.truncated
    assert fragment.last_obs.shape == fragment.columns[Columns.OBS].shape[1:]


# ---- sampling -----------------------------------------------------------------------------------

def test_fragments_hold_the_columns_and_logp_of_the_sampled_actions():
    runner = SingleAgentEnvRunner(make_config(ValueModule, seed=0, num_envs_per_env_runner=3))
    fragments = runner.sample()
    assert sum(len(f) for f in fragments) == 30 * 3
    for f in fragments:
        check_fragment(f)
        cols = f.columns
        assert set(cols) == {Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.TERMINATEDS,
                             Columns.TRUNCATEDS, Columns.ACTION_LOGP, Columns.ACTION_DIST_INPUTS,
                             Columns.VF_PREDS, Columns.INFOS}
        assert len(cols[Columns.INFOS]) == len(f) and all(i == {} for i in cols[Columns.INFOS])
        assert cols[Columns.OBS].dtype == np.float32 and cols[Columns.OBS].shape[1:] == (4,)
        logp = torch.log_softmax(torch.as_tensor(cols[Columns.ACTION_DIST_INPUTS]), -1)
        expected = logp.gather(1, torch.as_tensor(cols[Columns.ACTIONS])[:, None])[:, 0]
        np.testing.assert_allclose(cols[Columns.ACTION_LOGP], expected.numpy(), rtol=1e-5)
        np.testing.assert_allclose(cols[Columns.VF_PREDS], cols[Columns.OBS].sum(-1), rtol=1e-5)
    assert any(f.terminated for f in fragments) and any(not f.is_done for f in fragments)


def test_episodes_carry_on_across_sample_calls():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv,
                                              env_config={"length": 50}))
    first, second = runner.sample(num_timesteps=20), runner.sample(num_timesteps=20)
    assert len(first) == len(second) == 2  # Two envs, each mid-episode.
    for a, b in zip(first, second):
        assert a.episode_id == b.episode_id and not a.is_done
        np.testing.assert_array_equal(a.last_obs, b.columns[Columns.OBS][0])
        np.testing.assert_array_equal(b.columns[Columns.OBS][:, 0], np.arange(10, 20))


def test_done_fragments_end_with_the_final_observation():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 4},
                                              num_envs_per_env_runner=1))
    fragments = runner.sample(num_timesteps=10)
    assert [len(f) for f in fragments] == [4, 4, 2]
    assert [f.terminated for f in fragments] == [True, True, False]
    np.testing.assert_array_equal(fragments[0].last_obs, [4, 0])  # Terminal, not the reset obs.
    np.testing.assert_array_equal(fragments[1].columns[Columns.OBS][0], [0, 1])
    np.testing.assert_array_equal(fragments[2].last_obs, [2, 2])


def test_num_timesteps_counts_env_steps_over_all_envs():
    runner = SingleAgentEnvRunner(make_config(num_envs_per_env_runner=4))
    assert sum(len(f) for f in runner.sample(num_timesteps=10)) == 12  # ceil(10 / 4) * 4
    assert runner.get_metrics()["num_env_steps_sampled"] == 12


def test_num_episodes_returns_exactly_that_many_whole_episodes():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 7},
                                              num_envs_per_env_runner=3,
                                              rollout_fragment_length=5))
    runner.sample(num_timesteps=4)  # Episodes in progress are not returned as whole ones.
    runner.get_metrics()
    episodes = runner.sample(num_episodes=5)
    assert len(episodes) == 5 and len({f.episode_id for f in episodes}) == 5
    assert runner.get_metrics()["num_episodes"] == 5  # 6 ended (3 envs x 2), 5 count.
    for f in episodes:
        check_fragment(f)
        assert f.terminated
        np.testing.assert_array_equal(f.columns[Columns.OBS][:, 0], np.arange(7))


def test_explore_false_takes_the_greedy_action_without_logp():
    runner = SingleAgentEnvRunner(make_config())
    for f in runner.sample(explore=False):
        assert Columns.ACTION_LOGP not in f.columns
        np.testing.assert_array_equal(f.columns[Columns.ACTIONS],
                                      f.columns[Columns.ACTION_DIST_INPUTS].argmax(-1))


@pytest.mark.parametrize("with_dist_inputs", [False, True])
def test_returned_actions_are_used_as_they_are(with_dist_inputs):
    runner = SingleAgentEnvRunner(make_config(
        FixedActionModule, model_config={"action": 1, "with_dist_inputs": with_dist_inputs}))
    for f in runner.sample():
        assert (f.columns[Columns.ACTIONS] == 1).all()
        assert (Columns.ACTION_LOGP in f.columns) == with_dist_inputs
        if with_dist_inputs:  # logp of the module's own action under its distribution.
            logp = torch.log_softmax(torch.as_tensor(f.columns[Columns.ACTION_DIST_INPUTS]), -1)
            np.testing.assert_allclose(f.columns[Columns.ACTION_LOGP], logp[:, 1], rtol=1e-5)


@pytest.mark.parametrize("key", [Columns.ACTION_DIST_INPUTS, Columns.ACTION_DIST])
def test_a_returned_torch_distribution_is_sampled_from(key):
    runner = SingleAgentEnvRunner(make_config(TorchDistModule, model_config={"key": key}))
    fragments = runner.sample()
    actions = np.concatenate([f.columns[Columns.ACTIONS] for f in fragments])
    assert set(np.unique(actions)) == {0, 1}
    assert all((f.columns[Columns.ACTION_LOGP] < 0).all() for f in fragments)
    greedy = runner.sample(explore=False)
    assert all(Columns.ACTION_LOGP not in f.columns for f in greedy)


def test_random_actions_skip_the_module():
    runner = SingleAgentEnvRunner(make_config(NoActionModule))  # Would fail if called.
    fragments = runner.sample(random_actions=True)
    assert all(set(f.columns) == {Columns.OBS, Columns.ACTIONS, Columns.REWARDS,
                                  Columns.TERMINATEDS, Columns.TRUNCATEDS, Columns.INFOS}
               for f in fragments)
    actions = np.concatenate([f.columns[Columns.ACTIONS] for f in fragments])
    assert set(np.unique(actions)) == {0, 1}


@pytest.mark.parametrize("settings, env_gets", [
    ({}, 2.0), ({"clip_actions": False}, 5.0),
    ({"normalize_actions": True}, 2.0)])  # 5 -> 1 in [-1, 1] -> the upper bound.
def test_box_actions_are_scaled_or_clipped_for_the_env_but_kept_in_fragments(settings, env_gets):
    RecordingBoxEnv.received.clear()
    runner = SingleAgentEnvRunner(make_config(BoxActionModule, env=RecordingBoxEnv, **settings))
    fragments = runner.sample(num_timesteps=4)
    assert all((f.columns[Columns.ACTIONS] == 5.0).all() for f in fragments)
    assert all(f.columns[Columns.ACTION_LOGP].shape == (len(f),) for f in fragments)
    assert np.array(RecordingBoxEnv.received).ravel().tolist() == [env_gets] * 4


class HalfModule(BoxActionModule):
    def _forward(self, batch, **kwargs):
        return {k: v / 10 for k, v in super()._forward(batch).items()}  # Acts 0.5.


def test_normalized_box_actions_scale_to_the_bounds_and_random_ones_stay_as_sampled():
    RecordingBoxEnv.received.clear()
    runner = SingleAgentEnvRunner(make_config(HalfModule, env=RecordingBoxEnv,
                                              normalize_actions=True))
    runner.sample(num_timesteps=2)
    assert np.ravel(RecordingBoxEnv.received).tolist() == [1.0, 1.0]  # -2 + 1.5 / 2 * 4.
    RecordingBoxEnv.received.clear()
    fragments = runner.sample(num_timesteps=40, random_actions=True)
    sampled = np.concatenate([f.columns[Columns.ACTIONS] for f in fragments]).ravel()
    np.testing.assert_array_equal(np.sort(np.ravel(RecordingBoxEnv.received)), np.sort(sampled))
    assert np.abs(sampled).max() > 1.0  # The env's whole [-2, 2], not scaled again.


def test_stateful_module_gets_its_state_per_env_reset_at_episode_start():
    runner = SingleAgentEnvRunner(make_config(CountingLSTMModule, env=CounterEnv,
                                              env_config={"length": 8},
                                              rollout_fragment_length=5))
    assert_state_counts_steps(runner)


def assert_state_counts_steps(runner):
    """Over three sample() calls, the state before each step (of CountingLSTMModule) is the
    number of steps taken in the episode so far, which the env observes as obs[0]."""
    for _ in range(3):
        for f in runner.sample():
            check_fragment(f)
            np.testing.assert_array_equal(f.columns[Columns.STATE_IN]["count"][:, 0],
                                          f.columns[Columns.OBS][:, 0])


def test_same_seed_same_data_and_each_env_its_own_seed():
    def data(seed):
        runner = SingleAgentEnvRunner(make_config(seed=seed, num_envs_per_env_runner=2))
        return [(f.columns[Columns.OBS], f.columns[Columns.ACTIONS]) for f in runner.sample()]

    first, again, other = data(7), data(7), data(8)
    assert len(first) == len(again)
    for (obs_a, act_a), (obs_b, act_b) in zip(first, again):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(act_a, act_b)
    assert not np.array_equal(first[0][0][0], other[0][0][0])
    env0, env1 = SingleAgentEnvRunner(make_config(seed=7)).sample(num_timesteps=2)
    assert not np.array_equal(env0.columns[Columns.OBS][0], env1.columns[Columns.OBS][0])


def test_an_env_that_raises_is_rebuilt_and_its_episode_dropped():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"fail_every": 3},
                                              num_envs_per_env_runner=2,
                                              rollout_fragment_length=40))
    fragments = runner.sample()
    metrics = runner.get_metrics()
    assert metrics["num_env_errors"] >= 2
    for f in fragments:  # No piece of a failed episode is returned, none is cut short.
        check_fragment(f)
        episode_numbers = f.columns[Columns.OBS][:, 1]
        assert (episode_numbers % 3 != 1).all() or (f.columns[Columns.OBS][:, 0] < 3).all()
        if f.is_done:
            assert len(f) == 6
    # The dropped steps are not in the fragments, but they were sampled.
    assert sum(len(f) for f in fragments) < metrics["num_env_steps_sampled"] == 80
    assert len(runner.sample(num_episodes=4)) == 4


def test_rebuild_env_replaces_a_broken_env_even_if_closing_it_raises():
    class Broken(CounterEnv):
        def close(self):
            raise RuntimeError("already broken")

    fresh = rebuild_env(Broken(), CounterEnv)
    assert type(fresh) is CounterEnv
    np.testing.assert_array_equal(reset_env(fresh, "Env 3")[0], [0, 0])

    class ResetFails(CounterEnv):
        def reset(self, *, seed=None, options=None):
            raise ValueError("no reset")

    with pytest.raises(EnvError, match=r"Env 3 raised in reset\(\).*no reset"):
        reset_env(ResetFails(), "Env 3")


def test_concat_fragments_joins_nested_columns_in_order():
    def piece(rows, done):
        columns = {Columns.REWARDS: np.array(rows, np.float32),
                   Columns.STATE_IN: {"h": np.array(rows)[:, None]}}
        return Fragment("m", None, "e", columns, np.array(rows[-1]), done, False)

    whole = concat_fragments([piece([0, 1], False), piece([2], True)])
    np.testing.assert_array_equal(whole.columns[Columns.STATE_IN]["h"][:, 0], [0, 1, 2])
    assert len(whole) == 3 and whole.terminated and whole.last_obs == 2


# ---- weights, state, metrics --------------------------------------------------------------------

def test_weights_and_state_round_trip():
    runner = SingleAgentEnvRunner(make_config(seed=1))
    other = SingleAgentEnvRunner(make_config(seed=2))
    runner.sample()
    weights = {"default_policy": {k: np.full_like(v, 0.5) for k, v in
                                  runner.module.get_state()["default_policy"].items()}}
    assert runner.set_weights(weights, 42) == 42 and runner.weights_seq_no == 42
    for v in runner.module["default_policy"].state_dict().values():
        assert (v == 0.5).all()
    other.set_state(runner.get_state())
    assert other.weights_seq_no == 42
    assert other.get_metrics()["num_env_steps_sampled_lifetime"] == 60
    for k, v in other.module.get_state()["default_policy"].items():
        np.testing.assert_array_equal(v, weights["default_policy"][k])


def test_metrics_cover_completed_episodes_and_steps_since_last_call():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 5},
                                              num_envs_per_env_runner=2))
    runner.sample()
    metrics = runner.get_metrics()
    assert metrics["num_episodes"] == 12 and metrics["num_env_steps_sampled"] == 60
    assert metrics["episode_return_mean"] == metrics["episode_len_mean"] == 5
    assert metrics["episode_return_min"] == metrics["episode_return_max"] == 5
    runner.sample()
    again = runner.get_metrics()
    assert again["num_env_steps_sampled"] == 60 and again["num_env_steps_sampled_lifetime"] == 120
    assert again["num_episodes_lifetime"] == 24


def test_episode_stats_span_sample_calls_and_skip_the_steps_of_failed_episodes():
    runner = SingleAgentEnvRunner(make_config(env=CounterEnv, env_config={"length": 7},
                                              num_envs_per_env_runner=1,
                                              rollout_fragment_length=5))
    for _ in range(3):
        runner.sample()
    metrics = runner.get_metrics()
    assert metrics["num_episodes"] == 2
    assert metrics["episode_return_min"] == metrics["episode_len_max"] == 7
    failing = SingleAgentEnvRunner(make_config(env=CounterEnv,
                                               env_config={"length": 4, "fail_every": 2},
                                               num_envs_per_env_runner=1,
                                               rollout_fragment_length=3))
    for _ in range(5):
        failing.sample()
    metrics = failing.get_metrics()
    assert metrics["num_env_errors"] == 2  # Episodes 1 and 3, each after 2 good steps.
    assert metrics["num_episodes"] == 2
    assert metrics["episode_return_min"] == metrics["episode_len_max"] == 4


# ---- envs and spaces ----------------------------------------------------------------------------

def test_envs_from_registered_names_classes_and_callables():
    register_env("test-counter", lambda cfg: CounterEnv(cfg))
    for env in ("test-counter", CounterEnv, lambda cfg: CounterEnv(cfg)):
        fragments = SingleAgentEnvRunner(make_config(env=env, env_config={"length": 3})).sample()
        assert all(len(f) <= 3 for f in fragments)
    assert isinstance(make_env("test-counter", {"length": 2}), CounterEnv)


def test_complete_module_spec_fills_spaces_from_the_env():
    spec = complete_module_spec(make_config())
    sub = spec.rl_module_specs["default_policy"]
    assert sub.observation_space.shape == (4,) and sub.action_space == gym.spaces.Discrete(2)
    assert sub.module_class is MLPModule


def test_unknown_env_id_names_it_and_says_how_to_register():
    with pytest.raises(ValueError, match="Unknown env 'NoSuchEnv-v0'.*register_env"):
        SingleAgentEnvRunner(make_config(env="NoSuchEnv-v0"))


def test_spaces_that_do_not_fit_the_module_name_both():
    config = make_config()
    config.rl_module_spec.observation_space = gym.spaces.Box(-1, 1, (8,))
    with pytest.raises(ValueError, match=r"observation_space Box.*\(8,\).*gives Box.*\(4,\)"):
        SingleAgentEnvRunner(config)


def test_module_returning_neither_actions_nor_dist_inputs_is_an_error():
    runner = SingleAgentEnvRunner(make_config(NoActionModule))
    with pytest.raises(ValueError, match="NoActionModule.*'actions'.*'action_dist_inputs'"):
        runner.sample()


def test_action_outside_the_space_names_module_action_and_space():
    runner = SingleAgentEnvRunner(make_config(FixedActionModule, model_config={"action": 5}))
    with pytest.raises(ValueError, match=r"'default_policy' \(FixedActionModule\).*\[5, 5\].*"
                                         r"Discrete\(2\)"):
        runner.sample()


# ---- EnvRunnerGroup without Ray -----------------------------------------------------------------

def test_local_group_samples_syncs_and_never_imports_ray():
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        from test_runner import make_config
        from runners import EnvRunnerGroup
        group = EnvRunnerGroup(make_config(num_env_runners=0))
        steps = sum(len(f) for f in group.sample())
        weights = group.foreach_env_runner(lambda r: r.module.get_state())[0]
        group.sync_weights(weights)
        print(steps, group.get_metrics()["num_healthy_env_runners"],
              group.local_env_runner.weights_seq_no, "ray" in sys.modules)
    """ % str(__import__("pathlib").Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["60", "1", "1", "False"]


def test_local_group_state_carries_counters():
    group = EnvRunnerGroup(make_config())
    group.sample()
    metrics = group.get_metrics()
    assert metrics["num_env_steps_sampled_lifetime"] == 60
    assert metrics["num_env_runner_restarts"] == 0
    fresh = EnvRunnerGroup(make_config())
    fresh.set_state(group.get_state())
    fresh.sample()
    assert fresh.get_metrics()["num_env_steps_sampled_lifetime"] == 120
