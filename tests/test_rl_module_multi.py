"""MultiRLModule and MultiRLModuleSpec: dict access, add/remove, per-module forwards, state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlmodules import (DEFAULT_MODULE_ID, Columns, InferenceOnlyAPI, MultiRLModuleSpec,
                       RLModuleSpec, TorchRLModule)


class Policy(TorchRLModule, InferenceOnlyAPI):
    def setup(self):
        self.pi = nn.Linear(self.observation_space.shape[0], self.action_space.n)
        if not self.inference_only:
            self.vf = nn.Linear(self.observation_space.shape[0], 1)

    def get_non_inference_attributes(self):
        return ["vf"]

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def spec(obs_dim: int = 3, n: int = 2) -> RLModuleSpec:
    return RLModuleSpec(module_class=Policy, observation_space=gym.spaces.Box(-1, 1, (obs_dim,)),
                        action_space=gym.spaces.Discrete(n))


def test_multi_spec_builds_one_module_per_id_and_is_dict_like():
    multi = MultiRLModuleSpec(rl_module_specs={"a": spec(3), "b": spec(5, 4)}).build()
    assert list(multi.keys()) == ["a", "b"] and "a" in multi and "c" not in multi
    assert len(multi) == 2 and list(multi) == ["a", "b"]
    assert dict(multi.items())["b"] is multi["b"] and multi["b"].pi.out_features == 4
    with pytest.raises(KeyError, match=r"'c' not in MultiRLModule; it holds \['a', 'b'\]"):
        multi["c"]


def test_single_spec_is_shared_by_every_module_id():
    multi_spec = MultiRLModuleSpec(rl_module_specs=spec())
    assert list(multi_spec.build().keys()) == [DEFAULT_MODULE_ID]
    expanded = multi_spec.module_specs(["p0", "p1"])
    assert set(expanded) == {"p0", "p1"} and expanded["p0"] is not expanded["p1"]


def test_forwards_take_and_return_dicts_keyed_by_module_id():
    multi = MultiRLModuleSpec(rl_module_specs={"a": spec(3), "b": spec(5, 4)}).build()
    batch = {"a": {Columns.OBS: torch.zeros(2, 3)}, "b": {Columns.OBS: np.zeros((6, 5))}}
    out = multi.forward_exploration(batch)
    assert out["a"][Columns.ACTION_DIST_INPUTS].shape == (2, 2)
    assert out["b"][Columns.ACTION_DIST_INPUTS].shape == (6, 4)
    only_b = multi.forward_train({"b": {Columns.OBS: torch.zeros(1, 5)}})
    assert list(only_b) == ["b"] and only_b["b"][Columns.ACTION_DIST_INPUTS].requires_grad
    with pytest.raises(KeyError, match="Module ID 'z'"):
        multi.forward_inference({"z": {Columns.OBS: torch.zeros(1, 3)}})


def test_add_and_remove_module():
    multi = MultiRLModuleSpec(rl_module_specs={"a": spec()}).build()
    new = spec(4).build()
    multi.add_module("b", new)
    assert multi["b"] is new and multi.rl_module_specs["b"].observation_space.shape == (4,)
    with pytest.raises(ValueError, match="'b' already exists.*override=True"):
        multi.add_module("b", spec().build())
    multi.add_module("b", spec().build(), override=True)
    assert multi["b"].pi.in_features == 3
    with pytest.raises(TypeError, match="needs an RLModule"):
        multi.add_module("c", nn.Linear(1, 1))
    multi.remove_module("b")
    assert "b" not in multi and "b" not in multi.rl_module_specs
    with pytest.raises(KeyError, match="'b' not in"):
        multi.remove_module("b")
    multi.remove_module("b", raise_err_if_not_found=False)
    assert sum(p.numel() for p in multi.parameters()) == sum(
        p.numel() for p in multi["a"].parameters())


def test_state_is_keyed_by_module_id_and_partial_set_state_keeps_the_rest():
    multi = MultiRLModuleSpec(rl_module_specs={"a": spec(), "b": spec()}).build()
    state = multi.get_state()
    assert set(state) == {"a", "b"} and set(state["a"]) == {"pi.weight", "pi.bias",
                                                           "vf.weight", "vf.bias"}
    assert set(multi.get_state(module_ids=["b"])) == {"b"}
    before_b = multi["b"].get_state()
    multi.set_state({"a": {k: np.zeros_like(v) for k, v in state["a"].items()}})
    assert torch.all(multi["a"].pi.weight == 0)
    assert np.array_equal(multi["b"].get_state()["pi.weight"], before_b["pi.weight"])


def test_inference_only_multi_builds_inference_only_sub_modules_and_takes_full_state():
    multi_spec = MultiRLModuleSpec(rl_module_specs={"a": spec(), "b": spec()})
    learner_side = multi_spec.build()
    actor_side = multi_spec.as_inference_only().build()
    assert all(m.inference_only and not hasattr(m, "vf") for m in actor_side.values())
    assert set(learner_side.get_state(inference_only=True)["a"]) == {"pi.weight", "pi.bias"}
    actor_side.set_state(learner_side.get_state())
    obs = {"a": {Columns.OBS: torch.randn(2, 3)}}
    assert torch.equal(actor_side.forward_inference(obs)["a"][Columns.ACTION_DIST_INPUTS],
                       learner_side.forward_inference(obs)["a"][Columns.ACTION_DIST_INPUTS])


def test_sub_module_output_checks_name_the_sub_module_class():
    class Silent(TorchRLModule):
        def _forward(self, batch, **kwargs):
            return {}

    multi = MultiRLModuleSpec(rl_module_specs={"s": RLModuleSpec(
        module_class=Silent, observation_space=gym.spaces.Box(-1, 1, (1,)),
        action_space=gym.spaces.Discrete(2))}).build()
    with pytest.raises(ValueError, match=r"Silent\.forward_exploration\(\) must return"):
        multi.forward_exploration({"s": {Columns.OBS: torch.zeros(1, 1)}})
