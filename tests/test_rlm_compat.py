"""Alpha-API compatibility (rlmodules.compat) and the I/O spec checks (rlmodules.specs)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from torch import nn

import rlmodules
from rlmodules import Columns, MultiRLModule, RLModuleSpec, TorchRLModule
from rlmodules.compat import (MultiAgentRLModule, MultiAgentRLModuleSpec, RLModuleConfig,
                              SingleAgentRLModuleSpec, takes_config_object)
from rlmodules.specs import SpecCheckError, TensorSpec, TorchTensorSpec, check_spec

OBS, ACT = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)


class ConfigModule(TorchRLModule):
    def __init__(self, config: RLModuleConfig) -> None:
        super().__init__(config)

    def setup(self):
        self.net = nn.Linear(self.config.observation_space.shape[0], self.config.action_space.n)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.net(batch[Columns.OBS])}


class KeywordModule(ConfigModule):
    def __init__(self, **kwargs) -> None:
        TorchRLModule.__init__(self, **kwargs)


def test_config_style_and_keyword_style_classes_both_build_from_keywords():
    assert takes_config_object(ConfigModule) and not takes_config_object(KeywordModule)
    for cls in (ConfigModule, KeywordModule):
        module = cls(observation_space=OBS, action_space=ACT, inference_only=True,
                     model_config={"a": 1}, catalog_class=None)
        assert module.inference_only and module.model_config == {"a": 1}
        assert module.config.model_config_dict == {"a": 1}
        assert module.config.observation_space == OBS


def test_single_agent_spec_is_an_rl_module_spec_with_the_alpha_field_name():
    spec = SingleAgentRLModuleSpec(ConfigModule, OBS, ACT, {"fcnet_hiddens": [4]})
    assert isinstance(spec, RLModuleSpec) and spec.model_config == {"fcnet_hiddens": [4]}
    copy = dataclasses.replace(spec, inference_only=True)
    assert type(copy) is SingleAgentRLModuleSpec and copy.model_config_dict == spec.model_config
    assert copy.build().inference_only


def test_multi_agent_spec_defaults_to_multi_agent_rl_module():
    spec = MultiAgentRLModuleSpec(module_specs={"a": SingleAgentRLModuleSpec(ConfigModule, OBS,
                                                                             ACT)})
    module = spec.build()
    assert type(module) is MultiAgentRLModule and isinstance(module, MultiRLModule)
    assert set(module.config.modules) == {"a"}
    inference = spec.as_inference_only().build()
    assert type(inference) is MultiAgentRLModule and inference["a"].inference_only


def test_multi_agent_module_with_plain_dict_registers_sub_modules():
    class Custom(MultiAgentRLModule):
        def setup(self):
            self._rl_modules = {mid: s.build() for mid, s in self.config.modules.items()}

    module = MultiAgentRLModuleSpec(marl_module_class=Custom, module_specs={
        "a": SingleAgentRLModuleSpec(ConfigModule, OBS, ACT),
        "b": SingleAgentRLModuleSpec(ConfigModule, OBS, ACT)}).build()
    assert isinstance(module._rl_modules, nn.ModuleDict)
    assert len(list(module.parameters())) == 4 and set(module.get_state()) == {"a", "b"}


def test_alpha_classes_take_keywords_too_and_their_subclasses_inherit_that():
    class Sub(ConfigModule):
        pass

    for cls in (ConfigModule, Sub):
        module = cls(observation_space=OBS, action_space=ACT, model_config={"a": 1})
        assert module.model_config == {"a": 1} and module.config.action_space == ACT
    config = RLModuleConfig(observation_space=OBS, action_space=ACT, inference_only=True)
    assert Sub(config).inference_only and not takes_config_object(MultiAgentRLModule)


def test_the_core_never_imports_compat():
    """Only the package's __init__ does: the core has no import circle through it."""
    package = Path(rlmodules.__file__).parent
    for path in package.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        if path.name not in ("__init__.py", "compat.py"):
            assert "rlmodules.compat" not in imported, path.name


def test_alpha_action_dist_output_counts_as_an_action_output():
    class AlphaOut(ConfigModule):
        def _forward(self, batch, **kwargs):
            return {"action_dist": torch.distributions.Categorical(
                logits=self.net(batch[Columns.OBS]))}

    out = AlphaOut(observation_space=OBS, action_space=ACT).forward_inference(
        {Columns.OBS: torch.zeros(2, 3)})
    assert out[Columns.ACTION_DIST].logits.shape == (2, 2)


def test_check_spec_accepts_keys_paths_types_tensor_specs_and_nested_dicts():
    data = {"obs": {"img": torch.zeros(2, 3, 3), "vec": torch.zeros(2, 5)}, "n": 3}
    check_spec(["obs", ("obs", "img")], data, "here")
    check_spec({"n": int, ("obs", "vec"): TorchTensorSpec("b, d", d=5),
                "obs": {"img": TensorSpec("b, h, h"), "vec": None}}, data, "here")


@pytest.mark.parametrize("spec, match", [
    (["obs", ("obs", "depth")], r"here: missing key 'obs'\]\['depth' \(found \['img', 'vec'\]\)"),
    ({"n": float}, r"here\['n'\]: expected a float, got int"),
    ({("obs", "img"): TensorSpec("b, h, w", w=4)}, r"dim 'w' must be 4, got shape \(2, 3, 3\)"),
    ({("obs", "vec"): TensorSpec("b, h, h")}, r"expected 3 dims \(b, h, h\), got shape \(2, 5\)"),
    ({("obs", "img"): TensorSpec("b, h, h", dtype=torch.int64)}, "expected dtype torch.int64"),
    ({"n": TorchTensorSpec("b")}, "expected a torch.Tensor, got int"),
])
def test_check_spec_errors_name_where_and_what(spec, match):
    data = {"obs": {"img": torch.zeros(2, 3, 3), "vec": torch.zeros(2, 5)}, "n": 3}
    with pytest.raises(SpecCheckError, match=match):
        check_spec(spec, data, "here")


def test_malformed_specs_are_rejected():
    with pytest.raises(TypeError, match="a spec is a list of keys or a dict"):
        check_spec("obs", {"obs": 1}, "here")
    with pytest.raises(TypeError, match="use None, a type, a TensorSpec or a nested dict"):
        check_spec({"obs": 3}, {"obs": 1}, "here")
    with pytest.raises(ValueError, match=r"sizes given for \['x'\]"):
        TensorSpec("b, h", x=3)


def test_rlmodules_has_no_import_circle():
    """Imports between rlmodules' files, at any depth (type-checking ones aside), form no
    cycle: nothing dodges a circle with a function-local import."""
    package = Path(rlmodules.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        graph[path.stem] = {node.module.split(".")[1] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and id(node) not in typing_only
                            and (node.module or "").startswith("rlmodules.")}
    del graph["__init__"]  # The package's edge: it imports everything, nothing imports it.

    def visit(name, path):
        assert name not in path, f"import circle: {' -> '.join([*path, name])}"
        for dep in graph.get(name, ()):
            visit(dep, [*path, name])

    for name in graph:
        visit(name, [])
