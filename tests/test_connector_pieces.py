"""Connector pieces and pipelines on their own (no runner): pipeline editing and space
chaining, the batch helpers of ConnectorV2, MeanStdFilter's statistics and state merging,
PrevActionsPrevRewards, frame stacking, NormalizeAndClipActions, and the episode lookback
and index rules the pieces read with (RLlib's documented examples)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from rlmodules import Columns
from runners.connectors import (ConnectorV2, EnvToModulePipeline, FlattenObservations,
                                FrameStackingEnvToModule, MeanStdFilter,
                                NormalizeAndClipActions, PrevActionsPrevRewards)
from runners.episodes import MultiAgentEpisode, SingleAgentEpisode

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def run(piece, *episodes):
    """One call of ``piece`` on ``episodes``, as runners call it; the batch it returns."""
    return piece(rl_module=None, batch={}, episodes=list(episodes), explore=True,
                 shared_data={}, metrics=None)


def stepped(observations, actions=None, rewards=None, piece=None):
    """An episode built step by step from ``observations`` (``piece`` runs after each)."""
    ep = SingleAgentEpisode()
    for t, obs in enumerate(observations):
        if t == 0:
            ep.add_env_reset(obs)
        else:
            ep.add_env_step(obs, 0 if actions is None else actions[t - 1],
                            1.0 if rewards is None else rewards[t - 1])
        if piece is not None:
            run(piece, ep)
    return ep


# ---- pipelines ----------------------------------------------------------------------------------

class Repeat(ConnectorV2):
    """Observations repeated ``times`` along the last axis (a space-changing piece)."""

    def __init__(self, input_observation_space=None, input_action_space=None, *, times=2,
                 **kwargs):
        self.times = times
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def recompute_output_observation_space(self, input_observation_space, input_action_space):
        return spaces.Box(np.tile(input_observation_space.low, self.times),
                          np.tile(input_observation_space.high, self.times), dtype=np.float32)

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        for ep in self.single_agent_episode_iterator(episodes):
            ep.set_observations(at_indices=-1, new_data=np.tile(ep.get_observations(-1),
                                                                self.times))
        return batch


def test_pipeline_editing_chains_the_spaces_in_order():
    dict_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})
    pipeline = EnvToModulePipeline(dict_space, spaces.Discrete(2),
                                   connectors=[FlattenObservations()])
    assert pipeline.observation_space.shape == (5,)
    pipeline.append(Repeat(times=2))
    assert pipeline.observation_space.shape == (10,)
    pipeline.insert_before(Repeat, MeanStdFilter(clip_by_value=3.0))
    assert [type(c).__name__ for c in pipeline.connectors] == \
        ["FlattenObservations", "MeanStdFilter", "Repeat"]
    # Each piece got its predecessor's output space as its input.
    assert pipeline["MeanStdFilter"].input_observation_space.shape == (5,)
    assert pipeline[Repeat].input_observation_space == pipeline["MeanStdFilter"].observation_space
    assert pipeline.observation_space == spaces.Box(-3, 3, (10,), np.float32)
    pipeline.insert_after("Repeat", Repeat(times=3))
    assert pipeline.observation_space.shape == (30,) and len(pipeline) == 4
    pipeline.remove(MeanStdFilter)
    assert pipeline.observation_space == spaces.Box(
        np.tile([-1, -1, 0, 0, 0], 6), np.tile([1, 1, 1, 1, 1], 6), dtype=np.float32)
    pipeline.prepend(PrevActionsPrevRewards())  # Flatten now flattens its dict.
    assert pipeline.observation_space.shape == ((5 + 2 + 1) * 6,)
    assert pipeline.required_lookback == 1
    pipeline.append(FrameStackingEnvToModule(num_frames=4))
    assert pipeline.required_lookback == 3


def test_pipeline_runs_its_pieces_in_order_on_the_episodes():
    pipeline = EnvToModulePipeline(OBS, spaces.Discrete(2), connectors=[Repeat(times=2)])
    pipeline.prepend(FlattenObservations())
    ep = stepped([np.array([1, 2, 3], np.float32)])
    assert run(pipeline, ep) == {}  # Both rewrite the episode; neither adds to the batch.
    np.testing.assert_array_equal(ep.get_observations(-1), [1, 2, 3, 1, 2, 3])


def test_pipeline_edits_that_do_not_fit_leave_it_unchanged_and_name_the_problem():
    pipeline = EnvToModulePipeline(spaces.Dict({"a": spaces.Box(-1, 1, (2,))}),
                                   spaces.Discrete(2), connectors=[FlattenObservations()])
    with pytest.raises(TypeError, match="MeanStdFilter normalizes Box observations.*put "
                                        "FlattenObservations before it"):
        pipeline.prepend(MeanStdFilter())
    assert len(pipeline) == 1 and pipeline.observation_space.shape == (2,)
    with pytest.raises(ValueError, match=r"holds no Repeat piece; it holds "
                                         r"\['FlattenObservations'\]"):
        pipeline.insert_after(Repeat, MeanStdFilter())
    with pytest.raises(ValueError, match="holds no MeanStdFilter"):
        pipeline.remove("MeanStdFilter")
    with pytest.raises(TypeError, match="takes ConnectorV2 pieces.*not a function"):
        pipeline.append(lambda **kw: kw["batch"])


def test_a_piece_that_returns_no_batch_or_has_no_call_is_named():
    class ForgetsToReturn(ConnectorV2):
        def __call__(self, *, rl_module, batch, episodes, **kwargs):
            batch["x"] = 1

    with pytest.raises(TypeError, match="ForgetsToReturn returned a NoneType; __call__ must "
                                        "return the batch"):
        run(EnvToModulePipeline(OBS, None, connectors=[ForgetsToReturn()]), stepped([0]))
    with pytest.raises(NotImplementedError, match="ConnectorV2 must implement __call__"):
        run(ConnectorV2(), stepped([0]))


def test_pipeline_state_is_per_piece_and_merges_piece_by_piece():
    pipeline = EnvToModulePipeline(OBS, None, connectors=[MeanStdFilter(), Repeat(),
                                                          MeanStdFilter()])
    assert pipeline.get_state() == {}  # Nothing seen yet; Repeat has no state.
    stepped([np.ones(3, np.float32), np.full(3, 3, np.float32)], piece=pipeline)
    state = pipeline.get_state()
    assert sorted(state) == ["MeanStdFilter", "MeanStdFilter_2"]
    merged = pipeline.merge_states([state, state])
    assert merged["MeanStdFilter"]["default"]["base"]["n"] == 4  # Two copies' 2 each.
    other = EnvToModulePipeline(OBS, None, connectors=[MeanStdFilter(), Repeat(),
                                                       MeanStdFilter()])
    other.set_state(merged)
    assert other.get_state()["MeanStdFilter_2"]["default"]["base"]["n"] == 4
    other.reset_state()
    assert other.get_state() == {}


# ---- ConnectorV2's batch helpers ----------------------------------------------------------------

def test_batch_items_are_kept_per_episode_as_rllib_keys_them():
    single = stepped([0, 1])
    ma = MultiAgentEpisode("m", agent_to_module_mapping_fn=lambda aid, ep: f"p_{aid}")
    ma.add_env_reset({"a": 0, "b": 10})
    for aid in ("a", "b"):
        ma.module_for(aid)
        ma.add_agent_action(aid, 1)
    ma.add_env_step({"a": 1}, {"a": 1.0, "b": 2.0}, {}, {}, {})  # Only a observes.
    batch = {}
    for ep in ConnectorV2.single_agent_episode_iterator([single, ma]):
        ConnectorV2.add_batch_item(batch, Columns.OBS, ep.get_observations(-1), ep)
    assert batch == {Columns.OBS: {(single.id_,): [1], ("m", "a", "p_a"): [1]}}
    every = list(ConnectorV2.single_agent_episode_iterator([ma], agents_that_stepped_only=False))
    assert [a.agent_id for a in every] == ["a", "b"]
    pairs = list(ConnectorV2.single_agent_episode_iterator(
        [single], zip_with_batch_column=batch[Columns.OBS]))
    assert pairs == [(single, [1])]
    ConnectorV2.add_n_batch_items(batch, "x", np.arange(3), 3, single)
    assert batch["x"][(single.id_,)] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"add_n_batch_items\('x'\): 2 items given, "
                                         "num_items=3"):
        ConnectorV2.add_n_batch_items(batch, "x", [0, 1], 3, single)
    seen = []

    def double(item, eps_id, agent_id, module_id):
        seen.append((eps_id, agent_id, module_id))
        return item * 2

    ConnectorV2.foreach_batch_item_change_in_place(batch, Columns.OBS, double)
    assert batch[Columns.OBS] == {(single.id_,): [2], ("m", "a", "p_a"): [2]}
    assert seen == [(single.id_, None, None), ("m", "a", "p_a")]


# ---- MeanStdFilter ------------------------------------------------------------------------------

def lopsided(rng, n):
    return rng.normal([-3000.0, 5.0, 0.0], [10.0, 1.0, 0.1], (n, 3)).astype(np.float32)


def test_mean_std_filter_normalizes_by_the_mean_and_std_of_what_it_saw():
    data = lopsided(np.random.default_rng(0), 50)
    piece = MeanStdFilter(OBS, spaces.Discrete(2), clip_by_value=None)
    ep = SingleAgentEpisode()
    for t, obs in enumerate(data):
        ep.add_env_reset(obs) if t == 0 else ep.add_env_step(obs, 0, 0.0)
        run(piece, ep)
        if t == 0:  # One observation: nothing to scale by yet.
            np.testing.assert_array_equal(ep.get_observations(-1), np.zeros(3))
            continue
        seen = data[:t + 1].astype(np.float64)
        expected = (data[t] - seen.mean(0)) / (seen.std(0, ddof=1) + 1e-8)
        np.testing.assert_allclose(ep.get_observations(-1), expected, rtol=1e-4, atol=1e-5)
    assert ep.get_observations(-1).dtype == np.float32
    out = np.array(ep.get_observations())  # Written back: what learners train on.
    assert np.abs(out[10:].mean(0)).max() < 0.5 and np.abs(out[:, 0]).max() < 5


def test_mean_std_filter_clips_and_says_so_in_its_space():
    piece = MeanStdFilter(OBS, None, clip_by_value=1.0)
    assert piece.observation_space == spaces.Box(-1.0, 1.0, (3,), np.float32)
    data = [np.zeros(3, np.float32)] * 20 + [np.full(3, 1000.0, np.float32)]
    ep = stepped(data, piece=piece)
    np.testing.assert_array_equal(ep.get_observations(-1), np.ones(3))
    assert MeanStdFilter(OBS, None, clip_by_value=None).observation_space.high[0] == np.inf
    with pytest.raises(TypeError, match="MeanStdFilter normalizes Box observations, not "
                                        "Discrete"):
        MeanStdFilter(spaces.Discrete(3), None)


def test_merged_states_hold_the_stats_of_all_data_after_repeated_merge_cycles():
    """Two runners' copies: each cycle both see new data, the states are merged and loaded
    back (as Algorithm.sync_weights does); nothing is counted twice."""
    rng = np.random.default_rng(1)
    a, b = MeanStdFilter(OBS, None), MeanStdFilter(OBS, None)
    everything = []
    for cycle in range(3):
        for piece, n in ((a, 40 + cycle), (b, 25)):
            data = lopsided(rng, n)
            stepped(data, piece=piece)
            everything.append(data)
        # Each runner merges the same states (its own among them) and loads the result.
        merged_a = a.merge_states([a.get_state(), b.get_state()])
        merged_b = b.merge_states([a.get_state(), b.get_state()])
        a.set_state(merged_a)
        b.set_state(merged_b)
        seen = np.concatenate(everything).astype(np.float64)
        stats = merged_a["default"]["base"]
        assert stats["n"] == len(seen)
        np.testing.assert_allclose(stats["mean"], seen.mean(0), rtol=1e-9)
        np.testing.assert_allclose(np.sqrt(stats["m2"] / (stats["n"] - 1)), seen.std(0, ddof=1),
                                   rtol=1e-7)
        assert merged_a["default"]["delta"]["n"] == 0
        np.testing.assert_array_equal(merged_b["default"]["base"]["mean"], stats["mean"])
    # A merge with no new data (or with a restarted runner's empty state) changes nothing.
    again = a.merge_states([a.get_state(), b.get_state(), {}])
    assert again["default"]["base"]["n"] == len(seen)
    # Both copies now normalize alike.
    x = lopsided(rng, 1)
    first, second = stepped(x, piece=a), stepped(x, piece=b)
    np.testing.assert_array_equal(first.get_observations(-1), second.get_observations(-1))


def test_mean_std_filter_state_round_trips_and_keeps_agents_apart():
    piece = MeanStdFilter(OBS, None)
    stepped(lopsided(np.random.default_rng(2), 10), piece=piece)
    copy = MeanStdFilter(OBS, None)
    copy.set_state(piece.get_state())
    x = lopsided(np.random.default_rng(3), 1)
    np.testing.assert_array_equal(stepped(x, piece=piece).get_observations(-1),
                                  stepped(x, piece=copy).get_observations(-1))
    per_agent = MeanStdFilter(spaces.Dict({"a": OBS, "b": OBS}), None, multi_agent=True)
    ma = MultiAgentEpisode("m")
    ma.add_env_reset({"a": np.zeros(3, np.float32), "b": np.full(3, 500.0, np.float32)})
    run(per_agent, ma)
    state = per_agent.get_state()
    assert sorted(state) == ["a", "b"]
    np.testing.assert_array_equal(state["b"]["delta"]["mean"], [500.0] * 3)


def test_mean_std_filter_without_update_stats_normalizes_by_the_stats_it_was_given():
    data = lopsided(np.random.default_rng(4), 10)
    learned = MeanStdFilter(OBS, None, clip_by_value=None)
    stepped(data, piece=learned)
    frozen = MeanStdFilter(OBS, None, clip_by_value=None, update_stats=False)
    frozen.set_state(learned.get_state())
    x = lopsided(np.random.default_rng(5), 1)
    out = stepped(x, piece=frozen).get_observations(-1)
    seen = data.astype(np.float64)
    np.testing.assert_allclose(out, (x[0] - seen.mean(0)) / seen.std(0, ddof=1), rtol=1e-4)
    assert frozen.get_state()["default"]["delta"]["n"] == 10  # Nothing added.


def test_mean_std_filter_for_some_agents_leaves_the_others_alone():
    piece = MeanStdFilter(spaces.Dict({"a": OBS, "b": OBS}), None, multi_agent=True,
                          agent_ids=["b"], clip_by_value=2.0)
    assert piece.observation_space["a"] == OBS
    assert piece.observation_space["b"] == spaces.Box(-2, 2, (3,), np.float32)
    ma = MultiAgentEpisode("m")
    ma.add_env_reset({"a": np.full(3, 7.0, np.float32), "b": np.full(3, 7.0, np.float32)})
    run(piece, ma)
    np.testing.assert_array_equal(ma.agent_episodes["a"].get_observations(-1), [7, 7, 7])
    np.testing.assert_array_equal(ma.agent_episodes["b"].get_observations(-1), [0, 0, 0])
    assert list(piece.get_state()) == ["b"]


# ---- PrevActionsPrevRewards ---------------------------------------------------------------------

def test_prev_actions_and_rewards_are_one_hot_zero_padded_and_continue_across_a_cut():
    piece = PrevActionsPrevRewards(OBS, spaces.Discrete(3), n_prev_actions=2, n_prev_rewards=3)
    assert piece.observation_space["prev_n_actions"].shape == (6,)
    assert piece.observation_space["prev_n_rewards"].shape == (3,)
    assert piece.required_lookback == 3
    ep = stepped([np.zeros(3, np.float32)], piece=piece)
    obs = ep.get_observations(-1)
    np.testing.assert_array_equal(obs["_orig_obs"], np.zeros(3))
    np.testing.assert_array_equal(obs["prev_n_actions"], np.zeros(6))  # Episode start.
    np.testing.assert_array_equal(obs["prev_n_rewards"], np.zeros(3))
    ep.add_env_step(np.ones(3, np.float32), 2, 0.5)
    run(piece, ep)
    np.testing.assert_array_equal(ep.get_observations(-1)["prev_n_actions"], [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(ep.get_observations(-1)["prev_n_rewards"], [0, 0, 0.5])
    chunk = ep.cut(len_lookback_buffer=piece.required_lookback)  # A sample() call ends.
    chunk.add_env_step(np.ones(3, np.float32), 0, -1.0)
    run(piece, chunk)
    np.testing.assert_array_equal(chunk.get_observations(-1)["prev_n_actions"],
                                  [0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(chunk.get_observations(-1)["prev_n_rewards"], [0, 0.5, -1])
    box = PrevActionsPrevRewards(OBS, spaces.Box(-1, 1, (2,)), n_prev_actions=1,
                                 n_prev_rewards=0)
    assert "prev_n_rewards" not in box.observation_space.spaces
    ep = stepped([np.zeros(3, np.float32), np.zeros(3, np.float32)],
                 actions=[np.array([0.5, -0.25], np.float32)], piece=box)
    np.testing.assert_array_equal(ep.get_observations(-1)["prev_n_actions"], [0.5, -0.25])


# ---- frame stacking -----------------------------------------------------------------------------

def test_frame_stacking_pads_with_zeros_and_reads_the_lookback_after_a_cut():
    piece = FrameStackingEnvToModule(spaces.Box(-9, 9, (2,), np.float32), None, num_frames=3)
    assert piece.observation_space == spaces.Box(-9, 9, (6,), np.float32)
    assert piece.required_lookback == 2
    frames = [np.full(2, t, np.float32) for t in range(1, 5)]
    ep = stepped(frames[:1])
    batch = run(piece, ep)
    np.testing.assert_array_equal(batch[Columns.OBS][(ep.id_,)], [[0, 0, 0, 0, 1, 1]])
    ep.add_env_step(frames[1], 0, 0.0)
    np.testing.assert_array_equal(run(piece, ep)[Columns.OBS][(ep.id_,)][0], [0, 0, 1, 1, 2, 2])
    chunk = ep.cut(len_lookback_buffer=piece.required_lookback)
    np.testing.assert_array_equal(run(piece, chunk)[Columns.OBS][(ep.id_,)][0],
                                  [0, 0, 1, 1, 2, 2])
    chunk.add_env_step(frames[2], 0, 0.0)
    chunk.add_env_step(frames[3], 0, 0.0)
    np.testing.assert_array_equal(run(piece, chunk)[Columns.OBS][(ep.id_,)][0],
                                  [2, 2, 3, 3, 4, 4])
    assert len(chunk.get_observations()) == 3  # The episode keeps single frames.
    with pytest.raises(ValueError, match="num_frames=0 must be >= 1"):
        FrameStackingEnvToModule(num_frames=0)
    with pytest.raises(TypeError, match="stacks Box observations with at least one axis"):
        FrameStackingEnvToModule(spaces.Discrete(3), None, num_frames=2)


# ---- NormalizeAndClipActions --------------------------------------------------------------------

def test_normalize_and_clip_actions_maps_to_the_bounds_for_the_env_only():
    box = spaces.Box(np.array([-2, 0], np.float32), np.array([2, 10], np.float32))
    actions = np.array([[-1.0, -1.0], [0.0, 0.5], [1.0, 3.0]], np.float32)
    batch = NormalizeAndClipActions(OBS, box)(rl_module=None, batch={Columns.ACTIONS: actions},
                                              episodes=[])
    np.testing.assert_allclose(batch[Columns.ACTIONS_FOR_ENV], [[-2, 0], [0, 7.5], [2, 10]])
    assert batch[Columns.ACTIONS] is actions  # What learners train on stays as it was.
    clip = NormalizeAndClipActions(OBS, box, normalize_actions=False, clip_actions=True)
    np.testing.assert_allclose(clip(rl_module=None, batch={Columns.ACTIONS: actions},
                                    episodes=[])[Columns.ACTIONS_FOR_ENV],
                               [[-1, 0], [0, 0.5], [1, 3]])
    nested = spaces.Dict({"move": spaces.Box(-4.0, 4.0, (1,)), "pick": spaces.Discrete(3)})
    out = NormalizeAndClipActions(OBS, nested)(
        rl_module=None, episodes=[],
        batch={Columns.ACTIONS: {"move": np.array([[0.5]]), "pick": np.array([2])}})
    np.testing.assert_allclose(out[Columns.ACTIONS_FOR_ENV]["move"], [[2.0]])
    np.testing.assert_array_equal(out[Columns.ACTIONS_FOR_ENV]["pick"], [2])
    with pytest.raises(ValueError, match="NormalizeAndClipActions needs the action space"):
        NormalizeAndClipActions()(rl_module=None, batch={Columns.ACTIONS: actions}, episodes=[])


# ---- episodes: lookback, index rules, set_* -----------------------------------------------------

def chunk_with_lookback(values, lookback):
    """A chunk whose data are ``values`` (observations; actions and rewards the same values
    minus the first), the first ``lookback`` steps of them its lookback buffer."""
    ep = stepped(values[:lookback + 1], actions=values[1:], rewards=values[1:])
    chunk = ep.cut(len_lookback_buffer=lookback)
    for v in values[lookback + 1:]:
        chunk.add_env_step(v, v, float(v))
    return chunk


def test_cut_keeps_a_lookback_buffer_outside_the_chunk():
    ep = stepped([0, 1, 2, 3], actions=[11, 12, 13], rewards=[1.0, 2.0, 3.0])
    ep.custom_data["k"] = 1
    chunk = ep.cut(len_lookback_buffer=2)
    assert chunk.id_ == ep.id_ and len(chunk) == 0 and chunk.t_started == 3
    assert chunk.get_observations() == [3] and chunk.get_actions() == []
    assert chunk.get_return() == 0.0 and chunk.custom_data == {"k": 1}
    assert chunk.get_observations(-1, neg_index_as_lookback=True) == 2
    assert chunk.get_actions(slice(-2, 0), neg_index_as_lookback=True) == [12, 13]
    assert ep.cut(len_lookback_buffer=10).get_observations(
        slice(-10, 1), neg_index_as_lookback=True) == [0, 1, 2, 3]  # At most what there is.
    chunk.add_env_step(4, 14, 4.0, terminated=True)
    assert len(chunk) == 1 and chunk.get_return() == 4.0 and chunk.get_rewards() == [4.0]


def test_neg_index_as_lookback_and_fill_follow_rllibs_examples():
    # Observations [4, 5, 6, 7, 8, 9] with [4, 5, 6] as the lookback buffer (ts=0 is 7).
    ep = chunk_with_lookback([4, 5, 6, 7, 8, 9], 3)
    assert ep.get_observations() == [7, 8, 9] and len(ep) == 2
    assert ep.get_observations(-1, neg_index_as_lookback=True) == 6
    assert ep.get_observations(slice(-2, 1), neg_index_as_lookback=True) == [5, 6, 7]
    assert ep.get_observations(-1) == 9 and ep.get_observations(0) == 7
    with pytest.raises(IndexError, match="observation index -4 is out of range"):
        ep.get_observations(-4, neg_index_as_lookback=True)
    assert ep.get_observations(-4, neg_index_as_lookback=True, fill=0) == 0
    assert ep.get_observations(slice(-5, 1), neg_index_as_lookback=True, fill=0) == \
        [0, 0, 4, 5, 6, 7]
    # [10, 11, 12, 13, 14] with [10, 11] as lookback: counting from the end reaches into the
    # lookback buffer; fill pads only beyond it.
    ep = chunk_with_lookback([10, 11, 12, 13, 14], 2)
    assert ep.get_observations(slice(-7, -2), fill=0.0) == [0.0, 0.0, 10, 11, 12]
    assert ep.get_observations(slice(-7, -2)) == [10, 11, 12]
    assert ep.get_observations(slice(3, 5), fill=-1) == [-1, -1]
    # The last 4 rewards, right after a cut, come from the lookback buffer.
    ep = chunk_with_lookback([0, 1, 2, 3, 4, 5], 4)
    assert ep.get_rewards(slice(-4, None)) == [2.0, 3.0, 4.0, 5.0] and len(ep) == 1
    assert ep.get_rewards(slice(-4, 0), neg_index_as_lookback=True, fill=0.0) == \
        [1.0, 2.0, 3.0, 4.0]
    assert ep.get_actions(-1) == 5 and ep.get_actions(-2) == 4


def test_fill_is_shaped_like_array_entries():
    ep = stepped([np.ones(2, np.float32)])
    frames = ep.get_observations(slice(-3, None), fill=0.0)
    assert [f.shape for f in frames] == [(2,)] * 3
    np.testing.assert_array_equal(np.concatenate(frames), [0, 0, 0, 0, 1, 1])
    assert ep.get_rewards(slice(-2, None), fill=0.0) == [0.0, 0.0]


def test_set_writes_in_place_with_the_same_index_rules():
    ep = chunk_with_lookback([4, 5, 6, 7, 8, 9], 3)
    ep.set_observations(new_data=99, at_indices=-1, neg_index_as_lookback=True)
    assert ep.observations == [4, 5, 99, 7, 8, 9]
    ep.set_observations(new_data=[98, 99, 100], at_indices=slice(-2, 1),
                        neg_index_as_lookback=True)
    assert ep.observations == [4, 98, 99, 100, 8, 9]
    ep.set_observations(new_data=[1, 2, 3])  # None: the chunk's own entries.
    assert ep.observations == [4, 98, 99, 1, 2, 3]
    ep.set_observations(new_data=[20, 30], at_indices=slice(-2, None))
    ep.set_observations(new_data=[10], at_indices=slice(0, -2))
    assert ep.get_observations() == [10, 20, 30]
    ep.set_rewards(new_data=[0.5, 0.25], at_indices=[0, 1])
    ep.set_actions(new_data=-8, at_indices=-1)
    assert ep.get_rewards() == [0.5, 0.25] and ep.get_actions() == [8, -8]
    with pytest.raises(ValueError, match="3 new items for the 2 at"):
        ep.set_observations(new_data=[1, 2, 3], at_indices=slice(-2, None))
    with pytest.raises(IndexError, match="observation index 5 is out of range"):
        ep.set_observations(new_data=0, at_indices=5)
    with pytest.raises(IndexError, match="index -4 is out of range"):
        ep.set_observations(new_data=0, at_indices=-4, neg_index_as_lookback=True)
    assert ep.observations == [4, 98, 99, 10, 20, 30]  # Refused writes change nothing.
