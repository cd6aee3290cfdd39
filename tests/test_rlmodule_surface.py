"""RLlib 2.60's RLModule surface: learner_only, catalogs, action_dist_cls, plain (non-torch)
modules in a MultiRLModule, InferenceOnlyAPI, lenient set_state, load_state_path, and the
error for checkpointed classes that cannot be imported."""

from __future__ import annotations

import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlmodules import (TARGET_NETWORK_ACTION_DIST_INPUTS, Columns, InferenceOnlyAPI,
                       MultiRLModule, MultiRLModuleSpec, RLModule, RLModuleSpec,
                       TargetNetworkAPI, TorchRLModule, make_target_network)
from rlmodules import checkpoint as ckpt
from rlmodules.checkpoint import CheckpointError
from rlmodules.distributions import TorchCategorical, TorchDiagGaussian
from rlmodules.multi_rl_module import spec_of

OBS = gym.spaces.Box(-1, 1, (3,))
ACT = gym.spaces.Discrete(2)


def spaces(**kwargs):
    return dict(observation_space=OBS, action_space=ACT, **kwargs)


def same_state(a: RLModule, b: RLModule) -> bool:
    sa, sb = a.get_state(), b.get_state()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


class Policy(TorchRLModule):
    def setup(self):
        self.pi = nn.Linear(3, 2)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


# ---- 1. learner_only and RLlib's constructor signature ---------------------------------------

class RLlibSignature(Policy):
    """A module whose __init__ is written with RLlib 2.60's signature."""

    def __init__(self, observation_space=None, action_space=None, inference_only=False,
                 learner_only=False, model_config=None, catalog_class=None, **kwargs):
        super().__init__(observation_space=observation_space, action_space=action_space,
                         inference_only=inference_only, learner_only=learner_only,
                         model_config=model_config, catalog_class=catalog_class, **kwargs)


class WithExtraArg(RLlibSignature):
    """Declares a keyword of its own and passes the rest on."""

    def __init__(self, *, hidden=4, **kwargs):
        self.hidden = hidden
        super().__init__(**kwargs)


class FixedFiveArgs(Policy):
    """A fixed __init__ without learner_only, as seed 003's notebook writes it."""

    def __init__(self, observation_space, action_space, inference_only, model_config,
                 catalog_class):
        super().__init__(observation_space=observation_space, action_space=action_space,
                         inference_only=inference_only, model_config=model_config,
                         catalog_class=catalog_class)


def test_learner_only_is_stored_recorded_and_rebuilt(tmp_path):
    assert Policy(**spaces()).learner_only is False
    module = RLModuleSpec(module_class=RLlibSignature, learner_only=True, **spaces()).build()
    assert isinstance(module, RLlibSignature) and module.learner_only is True
    assert module.get_ctor_args()["learner_only"] is True
    assert spec_of(module).learner_only is True and spec_of(module).build().learner_only
    module.save_to_path(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / ckpt.METADATA_FILE).read_text())
    assert meta["ctor_args"]["learner_only"] is True
    assert RLModule.from_checkpoint(tmp_path / "m").learner_only is True
    fixed = RLModuleSpec(module_class=FixedFiveArgs, learner_only=True, **spaces()).build()
    assert fixed.learner_only is True


def test_extra_keywords_reach_the_subclass_that_declares_them_and_others_are_refused():
    module = WithExtraArg(hidden=7, **spaces(model_config={"a": 1}))
    assert module.hidden == 7 and module.model_config == {"a": 1}
    with pytest.raises(TypeError, match=r"RLlibSignature\(\) got unexpected.*\['bogus'\]"):
        RLlibSignature(bogus=1, **spaces())
    with pytest.raises(TypeError, match=r"WithExtraArg\(\) got unexpected.*\['hiden'\]"):
        WithExtraArg(hiden=7, **spaces())


def test_inference_only_multi_module_leaves_out_learner_only_modules(tmp_path):
    multi_spec = MultiRLModuleSpec(rl_module_specs={
        "policy": RLModuleSpec(module_class=Policy, **spaces()),
        "world_model": RLModuleSpec(module_class=Policy, learner_only=True, **spaces())})
    learner_side = multi_spec.build()
    assert list(learner_side.keys()) == ["policy", "world_model"]
    actor_side = multi_spec.as_inference_only().build()
    assert list(actor_side.keys()) == ["policy"] and actor_side["policy"].inference_only
    learner_side.save_to_path(tmp_path / "full")
    actor_side.restore_from_path(tmp_path / "full")  # the learner-only module is skipped
    assert same_state(actor_side["policy"], learner_side["policy"])
    with pytest.raises(CheckpointError, match=r"module\(s\) \['world_model'\]"):
        MultiRLModuleSpec(rl_module_specs={"policy": RLModuleSpec(
            module_class=Policy, **spaces())}).build().restore_from_path(tmp_path / "full")


# ---- 2. catalogs, 3. unwrapped ---------------------------------------------------------------

class RecordingCatalog:
    def __init__(self, observation_space, action_space, model_config_dict):
        self.args = (observation_space, action_space, model_config_dict)


class UsesCatalog(Policy):
    def setup(self):
        self.seen_catalog = self.catalog
        super().setup()


def test_catalog_is_built_from_spaces_and_model_config_before_setup():
    module = RLModuleSpec(module_class=UsesCatalog, catalog_class=RecordingCatalog,
                          model_config={"k": 2}, **spaces()).build()
    assert isinstance(module.seen_catalog, RecordingCatalog) and module.seen_catalog is \
        module.catalog
    assert module.catalog.args == (OBS, ACT, {"k": 2})
    assert UsesCatalog(**spaces()).catalog is None


def test_unwrapped_is_the_module_and_stateless_modules_have_no_initial_state():
    module = Policy(**spaces())
    assert module.unwrapped() is module
    assert module.get_initial_state() == {} and not module.is_stateful()


# ---- 4. action distribution classes ---------------------------------------------------------

class Temperature(TorchCategorical):
    @classmethod
    def from_logits(cls, logits, **kwargs):
        return cls(logits=logits / 2.0)


class SetsDistCls(Policy):
    def setup(self):
        super().setup()
        self.action_dist_cls = Temperature


class OnlyTrainOverridden(Policy):
    def get_train_action_dist_cls(self):
        return Temperature


class OnlyExplorationOverridden(Policy):
    def get_exploration_action_dist_cls(self):
        return Temperature


class WrapsSuper(Policy):
    def get_train_action_dist_cls(self):
        return super().get_train_action_dist_cls().get_partial_dist_cls()


def getters(module):
    return (module.get_inference_action_dist_cls(), module.get_exploration_action_dist_cls(),
            module.get_train_action_dist_cls())


def test_action_dist_cls_set_in_setup_is_used_by_all_three_getters():
    assert Policy.action_dist_cls is None
    assert getters(Policy(**spaces())) == (TorchCategorical,) * 3
    assert getters(SetsDistCls(**spaces())) == (Temperature,) * 3
    box = Policy(observation_space=OBS, action_space=gym.spaces.Box(-1, 1, (2,)))
    assert getters(box) == (TorchDiagGaussian,) * 3


def test_a_custom_class_from_one_overridden_getter_is_never_replaced_by_the_default():
    assert getters(OnlyTrainOverridden(**spaces())) == (Temperature,) * 3
    assert getters(OnlyExplorationOverridden(**spaces())) == (Temperature,) * 3
    # An override calling super() gets the default there (no endless recursion), and its
    # class is what the other getters give too.
    assert all(issubclass(c, TorchCategorical) and c is not TorchCategorical
               for c in getters(WrapsSuper(**spaces())))


# ---- 5. plain (non-torch) RLModules ---------------------------------------------------------

class AlwaysSame(RLModule):
    """A numpy heuristic: always the action in model_config; not trainable."""

    def setup(self):
        self.action = self.model_config.get("action", 1)
        self.seen = []

    def _forward_inference(self, batch, **kwargs):
        self.seen.append(type(batch[Columns.OBS]))
        return {Columns.ACTIONS: np.full(len(batch[Columns.OBS]), self.action)}

    _forward_exploration = _forward_inference

    def _forward_train(self, batch, **kwargs):
        raise NotImplementedError("AlwaysSame is not trainable.")


class RandomPolicy(RLModule):
    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTIONS: np.array([self.action_space.sample()
                                           for _ in range(len(batch[Columns.OBS]))])}

    _forward_exploration = _forward_inference


def mixed_multi(**kwargs) -> MultiRLModule:
    return MultiRLModuleSpec(rl_module_specs={
        "learned": RLModuleSpec(module_class=Policy, **spaces()),
        "heuristic": RLModuleSpec(module_class=AlwaysSame, model_config={"action": 0},
                                  **spaces()),
        "random": RLModuleSpec(module_class=RandomPolicy, **spaces())}, **kwargs).build()


def test_plain_modules_sit_next_to_torch_modules_in_insertion_order():
    multi = mixed_multi()
    ids = ["learned", "heuristic", "random"]
    assert list(multi.keys()) == ids and list(multi) == ids and len(multi) == 3
    assert [type(m) for m in multi.values()] == [Policy, AlwaysSame, RandomPolicy]
    assert dict(multi.items())["heuristic"] is multi["heuristic"] and "random" in multi
    assert list(multi.parameters()) == list(multi["learned"].parameters())
    assert {k.split(".")[1] for k in multi.state_dict()} == {"learned"}
    multi.to(torch.float64)
    assert multi["learned"].pi.weight.dtype == torch.float64
    multi.remove_module("heuristic")
    multi.add_module("heuristic", AlwaysSame(**spaces()))
    assert list(multi.keys()) == ["learned", "random", "heuristic"]


def test_plain_modules_act_on_numpy_inside_a_multi_module():
    multi = mixed_multi(inference_only=True)
    obs = np.zeros((4, 3), np.float32)
    out = multi.forward_exploration({mid: {Columns.OBS: obs} for mid in multi.keys()})
    assert np.array_equal(out["heuristic"][Columns.ACTIONS], np.zeros(4))
    assert multi["heuristic"].seen == [np.ndarray]  # not turned into tensors
    assert all(ACT.contains(a) for a in out["random"][Columns.ACTIONS])
    assert out["learned"][Columns.ACTION_DIST_INPUTS].shape == (4, 2)
    with pytest.raises(NotImplementedError, match="not trainable"):
        mixed_multi()["heuristic"].forward_train({Columns.OBS: obs})


def test_plain_module_state_is_empty_and_multi_state_includes_it():
    heuristic = AlwaysSame(**spaces())
    assert heuristic.get_state() == {}
    heuristic.set_state({})  # a no-op
    with pytest.raises(KeyError, match=r"AlwaysSame.set_state\(\).*holds no state.*'w'"):
        heuristic.set_state({"w": np.zeros(1)})
    multi = mixed_multi()
    state = multi.get_state()
    assert list(state) == ["learned", "heuristic", "random"] and state["heuristic"] == {}
    other = mixed_multi()
    other.set_state(state)
    assert same_state(other["learned"], multi["learned"])


def test_plain_modules_round_trip_through_checkpoints(tmp_path):
    multi = mixed_multi()
    multi.save_to_path(tmp_path / "multi")
    restored = RLModule.from_checkpoint(tmp_path / "multi")
    assert list(restored.keys()) == ["learned", "heuristic", "random"]
    assert type(restored["heuristic"]) is AlwaysSame and restored["heuristic"].action == 0
    assert same_state(restored["learned"], multi["learned"])
    AlwaysSame(**spaces(model_config={"action": 1})).save_to_path(tmp_path / "single")
    alone = RLModule.from_checkpoint(tmp_path / "single")
    assert type(alone) is AlwaysSame and alone.action == 1
    mixed_multi().restore_from_path(tmp_path / "multi")


class AlphaStyleMulti(MultiRLModule):
    """Assigns a plain dict to ``self._rl_modules``, as alpha-API subclasses do."""

    def setup(self):
        self._rl_modules = {"learned": Policy(**spaces()), "heuristic": AlwaysSame(**spaces())}


def test_plain_dict_assigned_to_rl_modules_keeps_both_kinds():
    multi = AlphaStyleMulti(**spaces())
    assert list(multi.keys()) == ["learned", "heuristic"]
    assert list(multi.parameters()) == list(multi["learned"].parameters())


# ---- 6. InferenceOnlyAPI --------------------------------------------------------------------

class ActorCritic(nn.Module):
    def __init__(self):
        super().__init__()
        self.actor_encoder = nn.Linear(3, 4)
        self.critic_encoder = nn.Linear(3, 4)


class SharedSetup(TorchRLModule, InferenceOnlyAPI):
    """setup() always builds the critic parts; the inference-only build must lose them."""

    def setup(self):
        self.encoder = ActorCritic()
        self.pi = nn.Linear(4, 2)
        self.vf = nn.Linear(4, 1)

    def get_non_inference_attributes(self):
        return ["encoder.critic_encoder", "vf"]

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self.encoder.actor_encoder(
            batch[Columns.OBS]))}


def test_inference_only_build_never_holds_non_inference_attributes():
    assert not hasattr(RLModule, "get_non_inference_attributes")
    full, actor = SharedSetup(**spaces()), SharedSetup(**spaces(inference_only=True))
    assert hasattr(full, "vf") and hasattr(full.encoder, "critic_encoder")
    assert not hasattr(actor, "vf") and not hasattr(actor.encoder, "critic_encoder")
    assert set(full.get_state(inference_only=True)) == set(actor.get_state()) == {
        "encoder.actor_encoder.weight", "encoder.actor_encoder.bias", "pi.weight", "pi.bias"}
    assert set(full.get_state()) > set(actor.get_state())
    actor.set_state(full.get_state())
    obs = {Columns.OBS: torch.randn(2, 3)}
    assert torch.equal(actor.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                       full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])


def test_without_the_api_the_method_alone_drops_nothing():
    class NotTheApi(TorchRLModule):  # the method, but not the API
        setup = SharedSetup.setup
        get_non_inference_attributes = SharedSetup.get_non_inference_attributes

    module = NotTheApi(**spaces(inference_only=True))
    assert hasattr(module, "vf") and "vf.weight" in module.get_state(inference_only=True)


# ---- 7. lenient set_state -------------------------------------------------------------------

class DocsStyle(TorchRLModule):
    """As RLlib's docs write it: the value head only where not inference-only, no API."""

    def setup(self):
        self._pi = nn.Linear(3, 2)
        if not self.inference_only:
            self._vf = nn.Linear(3, 1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._pi(batch[Columns.OBS])}


class WithTarget(Policy, TargetNetworkAPI):
    def make_target_networks(self):
        self._target_pi = make_target_network(self.pi)

    def get_target_network_pairs(self):
        return [(self.pi, self._target_pi)]

    def forward_target(self, batch, **kwargs):
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._target_pi(batch[Columns.OBS])}


def test_inference_only_module_ignores_extra_keys_but_not_missing_ones_or_shapes():
    full, actor = DocsStyle(**spaces()), DocsStyle(**spaces(inference_only=True))
    actor.set_state({**full.get_state(), "anything.else": np.zeros(1)})
    assert np.array_equal(actor.get_state()["_pi.weight"], full.get_state()["_pi.weight"])
    with pytest.raises(KeyError, match=r"lacks 1 parameter.*_pi\.bias"):
        actor.set_state({"_pi.weight": full.get_state()["_pi.weight"]})
    with pytest.raises(ValueError, match=r"'_pi\.weight' has shape \(2, 3\) in the module but "
                                         r"\(2, 5\)"):
        actor.set_state({**full.get_state(), "_pi.weight": np.zeros((2, 5), np.float32)})
    with pytest.raises(KeyError, match=r"parameter\(s\) this module does not.*'extra'"):
        full.set_state({**full.get_state(), "extra": np.zeros(1)})


def test_target_network_module_loads_a_state_holding_its_targets_into_a_fresh_build(tmp_path):
    learner_side = WithTarget(**spaces())
    learner_side.make_target_networks()
    assert "_target_pi.weight" in learner_side.get_state()
    fresh = WithTarget(**spaces())
    fresh.set_state(learner_side.get_state())
    assert np.array_equal(fresh.get_state()["pi.weight"], learner_side.get_state()["pi.weight"])
    learner_side.save_to_path(tmp_path / "m")
    restored = RLModule.from_checkpoint(tmp_path / "m")
    assert np.array_equal(restored.get_state()["pi.weight"],
                          learner_side.get_state()["pi.weight"])
    with_targets = WithTarget(**spaces())
    with_targets.make_target_networks()
    with pytest.raises(KeyError, match=r"lacks 2 parameter.*_target_pi"):
        with_targets.set_state(fresh.get_state())


# ---- 8. load_state_path ---------------------------------------------------------------------

def test_spec_load_state_path_loads_the_checkpoint_into_the_built_module(tmp_path):
    full = DocsStyle(**spaces())
    full.save_to_path(tmp_path / "m")
    spec = RLModuleSpec(module_class=DocsStyle, load_state_path=str(tmp_path / "m"), **spaces())
    assert same_state(spec.build(), full)
    actor = spec.as_inference_only().build()  # takes the full module's checkpoint
    assert np.array_equal(actor.get_state()["_pi.weight"], full.get_state()["_pi.weight"])


def test_multi_spec_load_state_path_and_checkpoints_do_not_record_it(tmp_path):
    multi = MultiRLModuleSpec(rl_module_specs={"learned": RLModuleSpec(
        module_class=Policy, **spaces())}).build()
    multi.save_to_path(tmp_path / "multi")
    (tmp_path / "single").mkdir()
    Policy(**spaces()).save_to_path(tmp_path / "single" / "p")
    specs = {"learned": RLModuleSpec(module_class=Policy, **spaces()),
             "other": RLModuleSpec(module_class=Policy, load_state_path=str(
                 tmp_path / "single" / "p"), **spaces())}
    loaded = MultiRLModuleSpec(rl_module_specs=dict(specs), load_state_path=str(
        tmp_path / "multi")).build()
    assert same_state(loaded["learned"], multi["learned"])
    assert same_state(loaded["other"], RLModule.from_checkpoint(tmp_path / "single" / "p"))
    loaded.save_to_path(tmp_path / "again")
    shutil.rmtree(tmp_path / "single")  # the recorded specs must not point there
    assert same_state(RLModule.from_checkpoint(tmp_path / "again")["other"], loaded["other"])


def test_load_state_path_that_is_not_a_module_checkpoint_names_the_path(tmp_path):
    (tmp_path / "algo").mkdir()
    ckpt.write_metadata(tmp_path / "algo", {"kind": "algorithm"})
    spec = RLModuleSpec(module_class=Policy, load_state_path=str(tmp_path / "algo"), **spaces())
    with pytest.raises(CheckpointError, match=r"'.*algo' is not a module checkpoint \(it holds "
                                              r"a algorithm\).*save_to_path"):
        spec.build()
    with pytest.raises(CheckpointError, match="is not a module checkpoint"):
        RLModule.from_checkpoint(tmp_path / "algo")
    with pytest.raises(FileNotFoundError, match=r"'.*nowhere' does not exist"):
        MultiRLModuleSpec(rl_module_specs={}, load_state_path=str(tmp_path / "nowhere")).build()


# ---- 10. classes that cannot be imported when loading ---------------------------------------

class DefinedInMain(Policy):
    pass


DefinedInMain.__module__ = "__main__"  # as in a script run with `python script.py`


def test_class_defined_in_main_is_refused_with_what_to_do(tmp_path):
    module = DefinedInMain(**spaces())
    module.save_to_path(tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"class 'DefinedInMain', recorded in module "
                                              r"'__main__', is not importable now.*importable "
                                              r"module.*trusted=\[DefinedInMain\].*config="):
        RLModule.from_checkpoint(tmp_path / "m")
    assert same_state(RLModule.from_checkpoint(tmp_path / "m", trusted=[DefinedInMain]), module)
