"""Weight syncs: a runner does not load again the version it holds, what it loads is exactly
what was sent, and a runner that holds other weights than were sent is an error naming it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

import test_runner
from conftest import shipped_by_value
from rlmodules import Columns, TorchRLModule
from runners import EnvRunnerGroup, SingleAgentEnvRunner
from runners.weights import weights_digest
from test_runner import make_config


class FaultyLoads(TorchRLModule):
    """Two 64x64 hidden layers (large enough that the digest samples them); counts its
    set_state calls, and ``model_config["fault"]`` names how a load goes wrong."""

    def setup(self):
        obs, n = self.observation_space.shape[0], self.action_space.n
        self.pi = nn.Sequential(nn.Linear(obs, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n))
        self.loads = 0

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def set_state(self, state):
        self.loads += 1
        before = {k: v.clone() for k, v in self.state_dict().items()}
        super().set_state(state)
        fault = (self.model_config or {}).get("fault")
        with torch.no_grad():
            if fault == "stale":  # One parameter not loaded.
                self.pi[0].weight.copy_(before["pi.0.weight"])
            elif fault == "swapped":  # Two same-shaped parameters loaded into each other.
                second = self.pi[2].weight.clone()
                self.pi[2].weight.copy_(self.pi[4].weight)
                self.pi[4].weight.copy_(second)
            elif fault == "half":  # Only the first half of a tensor copied.
                self.pi[2].weight.view(-1)[2048:] = before["pi.2.weight"].view(-1)[2048:]


def config(**kwargs):
    return make_config(module_class=FaultyLoads, rollout_fragment_length=10, **kwargs)


def random_weights(runner_module, seed):
    rng = np.random.default_rng(seed)
    return {mid: {k: rng.normal(size=v.shape).astype(v.dtype) for k, v in params.items()}
            for mid, params in runner_module.get_state().items()}


def held(runner):
    return {k: v.detach().numpy().copy()
            for k, v in runner.module["default_policy"].state_dict().items()}


def assert_holds(state, weights):
    assert state.keys() == weights["default_policy"].keys()
    for name, value in state.items():
        np.testing.assert_array_equal(value, weights["default_policy"][name])


@pytest.fixture
def runner():
    runner = SingleAgentEnvRunner(config())
    yield runner
    runner.stop()


def test_a_version_the_runner_holds_is_not_loaded_again(runner):
    weights = random_weights(runner.module, seed=1)
    assert runner.set_weights(weights, 3, weights_digest(weights)) == 3
    assert runner.set_weights(weights, 3, weights_digest(weights)) == 3
    assert runner.module["default_policy"].loads == 1
    runner.set_weights(weights, 4, weights_digest(weights))
    assert runner.module["default_policy"].loads == 2


def test_the_same_number_with_other_weights_is_loaded(runner):
    """After a restore, the algorithm's counter may give a number again for other weights."""
    first, second = random_weights(runner.module, seed=1), random_weights(runner.module, seed=2)
    runner.set_weights(first, 3, weights_digest(first))
    runner.set_weights(second, 3, weights_digest(second))
    assert runner.module["default_policy"].loads == 2
    assert_holds(held(runner), second)


@pytest.mark.parametrize("fault", ["stale", "swapped", "half"])
def test_a_wrong_load_is_an_error_and_the_version_is_not_taken(fault):
    runner = SingleAgentEnvRunner(config(model_config={"fault": fault}))
    try:
        weights = random_weights(runner.module, seed=1)
        with pytest.raises(RuntimeError, match=r"EnvRunner 0: module 'default_policy' holds "
                                               r"weights with digest \w+ after a sync"):
            runner.set_weights(weights, 5, weights_digest(weights))
        assert runner.weights_seq_no == 0
    finally:
        runner.stop()


def test_digest_covers_names_dtypes_shapes_and_values_of_tensors_and_arrays():
    weights = {"p": {"w": np.arange(5000, dtype=np.float32).reshape(50, 100),
                     "b": np.zeros(3, np.float32)}}
    digest = weights_digest(weights)
    assert weights_digest({"p": {k: torch.from_numpy(v) for k, v in weights["p"].items()}}) \
        == digest
    changed = [{"p": {"v": weights["p"]["w"], "b": weights["p"]["b"]}},
               {"p": {**weights["p"], "w": weights["p"]["w"].astype(np.float64)}},
               {"p": {**weights["p"], "w": weights["p"]["w"].reshape(100, 50)}},
               {"p": {**weights["p"], "w": weights["p"]["w"] + 1}}]
    for other in changed:
        assert weights_digest(other) != digest


@pytest.fixture(scope="module")
def ray(ray_session):
    with shipped_by_value(sys.modules[__name__], test_runner):
        yield ray_session


@pytest.mark.ray
def test_ray_runners_load_exactly_what_was_sent_once_per_version(ray):
    group = EnvRunnerGroup(config(num_env_runners=2, num_cpus_per_env_runner=0.5))
    try:
        module = group.foreach_env_runner(lambda runner: runner.module)[0]
        first, second = random_weights(module, seed=1), random_weights(module, seed=2)
        group.sync_weights(first, weights_seq_no=1)
        group.sync_weights(first, weights_seq_no=1)
        for state in group.foreach_env_runner(held):
            assert_holds(state, first)
        group.sync_weights(second, weights_seq_no=2)
        for state in group.foreach_env_runner(held):
            assert_holds(state, second)
        assert group.foreach_env_runner(lambda r: r.module["default_policy"].loads) == [2, 2]
        assert group.get_metrics()["weights_seq_nos"] == [2, 2]
        group.sample()  # They act with what they loaded.
    finally:
        group.stop()
