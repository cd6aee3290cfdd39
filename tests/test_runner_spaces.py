"""Every gymnasium space in the single-agent runner: nested observations (Dict, Tuple, Dict of
Tuple) reach the module as nested tensors and fragments as nested columns, composite and
shaped actions are sampled, stored and handed to the env in the space's structure; envs and
module outputs that do not fit are named clearly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlmodules import Columns, RLModuleSpec, TorchRLModule
from rlmodules.distributions import default_dist_cls
from rlmodules.tree import first_leaf, map_tree
from runners import EnvRunnerConfig, SingleAgentEnvRunner
from runners.env_registry import EnvError


def config_for(env, module_class, **kwargs) -> EnvRunnerConfig:
    kwargs.setdefault("num_envs_per_env_runner", 2)
    kwargs.setdefault("rollout_fragment_length", 10)
    return EnvRunnerConfig(env=env, rl_module_spec=RLModuleSpec(
        module_class=module_class, model_config=kwargs.pop("model_config", None)), **kwargs)


def step_obs(space: gym.Space, t: int):
    """An observation of ``space`` that encodes step ``t`` in every leaf."""
    if isinstance(space, spaces.Dict):
        return {k: step_obs(s, t) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(step_obs(s, t) for s in space.spaces)
    if isinstance(space, spaces.Discrete):
        return t % int(space.n)
    if isinstance(space, spaces.MultiBinary):
        return np.full(space.shape, t % 2, np.int8)
    if isinstance(space, spaces.MultiDiscrete):
        return (t % space.nvec).astype(space.dtype)
    return np.full(space.shape, t, space.dtype)


class StepEnv(gym.Env):
    """Observations of ``config["obs_space"]`` encoding the step (``step_obs``); episodes
    last ``length`` steps; records the actions it gets."""

    def __init__(self, config):
        self.observation_space = config["obs_space"]
        self.action_space = config.get("action_space", spaces.Discrete(2))
        self.length = config.get("length", 4)
        self.received = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return step_obs(self.observation_space, 0), {}

    def step(self, action):
        self.received.append(action)
        self.t += 1
        return step_obs(self.observation_space, self.t), 1.0, self.t >= self.length, False, {}


class StructureModule(TorchRLModule):
    """Logits from a parameter; records the structure and shapes of the obs it is given."""

    seen: list = []

    def setup(self):
        self.bias = nn.Parameter(torch.zeros(self.action_space.n))

    def _forward(self, batch, **kwargs):
        StructureModule.seen.append(map_tree(lambda v: (str(list(v.shape)), v.dtype),
                                             batch[Columns.OBS]))
        n = len(first_leaf(batch[Columns.OBS]))
        return {Columns.ACTION_DIST_INPUTS: self.bias.expand(n, -1)}


NESTED = {
    "tuple": spaces.Tuple((spaces.Discrete(3), spaces.Box(-10, 10, (2,), np.float64))),
    "dict_of_tuple": spaces.Dict({
        "pair": spaces.Tuple((spaces.Box(-10, 10, (2,)), spaces.MultiDiscrete([3, 4]))),
        "flags": spaces.MultiBinary(3)}),
}


@pytest.mark.parametrize("name", list(NESTED))
def test_nested_observations_reach_the_module_and_fragments_nested(name):
    space = NESTED[name]
    StructureModule.seen.clear()
    runner = SingleAgentEnvRunner(config_for(StepEnv, StructureModule,
                                             env_config={"obs_space": space, "length": 4},
                                             rollout_fragment_length=6))
    fragments = runner.sample()
    seen = StructureModule.seen[0]  # Leaves are (shape, dtype) pairs: compare containers.
    shapes = map_tree(lambda v: str([2, *np.shape(v)]), step_obs(space, 0))
    if name == "tuple":  # Floats become float32, integers keep their dtype.
        assert seen == ((shapes[0], torch.int64), (shapes[1], torch.float32))
    else:
        assert seen == {"pair": ((shapes["pair"][0], torch.float32),
                                 (shapes["pair"][1], torch.int64)),
                        "flags": (shapes["flags"], torch.int8)}
    assert [len(f) for f in fragments] == [4, 4, 2, 2]
    for f in fragments:
        first = int(f.columns[Columns.OBS]["pair"][0][0, 0] if name != "tuple" else
                    f.columns[Columns.OBS][1][0, 0])
        steps = np.arange(first, first + len(f))
        columns = f.columns[Columns.OBS]
        map_tree(lambda col, ref: np.testing.assert_array_equal(col, ref),  # [T, ...] per leaf.
                 columns, map_tree(lambda *rows: np.stack(rows),
                                   *[step_obs(space, int(t)) for t in steps]))
        last = int(steps[-1]) + 1
        map_tree(lambda v, ref: np.testing.assert_array_equal(v, ref), f.last_obs,
                 step_obs(space, last))
    assert fragments[0].terminated and not fragments[2].is_done


class MaskEnv(gym.Env):
    """Dict obs with an action mask allowing one random action of 5 per step; counts the
    masked actions it receives."""

    observation_space = spaces.Dict({"obs": spaces.Box(-1, 1, (3,), np.float32),
                                     "action_mask": spaces.Box(0, 1, (5,), np.float32)})
    action_space = spaces.Discrete(5)

    def __init__(self, config=None):
        self.rng = np.random.default_rng(0)
        self.masked_actions = 0

    def _obs(self):
        self.mask = np.zeros(5, np.float32)
        self.mask[self.rng.integers(5)] = 1
        return {"obs": self.rng.uniform(-1, 1, 3).astype(np.float32), "action_mask": self.mask}

    def reset(self, *, seed=None, options=None):
        return self._obs(), {}

    def step(self, action):
        self.masked_actions += int(self.mask[action] == 0)
        return self._obs(), 1.0, False, False, {}


class ActionMaskModule(TorchRLModule):
    """RLlib's action-masking pattern: pops the mask from the obs dict in _forward_*."""

    def setup(self):
        self.pi = nn.Linear(self.observation_space["obs"].shape[0], self.action_space.n)

    def _forward(self, batch, **kwargs):
        mask = batch[Columns.OBS].pop("action_mask")
        logits = self.pi(batch[Columns.OBS]["obs"])
        return {Columns.ACTION_DIST_INPUTS: logits.masked_fill(mask == 0, -1e9)}


@pytest.mark.parametrize("explore", [True, False])
def test_action_mask_in_dict_observations_is_respected(explore):
    runner = SingleAgentEnvRunner(config_for(MaskEnv, ActionMaskModule, seed=0,
                                             rollout_fragment_length=50))
    fragments = runner.sample(explore=explore)
    assert sum(env.masked_actions for env in runner.env.envs) == 0
    for f in fragments:  # The mask the module popped is still in the fragments.
        mask, actions = f.columns[Columns.OBS]["action_mask"], f.columns[Columns.ACTIONS]
        assert mask.shape == (len(f), 5) and (mask[np.arange(len(f)), actions] == 1).all()
    assert len(np.unique(np.concatenate([f.columns[Columns.ACTIONS] for f in fragments]))) == 5


class DistInputsModule(TorchRLModule):
    """Distribution inputs of the size the default distribution needs, from a parameter."""

    def setup(self):
        dim = default_dist_cls(self.action_space).required_input_dim(self.action_space)
        self.inputs = nn.Parameter(torch.linspace(-1, 1, dim))

    def _forward(self, batch, **kwargs):
        n = len(first_leaf(batch[Columns.OBS]))
        return {Columns.ACTION_DIST_INPUTS: self.inputs.expand(n, -1)}


ACTION_SPACES = {
    "multi_binary": spaces.MultiBinary(3),
    "box_2x3": spaces.Box(-0.5, 0.5, (2, 3), np.float32),
    "dict": spaces.Dict({"move": spaces.Discrete(3),
                         "force": spaces.Box(-1, 1, (2,), np.float32)}),
    "tuple": spaces.Tuple((spaces.Discrete(2), spaces.MultiDiscrete([2, 3]))),
}


@pytest.mark.parametrize("name", list(ACTION_SPACES))
def test_actions_are_sampled_stored_and_sent_in_the_space_structure(name):
    space = ACTION_SPACES[name]
    obs_space = spaces.MultiBinary(4)  # MultiBinary observations too.
    runner = SingleAgentEnvRunner(config_for(
        StepEnv, DistInputsModule, seed=0, num_envs_per_env_runner=2,
        env_config={"obs_space": obs_space, "action_space": space, "length": 100}))
    fragments = runner.sample()
    for f in fragments:
        actions = f.columns[Columns.ACTIONS]
        map_tree(lambda a, s: (a.shape == (10, *s.shape)) or pytest.fail(f"{a.shape}"),
                 actions, _leaves(space))
        assert f.columns[Columns.OBS].shape == (10, 4)
        dist = default_dist_cls(space).from_logits(
            torch.as_tensor(f.columns[Columns.ACTION_DIST_INPUTS]))
        expected = dist.logp(map_tree(torch.as_tensor, actions))
        np.testing.assert_allclose(f.columns[Columns.ACTION_LOGP], expected.numpy(), rtol=1e-5)
    received = runner.env.envs[0].received
    assert len(received) == 10
    for action in received:
        assert space.contains(action), action  # Structured, clipped, of the space's dtype.
    if name == "box_2x3":
        stored = np.concatenate([f.columns[Columns.ACTIONS] for f in fragments])
        assert (np.abs(stored) > 0.5).any()  # Kept unclipped in the fragments.


def _leaves(space):
    if isinstance(space, spaces.Dict):
        return {k: _leaves(s) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_leaves(s) for s in space.spaces)
    return space


class AutoregressiveModule(TorchRLModule):
    """Samples its own Tuple action: the second part copies the first; returns its logp."""

    def setup(self):
        self.logits = nn.Parameter(torch.zeros(2))

    def _forward(self, batch, **kwargs):
        n = len(batch[Columns.OBS])
        first = torch.distributions.Categorical(logits=self.logits.expand(n, -1)).sample()
        return {Columns.ACTIONS: (first, first.clone()),
                Columns.ACTION_LOGP: torch.full((n,), -0.25),
                Columns.ACTION_DIST_INPUTS: torch.zeros(n, 4)}


def test_a_modules_own_composite_actions_and_logp_are_kept():
    space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2)))
    runner = SingleAgentEnvRunner(config_for(
        StepEnv, AutoregressiveModule, seed=0,
        env_config={"obs_space": spaces.Box(0, 100, (2,)), "action_space": space,
                    "length": 100}))
    for f in runner.sample():
        first, second = f.columns[Columns.ACTIONS]
        np.testing.assert_array_equal(first, second)
        np.testing.assert_array_equal(f.columns[Columns.ACTION_LOGP], -0.25)
    received = runner.env.envs[1].received
    assert all(isinstance(a, tuple) and a[0] == a[1] for a in received)
    assert {int(a[0]) for a in received} == {0, 1}


# ---- errors -------------------------------------------------------------------------------------

class LyingEnv(gym.Env):
    """Declares Box(4,) observations; ``config["bad"]`` says what it gets wrong and where."""

    observation_space = spaces.Box(-1, 1, (4,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, config):
        self.bad = config["bad"]

    def reset(self, *, seed=None, options=None):
        obs = np.zeros(5 if self.bad == "reset_shape" else 4, np.float32)
        return obs if self.bad == "old_reset" else (obs, {})

    def step(self, action):
        obs = np.zeros(4, np.float32)
        if self.bad == "step_shape":
            obs = np.zeros(5, np.float32)
        if self.bad == "step_dtype":
            obs = np.array(["a"] * 4)
        if self.bad == "old_step":
            return obs, 1.0, False, {}
        return obs, 1.0, False, False, {}


@pytest.mark.parametrize("bad, match", [
    ("reset_shape", r"Env 0, reset\(\): LyingEnv .*Box\(-1.0, 1.0, \(4,\).*obs has shape \(5,\)"),
    ("step_shape", r"Env 0, step\(\): LyingEnv .*obs has shape \(5,\), but Box.* \(4,\)"),
    ("step_dtype", r"LyingEnv .*obs has dtype <U1, but Box.* float32.*Got array\(\['a'"),
    ("old_reset", r"LyingEnv.reset\(\) returned array.*not \(obs, info\).*gymnasium API"),
    ("old_step", r"LyingEnv.step\(\) returned 4 values.*old gym env"),
])
def test_envs_that_break_their_space_or_the_gymnasium_api_are_named(bad, match):
    with pytest.raises(EnvError, match=match):
        SingleAgentEnvRunner(config_for(LyingEnv, StructureModule, env_config={"bad": bad}))\
            .sample()


class BadOutputModule(DistInputsModule):
    """Returns ``model_config["bad"]``: a column without the batch dim or mis-sized inputs."""

    def _forward(self, batch, **kwargs):
        out = super()._forward(batch)
        n = len(out[Columns.ACTION_DIST_INPUTS])
        if self.model_config["bad"] == "vf_preds":
            out[Columns.VF_PREDS] = torch.zeros(n + 1)
        else:
            out[Columns.ACTION_DIST_INPUTS] = torch.zeros(n, 3)
        return out


@pytest.mark.parametrize("bad, match", [
    ("vf_preds", r"'default_policy' \(BadOutputModule\) returned 'vf_preds' of shape \(3,\) "
                 r"for a batch of 2"),
    ("inputs", r"BadOutputModule\) returned 'action_dist_inputs' of shape \(2, 3\), but "
               r"TorchCategorical needs a last dim of 2"),
])
def test_module_outputs_that_do_not_fit_the_batch_or_distribution_are_named(bad, match):
    runner = SingleAgentEnvRunner(config_for(StepEnv, BadOutputModule, model_config={"bad": bad},
                                             env_config={"obs_space": spaces.Box(0, 9, (2,))}))
    with pytest.raises(ValueError, match=match):
        runner.sample()


def test_actions_that_miss_a_part_of_the_space_are_named():
    class HalfTuple(AutoregressiveModule):
        def _forward(self, batch, **kwargs):
            return {Columns.ACTIONS: (torch.zeros(len(batch[Columns.OBS]), dtype=torch.long),)}

    runner = SingleAgentEnvRunner(config_for(
        StepEnv, HalfTuple, env_config={"obs_space": spaces.Box(0, 9, (2,)),
                                        "action_space": ACTION_SPACES["tuple"]}))
    with pytest.raises(ValueError, match=r"HalfTuple\) returned actions that do not fit.*"
                                         r"actions is a tuple of 1.*tuple of 2"):
        runner.sample()


@pytest.mark.ray
def test_remote_runner_returns_nested_observations_and_respects_the_mask(ray_session):
    import sys

    from conftest import shipped_by_value
    from runners import EnvRunnerGroup

    with shipped_by_value(sys.modules[__name__]):
        group = EnvRunnerGroup(config_for(MaskEnv, ActionMaskModule, seed=0, num_env_runners=1,
                                          num_cpus_per_env_runner=0.5))
        try:
            fragments = group.sample()
        finally:
            group.stop()
    assert sum(len(f) for f in fragments) == 20
    for f in fragments:
        mask = f.columns[Columns.OBS]["action_mask"]
        assert (mask[np.arange(len(f)), f.columns[Columns.ACTIONS]] == 1).all()
        assert set(f.last_obs) == {"obs", "action_mask"}
