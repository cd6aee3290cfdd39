"""Env-to-module connectors: FlattenObservations and connector state in runners."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rlmodules import Columns
from runners import SingleAgentEnvRunner, complete_module_spec
from runners.connectors import EnvToModuleConnector, FlattenObservations, batch_observations
from test_runner import CounterEnv, make_config

SPACES = {
    "discrete": spaces.Discrete(5, start=2),
    "box": spaces.Box(-1, 1, (2, 3), np.float64),
    "multi_discrete": spaces.MultiDiscrete([3, 2, 4]),
    "multi_binary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"pos": spaces.Box(-5, 5, (2,)), "mode": spaces.Discrete(3)}),
    "tuple": spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3]),
                           spaces.Dict({"x": spaces.MultiBinary(2)}))),
}


@pytest.mark.parametrize("name", list(SPACES))
def test_flatten_matches_gymnasium_flatten_row_by_row(name):
    space = SPACES[name]
    space.seed(0)
    items = [space.sample() for _ in range(5)]
    connector = FlattenObservations()
    flat = connector(batch_observations(space, items), space)
    expected = np.stack([spaces.flatten(space, item) for item in items]).astype(np.float32)
    assert flat.dtype == np.float32
    np.testing.assert_array_equal(flat, expected)
    module_space = connector.recompute_observation_space(space)
    assert module_space.shape == (expected.shape[1],) and module_space.dtype == np.float32
    assert all(module_space.contains(row) for row in flat)


def test_unsupported_space_is_named():
    space = spaces.Text(5)
    with pytest.raises(TypeError, match="FlattenObservations cannot flatten.*Text"):
        FlattenObservations()([["abc"]], space)


def test_runner_builds_the_module_for_flattened_observations():
    config = make_config(env="FrozenLake-v1", env_config={"is_slippery": False},
                         env_to_module_connector=lambda env: FlattenObservations())
    sub_spec = complete_module_spec(config).rl_module_specs["default_policy"]
    assert sub_spec.observation_space.shape == (16,)
    runner = SingleAgentEnvRunner(config)
    assert runner.module["default_policy"].observation_space.shape == (16,)
    for f in runner.sample():
        obs = f.columns[Columns.OBS]
        assert obs.shape[1:] == (16,) and (obs.sum(-1) == 1).all() and obs[0, 0] == 1  # Start.
        assert f.last_obs.shape == (16,) and f.last_obs.sum() == 1


class DictObsEnv(gym.Env):
    observation_space = spaces.Dict({"a": spaces.Box(0, 1, (2,)), "b": spaces.Discrete(3)})
    action_space = spaces.Discrete(2)

    def __init__(self, config=None):
        pass

    def reset(self, *, seed=None, options=None):
        return {"a": np.ones(2, np.float32), "b": 2}, {}

    def step(self, action):
        return {"a": np.zeros(2, np.float32), "b": 1}, 1.0, True, False, {}


class TextInDictEnv(DictObsEnv):
    observation_space = spaces.Dict({"a": spaces.Box(0, 1, (2,)), "note": spaces.Text(5)})


def test_observations_the_runner_cannot_batch_ask_for_a_connector():
    with pytest.raises(TypeError, match=r"Text.*at obs\['note'\].*FlattenObservations"):
        SingleAgentEnvRunner(make_config(env=TextInDictEnv))


def test_dict_observations_with_connector_become_flat_vectors():
    runner = SingleAgentEnvRunner(make_config(
        env=DictObsEnv, env_to_module_connector=lambda env: FlattenObservations()))
    fragment = runner.sample(num_timesteps=2)[0]
    np.testing.assert_array_equal(fragment.columns[Columns.OBS][0], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(fragment.last_obs, [0, 0, 0, 1, 0])  # The terminal obs.


class ScaleObservations(EnvToModuleConnector):
    """A connector with state: multiplies observations by ``scale``."""

    def __init__(self):
        self.scale = 1.0

    def __call__(self, obs, space):
        return np.asarray(obs, np.float32) * self.scale

    def get_state(self):
        return {"scale": self.scale}

    def set_state(self, state):
        self.scale = state["scale"]


def test_connector_state_travels_with_the_runner_state():
    config = make_config(env=CounterEnv, env_config={"length": 50},
                         env_to_module_connector=lambda env: ScaleObservations())
    runner, other = SingleAgentEnvRunner(config), SingleAgentEnvRunner(config)
    runner.connector.scale = 100.0
    other.set_state(runner.get_state())
    assert other.connector.get_state() == {"scale": 100.0}
    fragment = other.sample(num_timesteps=4)[0]  # 2 envs x 2 steps.
    np.testing.assert_array_equal(fragment.columns[Columns.OBS][1:, 0], [100.0])
    np.testing.assert_array_equal(fragment.last_obs, [200.0, 0.0])
