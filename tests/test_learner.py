"""Local-mode tests of Learner/TorchLearner and the batching helpers (no Ray)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from learners import ALL_MODULES, check_required_apis
from learners.batching import (concat_fragments, cut_sequences, iterate_minibatches,
                               minibatch_plan)
from rlmodules import Columns, MultiRLModule, MultiRLModuleSpec, RLModuleSpec, TorchRLModule
from rlmodules.apis import ValueFunctionAPI
from test_learner_support import (ACT_SPACE, OBS_SPACE, BCLearner, TinyActorCritic, TinyLSTM,
                                  TinyPolicy, build_learner, make_fragments, spec_for)


def weights_changed(before, after):
    return {mid: any(not np.array_equal(before[mid][k], after[mid][k]) for k in before[mid])
            for mid in before}


def test_update_lowers_loss_and_reports_metrics_per_module():
    learner = build_learner(minibatch_size=32, train_batch_size_per_learner=128, num_epochs=2,
                            grad_clip=100.0)
    fragments = make_fragments(4, 32)
    first = learner.update(fragments)
    for _ in range(8):
        last = learner.update(fragments)
    metrics = last["default_policy"]
    assert metrics["bc_loss"] < 0.6 * first["default_policy"]["bc_loss"]
    assert metrics["total_loss"] == pytest.approx(metrics["bc_loss"])
    assert metrics["gradients_default_optimizer_global_norm"] > 0
    assert metrics["default_optimizer_lr"] == 0.01
    assert metrics["num_module_steps_trained"] == 128
    assert metrics["num_module_steps_trained_lifetime"] == 9 * 128
    assert last[ALL_MODULES] == {
        "num_env_steps_trained": 128, "num_env_steps_trained_lifetime": 9 * 128,
        "num_module_steps_trained": 128, "num_module_steps_trained_lifetime": 9 * 128}
    assert all(type(v) in (float, int) for m in last.values() for v in m.values())


class RecordingLearner(BCLearner):
    """Remembers which rows (by their unique first obs value) each minibatch held."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[np.ndarray] = []

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        self.seen.append(batch[Columns.OBS][:, 0].numpy().copy())
        return super().compute_loss_for_module(module_id=module_id, config=config,
                                               batch=batch, fwd_out=fwd_out)


def test_epochs_times_minibatches_steps_cycle_over_all_rows():
    # 100 // 30 = 3 minibatches per epoch, whatever the amount of data (here 80 rows).
    learner = build_learner(RecordingLearner, minibatch_size=30, train_batch_size_per_learner=100,
                            num_epochs=2)
    fragments = make_fragments(4, 20)
    learner.update(fragments)
    state = learner.get_state("optimizer")["optimizer"]["default_policy_default_optimizer"][
        "state"]
    assert {float(s["step"]) for s in state.values()} == {6.0}
    assert [len(rows) for rows in learner.seen] == [30] * 6
    all_rows = np.concatenate([f.columns[Columns.OBS][:, 0] for f in fragments])
    uses = [np.sum(np.concatenate(learner.seen) == row) for row in all_rows]
    assert min(uses) == 2 and max(uses) == 3  # 180 draws over 80 rows, as even as possible


class SGDLearner(BCLearner):
    """Custom optimizer: plain SGD with lr 1, so a step moves weights by exactly -grad."""

    def configure_optimizers_for_module(self, module_id, config):
        params = list(self.module[module_id].parameters())
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.SGD(params, lr=1.0),
                                params=params)


@pytest.mark.parametrize("grad_clip", [None, 1e-3])
def test_custom_optimizer_and_grad_clipping(grad_clip):
    learner = build_learner(SGDLearner, grad_clip=grad_clip)
    before = learner.get_weights()["default_policy"]
    metrics = learner.update(make_fragments(2, 16))["default_policy"]
    after = learner.get_weights()["default_policy"]
    step = np.sqrt(sum(((after[k] - before[k]) ** 2).sum() for k in before))
    if grad_clip is None:  # As in RLlib, no norm is computed or logged without clipping.
        assert "gradients_default_optimizer_global_norm" not in metrics
        assert step > 1e-2
    else:
        # The unclipped norm is what gets reported; the step is cut to grad_clip.
        assert metrics["gradients_default_optimizer_global_norm"] > 1e-2
        assert step == pytest.approx(grad_clip, rel=1e-3)
    opt_state = learner.get_state("optimizer")["optimizer"]["default_policy_default_optimizer"]
    assert "momentum" in opt_state["param_groups"][0]  # SGD's, not Adam's.


def test_state_round_trip_includes_optimizer_state():
    fragments = make_fragments(3, 16)
    trained = build_learner()
    for _ in range(3):
        trained.update(fragments)
    restored = build_learner(seed=7)
    restored.set_state(trained.get_state())
    weights_only = build_learner(seed=7)
    weights_only.set_state({"rl_module": trained.get_weights()})
    for learner in (trained, restored, weights_only):
        learner.update(fragments)
    expected = trained.get_weights()["default_policy"]
    for k, v in restored.get_weights()["default_policy"].items():
        np.testing.assert_array_equal(v, expected[k])
    # Without Adam's moments the same step lands elsewhere: the optimizer state mattered.
    assert weights_changed({"m": expected}, {"m": weights_only.get_weights()["default_policy"]})["m"]


def test_partial_state_and_component_paths():
    a = build_learner(spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic))
    b = build_learner(spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic), seed=1)
    p1_before = b.get_weights(["p1"])
    only_p0 = a.get_state(components="rl_module/p0")
    assert list(only_p0) == ["rl_module"] and list(only_p0["rl_module"]) == ["p0"]
    b.set_state(only_p0)
    for k, v in b.get_weights(["p0"])["p0"].items():
        np.testing.assert_array_equal(v, only_p0["rl_module"]["p0"][k])
    assert not weights_changed(p1_before, b.get_weights(["p1"]))["p1"]
    assert list(a.get_state(["optimizer/p1_default_optimizer"])["optimizer"]) == [
        "p1_default_optimizer"]
    with pytest.raises(KeyError, match="'rl_module/p9'.*'rl_module' holds"):
        a.get_state("rl_module/p9")
    with pytest.raises(KeyError, match="unknown component"):
        a.set_state({"weights": {}})


class NeedsValues(BCLearner):
    @classmethod
    def rl_module_required_apis(cls):
        return [ValueFunctionAPI]


def test_missing_required_api_names_module_class_and_api():
    spec = spec_for(p0=TinyActorCritic, p1=TinyPolicy)
    pattern = r"Module 'p1' \(.*TinyPolicy\) does not implement ValueFunctionAPI.*NeedsValues"
    with pytest.raises(TypeError, match=pattern):
        check_required_apis(NeedsValues, spec)
    with pytest.raises(TypeError, match=pattern):
        build_learner(NeedsValues, spec=spec)
    # A module that is not trained does not need the API.
    build_learner(NeedsValues, spec=spec, policies_to_train=["p0"])


def test_only_modules_to_train_with_data_change():
    learner = build_learner(spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic,
                                          p2=TinyActorCritic), policies_to_train=["p0", "p2"])
    before = learner.get_weights()
    results = learner.update(make_fragments(2, 8, "p0") + make_fragments(2, 8, "p1", seed=1))
    changed = weights_changed(before, learner.get_weights())
    assert changed == {"p0": True, "p1": False, "p2": False}
    assert set(results) == {"p0", ALL_MODULES}
    assert results[ALL_MODULES]["num_env_steps_trained"] == 16


class WeightedBCLearner(BCLearner):
    """Adds a column (fragment i's steps hold i) and remembers each call of the hook."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[tuple[str, list[str]]] = []

    def compute_extra_columns_for_module(self, module_id, fragments):
        self.calls.append((module_id, [f.episode_id for f in fragments]))
        return {"weight": [np.full(len(f), i, np.float32) for i, f in enumerate(fragments)]}


def test_extra_columns_come_once_per_update_and_trained_module():
    learner = build_learner(WeightedBCLearner, policies_to_train=["p0"], num_epochs=2,
                            spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic),
                            minibatch_size=3, train_batch_size_per_learner=6)
    p0, p1 = make_fragments(2, 3, "p0"), make_fragments(1, 3, "p1", seed=1)
    learner.update([p0[0], p1[0], p0[1]])  # 2 epochs x 2 minibatches, one hook call.
    assert learner.calls == [("p0", [f.episode_id for f in p0])]
    batch = learner.build_module_batch("p0", p0)
    np.testing.assert_array_equal(batch["weight"].numpy(), [0, 0, 0, 1, 1, 1])


def test_fragments_for_unknown_module_are_an_error():
    learner = build_learner()
    with pytest.raises(KeyError, match=r"\['nobody'\].*holds \['default_policy'\]"):
        learner.update(make_fragments(1, 4, "nobody"))


class Encoder(TorchRLModule):
    def setup(self):
        self.net = nn.Linear(4, 8)

    def _forward(self, batch, **kwargs):
        return {"encoder_out": torch.tanh(self.net(batch[Columns.OBS]))}


class Head(TorchRLModule):
    def setup(self):
        self.net = nn.Linear(8, 3)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.net(batch["encoder_out"])}


class SharedEncoderModule(MultiRLModule):
    """Policies p0/p1 on top of one encoder sub-module that never gets data of its own."""

    def _forward(self, batch, **kwargs):
        encoder = self["encoder"]
        return {mid: self[mid]._forward({"encoder_out": encoder._forward(b)["encoder_out"]})
                for mid, b in batch.items()}


class SharedOptimizerLearner(BCLearner):
    def configure_optimizers(self):
        params = list(self.module.parameters())
        self.register_optimizer(optimizer=torch.optim.Adam(params, lr=1e-2), params=params)


def test_shared_encoder_trained_through_policy_losses():
    specs = {mid: RLModuleSpec(module_class=cls, observation_space=OBS_SPACE,
                               action_space=ACT_SPACE)
             for mid, cls in [("encoder", Encoder), ("p0", Head), ("p1", Head)]}
    spec = MultiRLModuleSpec(multi_rl_module_class=SharedEncoderModule, rl_module_specs=specs)
    learner = build_learner(SharedOptimizerLearner, spec=spec, grad_clip=100.0)
    before = learner.get_weights()
    results = learner.update(make_fragments(2, 8, "p0"))
    assert weights_changed(before, learner.get_weights()) == {
        "encoder": True, "p0": True, "p1": False}
    assert {"gradients_default_optimizer_global_norm", "default_optimizer_lr",
            "num_env_steps_trained"} <= set(results[ALL_MODULES])


def test_stateful_module_trains_on_masked_sequences():
    learner = build_learner(spec=spec_for(default_policy=TinyLSTM), lr=3e-2,
                            minibatch_size=40, train_batch_size_per_learner=80)
    fragments = make_fragments(3, 25, stateful=True)
    batch = learner.build_module_batch("default_policy", fragments)
    assert batch[Columns.OBS].shape == (6, 20, 4)  # ceil(25 / 20) = 2 sequences per fragment
    assert batch[Columns.STATE_IN]["h"].shape == (6, 8)
    assert batch[Columns.LOSS_MASK].sum() == 75
    first = learner.update(fragments)["default_policy"]["bc_loss"]
    for _ in range(15):
        last = learner.update(fragments)["default_policy"]["bc_loss"]
    assert last < 0.8 * first


def test_cut_sequences_keeps_fragments_apart_and_takes_state_at_starts():
    flat = {Columns.OBS: np.arange(8, dtype=np.float32)[:, None],
            Columns.STATE_IN: {"h": np.arange(8, dtype=np.float32) * 10}}
    out = cut_sequences(flat, lengths=[5, 3], max_seq_len=2)
    np.testing.assert_array_equal(out[Columns.OBS][..., 0],
                                  [[0, 1], [2, 3], [4, 0], [5, 6], [7, 0]])
    np.testing.assert_array_equal(out[Columns.LOSS_MASK],
                                  [[1, 1], [1, 1], [1, 0], [1, 1], [1, 0]])
    np.testing.assert_array_equal(out[Columns.STATE_IN]["h"], [0, 20, 40, 50, 70])


def test_concat_fragments_adds_extra_columns_and_checks_lengths():
    fragments = make_fragments(2, 3)
    out = concat_fragments(fragments, {"adv": [np.ones(3), np.zeros(3)]})
    assert out[Columns.OBS].shape == (6, 4)
    np.testing.assert_array_equal(out["adv"], [1, 1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="'adv'.*fragment 1 has length 2.*has 3 timesteps"):
        concat_fragments(fragments, {"adv": [np.ones(3), np.ones(2)]})


def test_minibatch_plan_uses_rows_evenly():
    plan = minibatch_plan(10, 4, 6, np.random.default_rng(0))
    counts = np.bincount(plan.ravel(), minlength=10)
    assert plan.shape == (6, 4) and counts.max() - counts.min() <= 1
    assert minibatch_plan(10, 16, 3, np.random.default_rng(0)) is None  # Full batch.


@pytest.mark.parametrize("num_rows, rows, steps", [(10, 4, 6), (12, 4, 7), (8, 8, 2), (9, 2, 1)])
def test_iterate_minibatches_yields_each_steps_planned_rows(num_rows, rows, steps):
    batch = {"obs": torch.arange(num_rows * 3.0).reshape(num_rows, 3),
             "nested": {"a": torch.arange(num_rows), "b": (torch.arange(num_rows) * 2,)}}
    plan = torch.from_numpy(minibatch_plan(num_rows, rows, steps, np.random.default_rng(1))
                            if rows < num_rows else np.zeros((steps, 0), np.int64))
    got = list(iterate_minibatches(batch, plan if rows < num_rows else None, steps))
    assert len(got) == steps
    for step, minibatch in enumerate(got):
        expected = batch if rows >= num_rows else {
            "obs": batch["obs"][plan[step]], "nested": {"a": plan[step], "b": (plan[step] * 2,)}}
        torch.testing.assert_close(minibatch, expected)


def test_values_for_fragments_include_bootstrap_value():
    learner = build_learner()
    fragments = make_fragments(3, 5)
    values = learner.compute_values_for_fragments("default_policy", fragments)
    vf = learner.module["default_policy"].vf
    for fragment, v in zip(fragments, values):
        obs = np.concatenate([fragment.columns[Columns.OBS], fragment.last_obs[None]])
        expected = vf(torch.from_numpy(obs)).squeeze(-1).detach().numpy()
        np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)


def test_values_for_stateful_fragments_run_from_the_first_state():
    learner = build_learner(spec=spec_for(default_policy=TinyLSTM))
    fragments = make_fragments(1, 4, stateful=True) + make_fragments(1, 7, seed=1, stateful=True)
    values = learner.compute_values_for_fragments("default_policy", fragments)
    module = learner.module["default_policy"]
    for fragment, v in zip(fragments, values):
        obs = np.concatenate([fragment.columns[Columns.OBS], fragment.last_obs[None]])
        state = {k: torch.from_numpy(s[:1]) for k, s in fragment.columns[Columns.STATE_IN].items()}
        with torch.no_grad():
            expected = module.compute_values({Columns.OBS: torch.from_numpy(obs)[None],
                                              Columns.STATE_IN: state})[0].numpy()
        assert v.shape == (len(fragment) + 1,)
        np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-6)


def test_local_learner_group_never_imports_ray():
    code = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from learners import LearnerGroup\n"
        "from test_learner_support import *\n"
        "group = LearnerGroup(config=make_config(), learner_class=BCLearner,\n"
        "                     module_spec=spec_for(default_policy=TinyActorCritic))\n"
        "group.update(make_fragments(2, 8))\n"
        "group.set_state(group.get_state())\n"
        "assert group.is_local and group.foreach_learner(lambda l: l.world_size) == [1]\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert proc.returncode == 0, proc.stderr


def test_gpu_learner_without_cuda_says_so():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match=r"num_gpus_per_learner=1 but learner 0 sees no CUDA"):
        build_learner(num_gpus_per_learner=1)


def test_data_parallel_learner_needs_a_process_group():
    learner = BCLearner(config=build_learner().config, world_size=2,
                        module_spec=spec_for(default_policy=TinyActorCritic))
    with pytest.raises(RuntimeError, match="world_size=2 needs a torch.distributed process group"):
        learner.build()
