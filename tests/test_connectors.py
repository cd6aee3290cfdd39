"""Connector pipelines in env runners (local mode): what the module sees, what fragments
store, and connector state, for the built-in pieces and for pieces written as RLlib's docs
write them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlmodules import (Columns, DEFAULT_MODULE_ID, MultiRLModuleSpec, RLModuleSpec,
                       TorchRLModule)
from runners import (MultiAgentEnvRunner, SingleAgentEnvRunner, complete_module_spec,
                     make_multi_agent)
from runners.connectors import (ConnectorV2, FlattenObservations, FrameStackingEnvToModule,
                                MeanStdFilter, MultiAgentObservationPreprocessor,
                                NormalizeAndClipActions, PrevActionsPrevRewards,
                                SingleAgentObservationPreprocessor)
from runners.episodes import SingleAgentEpisode
from test_multi_agent_api import MixedEnv, ma_config, per_agent
from test_runner import CounterEnv, MLPModule, RecordingBoxEnv, make_config


class RecordingModule(MLPModule):
    """Keeps every observation batch its forward pass got (``self.seen``)."""

    def setup(self):
        super().setup()
        self.seen = []

    def _forward(self, batch, **kwargs):
        self.seen.append(batch[Columns.OBS].numpy().copy())
        return super()._forward(batch)


def seen_by(runner, module_id=DEFAULT_MODULE_ID) -> np.ndarray:
    """[steps, num_envs, ...]: what the runner's module got, step by step."""
    return np.stack(runner.module[module_id].seen)


# ---- FlattenObservations ------------------------------------------------------------------------

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
    piece = FlattenObservations(space, spaces.Discrete(2))
    module_space = piece.observation_space
    for item in [space.sample() for _ in range(5)]:
        episode = SingleAgentEpisode()
        episode.add_env_reset(item)
        piece(rl_module=None, batch={}, episodes=[episode])
        flat = episode.get_observations(-1)
        assert flat.dtype == np.float32 and module_space.contains(flat)
        np.testing.assert_array_equal(flat, spaces.flatten(space, item).astype(np.float32))
        assert episode.observation_space == module_space
    assert module_space.shape == (spaces.flatdim(space),) and module_space.dtype == np.float32


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


def test_unsupported_space_is_named_when_the_pipeline_is_built():
    with pytest.raises(TypeError, match=r"FlattenObservations cannot flatten observation "
                                        r"space Text.*at obs\['note'\]"):
        SingleAgentEnvRunner(make_config(
            env=TextInDictEnv, env_to_module_connector=lambda env: FlattenObservations()))
    with pytest.raises(TypeError, match="FlattenObservations cannot flatten observation space "
                                        "Text.*Write your own ConnectorV2"):
        FlattenObservations(spaces.Text(5), None)


def test_observations_the_runner_cannot_batch_ask_for_a_connector():
    with pytest.raises(TypeError, match=r"Text.*at obs\['note'\].*FlattenObservations"):
        SingleAgentEnvRunner(make_config(env=TextInDictEnv))


def test_runner_builds_the_module_for_flattened_observations():
    config = make_config(env="FrozenLake-v1", env_config={"is_slippery": False},
                         env_to_module_connector=lambda env: FlattenObservations())
    sub_spec = complete_module_spec(config).rl_module_specs[DEFAULT_MODULE_ID]
    assert sub_spec.observation_space.shape == (16,)
    runner = SingleAgentEnvRunner(config)
    assert runner.module[DEFAULT_MODULE_ID].observation_space.shape == (16,)
    for f in runner.sample():
        obs = f.columns[Columns.OBS]
        assert obs.shape[1:] == (16,) and (obs.sum(-1) == 1).all()
        assert f.last_obs.shape == (16,) and f.last_obs.sum() == 1
        if f.t_started == 0:
            assert obs[0, 0] == 1  # The start state.


def test_dict_observations_become_flat_vectors_terminal_obs_included():
    runner = SingleAgentEnvRunner(make_config(
        RecordingModule, env=DictObsEnv,
        env_to_module_connector=lambda env: FlattenObservations()))
    fragment = runner.sample(num_timesteps=2)[0]
    # Dict keys in gymnasium's (sorted) order: a, then one-hot b.
    np.testing.assert_array_equal(fragment.columns[Columns.OBS][0], [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(fragment.last_obs, [0, 0, 0, 1, 0])  # The terminal obs.
    np.testing.assert_array_equal(seen_by(runner)[0], [[1, 1, 0, 0, 1]] * 2)


# ---- custom pieces as RLlib's docs write them ---------------------------------------------------

class AddHundred(ConnectorV2):
    """Rewrites each episode's latest observation in place (RLlib's docs: read it with
    get_observations(-1), write it back with set_observations)."""

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None,
                 metrics=None, **kwargs):
        for sa_episode in self.single_agent_episode_iterator(episodes):
            obs = sa_episode.get_observations(-1)
            sa_episode.set_observations(at_indices=-1, new_data=obs + 100.0)
        return batch


class DoubleForTheModule(ConnectorV2):
    """Adds the module's input itself (add_batch_item): the episodes keep the raw obs."""

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None,
                 metrics=None, **kwargs):
        for sa_episode in self.single_agent_episode_iterator(episodes):
            self.add_batch_item(batch, Columns.OBS, sa_episode.get_observations(-1) * 2.0,
                                sa_episode)
        return batch


def counter_runner(connector, length=3, **kwargs):
    kwargs.setdefault("rollout_fragment_length", 4)
    return SingleAgentEnvRunner(make_config(RecordingModule, env=CounterEnv,
                                            env_config={"length": length},
                                            env_to_module_connector=connector, **kwargs))


def test_a_piece_rewriting_the_episode_changes_what_module_and_fragments_see():
    runner = counter_runner(lambda env: AddHundred())
    first = runner.sample()
    done = [f for f in first if f.terminated]
    assert len(done) == 2
    for f in done:  # Episode 0 of each env: obs [t, 0] + 100, terminal obs included.
        np.testing.assert_array_equal(f.columns[Columns.OBS], [[100, 100], [101, 100],
                                                               [102, 100]])
        np.testing.assert_array_equal(f.last_obs, [103, 100])
    np.testing.assert_array_equal(seen_by(runner)[:, 0],
                                  [[100, 100], [101, 100], [102, 100], [100, 101]])
    second = runner.sample()  # The carried-on episode is not rewritten twice.
    going_on = [f for f in second if f.t_started == 1]
    assert len(going_on) == 2
    for f in going_on:
        np.testing.assert_array_equal(f.columns[Columns.OBS], [[101, 101], [102, 101]])
        np.testing.assert_array_equal(f.lookback_obs, [[100, 101]])


def test_episode_hooks_see_the_observations_as_the_pieces_left_them():
    seen = []

    def hook(name):
        return lambda *, episode, **kw: seen.append((name, list(episode.get_observations(-1))))

    runner = counter_runner(lambda env: AddHundred(), num_envs_per_env_runner=1,
                            callbacks_hooks={"on_episode_start": hook("start"),
                                             "on_episode_step": hook("step"),
                                             "on_episode_end": hook("end")})
    runner.sample(num_timesteps=4)
    assert seen == [("start", [100, 100]), ("step", [101, 100]), ("step", [102, 100]),
                    ("step", [103, 100]), ("end", [103, 100]), ("start", [100, 101]),
                    ("step", [101, 101])]


def test_a_piece_adding_batch_items_feeds_the_module_while_fragments_keep_the_episode_obs():
    runner = counter_runner([DoubleForTheModule()])
    fragments = runner.sample()
    np.testing.assert_array_equal(seen_by(runner)[:, 1], [[0, 0], [2, 0], [4, 0], [0, 2]])
    done = [f for f in fragments if f.terminated]
    np.testing.assert_array_equal(done[0].columns[Columns.OBS], [[0, 0], [1, 0], [2, 0]])
    np.testing.assert_array_equal(done[0].last_obs, [3, 0])


class IntObservationToOneHot(SingleAgentObservationPreprocessor):
    """RLlib's docs example: Discrete observations as one-hot float vectors."""

    def recompute_output_observation_space(self, input_observation_space, input_action_space):
        return gym.spaces.Box(0.0, 1.0, (input_observation_space.n,), np.float32)

    def preprocess(self, observation, episode):
        new_obs = np.zeros(shape=self.observation_space.shape, dtype=np.float32)
        new_obs[observation] = 1.0
        return new_obs


def test_a_custom_observation_preprocessor_on_frozen_lake():
    runner = SingleAgentEnvRunner(make_config(
        RecordingModule, env="FrozenLake-v1", env_config={"is_slippery": False},
        env_to_module_connector=lambda env: IntObservationToOneHot()))
    assert runner.module[DEFAULT_MODULE_ID].observation_space == spaces.Box(0, 1, (16,),
                                                                            np.float32)
    fragments = runner.sample()
    for f in fragments:
        obs = f.columns[Columns.OBS]
        assert obs.dtype == np.float32 and (obs.sum(-1) == 1).all()
        if f.t_started == 0:
            assert obs[0].argmax() == 0  # The start cell.
        if f.terminated:  # A hole or the goal, one-hot too.
            assert f.last_obs.sum() == 1 and f.last_obs.argmax() in (5, 7, 11, 12, 15)
    seen = seen_by(runner)
    assert seen.shape == (30, 2, 16) and (seen.sum(-1) == 1).all()
    np.testing.assert_array_equal(seen[0], np.eye(16)[[0, 0]])


class ScaleB(MultiAgentObservationPreprocessor):
    """Multiplies agent b's observations by 10 and leaves agent d's alone."""

    def recompute_output_observation_space(self, input_observation_space, input_action_space):
        out = dict(input_observation_space.spaces)
        out["b"] = spaces.Box(-50, 50, (3,), np.float32)
        return spaces.Dict(out)

    def preprocess(self, observations, episode):
        assert set(episode.agent_ids) >= set(observations)  # The MultiAgentEpisode.
        return {aid: obs * 10 for aid, obs in observations.items() if aid == "b"}


def test_a_multi_agent_observation_preprocessor_in_the_multi_agent_runner():
    config = ma_config(MixedEnv, **per_agent("pd", "pb", pd=RecordingModule,
                                             pb=RecordingModule),
                       env_to_module_connector=lambda env: [
                           ScaleB(), FlattenObservations(multi_agent=True, agent_ids=["d"])],
                       rollout_fragment_length=3)
    specs = complete_module_spec(config).rl_module_specs
    assert specs["pb"].observation_space == spaces.Box(-50, 50, (3,), np.float32)
    assert specs["pd"].observation_space.shape == (5,)
    runner = MultiAgentEnvRunner(config)
    by_agent = {f.agent_id: f for f in runner.sample()}
    np.testing.assert_array_equal(by_agent["b"].columns[Columns.OBS][:, 0], [0, 10, 20])
    np.testing.assert_array_equal(by_agent["b"].last_obs, [30, 30, 30])
    np.testing.assert_array_equal(by_agent["d"].columns[Columns.OBS][1], [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(seen_by(runner, "pb")[:, 0, 0], [0, 10, 20])


class KeepAll(MultiAgentObservationPreprocessor):
    def preprocess(self, observations, episode):
        return observations


def test_a_multi_agent_preprocessor_in_a_single_agent_runner_says_what_to_use():
    with pytest.raises(TypeError, match="needs a MultiAgentEnv; for a single-agent env "
                                        "subclass SingleAgentObservationPreprocessor"):
        counter_runner(lambda env: KeepAll())


# ---- built-in pieces in the runner --------------------------------------------------------------

def test_prev_actions_and_rewards_reach_the_module_across_sample_calls():
    """3-step episodes, 2 steps per sample() call: the lookback carries the previous
    actions and rewards over; each episode starts from zeros."""
    runner = counter_runner(lambda env: [PrevActionsPrevRewards(n_prev_actions=3,
                                                                n_prev_rewards=2),
                                         FlattenObservations()],
                            rollout_fragment_length=2, num_envs_per_env_runner=1)
    assert runner.module[DEFAULT_MODULE_ID].observation_space.shape == (2 + 3 * 2 + 2,)
    fragments = [f for _ in range(4) for f in runner.sample()]
    seen = seen_by(runner)[:, 0]
    assert len(seen) == 8
    # One env: the fragments in order are the steps the module saw, one by one.
    steps = [(f.episode_id, f.columns[Columns.ACTIONS][t], f.columns[Columns.REWARDS][t],
              f.columns[Columns.OBS][t]) for f in fragments for t in range(len(f))]
    history: dict[str, list] = {}
    for (episode_id, action, reward, stored), module_in in zip(steps, seen):
        past = history.setdefault(episode_id, [])
        actions = [None] * 3 + [a for a, _ in past]
        rewards = [0.0] * 2 + [r for _, r in past]
        expected_actions = np.concatenate([np.zeros(2) if a is None else np.eye(2)[a]
                                           for a in actions[-3:]])
        np.testing.assert_array_equal(module_in[2:8], expected_actions)
        np.testing.assert_array_equal(module_in[8:], rewards[-2:])
        np.testing.assert_array_equal(module_in[:2], [len(past), module_in[1]])
        np.testing.assert_array_equal(stored, module_in)  # Fragments train on the same.
        past.append((action, reward))
    assert len(history) == 3  # Two whole episodes and the start of a third.
    assert any(f.t_started == 2 for f in fragments)  # An episode went on across a call.


class EpisodeLengthEnv(CounterEnv):
    """Env ``i`` of a runner has episodes of ``2 + i`` steps; obs = [t, 100 * length +
    episode number], so every frame names its env and episode."""

    def __init__(self, config=None):
        super().__init__(config)
        self.length = 2 + config.vector_index

    def _obs(self):
        return np.array([self.t, 100 * self.length + self.episode], np.float32)


class RecordBatch(ConnectorV2):
    """Keeps, per call, the episodes it got and the obs items the batch holds for them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        self.calls.append([(ep.id_, ep.is_done, batch[Columns.OBS][(ep.id_,)][-1].copy())
                           for ep in episodes])
        return batch


def frame(t, env_index, episode):
    length = 2 + env_index
    return np.array([t, 100 * length + episode], np.float32) if t >= 0 else np.zeros(2)


def test_frame_stacking_per_env_with_final_observations_in_their_own_episode():
    runner = SingleAgentEnvRunner(make_config(
        RecordingModule, env=EpisodeLengthEnv, rollout_fragment_length=3,
        env_to_module_connector=lambda env: [FrameStackingEnvToModule(num_frames=3),
                                             RecordBatch()]))
    assert runner.module[DEFAULT_MODULE_ID].observation_space.shape == (6,)
    fragments = runner.sample() + runner.sample()
    # Module inputs: each env's last 3 frames of its current episode, zeros before the first.
    expected = []
    for env_index in range(2):
        length = 2 + env_index
        rows = [np.concatenate([frame(t - k, env_index, e) for k in (2, 1, 0)])
                for e in range(3) for t in range(length)]
        expected.append(rows[:6])
    np.testing.assert_array_equal(seen_by(runner), np.stack(expected, axis=1))
    # Fragments keep single frames; a terminated one ends with its final frame.
    done = [f for f in fragments if f.terminated]
    assert len(done) == 5  # Env 0: 3 episodes of 2 steps; env 1: 2 of 3.
    for f in done:
        length = len(f) + f.t_started
        episode = int(f.last_obs[1]) - 100 * length
        assert f.columns[Columns.OBS].shape[1:] == (2,)
        np.testing.assert_array_equal(f.last_obs, frame(length, length - 2, episode))
    carried = [f for f in fragments if f.t_started]
    assert carried and all(len(f.lookback_obs) == min(2, f.t_started) for f in carried)
    # Each final obs went through the pipeline with its own episode only, stacked on that
    # episode's frames; then every env's next episode started fresh from its reset obs.
    record = runner.connector["RecordBatch"]
    finals = [call for call in record.calls if all(is_done for _, is_done, _ in call)]
    assert sum(len(call) for call in finals) == 5
    for call in finals:
        for episode_id, _, stacked in call:
            f = next(f for f in done if f.episode_id == episode_id)
            length, last = len(f) + f.t_started, f.last_obs
            np.testing.assert_array_equal(stacked, np.concatenate(
                [[length - 2, last[1]], [length - 1, last[1]], last]))
        after = record.calls[record.calls.index(call) + 1]  # All envs, for the next forward.
        ended = {episode_id for episode_id, _, _ in call}
        assert len(after) == 2 and not any(is_done or episode_id in ended
                                           for episode_id, is_done, _ in after)
        fresh = [stacked for _, _, stacked in after if stacked[4] == 0]  # At their reset obs.
        assert len(fresh) == len(call)
        for stacked in fresh:  # Nothing of the ended episode: zeros, then the reset obs.
            np.testing.assert_array_equal(stacked[:4], np.zeros(4))


def test_frame_stacking_is_refused_in_the_multi_agent_runner():
    env = make_multi_agent(lambda cfg: CounterEnv(cfg))
    with pytest.raises(TypeError, match="FrameStackingEnvToModule runs in single-agent env "
                                        "runners only"):
        MultiAgentEnvRunner(ma_config(env, env_config={"num_agents": 2},
                                      env_to_module_connector=lambda e: [
                                          FrameStackingEnvToModule(num_frames=2,
                                                                   multi_agent=True)]))


class UnitBoxModule(TorchRLModule):
    """Acts ``model_config["action"]`` (in [-1, 1]) in a Box action space, with a Gaussian
    around it for logp."""

    def setup(self):
        self.dummy = nn.Parameter(torch.zeros(1))

    def _forward(self, batch, **kwargs):
        n = len(batch[Columns.OBS])
        action = self.model_config["action"]
        return {Columns.ACTIONS: torch.full((n, 1), action),
                Columns.ACTION_DIST_INPUTS: torch.tensor([[action, 0.0]]).repeat(n, 1)}


@pytest.mark.parametrize("action, env_gets", [(0.5, 1.0), (-1.0, -2.0), (3.0, 2.0)])
def test_normalize_and_clip_actions_reaches_env_step_and_fragments_keep_module_actions(
        action, env_gets):
    RecordingBoxEnv.received.clear()
    runner = SingleAgentEnvRunner(make_config(
        UnitBoxModule, env=RecordingBoxEnv, model_config={"action": action},
        module_to_env_connector=lambda env: NormalizeAndClipActions()))
    fragments = runner.sample(num_timesteps=4)
    np.testing.assert_allclose(np.ravel(RecordingBoxEnv.received), [env_gets] * 4)
    for f in fragments:
        np.testing.assert_array_equal(f.columns[Columns.ACTIONS], [[action]] * len(f))
        assert f.columns[Columns.ACTION_LOGP].shape == (len(f),)
        assert Columns.ACTIONS_FOR_ENV not in f.columns


class SeesModuleBatches(ConnectorV2):
    """Records the module ids and rows of each multi-agent module-to-env batch."""

    calls: list = []

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        SeesModuleBatches.calls.append({mid: len(cols[Columns.ACTIONS])
                                        for mid, cols in batch.items()})
        assert all(len(e.agent_ids) == 2 for e in episodes)  # The MultiAgentEpisodes.
        return batch


def test_module_to_env_pieces_in_the_multi_agent_runner_get_per_module_batches():
    RecordingBoxEnv.received.clear()
    SeesModuleBatches.calls.clear()
    specs = {f"p{i}": RLModuleSpec(module_class=UnitBoxModule, model_config={"action": a})
             for i, a in enumerate((0.5, -1.0))}
    runner = MultiAgentEnvRunner(ma_config(
        make_multi_agent(RecordingBoxEnv), MultiRLModuleSpec(rl_module_specs=specs),
        env_config={"num_agents": 2}, policy_mapping_fn=lambda aid, episode, **kw: f"p{aid}",
        num_envs_per_env_runner=2, rollout_fragment_length=3,
        module_to_env_connector=lambda env: [SeesModuleBatches(), NormalizeAndClipActions()]))
    fragments = runner.sample()
    assert SeesModuleBatches.calls == [{"p0": 2, "p1": 2}] * 3  # One call per step, both envs.
    received = np.ravel(RecordingBoxEnv.received)
    np.testing.assert_allclose(sorted(received), [-2.0] * 6 + [1.0] * 6)  # Scaled to [-2, 2].
    for f in fragments:  # Learners get what the modules chose.
        action = 0.5 if f.module_id == "p0" else -1.0
        np.testing.assert_array_equal(f.columns[Columns.ACTIONS], [[action]] * len(f))
        assert Columns.ACTIONS_FOR_ENV not in f.columns


def test_normalize_actions_in_the_multi_agent_runner():
    RecordingBoxEnv.received.clear()
    specs = {"p0": RLModuleSpec(module_class=UnitBoxModule, model_config={"action": 0.5})}
    MultiAgentEnvRunner(ma_config(
        make_multi_agent(RecordingBoxEnv), MultiRLModuleSpec(rl_module_specs=specs),
        env_config={"num_agents": 1}, policy_mapping_fn=lambda aid, episode, **kw: "p0",
        normalize_actions=True, rollout_fragment_length=2)).sample()
    np.testing.assert_allclose(np.ravel(RecordingBoxEnv.received), [1.0, 1.0])


class RecordExplore(ConnectorV2):
    seen: list = []

    def __call__(self, *, rl_module, batch, episodes, explore=None, **kwargs):
        RecordExplore.seen.append(explore)
        return batch


@pytest.mark.parametrize("explore", [True, False])
def test_multi_agent_pipelines_get_the_sample_calls_explore(explore):
    RecordExplore.seen.clear()
    runner = MultiAgentEnvRunner(ma_config(
        MixedEnv, **per_agent("pd", "pb"), explore=not explore, rollout_fragment_length=2,
        env_to_module_connector=lambda env: [RecordExplore(),
                                             FlattenObservations(multi_agent=True)],
        module_to_env_connector=lambda env: RecordExplore()))
    RecordExplore.seen.clear()  # The first reset's run saw the config's explore.
    runner.sample(explore=explore)
    assert RecordExplore.seen and set(RecordExplore.seen) == {explore}


# ---- pieces given as such, connector state ------------------------------------------------------

@pytest.mark.parametrize("given", [MeanStdFilter(), [MeanStdFilter()]])
def test_pieces_given_instead_of_a_factory_are_copied_per_runner(given):
    a, b = counter_runner(given), counter_runner(given)
    pieces = given if isinstance(given, list) else [given]
    assert a.connector["MeanStdFilter"] is not b.connector["MeanStdFilter"]
    assert pieces[0] not in (a.connector.connectors + b.connector.connectors)
    a.sample()  # Per env: its reset, 4 steps, the reset after its 3-step episode.
    assert a.connector.get_state()["MeanStdFilter"]["default"]["delta"]["n"] == 12
    assert b.connector.get_state()["MeanStdFilter"]["default"]["delta"]["n"] == 2  # Resets.
    assert pieces[0].get_state() == {}  # The given piece itself never runs.
    runner = SingleAgentEnvRunner(make_config(UnitBoxModule, env=RecordingBoxEnv,
                                              model_config={"action": 0.0},
                                              module_to_env_connector=NormalizeAndClipActions()))
    assert runner.sample(num_timesteps=2)


def test_a_factory_returning_something_else_is_named():
    with pytest.raises(TypeError, match="env_to_module_connector returned str .*'flatten'.*"
                                        "must return a runners.connectors.ConnectorV2 piece"):
        counter_runner(lambda env: "flatten")


class Scale(ConnectorV2):
    """A stateful piece: multiplies observations by ``scale``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = 1.0

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        for ep in self.single_agent_episode_iterator(episodes):
            ep.set_observations(at_indices=-1, new_data=ep.get_observations(-1) * self.scale)
        return batch

    def get_state(self, components=None, *, not_components=None, **kwargs):
        return {"scale": self.scale}

    def set_state(self, state):
        self.scale = state["scale"]


def test_connector_state_travels_with_the_runner_state():
    connector = lambda env: [Scale(), MeanStdFilter(clip_by_value=None)]
    runner, other = counter_runner(connector, length=50), counter_runner(connector, length=50)
    runner.connector["Scale"].scale = 100.0
    runner.sample()
    other.set_state(runner.get_state())
    assert other.connector["Scale"].scale == 100.0
    stats = other.get_state()["connector"]["env_to_module"]["MeanStdFilter"]["default"]
    assert stats["delta"]["n"] == 10  # 2 envs: a reset and 4 steps each.
    np.testing.assert_array_equal(stats["delta"]["mean"], runner.connector[
        "MeanStdFilter"].get_state()["default"]["delta"]["mean"])
    assert stats["delta"]["mean"][0] == 100 * 2.0  # Scaled steps 0..4, then filtered.
    # Merging both runners' states (as the algorithm does) counts every observation once.
    merged = other.merge_connector_states([runner.get_connector_state(),
                                           counter_runner(connector).get_connector_state()])
    stats = merged["env_to_module"]["MeanStdFilter"]["default"]
    assert stats["base"]["n"] == 12 and stats["delta"]["n"] == 0
    loaded = other.get_connector_state()["env_to_module"]["MeanStdFilter"]["default"]
    assert loaded["base"]["n"] == 12 and loaded["delta"]["n"] == 0
    np.testing.assert_array_equal(loaded["base"]["mean"], stats["base"]["mean"])


def test_mean_std_filter_in_the_runner_normalizes_what_module_and_fragments_see():
    runner = counter_runner(lambda env: MeanStdFilter(), length=50, rollout_fragment_length=20,
                            num_envs_per_env_runner=1)
    fragment = runner.sample()[0]
    seen = seen_by(runner)[:, 0]
    np.testing.assert_array_equal(fragment.columns[Columns.OBS], seen)
    raw = np.arange(21, dtype=np.float64)  # The obs' step counter, the next obs included.
    for t in range(1, 20):
        expected = (t - raw[:t + 1].mean()) / (raw[:t + 1].std(ddof=1) + 1e-8)
        np.testing.assert_allclose(seen[t, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(fragment.last_obs[0], (20 - raw.mean()) / raw.std(ddof=1),
                               rtol=1e-5)
