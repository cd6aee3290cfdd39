"""Multi-agent: MultiAgentCartPole, MultiAgentEnvRunner and multi-agent module specs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from torch import nn

from rlmodules import (ENCODER_OUT, Columns, MultiRLModule, MultiRLModuleSpec, RLModuleSpec,
                       TorchRLModule)
from runners import EnvRunnerConfig, MultiAgentEnv, MultiAgentEnvRunner, complete_module_spec
from runners.envs import MultiAgentCartPole
from test_runner import (CountingLSTMModule, MLPModule, assert_state_counts_steps,
                         check_fragment)

BOX = gym.spaces.Box(0, 1e6, (2,), np.float32)


class MultiAgentCounter(MultiAgentEnv):
    """Agent i observes [its step count, episode number] and is done after lengths[i] steps.

    With ``fail_every=k``, every k-th episode raises in step() at its 2nd step.
    """

    def __init__(self, config=None):
        config = config or {}
        self.lengths = config.get("lengths", [3, 6])
        self.fail_every = config.get("fail_every", 0)
        self.possible_agents = list(range(len(self.lengths)))
        self.observation_spaces = {i: BOX for i in self.possible_agents}
        self.action_spaces = {i: gym.spaces.Discrete(2) for i in self.possible_agents}
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        self.episode += 1
        self.t = dict.fromkeys(self.possible_agents, 0)
        return {i: self._obs(i) for i in self.possible_agents}, {}

    def _obs(self, i):
        return np.array([self.t[i], self.episode], np.float32)

    def step(self, action_dict):
        if self.fail_every and self.episode % self.fail_every == 1 and max(self.t.values()) == 1:
            raise RuntimeError("simulated env crash")
        obs, rewards, terminateds = {}, {}, {}
        for i in action_dict:
            self.t[i] += 1
            obs[i], rewards[i] = self._obs(i), 1.0
            terminateds[i] = self.t[i] >= self.lengths[i]
        terminateds["__all__"] = all(self.t[i] >= n for i, n in enumerate(self.lengths))
        return obs, rewards, terminateds, {"__all__": False}, {}


class TurnEnv(MultiAgentEnv):
    """Agents "a" and "b" take turns; only the agent to move observes [its move count, 0].

    The mover gets reward 1 and the other agent 0.5 in each step; the episode ends after
    ``length`` moves in total.
    """

    possible_agents = ["a", "b"]

    def __init__(self, config=None):
        self.length = (config or {}).get("length", 100)
        self.observation_spaces = {"a": BOX, "b": BOX}
        self.action_spaces = {"a": gym.spaces.Discrete(2), "b": gym.spaces.Discrete(2)}

    def reset(self, *, seed=None, options=None):
        self.moves = {"a": 0, "b": 0}
        return {"a": self._obs("a")}, {}

    def _obs(self, agent):
        return np.array([self.moves[agent], 0], np.float32)

    def step(self, action_dict):
        (mover,) = action_dict
        other = "b" if mover == "a" else "a"
        self.moves[mover] += 1
        done = sum(self.moves.values()) >= self.length
        obs = {other: self._obs(other)} if not done else {}
        return (obs, {mover: 1.0, other: 0.5}, {"__all__": done}, {"__all__": False}, {})


class RecordingMLP(MLPModule):
    batch_sizes: list = []

    def _forward(self, batch, **kwargs):
        RecordingMLP.batch_sizes.append(len(batch[Columns.OBS]))
        return super()._forward(batch)


def ma_config(env=MultiAgentCartPole, spec=None, **kwargs) -> EnvRunnerConfig:
    kwargs.setdefault("env_config", {"num_agents": 2})
    kwargs.setdefault("rollout_fragment_length", 30)
    return EnvRunnerConfig(env=env, rl_module_spec=spec or RLModuleSpec(module_class=MLPModule),
                           **kwargs)


def two_policies(module_class=MLPModule) -> dict:
    specs = {p: RLModuleSpec(module_class=module_class) for p in ("p0", "p1")}
    return {"spec": MultiRLModuleSpec(rl_module_specs=specs),
            "policy_mapping_fn": lambda agent_id, episode, **kw: f"p{agent_id}"}


# ---- the env ------------------------------------------------------------------------------------

def test_multi_agent_cartpole_ends_when_every_pole_has_fallen():
    env = MultiAgentCartPole({"num_agents": 3})
    assert env.possible_agents == [0, 1, 2]
    assert env.get_observation_space(1).shape == (4,) and env.get_action_space(2).n == 2
    obs, _ = env.reset(seed=0)
    assert set(obs) == {0, 1, 2}
    active, done_agents, steps = {0, 1, 2}, set(), 0
    while True:
        obs, rewards, terminateds, truncateds, _ = env.step({i: 0 for i in active})
        steps += 1
        assert set(obs) == active  # Agents that finish get their final observation once.
        done_agents |= {i for i in active if terminateds[i]}
        active -= done_agents
        if terminateds["__all__"]:
            break
        assert active
    assert done_agents == {0, 1, 2} and steps < 50 and not truncateds["__all__"]


# ---- the runner ---------------------------------------------------------------------------------

def test_each_policy_acts_for_its_agents_and_each_agent_piece_is_a_fragment():
    runner = MultiAgentEnvRunner(ma_config(**two_policies(), num_envs_per_env_runner=2, seed=0))
    fragments = runner.sample()
    assert {f.agent_id for f in fragments} == {0, 1}
    for f in fragments:
        check_fragment(f)
        assert f.module_id == f"p{f.agent_id}"
        assert Columns.ACTION_LOGP in f.columns and f.columns[Columns.OBS].shape[1:] == (4,)
    metrics = runner.get_metrics()
    assert metrics["num_env_steps_sampled"] == 60 and metrics["num_episodes"] > 0
    # An episode's return is summed over its agents (CartPole pays 1 per agent and step).
    done = {}
    for f in fragments:
        done.setdefault(f.episode_id, []).append(f)
    whole = [sum(len(f) for f in fs) for fs in done.values()
             if len(fs) == 2 and all(f.terminated for f in fs)]
    assert whole and metrics["episode_return_max"] >= max(whole)


def test_policy_mapping_fn_gets_the_episode_its_fragments_belong_to():
    calls = []

    def mapping(agent_id, episode, **kw):
        if episode is not None:  # None while the module specs are completed.
            calls.append((agent_id, episode.id_, episode.env_index))
        return f"p{agent_id}"

    runner = MultiAgentEnvRunner(ma_config(**{**two_policies(), "policy_mapping_fn": mapping},
                                           env=MultiAgentCounter, env_config={"lengths": [3, 6]},
                                           num_envs_per_env_runner=2, rollout_fragment_length=8))
    fragments = runner.sample()
    assert len(calls) == len(set(calls))  # Once per agent and episode.
    env_of = {episode_id: env for _, episode_id, env in calls}
    assert {env for _, _, env in calls} == {0, 1}
    for f in fragments:
        assert (f.agent_id, f.episode_id, env_of[f.episode_id]) in calls
    # Both envs ran one whole 6-step episode and 2 steps of the next: 2 episodes each.
    assert len(env_of) == 4 and len({f.episode_id for f in fragments}) == 4


def test_agents_of_one_module_share_one_forward_pass_per_step():
    RecordingMLP.batch_sizes.clear()
    spec = RLModuleSpec(module_class=RecordingMLP)
    runner = MultiAgentEnvRunner(ma_config(spec=spec, env_config={"num_agents": 3},
                                           num_envs_per_env_runner=2))
    fragments = runner.sample(num_timesteps=20)
    assert len(RecordingMLP.batch_sizes) == 10  # One forward per vector step.
    assert RecordingMLP.batch_sizes[0] == 6  # 2 envs x 3 agents.
    assert sum(RecordingMLP.batch_sizes) == sum(len(f) for f in fragments)


def test_agents_leave_when_done_and_episodes_end_when_all_are():
    runner = MultiAgentEnvRunner(ma_config(env=MultiAgentCounter, env_config={"lengths": [3, 6]},
                                           rollout_fragment_length=14))
    fragments = runner.sample()
    lengths = [(f.agent_id, len(f), f.terminated) for f in fragments]
    assert lengths == [(0, 3, True), (1, 6, True), (0, 3, True), (1, 6, True), (0, 2, False),
                       (1, 2, False)]
    np.testing.assert_array_equal(fragments[1].columns[Columns.OBS][:, 0], np.arange(6))
    np.testing.assert_array_equal(fragments[1].last_obs, [6, 0])
    assert runner.get_metrics()["episode_return_mean"] == 9  # 3 + 6 agent steps.


def test_turn_based_agents_get_their_rewards_and_next_observation_across_calls():
    runner = MultiAgentEnvRunner(ma_config(env=TurnEnv, env_config={}))
    pieces = [f for _ in range(3) for f in runner.sample(num_timesteps=5)]
    for agent in ("a", "b"):
        mine = [f for f in pieces if f.agent_id == agent]
        obs = np.concatenate([f.columns[Columns.OBS][:, 0] for f in mine])
        np.testing.assert_array_equal(obs, np.arange(len(obs)))  # No row lost or repeated.
        for f, following in zip(mine, mine[1:]):
            np.testing.assert_array_equal(f.last_obs, following.columns[Columns.OBS][0])
        rewards = np.concatenate([f.columns[Columns.REWARDS] for f in mine])
        np.testing.assert_array_equal(rewards, 1.5)  # Own move, then the other's move.


def test_whole_episodes_in_multi_agent_mode():
    runner = MultiAgentEnvRunner(ma_config(env=MultiAgentCounter, env_config={"lengths": [2, 5]},
                                           num_envs_per_env_runner=2, rollout_fragment_length=3))
    episodes = runner.sample(num_episodes=3)
    assert len({f.episode_id for f in episodes}) == 3 and len(episodes) == 6
    assert sorted(len(f) for f in episodes) == [2, 2, 2, 5, 5, 5]
    assert all(f.terminated for f in episodes)


def test_stateful_modules_keep_one_state_per_agent():
    runner = MultiAgentEnvRunner(ma_config(env=MultiAgentCounter,
                                           spec=RLModuleSpec(module_class=CountingLSTMModule),
                                           env_config={"lengths": [3, 7]},
                                           num_envs_per_env_runner=2, rollout_fragment_length=5))
    assert_state_counts_steps(runner)


def test_same_seed_same_multi_agent_data():
    def data(seed):
        runner = MultiAgentEnvRunner(ma_config(**two_policies(), seed=seed))
        return [(f.agent_id, f.columns[Columns.OBS], f.columns[Columns.ACTIONS])
                for f in runner.sample()]

    first, again = data(4), data(4)
    assert [a for a, _, _ in first] == [a for a, _, _ in again]
    for (_, obs_a, act_a), (_, obs_b, act_b) in zip(first, again):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(act_a, act_b)
    assert not np.array_equal(first[0][1], data(5)[0][1])


def test_a_failing_multi_agent_env_is_rebuilt_and_its_episode_dropped():
    runner = MultiAgentEnvRunner(ma_config(env=MultiAgentCounter,
                                           env_config={"lengths": [3, 4], "fail_every": 2},
                                           rollout_fragment_length=20))
    fragments = runner.sample()
    assert runner.get_metrics()["num_env_errors"] >= 2
    for f in fragments:
        assert (f.columns[Columns.OBS][:, 1] % 2 == 0).all()  # Failed episodes are odd.
    assert len(runner.sample(num_episodes=2)) == 4


# ---- specs --------------------------------------------------------------------------------------

def test_one_shared_spec_becomes_one_spec_per_mapped_module():
    config = ma_config(spec=MultiRLModuleSpec(rl_module_specs=RLModuleSpec(module_class=MLPModule)),
                       policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
    specs = complete_module_spec(config).rl_module_specs
    assert sorted(specs) == ["p0", "p1"]
    assert all(s.observation_space.shape == (4,) and s.action_space.n == 2
               for s in specs.values())


def test_mapping_to_a_module_without_spec_is_named():
    config = ma_config(**{**two_policies(), "policy_mapping_fn": lambda aid, ep, **kw: "p7"})
    with pytest.raises(ValueError, match="agent 0 to module 'p7'.*\\['p0', 'p1'\\]"):
        complete_module_spec(config)


class SharedEncoder(TorchRLModule):
    def setup(self):
        self.net = nn.Linear(self.observation_space.shape[0], self.model_config["dim"])

    def _forward(self, batch, **kwargs):
        return {ENCODER_OUT: self.net(batch[Columns.OBS])}


class HeadAfterEncoder(TorchRLModule):
    def setup(self):
        self.head = nn.Linear(self.model_config["dim"], self.action_space.n)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.head(batch[ENCODER_OUT])}


class SharedEncoderMultiModule(MultiRLModule):
    """Two policy heads on one encoder (the seeds' shared-encoder example)."""

    def setup(self):
        super().setup()
        self.encoder = self._rl_modules["encoder"]

    def _forward(self, batch, **kwargs):
        out = {}
        for module_id, module_batch in batch.items():
            module_batch[ENCODER_OUT] = self.encoder._forward(module_batch)[ENCODER_OUT]
            out[module_id] = self._rl_modules[module_id]._forward(module_batch)
        return out


def shared_encoder_spec(encoder_spaces: bool) -> MultiRLModuleSpec:
    space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    encoder = RLModuleSpec(module_class=SharedEncoder, model_config={"dim": 8},
                           observation_space=space if encoder_spaces else None,
                           action_space=gym.spaces.Discrete(2) if encoder_spaces else None)
    heads = {p: RLModuleSpec(module_class=HeadAfterEncoder, model_config={"dim": 8})
             for p in ("p0", "p1")}
    return MultiRLModuleSpec(multi_rl_module_class=SharedEncoderMultiModule,
                             rl_module_specs={"encoder": encoder, **heads})


def test_shared_encoder_multi_module_acts_for_both_policies():
    config = ma_config(spec=shared_encoder_spec(encoder_spaces=True),
                       policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
    fragments = MultiAgentEnvRunner(config).sample()
    assert {f.module_id for f in fragments} == {"p0", "p1"}
    assert all(f.columns[Columns.ACTION_DIST_INPUTS].shape[1:] == (2,) for f in fragments)


def test_a_module_no_agent_maps_to_needs_its_spaces_set():
    config = ma_config(spec=shared_encoder_spec(encoder_spaces=False),
                       policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
    with pytest.raises(ValueError, match="Module 'encoder' has no agent mapped.*observation_space"):
        complete_module_spec(config)
