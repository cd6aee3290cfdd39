"""RLlib's multi-agent env API in MultiAgentEnvRunner: make_multi_agent, spaces from dicts or
Dict attributes, agent groups, per-agent connectors and connector factories, turn-based and
simultaneous agents with nested observations, numpy modules next to torch ones, and
learner-only modules that runners never build."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlmodules import Columns, MultiRLModuleSpec, RLModule, RLModuleSpec
from runners import (ENV_STATE, EnvRunnerConfig, MultiAgentEnv, MultiAgentEnvRunner,
                     SingleAgentEnvRunner, complete_module_spec, make_multi_agent)
from runners.connectors import FlattenObservations
from test_runner import CounterEnv, MLPModule, check_fragment
from test_runner_spaces import ActionMaskModule, StructureModule


def ma_config(env, spec=None, **kwargs) -> EnvRunnerConfig:
    kwargs.setdefault("rollout_fragment_length", 20)
    return EnvRunnerConfig(env=env, rl_module_spec=spec or RLModuleSpec(module_class=MLPModule),
                           **kwargs)


def per_agent(*module_ids: str, **classes) -> dict:
    specs = {m: RLModuleSpec(module_class=classes.get(m, MLPModule)) for m in module_ids}
    return {"spec": MultiRLModuleSpec(rl_module_specs=specs),
            "policy_mapping_fn": lambda agent_id, episode, **kw: f"p{agent_id}"}


# ---- make_multi_agent, spaces -------------------------------------------------------------------

def test_make_multi_agent_copies_a_single_agent_env_per_agent():
    cls = make_multi_agent(lambda cfg: CounterEnv(cfg))
    env = cls({"num_agents": 3, "length": 4})
    assert env.possible_agents == [0, 1, 2] and env.max_num_agents == 3
    assert env.get_observation_space(2) == CounterEnv.observation_space
    assert make_multi_agent("CartPole-v1")({}).possible_agents == [0]  # Default: one agent.
    runner = MultiAgentEnvRunner(ma_config(cls, env_config={"num_agents": 3, "length": 4},
                                           rollout_fragment_length=8))
    fragments = runner.sample()
    assert sorted((f.agent_id, len(f), f.terminated) for f in fragments) == \
        [(a, 4, True) for a in range(3) for _ in range(2)]
    for f in fragments:  # The rest of the config reached each copy (episodes of 4 steps).
        check_fragment(f)
        np.testing.assert_array_equal(f.columns[Columns.OBS][:, 0], np.arange(4))
    assert runner.get_metrics()["episode_return_mean"] == 12


class DictAttributeEnv(MultiAgentEnv):
    """Spaces given as RLlib's old-style ``observation_space``/``action_space`` Dicts keyed by
    agent, no per-agent dicts; both agents act every step, episodes last 5 steps."""

    def __init__(self, config=None):
        super().__init__()
        self.agents = self.possible_agents = ["x", "y"]
        self.observation_space = spaces.Dict({"x": spaces.Box(0, 9, (2,)),
                                              "y": spaces.Box(0, 9, (3,))})
        self.action_space = spaces.Dict({"x": spaces.Discrete(2), "y": spaces.Discrete(3)})

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {a: np.full(self.observation_space[a].shape, self.t, np.float32)
                for a in self.agents}

    def step(self, action_dict):
        assert set(action_dict) == {"x", "y"}
        self.t += 1
        done = self.t >= 5
        return (self._obs(), {a: 1.0 for a in self.agents}, {"__all__": done},
                {"__all__": False}, {})


def test_spaces_come_from_dict_attributes_when_no_per_agent_dicts_are_set():
    config = ma_config(DictAttributeEnv, **{**per_agent("px", "py"),
                                            "policy_mapping_fn": lambda a, e, **k: f"p{a}"})
    specs = complete_module_spec(config).rl_module_specs
    assert specs["px"].observation_space.shape == (2,) and specs["px"].action_space.n == 2
    assert specs["py"].observation_space.shape == (3,) and specs["py"].action_space.n == 3
    fragments = MultiAgentEnvRunner(config).sample(num_timesteps=10)
    assert {(f.agent_id, f.columns[Columns.OBS].shape[1]) for f in fragments} == \
        {("x", 2), ("y", 3)}
    assert ENV_STATE == "state"


# ---- turn-based and simultaneous agents, nested observations -------------------------------------

class MaskedTurnEnv(MultiAgentEnv):
    """Agents 0 and 1 alternate; the mover observes a Dict with an action mask that allows
    one of 4 actions; the episode ends after 9 moves. Counts masked actions."""

    def __init__(self, config=None):
        super().__init__()
        self.possible_agents = [0, 1]
        space = spaces.Dict({"obs": spaces.Box(-1, 1, (3,), np.float32),
                             "action_mask": spaces.Box(0, 1, (4,), np.float32)})
        self.observation_spaces = {0: space, 1: space}
        self.action_spaces = {0: spaces.Discrete(4), 1: spaces.Discrete(4)}
        self.rng = np.random.default_rng(0)
        self.masked_actions = 0

    def _obs(self, agent):
        self.mask = np.eye(4, dtype=np.float32)[self.rng.integers(4)]
        return {agent: {"obs": np.zeros(3, np.float32), "action_mask": self.mask}}

    def reset(self, *, seed=None, options=None):
        self.moves, self.agents = 0, [0, 1]
        return self._obs(0), {}

    def step(self, action_dict):
        (mover,) = action_dict
        self.masked_actions += int(self.mask[action_dict[mover]] == 0)
        self.moves += 1
        done = self.moves >= 9
        obs = {} if done else self._obs(1 - mover)
        return obs, {mover: 1.0}, {"__all__": done}, {"__all__": False}, {}


def test_turn_based_agents_with_masked_dict_observations():
    runner = MultiAgentEnvRunner(ma_config(MaskedTurnEnv, RLModuleSpec(
        module_class=ActionMaskModule), num_envs_per_env_runner=2, seed=0))
    fragments = runner.sample(num_episodes=4)
    assert sum(env.masked_actions for env in runner.env) == 0
    assert sorted(len(f) for f in fragments) == [4] * 4 + [5] * 4
    for f in fragments:
        obs = f.columns[Columns.OBS]
        assert obs["obs"].shape == (len(f), 3) and obs["action_mask"].shape == (len(f), 4)
        assert (obs["action_mask"][np.arange(len(f)), f.columns[Columns.ACTIONS]] == 1).all()
        assert set(f.last_obs) == {"obs", "action_mask"}


def test_simultaneous_agents_with_tuple_observations():
    space = spaces.Tuple((spaces.Discrete(5), spaces.Box(-10, 10, (2,))))

    class TupleObsEnv(gym.Env):
        observation_space, action_space = space, spaces.Discrete(2)

        def __init__(self, config=None):
            self.t = 0

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return (0, np.zeros(2, np.float32)), {}

        def step(self, action):
            self.t += 1
            return (self.t % 5, np.full(2, self.t, np.float32)), 1.0, self.t >= 3, False, {}

    StructureModule.seen.clear()
    runner = MultiAgentEnvRunner(ma_config(make_multi_agent(TupleObsEnv), RLModuleSpec(
        module_class=StructureModule), env_config={"num_agents": 2}, rollout_fragment_length=3))
    fragments = runner.sample()
    assert StructureModule.seen[0] == (("[2]", torch.int64), ("[2, 2]", torch.float32))
    assert len(fragments) == 2 and all(f.terminated for f in fragments)
    for f in fragments:
        discrete, box = f.columns[Columns.OBS]
        np.testing.assert_array_equal(discrete, [0, 1, 2])
        np.testing.assert_array_equal(box[:, 0], [0, 1, 2])
        assert f.last_obs[0] == 3 and f.last_obs[1].tolist() == [3, 3]


# ---- agent groups -------------------------------------------------------------------------------

class TeamModule(RLModule):
    """A numpy heuristic for a group of two Discrete(2) agents: actions (1, 0) always."""

    def _forward(self, batch, **kwargs):
        first, second = batch[Columns.OBS]
        n = len(first)
        return {Columns.ACTIONS: (np.ones(n, np.int64), np.zeros(n, np.int64))}


def test_agent_groups_act_as_one_agent_with_tuple_spaces_and_summed_rewards():
    received = []

    class Recording(CounterEnv):
        def step(self, action):
            received.append((id(self), int(action)))
            return super().step(action)

    base = make_multi_agent(lambda cfg: Recording(cfg))
    env_maker = lambda cfg: base(cfg).with_agent_groups({"team": [0, 1]})  # noqa: E731
    env = env_maker({"num_agents": 3, "length": 4})
    assert env.possible_agents == ["team", 2]
    assert env.get_observation_space("team") == spaces.Tuple([CounterEnv.observation_space] * 2)
    assert env.get_action_space("team") == spaces.Tuple([spaces.Discrete(2)] * 2)
    config = ma_config(env_maker, MultiRLModuleSpec(rl_module_specs={
        "team": RLModuleSpec(module_class=TeamModule),
        "solo": RLModuleSpec(module_class=MLPModule)}),
        env_config={"num_agents": 3, "length": 4}, rollout_fragment_length=4,
        policy_mapping_fn=lambda aid, ep, **kw: "team" if aid == "team" else "solo")
    runner = MultiAgentEnvRunner(config)
    received.clear()
    fragments = {f.agent_id: f for f in runner.sample()}
    team = fragments["team"]
    assert len(team) == 4 and team.terminated
    first, second = team.columns[Columns.OBS]
    np.testing.assert_array_equal(first[:, 0], np.arange(4))
    np.testing.assert_array_equal(second[:, 0], np.arange(4))
    np.testing.assert_array_equal(team.columns[Columns.REWARDS], 2.0)  # Both members' 1.0.
    assert [a.tolist() for a in team.columns[Columns.ACTIONS]] == [[1] * 4, [0] * 4]
    assert Columns.ACTION_LOGP not in team.columns  # The numpy module chose its actions.
    assert Columns.ACTION_LOGP in fragments[2].columns  # The torch module next to it.
    member_actions = [a for _, a in received]  # Per step: member 0, member 1, agent 2.
    assert member_actions[0::3] == [1] * 4 and member_actions[1::3] == [0] * 4


def test_with_agent_groups_rejects_an_agent_in_two_groups():
    env = make_multi_agent("CartPole-v1")({"num_agents": 3})
    with pytest.raises(ValueError, match="agent 1 is in groups 'a' and 'b'"):
        env.with_agent_groups({"a": [0, 1], "b": [1, 2]})


# ---- connectors ---------------------------------------------------------------------------------

class MixedEnv(MultiAgentEnv):
    """Agent "d" observes a Dict, agent "b" a Box; both act every step; 3-step episodes."""

    def __init__(self, config=None):
        super().__init__()
        self.possible_agents = ["d", "b"]
        self.observation_spaces = {
            "d": spaces.Dict({"pos": spaces.Box(-5, 5, (2,)), "mode": spaces.Discrete(3)}),
            "b": spaces.Box(-5, 5, (3,), np.float32)}
        self.action_spaces = {"d": spaces.Discrete(2), "b": spaces.Discrete(2)}

    def _obs(self):
        return {"d": {"pos": np.full(2, self.t, np.float32), "mode": self.t % 3},
                "b": np.full(3, self.t, np.float32)}

    def reset(self, *, seed=None, options=None):
        self.t, self.agents = 0, ["d", "b"]
        return self._obs(), {}

    def step(self, action_dict):
        self.t += 1
        return (self._obs(), dict.fromkeys(action_dict, 1.0), {"__all__": self.t >= 3},
                {"__all__": False}, {})


def test_per_agent_flatten_observations_and_the_three_argument_factory():
    calls = []

    def factory(env, spaces_, device):
        calls.append((env, spaces_, device))
        return FlattenObservations(multi_agent=True, agent_ids=["d"])

    config = ma_config(MixedEnv, **per_agent("pd", "pb", pd=MLPModule, pb=MLPModule),
                       env_to_module_connector=factory, rollout_fragment_length=3)
    config.policy_mapping_fn = lambda agent_id, episode, **kw: f"p{agent_id}"
    specs = complete_module_spec(config).rl_module_specs
    assert specs["pd"].observation_space.shape == (5,)  # pos (2) + one-hot mode (3).
    assert specs["pb"].observation_space == MixedEnv().observation_spaces["b"]  # Unchanged.
    runner = MultiAgentEnvRunner(config)
    env, spaces_, device = calls[-1]
    assert isinstance(env, MixedEnv) and device is None
    assert spaces_["__env_single__"][0]["d"] == env.observation_spaces["d"]
    assert spaces_["__env__"][1]["b"] == spaces.Discrete(2)
    by_agent = {f.agent_id: f for f in runner.sample()}
    # Dict keys in gymnasium's (sorted) order: one-hot mode, then pos.
    np.testing.assert_array_equal(by_agent["d"].columns[Columns.OBS][1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(by_agent["d"].last_obs, [1, 0, 0, 3, 3])
    np.testing.assert_array_equal(by_agent["b"].columns[Columns.OBS][:, 0], [0, 1, 2])


def test_single_agent_three_argument_factory_gets_vector_and_single_spaces():
    seen = {}

    def factory(env, spaces_, device):
        seen.update(spaces_, device=device)
        return FlattenObservations()

    runner = SingleAgentEnvRunner(EnvRunnerConfig(
        env="FrozenLake-v1", env_to_module_connector=factory, num_envs_per_env_runner=3,
        rollout_fragment_length=5, rl_module_spec=RLModuleSpec(module_class=MLPModule)))
    assert seen["__env_single__"] == (spaces.Discrete(16), spaces.Discrete(4))
    assert seen["__env__"] == (spaces.MultiDiscrete([16] * 3), spaces.MultiDiscrete([4] * 3))
    assert seen["device"] is None
    assert runner.sample()[0].columns[Columns.OBS].shape[1:] == (16,)


@pytest.mark.parametrize("given", [FlattenObservations(multi_agent=True, agent_ids=["d"]),
                                   [FlattenObservations(multi_agent=True, agent_ids=["d"])]])
def test_connector_pieces_given_instead_of_a_factory_work(given):
    config = ma_config(MixedEnv, **per_agent("pd", "pb", pd=MLPModule, pb=MLPModule),
                       env_to_module_connector=given, rollout_fragment_length=3)
    config.policy_mapping_fn = lambda agent_id, episode, **kw: f"p{agent_id}"
    assert complete_module_spec(config).rl_module_specs["pd"].observation_space.shape == (5,)
    runner = MultiAgentEnvRunner(config)
    pieces = given if isinstance(given, list) else [given]
    assert runner.connector.connectors[0] is not pieces[0]  # Each runner gets a copy.
    obs = {f.agent_id: f.columns[Columns.OBS] for f in runner.sample()}
    assert obs["d"].shape[1:] == (5,)


def test_a_wrong_connector_setting_is_named():
    with pytest.raises(ValueError, match="env_to_module_connector='flatten' is invalid; it "
                                         "must be None, a callable that makes the pieces"):
        ma_config(MixedEnv, env_to_module_connector="flatten")


# ---- learner-only modules -----------------------------------------------------------------------

class NeverOnRunners(MLPModule):
    def setup(self):
        if self.inference_only:
            raise AssertionError("a learner_only module was built on an env runner")
        super().setup()


def test_learner_only_modules_are_not_built_on_runners_nor_need_agents():
    aux = RLModuleSpec(module_class=NeverOnRunners, learner_only=True)
    spec = MultiRLModuleSpec(rl_module_specs={"p0": RLModuleSpec(module_class=MLPModule),
                                              "p1": RLModuleSpec(module_class=MLPModule),
                                              "aux": aux})
    config = ma_config(make_multi_agent("CartPole-v1"), spec, env_config={"num_agents": 2},
                       policy_mapping_fn=lambda aid, ep, **kw: f"p{aid}")
    assert complete_module_spec(config).rl_module_specs["aux"].observation_space is None
    runner = MultiAgentEnvRunner(config)
    assert sorted(runner.module.keys()) == ["p0", "p1"]
    assert {f.module_id for f in runner.sample()} == {"p0", "p1"}
    single = EnvRunnerConfig(env="CartPole-v1", rollout_fragment_length=5,
                             rl_module_spec=MultiRLModuleSpec(rl_module_specs={
                                 "default_policy": RLModuleSpec(module_class=MLPModule),
                                 "aux": aux}))
    filled = complete_module_spec(single).rl_module_specs["aux"]
    assert filled.observation_space.shape == (4,) and filled.action_space.n == 2  # As before.
    assert list(SingleAgentEnvRunner(single).module.keys()) == ["default_policy"]
