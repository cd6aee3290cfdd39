"""Loading a checkpoint never runs code the checkpoint names: crafted checkpoints are refused.

Each crafted checkpoint puts a dangerous name into one slot (a module, multi-module or
algorithm checkpoint key) with arguments that would create a marker file if it were called;
loading must raise a CheckpointError naming the key, and no marker may appear (the tests run
with cwd = tmp_path, where the marker would land).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv
import numpy as np
import pytest
from torch import nn

from algorithms import Algorithm
from algorithms.checkpoints import load_algorithm
from algorithms.ppo import PPOConfig, PPOTorchLearner
from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from rlmodules import (DefaultModelConfig, MultiRLModule, MultiRLModuleSpec, RLModule,
                       RLModuleSpec, TorchRLModule)
from rlmodules import checkpoint as ckpt
from rlmodules.checkpoint import CheckpointError, load_module
from runners import register_env
from runners.envs import MultiAgentCartPole

OBS, ACT = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
BAD_NAMES = ["subprocess:Popen", "os:system", "builtins:eval", "shutil:rmtree",
             "no_such_module_xyz.inner:thing"]
# What each name would need to leave a marker in the cwd, if it were ever called.
MARKER_ARGS = {"args": ["touch", "pwned"]}


def obj(name):
    return {"__object__": name}


def dataclass(name):
    return {"__dataclass__": name, "fields": MARKER_ARGS}


def bare(name):  # Class keys hold the name itself; crafted() gives them marker arguments.
    return name


# (checkpoint kind, metadata key path, value for a name, key the error must name)
CASES = [
    ("module", ["class"], bare, "class"),
    ("module", ["ctor_args", "model_config"], dataclass, "ctor_args['model_config']"),
    ("module", ["ctor_args", "model_config", "fcnet_kernel_initializer"], obj,
     "ctor_args['model_config']['fcnet_kernel_initializer']"),
    ("module", ["ctor_args", "catalog_class"], obj, "ctor_args['catalog_class']"),
    ("module", ["ctor_args", "observation_space"], obj, "ctor_args['observation_space']"),
    ("multi", ["class"], bare, "class"),
    ("multi", ["ctor_args", "rl_module_specs", "a"], dataclass,
     "ctor_args['rl_module_specs']['a']"),
    ("multi", ["ctor_args", "rl_module_specs", "a", "fields", "module_class"], obj,
     "ctor_args['rl_module_specs']['a']['module_class']"),
    ("algorithm", ["algorithm_class"], bare, "algorithm_class"),
    ("algorithm", ["config_class"], bare, "config_class"),
    ("algorithm", ["config", "algo_class"], obj, "algo_class"),
    ("algorithm", ["config", "env"], obj, "env"),
    ("algorithm", ["config", "env_config"], dataclass, "env_config"),
    ("algorithm", ["config", "learner_class"], obj, "learner_class"),
    ("algorithm", ["config", "policy_mapping_fn"], obj, "policy_mapping_fn"),
    ("algorithm", ["config", "policies_to_train"], obj, "policies_to_train"),
    ("algorithm", ["config", "env_to_module_connector"], obj, "env_to_module_connector"),
    ("algorithm", ["config", "model_config"], dataclass, "model_config"),
    ("algorithm", ["config", "rl_module_spec"], lambda name: {
        "__dataclass__": "rlmodules.rl_module:RLModuleSpec",
        "fields": {"module_class": obj(name)}}, "rl_module_spec['module_class']"),
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One checkpoint of each kind, copied by each test before it is edited."""
    root = tmp_path_factory.mktemp("saved")
    DefaultPPOTorchRLModule(observation_space=OBS, action_space=ACT,
                            model_config={"fcnet_hiddens": [8]}).save_to_path(root / "module")
    MultiRLModuleSpec(rl_module_specs={"a": RLModuleSpec(
        DefaultPPOTorchRLModule, OBS, ACT, model_config={"fcnet_hiddens": [8]})}).build() \
        .save_to_path(root / "multi")
    algo = (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=1)
            .training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1)
            .rl_module(model_config={"fcnet_hiddens": [8]}).build_algo())
    algo.save_to_path(str(root / "algorithm"))
    yield root, algo
    algo.stop()


def crafted(saved, tmp_path, kind, keys, value, file="metadata.json"):
    """A copy of the saved ``kind`` checkpoint with ``value`` at ``keys`` of ``file``."""
    path = tmp_path / kind
    shutil.copytree(saved[0] / kind, path)
    meta_file = path / file
    meta = json.loads(meta_file.read_text())
    node = meta
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    if keys == ["class"]:
        meta["ctor_args"] = MARKER_ARGS
    if keys[-1] in ("algorithm_class", "config_class"):
        meta["config"] = MARKER_ARGS
    meta_file.write_text(json.dumps(meta))
    return path


def load(kind, path):
    return Algorithm.from_checkpoint(str(path)) if kind == "algorithm" else \
        RLModule.from_checkpoint(path)


def assert_refused(call, key, name, tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(key)) as info:
        call()
    assert str(tmp_path) in str(info.value) and name in str(info.value)
    if name == "subprocess:Popen":
        time.sleep(0.2)  # A spawned `touch` would have run by now.
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("kind, keys, make, key", CASES,
                         ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_a_name_that_does_not_fit_its_slot_is_refused_before_anything_runs(
        saved, tmp_path, monkeypatch, name, kind, keys, make, key):
    monkeypatch.chdir(tmp_path)
    path = crafted(saved, tmp_path, kind, keys, make(name))
    assert_refused(lambda: load(kind, path), key, name, tmp_path)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_in_an_algorithm_state_file_is_refused(saved, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    path = crafted(saved, tmp_path, "algorithm", ["training_iteration"], obj(name),
                   file="counters/state.json")
    assert_refused(lambda: saved[1].restore_from_path(str(path)),
                   "state['training_iteration']", name, tmp_path)


def test_the_reported_multi_module_exploit_is_refused(saved, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # The repro, in the format it was written against.
    path = crafted(saved, tmp_path, "multi", ["ctor_args", "rl_module_specs", "a"],
                   {"spec_class": "subprocess:Popen", "fields": MARKER_ARGS})
    with pytest.raises(CheckpointError, match=r"ctor_args\['rl_module_specs'\] must map"):
        RLModule.from_checkpoint(path)
    time.sleep(0.2)
    assert not (tmp_path / "pwned").exists()


def test_a_config_key_that_is_not_a_setting_is_refused(saved, tmp_path):
    path = crafted(saved, tmp_path, "algorithm", ["config", "build_algo"], "x")
    with pytest.raises(CheckpointError, match="config key 'build_algo' is not a setting of PPO"):
        load_algorithm(str(path))


def test_names_for_non_class_slots_are_matched_without_importing(saved, tmp_path):
    assert "this" not in sys.modules  # `import this` prints; it must not even be imported.
    path = crafted(saved, tmp_path, "module", ["ctor_args", "model_config", "init"],
                   obj("this:s"))
    with pytest.raises(CheckpointError, match="torch.nn.init function"):
        RLModule.from_checkpoint(path)
    assert "this" not in sys.modules


def register_me(env_config):
    return gym.make("CartPole-v1")


register_env("security-test-env", register_me)


@pytest.mark.parametrize("slot, value", [
    ("module_class", DefaultPPOTorchRLModule),
    ("multi_rl_module_class", MultiRLModule),
    ("__dataclass__", DefaultModelConfig),
    ("__dataclass__", RLModuleSpec),
    ("learner_class", PPOTorchLearner),
    ("env", MultiAgentCartPole),
    ("env", CartPoleEnv),
    ("env", register_me),
    ("init", nn.init.orthogonal_),
    ("fcnet_activation", nn.ReLU),
])
def test_what_checkpoints_legitimately_hold_fits_its_slot(slot, value):
    assert ckpt.resolve(ckpt.class_path(value), slot, slot, "p") is value


def my_mapping_fn(agent_id, episode=None, **kwargs):
    return "default_policy"


def test_trusted_objects_load_what_no_slot_allows(saved, tmp_path):
    class Local(TorchRLModule):
        def setup(self):
            self.net = nn.Linear(4, 2)

    module = Local(observation_space=OBS, action_space=ACT)
    module.save_to_path(tmp_path / "local")
    restored = RLModule.from_checkpoint(tmp_path / "local", trusted=[Local])
    assert type(restored) is Local
    assert np.array_equal(restored.get_state()["net.weight"], module.get_state()["net.weight"])

    path = crafted(saved, tmp_path, "algorithm", ["config", "policy_mapping_fn"],
                   obj(ckpt.class_path(my_mapping_fn)))
    with pytest.raises(CheckpointError, match=r"policy_mapping_fn = .*trusted=\[obj\]"):
        load_algorithm(str(path))
    algo = Algorithm.from_checkpoint(str(path), trusted=[my_mapping_fn])
    try:
        assert algo.config.policy_mapping_fn is my_mapping_fn
    finally:
        algo.stop()
