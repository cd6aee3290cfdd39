"""RLModule semantics: construction, forward routing, output checks, dist classes, state."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlmodules import (DEFAULT_MODULE_ID, ENCODER_OUT, Columns, DefaultModelConfig,
                       InferenceOnlyAPI, MultiRLModule, RLModule, RLModuleSpec, TorchRLModule)
from rlmodules.distributions import TorchCategorical, TorchDiagGaussian

OBS = gym.spaces.Box(-1, 1, (3,))
ACT = gym.spaces.Discrete(2)


class PhaseModule(TorchRLModule):
    """Records which private forward ran, and whether autograd was on."""

    def setup(self):
        self.net = nn.Linear(3, 2)
        self.calls = []

    def _record(self, name, batch):
        self.calls.append((name, torch.is_grad_enabled()))
        return {Columns.ACTION_DIST_INPUTS: self.net(batch[Columns.OBS])}

    def _forward(self, batch, **kwargs):
        return self._record("_forward", batch)

    def _forward_train(self, batch, **kwargs):
        return self._record("_forward_train", batch)


def build(module_class=PhaseModule, **kwargs) -> RLModule:
    return module_class(observation_space=OBS, action_space=ACT, **kwargs)


def test_constructor_stores_arguments_and_calls_setup():
    module = build(model_config={"k": 1}, inference_only=True, catalog_class=dict)
    assert (module.observation_space, module.action_space) == (OBS, ACT)
    assert module.inference_only is True
    assert module.model_config == {"k": 1}
    assert module.catalog_class is dict
    assert isinstance(module.net, nn.Linear)


def test_default_model_config_object_becomes_a_dict():
    module = build(model_config=DefaultModelConfig(fcnet_hiddens=[7]))
    assert module.model_config["fcnet_hiddens"] == [7]


def test_unknown_constructor_argument_names_class_and_argument():
    with pytest.raises(TypeError, match=r"PhaseModule\(\) got unexpected.*\['obs_space'\]"):
        PhaseModule(obs_space=OBS, action_space=ACT)


def test_forward_methods_route_and_fall_back_to_forward():
    module = build()
    obs = {Columns.OBS: torch.zeros(4, 3)}
    module.forward_exploration(obs)
    module.forward_inference(obs)
    module.forward_train(obs)
    module(obs)  # nn.Module call = forward_train
    assert module.calls == [("_forward", False), ("_forward", False),
                            ("_forward_train", True), ("_forward_train", True)]


def test_numpy_batches_become_float32_tensors():
    module = build()
    out = module.forward_inference({Columns.OBS: np.zeros((2, 3))})  # float64
    assert out[Columns.ACTION_DIST_INPUTS].dtype == torch.float32


def test_neither_actions_nor_dist_inputs_is_an_error_naming_class_and_method():
    class NoActions(TorchRLModule):
        def _forward(self, batch, **kwargs):
            return {Columns.VF_PREDS: torch.zeros(1)}

    module = build(NoActions)
    for method in ("forward_exploration", "forward_inference"):
        with pytest.raises(ValueError, match=rf"NoActions\.{method}\(\) must return.*'actions'"
                                             r".*'action_dist_inputs'.*\['vf_preds'\]"):
            getattr(module, method)({Columns.OBS: torch.zeros(1, 3)})
    assert Columns.VF_PREDS in module.forward_train({Columns.OBS: torch.zeros(1, 3)})


def test_missing_forward_implementation_is_explained():
    with pytest.raises(NotImplementedError, match="Bare implements neither _forward"):
        type("Bare", (TorchRLModule,), {})(observation_space=OBS, action_space=ACT) \
            .forward_inference({Columns.OBS: torch.zeros(1, 3)})


def test_forward_train_on_inference_only_module_is_refused():
    with pytest.raises(RuntimeError, match="inference_only=True"):
        build(inference_only=True).forward_train({Columns.OBS: torch.zeros(1, 3)})


def test_default_dist_classes_follow_the_action_space():
    box = PhaseModule(observation_space=OBS, action_space=gym.spaces.Box(-1, 1, (2,)))
    multi = PhaseModule(observation_space=OBS, action_space=gym.spaces.MultiDiscrete([2, 3]))
    assert build().get_inference_action_dist_cls() is TorchCategorical
    assert box.get_exploration_action_dist_cls() is TorchDiagGaussian
    dist = multi.get_train_action_dist_cls().from_logits(torch.zeros(4, 5))
    assert dist.sample().shape == (4, 2)
    unsupported = PhaseModule(observation_space=OBS, action_space=gym.spaces.Text(4))
    with pytest.raises(ValueError, match="override get_.*_action_dist_cls"):
        unsupported.get_train_action_dist_cls()


def test_get_state_is_numpy_copies_and_set_state_accepts_numpy_and_torch():
    module, other = build(), build()
    state = module.get_state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["net.weight"][:] = 5.0  # a copy: the module is untouched
    assert not torch.all(module.net.weight == 5.0)
    other.set_state(state)
    assert torch.all(other.net.weight == 5.0)
    other.set_state({k: torch.full_like(v, 2.0) for k, v in module.state_dict().items()})
    assert torch.all(other.net.bias == 2.0)
    read_only = {k: v.copy() for k, v in state.items()}
    for v in read_only.values():
        v.flags.writeable = False  # as arrays arrive from Ray's object store
    other.set_state(read_only)
    assert torch.all(other.net.weight == 5.0)


def test_set_state_errors_name_the_parameter_and_both_shapes():
    module = build()
    state = module.get_state()
    with pytest.raises(ValueError, match=r"'net\.weight' has shape \(2, 3\) in the module but "
                                         r"\(2, 4\) in the state"):
        module.set_state({**state, "net.weight": np.zeros((2, 4), np.float32)})
    with pytest.raises(KeyError, match=r"lacks 1 parameter.*net\.bias"):
        module.set_state({"net.weight": state["net.weight"]})
    with pytest.raises(KeyError, match=r"parameter\(s\) this module does not.*'extra'"):
        module.set_state({**state, "extra": np.zeros(1)})


class WithValueHead(TorchRLModule, InferenceOnlyAPI):
    """A module whose value head exists only for learning."""

    def setup(self):
        self.pi = nn.Linear(3, 2)
        if not self.inference_only:
            self.vf = nn.Linear(3, 1)

    def get_non_inference_attributes(self):
        return ["vf"]

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def test_inference_only_module_drops_learner_parts_and_takes_full_state():
    full, actor = build(WithValueHead), build(WithValueHead, inference_only=True)
    assert not hasattr(actor, "vf")
    assert set(full.get_state(inference_only=True)) == {"pi.weight", "pi.bias"}
    actor.set_state(full.get_state())  # full state: extra keys are ignored (strict=False)
    obs = {Columns.OBS: torch.randn(2, 3)}
    assert torch.equal(actor.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                       full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])
    with pytest.raises(KeyError, match=r"lacks 2 parameter.*vf\."):
        full.set_state(actor.get_state())


def test_spec_builds_and_names_missing_fields():
    module = RLModuleSpec(module_class=PhaseModule, observation_space=OBS, action_space=ACT,
                          model_config={"a": 1}).build()
    assert isinstance(module, PhaseModule) and module.model_config == {"a": 1}
    with pytest.raises(ValueError, match="module_class, action_space not set"):
        RLModuleSpec(observation_space=OBS).build()


def test_spec_update_fills_only_missing_fields_without_override():
    spec = RLModuleSpec(module_class=PhaseModule, model_config={"mine": 1})
    spec.update(RLModuleSpec(observation_space=OBS, action_space=ACT, model_config={"x": 2}),
                override=False)
    assert (spec.observation_space, spec.model_config) == (OBS, {"mine": 1})
    assert spec.as_inference_only().build().inference_only


def test_as_multi_agent_wraps_under_default_module_id():
    module = build(inference_only=True)
    multi = module.as_multi_agent()
    assert isinstance(multi, MultiRLModule) and multi.inference_only
    assert list(multi.keys()) == [DEFAULT_MODULE_ID] and multi[DEFAULT_MODULE_ID] is module
    assert multi.as_multi_agent() is multi
    assert ENCODER_OUT == "encoder_out" and DEFAULT_MODULE_ID == "default_policy"


def test_columns_have_the_seeds_string_values():
    assert (Columns.OBS, Columns.ACTIONS, Columns.ACTION_DIST_INPUTS, Columns.ACTION_LOGP,
            Columns.VF_PREDS, Columns.STATE_IN, Columns.LOSS_MASK) == (
        "obs", "actions", "action_dist_inputs", "action_logp", "vf_preds", "state_in",
        "loss_mask")
