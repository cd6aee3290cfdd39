"""Fragments packed for the trip from a Ray runner come back as they were."""

import numpy as np

from rlmodules import Columns
from runners.fragment import Fragment, pack_fragments, unpack_fragments


def fragment(module_id, n, start, nested=False, agent_id=None):
    obs = {"a": np.arange(start, start + n, dtype=np.float32)[:, None],
           "b": np.arange(n)} if nested else np.full((n, 3), start, np.float32)
    columns = {Columns.OBS: obs, Columns.ACTIONS: np.arange(n), Columns.REWARDS:
               np.ones(n, np.float32), Columns.INFOS: [{"t": t} for t in range(n)]}
    last = {"a": np.float32([9.0]), "b": np.int64(1)} if nested else np.zeros(3, np.float32)
    return Fragment(module_id, agent_id, f"ep{start}", columns, last, start % 2 == 0, False,
                    t_started=start, lookback_obs=None if start else np.ones((1, 3)))


def test_pack_unpack_round_trip_groups_by_module_and_keeps_everything():
    fragments = [fragment("p0", 3, 0), fragment("p1", 2, 5, nested=True, agent_id="x"),
                 fragment("p0", 4, 7)]
    packed = pack_fragments(fragments)
    assert len(packed.groups) == 2  # One per module (same columns).
    out = unpack_fragments(packed)
    by_key = {(f.module_id, f.episode_id): f for f in out}
    for f in fragments:
        g = by_key[(f.module_id, f.episode_id)]
        assert (g.agent_id, g.terminated, g.truncated, g.t_started) == \
            (f.agent_id, f.terminated, f.truncated, f.t_started)
        assert g.columns[Columns.INFOS] == f.columns[Columns.INFOS]
        for key in (Columns.ACTIONS, Columns.REWARDS):
            np.testing.assert_array_equal(g.columns[key], f.columns[key])
        if isinstance(f.last_obs, dict):
            np.testing.assert_array_equal(g.columns[Columns.OBS]["a"], f.columns[Columns.OBS]["a"])
            assert g.last_obs["b"] == 1
        else:
            np.testing.assert_array_equal(g.columns[Columns.OBS], f.columns[Columns.OBS])
            np.testing.assert_array_equal(g.last_obs, f.last_obs)
        assert (g.lookback_obs is None) == (f.lookback_obs is None)
    g = by_key[("p0", "ep0")]
    g.columns[Columns.REWARDS][0] = 5.0  # Writable (learner connectors write in place) ...
    assert by_key[("p0", "ep7")].columns[Columns.REWARDS][0] == 1.0  # ... and separate.
