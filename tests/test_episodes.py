"""SingleAgentEpisode / MultiAgentEpisode: RLlib's index rules, returns, chunks and state."""

from __future__ import annotations

import pytest

from runners.episodes import MultiAgentEpisode, SingleAgentEpisode


def episode(n=3):
    ep = SingleAgentEpisode("e1", module_id="m")
    ep.add_env_reset(0, {"r": 0})
    for t in range(1, n + 1):
        ep.add_env_step(t, t + 10, float(t), {"t": t}, terminated=t == n,
                        extra_model_outputs={"vf": t * 0.5})
    return ep


def test_single_agent_index_and_slice_rules():
    ep = episode()
    assert ep.get_observations() == [0, 1, 2, 3]
    assert ep.get_observations(-1) == 3 and ep.get_observations(0) == 0
    assert ep.get_observations([0, 2]) == [0, 2] and ep.get_observations([-1, 0]) == [3, 0]
    assert ep.get_observations(slice(None, 2)) == [0, 1]
    assert ep.get_observations(slice(-2, None)) == [2, 3]
    assert ep.get_observations(slice(-6, -2), fill=-9) == [-9, -9, 0, 1]
    assert ep.get_observations(slice(2, 5), fill=-7) == [2, 3, -7]
    assert ep.get_actions(-1) == 13 and ep.get_actions(slice(1, None)) == [12, 13]
    assert ep.get_rewards() == [1.0, 2.0, 3.0] and ep.get_rewards(-2) == 2.0
    assert ep.get_infos(0) == {"r": 0} and ep.get_infos(-1) == {"t": 3}
    assert ep.get_extra_model_outputs("vf", -1) == 1.5
    assert ep.get_rewards(7, fill=0.0) == 0.0
    with pytest.raises(IndexError, match="reward index 7"):
        ep.get_rewards(7)
    with pytest.raises(KeyError, match="no extra model output 'logp'"):
        ep.get_extra_model_outputs("logp")


def test_single_agent_counts_flags_and_chunks():
    ep = SingleAgentEpisode()
    ep.add_env_reset(0)
    ep.add_env_step(1, 0, 2.0)
    assert len(ep) == ep.env_steps() == ep.agent_steps() == 1 and not ep.is_done
    ep.custom_data["k"] = [1]
    chunk = ep.cut()
    assert chunk.id_ == ep.id_ and len(chunk) == 0 and chunk.get_observations() == [1]
    assert chunk.custom_data == {"k": [1]} and chunk.custom_data["k"] is not ep.custom_data["k"]
    chunk.add_env_step(2, 1, 5.0, truncated=True)
    assert chunk.get_return() == 5.0 and chunk.is_truncated and chunk.is_done
    assert not chunk.is_terminated and chunk.get_duration_s() >= 0
    with pytest.raises(RuntimeError, match="is done"):
        chunk.add_env_step(3, 0, 1.0)
    assert episode().get_return() == 6.0 and episode().is_terminated


def test_single_agent_temporary_data_and_state_round_trip():
    ep = episode()
    ep.add_temporary_timestep_data("x", 1)
    ep.add_temporary_timestep_data("x", 2)
    assert ep.get_temporary_timestep_data("x") == [1, 2]
    with pytest.raises(KeyError, match="'y'"):
        ep.get_temporary_timestep_data("y")
    ep.custom_data["c"] = 3
    back = SingleAgentEpisode.from_state(ep.get_state())
    for name in ("id_", "module_id", "is_terminated", "custom_data"):
        assert getattr(back, name) == getattr(ep, name)
    assert back.get_observations() == ep.get_observations() and len(back) == len(ep)
    assert back.get_extra_model_outputs("vf") == [0.5, 1.0, 1.5]


def turn_based():
    """Agents a and b act in turns; b's first obs comes after the first env step."""
    ep = MultiAgentEpisode("m1", agent_to_module_mapping_fn=lambda aid, ep: f"p_{aid}")
    ep.add_env_reset({"a": "a0"}, {"a": {"i": 0}})
    ep.module_for("a")
    ep.add_agent_action("a", 1, {"vf": 0.1})
    ep.add_env_step({"b": "b0"}, {"a": 1.0}, {}, {}, {})
    ep.module_for("b")
    ep.add_agent_action("b", 2)
    ep.add_env_step({"a": "a1"}, {"a": 0.5, "b": 2.0}, {"a": {"i": 1}}, {}, {})
    ep.add_agent_action("a", 3)
    ep.add_env_step({"b": "b1"}, {"b": 3.0, "a": 1.0}, {}, {"__all__": True}, {})
    return ep


def test_multi_agent_episode_records_each_agent_and_indexes_env_steps():
    ep = turn_based()
    assert len(ep) == ep.env_steps() == 3 and ep.env_t == 3 and ep.is_terminated
    assert ep.agent_ids == {"a", "b"} and ep.module_for("b") == "p_b"
    assert ep.agent_episodes["a"].module_id == "p_a"
    a, b = ep.agent_episodes["a"], ep.agent_episodes["b"]
    assert a.get_observations() == ["a0", "a1", "a1"] and a.get_rewards() == [1.5, 1.0]
    assert b.get_observations() == ["b0", "b1"] and b.get_rewards() == [5.0]
    assert ep.get_return() == 7.5 and ep.agent_steps() == 3
    assert ep.get_observations(-1) == {"a": "a1", "b": "b1"}  # Env step 3: both ended.
    assert ep.get_observations(0) == {"a": "a0"}
    assert ep.get_observations(1) == {"b": "b0"}
    assert ep.get_observations(slice(0, 2)) == {"a": ["a0"], "b": ["b0"]}
    assert ep.get_actions(-1) == {"a": 3} and ep.get_actions(0) == {"a": 1}
    assert ep.get_observations(-1, env_steps=False) == {"a": "a1", "b": "b1"}
    assert ep.get_observations(0, agent_ids="b", env_steps=False) == {"b": "b0"}
    assert ep.get_infos(0) == {"a": {"i": 0}} and ep.get_infos(2) == {"a": {"i": 1}}
    assert ep.get_extra_model_outputs("vf", 0) == {"a": 0.1}
    assert ep.get_terminateds() == {"__all__": True, "a": True, "b": True}


def test_multi_agent_cut_and_state_round_trip():
    ep = MultiAgentEpisode()
    ep.add_env_reset({0: "x", 1: "y"})
    ep.add_agent_action(0, 1)
    ep.add_agent_action(1, 0)
    ep.add_env_step({0: "x1", 1: "y1"}, {0: 1.0, 1: 1.0}, {}, {1: True}, {})
    chunk = ep.cut()
    assert chunk.id_ == ep.id_ and len(chunk) == 0 and chunk.agent_ids == {0}
    chunk.add_agent_action(0, 0)
    chunk.add_env_step({0: "x2"}, {0: 4.0}, {}, {}, {"__all__": True})
    assert chunk.get_return() == 4.0 and chunk.is_truncated and chunk.get_observations(-1) == \
        {0: "x2"}
    back = MultiAgentEpisode.from_state(ep.get_state())
    assert back.id_ == ep.id_ and back.agent_ids == ep.agent_ids and back.get_return() == 2.0
    assert back.get_observations() == ep.get_observations()
