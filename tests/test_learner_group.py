"""LearnerGroup: data splitting and metric reduction, and real Ray learner actors."""

from __future__ import annotations

import numpy as np
import pytest

import test_learner_support
from conftest import shipped_by_value
from learners import ALL_MODULES, LearnerGroup
from learners.distributed import select_backend
from learners.distributed import reduce_metrics
from learners.learner_group import split_fragments
from test_learner_support import (BCLearner, TinyActorCritic, build_learner, make_config,
                                  make_fragments, spec_for)


@pytest.fixture(scope="module")
def ray_learners(ray_session):
    """A list for this module's groups (stopped at its end), on a Ray that ships the test
    learner and module classes to the actors by value."""
    groups = []
    with shipped_by_value(test_learner_support):
        yield groups
        for group in groups:
            group.stop()


@pytest.fixture(scope="module")
def dp_group(ray_learners):
    """Two unseeded data-parallel learners whose minibatch is a learner's whole data share."""
    return make_group(ray_learners, spec_for(p0=TinyActorCritic, p1=TinyActorCritic),
                      num_learners=2, num_epochs=3, minibatch_size=32,
                      train_batch_size_per_learner=32, seed=None)


def make_group(groups, spec, **config):
    group = LearnerGroup(config=make_config(**config), module_spec=spec, learner_class=BCLearner)
    groups.append(group)
    return group


def test_split_fragments_balances_timesteps_per_module():
    fragments = (make_fragments(1, 30, "p0") + make_fragments(3, 10, "p0", seed=1)
                 + make_fragments(1, 5, "p1", seed=2))
    shards = split_fragments(fragments, 2)
    per_module = [{m: sum(len(f) for f in s if f.module_id == m) for m in ("p0", "p1")}
                  for s in shards]
    assert per_module == [{"p0": 30, "p1": 5}, {"p0": 30, "p1": 0}]
    assert sorted(map(id, shards[0] + shards[1])) == sorted(map(id, fragments))
    assert [fragments.index(f) for f in shards[1]] == sorted(fragments.index(f) for f in shards[1])


def test_reduce_metrics_sums_counts_and_averages_the_rest():
    merged = reduce_metrics([
        {"p0": {"loss": 1.0, "num_module_steps_trained": 10}, ALL_MODULES: {"num_env_steps_trained": 10}},
        {"p0": {"loss": 3.0, "num_module_steps_trained": 20}, "p1": {"loss": 5.0},
         ALL_MODULES: {"num_env_steps_trained": 25}}])
    assert merged == {"p0": {"loss": 2.0, "num_module_steps_trained": 30}, "p1": {"loss": 5.0},
                      ALL_MODULES: {"num_env_steps_trained": 35}}


def test_nccl_only_when_every_learner_owns_a_gpu():
    assert [select_backend(g) for g in (0, 0.5, 1, 2)] == ["gloo", "gloo", "nccl", "nccl"]


def test_one_ray_learner_trains_and_serves_state(ray_learners):
    spec = spec_for(default_policy=TinyActorCritic)
    group = make_group(ray_learners, spec, num_learners=1, num_epochs=4)
    assert not group.is_local and group.num_learners == 1
    before = group.get_weights()
    assert "vf.weight" not in before["default_policy"]  # inference-only by default
    fragments = make_fragments(4, 16)
    first = group.update(fragments)
    for _ in range(5):
        last = group.update(fragments)
    assert last["default_policy"]["bc_loss"] < 0.7 * first["default_policy"]["bc_loss"]
    assert last[ALL_MODULES]["num_env_steps_trained"] == 64
    after = group.get_weights()
    assert not np.array_equal(after["default_policy"]["pi.0.weight"],
                              before["default_policy"]["pi.0.weight"])
    state = group.get_state(components="learner/rl_module/default_policy")
    assert list(state["learner"]) == ["rl_module"] and "vf.weight" in state["learner"][
        "rl_module"]["default_policy"]
    group.set_state({"learner": {"rl_module": {"default_policy": {
        k: np.zeros_like(v) for k, v in state["learner"]["rl_module"]["default_policy"].items()}}}})
    assert group.foreach_learner(
        lambda learner: float(abs(learner.module["default_policy"].pi[0].weight).sum())) == [0.0]
    group.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        group.update(fragments)


def assert_learners_identical(group):
    weights = group.foreach_learner(lambda learner: learner.get_weights())
    for mid, params in weights[0].items():
        for k, v in params.items():
            np.testing.assert_array_equal(v, weights[1][mid][k])
    return weights[0]


def test_two_data_parallel_learners_stay_identical_and_match_one_learner(dp_group):
    group = dp_group
    initial = assert_learners_identical(group)  # Unseeded: rank 0's weights were broadcast.
    local = build_learner(spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic), num_epochs=3)
    local.set_state(group.get_state()["learner"])
    # p1 has a single fragment: only one learner has its data, yet both must step alike.
    fragments = make_fragments(4, 16, "p0") + make_fragments(1, 8, "p1", seed=1)
    # Each learner's minibatch is its whole share: the two average the full-batch gradient.
    for _ in range(2):
        results = group.update(fragments)
        local.update(fragments)
    assert results["p0"]["num_module_steps_trained"] == 64
    assert results["p1"]["num_module_steps_trained"] == 8
    weights, expected = assert_learners_identical(group), local.get_weights()
    for mid in ("p0", "p1"):
        assert not np.array_equal(weights[mid]["pi.0.weight"], initial[mid]["pi.0.weight"])
        for k, v in weights[mid].items():
            np.testing.assert_allclose(v, expected[mid][k], rtol=1e-5, atol=1e-6)
    # One fragment in all: learner 1 has no data at all and still joins every all-reduce.
    group.update(fragments[:1])
    local.update(fragments[:1])
    weights, expected = assert_learners_identical(group), local.get_weights()
    for k, v in weights["p0"].items():
        np.testing.assert_allclose(v, expected["p0"][k], rtol=1e-5, atol=1e-6)


def test_killed_learner_gives_error_naming_it(dp_group, ray_session):
    # Learner 0 waits for its peer inside the gradient all-reduce: the error must not hang.
    ray_session.kill(dp_group.pool.actors[1], no_restart=True)
    with pytest.raises(RuntimeError, match=r"(?s)learner 1 \(of 2\) died.*Cause: .*ray\.kill"):
        dp_group.update(make_fragments(2, 8, "p0"))


def test_unschedulable_learners_report_requested_and_available_cpus(ray_learners, monkeypatch):
    monkeypatch.setattr(LearnerGroup, "STARTUP_TIMEOUT_S", 1.0)
    with pytest.raises(RuntimeError, match=r"2 of 2 learner actor\(s\) were not scheduled.*"
                                           r"num_cpus_per_learner=4.*8 CPUs.*has 2 CPUs"):
        make_group(ray_learners, spec_for(default_policy=TinyActorCritic), num_learners=2,
                   num_cpus_per_learner=4)
