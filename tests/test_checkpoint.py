"""Module checkpoints: round trips, atomic replacement, and errors for bad checkpoints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule
from rlmodules import Columns, MultiRLModuleSpec, RLModule, RLModuleSpec, TorchRLModule
from rlmodules import checkpoint as ckpt
from rlmodules.checkpoint import CheckpointError
from rlmodules.compat import RLModuleConfig

OBS = gym.spaces.Box(-1, 1, (4,))
ACT = gym.spaces.Discrete(2)
REPO = Path(__file__).resolve().parents[1]


def ppo(hiddens=(8,), **kwargs) -> DefaultPPOTorchRLModule:
    return DefaultPPOTorchRLModule(observation_space=OBS, action_space=ACT,
                                   model_config={"fcnet_hiddens": list(hiddens)}, **kwargs)


def same_weights(a: RLModule, b: RLModule) -> bool:
    sa, sb = a.get_state(), b.get_state()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def weights_file(path: Path) -> Path:
    return path / ckpt.WEIGHTS_FILE


# ---- round trips ---------------------------------------------------------------------------

def test_single_module_round_trip_and_metadata(tmp_path):
    module = ppo()
    assert module.save_to_path(tmp_path / "m") == str(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / ckpt.METADATA_FILE).read_text())
    assert meta["format_version"] == ckpt.FORMAT_VERSION and meta["kind"] == "rl_module"
    assert meta["class"] == "algorithms.ppo.default_ppo_rl_module:DefaultPPOTorchRLModule"
    assert meta["ctor_args"]["action_space"] == {"__space__": {"type": "Discrete", "n": 2,
                                                               "start": 0}}
    assert meta["ctor_args"]["model_config"]["fcnet_hiddens"] == [8]
    restored = RLModule.from_checkpoint(tmp_path / "m")
    assert type(restored) is DefaultPPOTorchRLModule and same_weights(module, restored)
    assert restored.observation_space == OBS and restored.action_space == ACT


def test_save_to_path_without_path_uses_a_new_temp_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # So the new dir lands in this test's dir.
    monkeypatch.setattr("tempfile.tempdir", None)
    path = ppo().save_to_path()
    assert Path(path).parent == tmp_path and (Path(path) / ckpt.METADATA_FILE).is_file()


def test_restore_from_path_loads_weights_into_an_existing_module(tmp_path):
    source, target = ppo(), ppo()
    source.save_to_path(tmp_path / "m")
    assert not same_weights(source, target)
    target.restore_from_path(tmp_path / "m")
    assert same_weights(source, target)


def test_inference_only_module_restores_a_full_checkpoint(tmp_path):
    full = ppo()
    full.save_to_path(tmp_path / "full")
    actor = ppo(inference_only=True)
    actor.restore_from_path(tmp_path / "full")
    obs = {Columns.OBS: torch.randn(3, 4)}
    assert torch.equal(actor.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                       full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])
    actor.save_to_path(tmp_path / "actor")
    assert RLModule.from_checkpoint(tmp_path / "actor").inference_only


def test_multi_module_round_trip_and_sub_module_directories(tmp_path):
    multi = MultiRLModuleSpec(rl_module_specs={
        "a": RLModuleSpec(DefaultPPOTorchRLModule, OBS, ACT, model_config={"fcnet_hiddens": [8]}),
        "b": RLModuleSpec(DefaultVPGTorchRLModule, gym.spaces.Box(0, 1, (3,)),
                          gym.spaces.Box(-1, 1, (2,)), model_config={"fcnet_hiddens": [4]}),
    }).build()
    multi.add_module("c", ppo(hiddens=(5,)))  # added later: recorded too
    multi.save_to_path(tmp_path / "multi")
    restored = RLModule.from_checkpoint(tmp_path / "multi")
    assert list(restored.keys()) == ["a", "b", "c"]
    assert all(same_weights(multi[m], restored[m]) for m in multi.keys())
    alone = RLModule.from_checkpoint(tmp_path / "multi" / "b")
    assert type(alone) is DefaultVPGTorchRLModule and same_weights(alone, multi["b"])
    ppo_only = MultiRLModuleSpec(rl_module_specs={"a": RLModuleSpec(
        DefaultPPOTorchRLModule, OBS, ACT, model_config={"fcnet_hiddens": [8]})}).build()
    with pytest.raises(CheckpointError, match=r"has module\(s\) \['b', 'c'\] that MultiRLModule "
                                              r"lacks \(it holds \['a'\]\)"):
        ppo_only.restore_from_path(tmp_path / "multi")


def test_single_and_multi_checkpoints_are_not_interchangeable(tmp_path):
    module = ppo()
    module.save_to_path(tmp_path / "single")
    module.as_multi_agent().save_to_path(tmp_path / "multi")
    with pytest.raises(CheckpointError, match=r"a single RLModule.*multi_module\[module_id\]"):
        ppo().as_multi_agent().restore_from_path(tmp_path / "single")
    with pytest.raises(CheckpointError, match="holds a MultiRLModule, but DefaultPPOTorchRLModule"):
        ppo().restore_from_path(tmp_path / "multi")


class AlphaModule(TorchRLModule):
    """An alpha-API module (``__init__(self, config)``) with a callable initializer config."""

    def __init__(self, config: RLModuleConfig) -> None:
        super().__init__(config)

    def setup(self):
        self.net = nn.Linear(self.config.observation_space.shape[0], self.config.action_space.n)
        self.config.model_config_dict["init"](self.net.weight)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.net(batch[Columns.OBS])}


def test_alpha_module_with_callable_in_model_config_round_trips(tmp_path):
    module = RLModuleSpec(AlphaModule, OBS, ACT, model_config={"init": nn.init.orthogonal_}) \
        .build()
    module.save_to_path(tmp_path / "alpha")
    restored = RLModule.from_checkpoint(tmp_path / "alpha")
    assert restored.model_config["init"] is nn.init.orthogonal_ and same_weights(module, restored)


def test_from_checkpoint_on_a_subclass_checks_the_recorded_class(tmp_path):
    ppo().save_to_path(tmp_path / "m")
    assert isinstance(DefaultPPOTorchRLModule.from_checkpoint(tmp_path / "m"),
                      DefaultPPOTorchRLModule)
    with pytest.raises(TypeError, match="holds a DefaultPPOTorchRLModule, not a "
                                        "DefaultVPGTorchRLModule"):
        DefaultVPGTorchRLModule.from_checkpoint(tmp_path / "m")


def test_local_class_cannot_be_rebuilt_but_can_be_restored(tmp_path):
    class Local(TorchRLModule):
        def setup(self):
            self.net = nn.Linear(4, 2)

    module = Local(observation_space=OBS, action_space=ACT)
    module.save_to_path(tmp_path / "local")
    with pytest.raises(CheckpointError, match=r"local'.*cannot import.*Local.*restore_from_path"):
        RLModule.from_checkpoint(tmp_path / "local")
    other = Local(observation_space=OBS, action_space=ACT)
    other.restore_from_path(tmp_path / "local")
    assert same_weights(module, other)


@pytest.mark.parametrize("space", [
    gym.spaces.Box(-1, 1, (4,)),
    gym.spaces.Box(np.array([0, -np.inf], np.float32), np.array([1, np.inf], np.float32)),
    gym.spaces.Box(0, 255, (84, 84, 3), np.uint8),
    gym.spaces.Discrete(5, start=2),
    gym.spaces.MultiDiscrete([3, 4], start=[1, 0]),
    gym.spaces.MultiBinary([2, 3]),
    gym.spaces.Dict({"img": gym.spaces.Box(0, 1, (2, 2, 1)),
                     "t": gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.MultiBinary(3)])}),
])
def test_spaces_json_round_trip(space):
    encoded = json.loads(json.dumps(ckpt.to_json({"s": space, "other": [1, "x"]}, "v")))
    decoded = ckpt.from_json(encoded, "p", "v")
    assert decoded["s"] == space and decoded["other"] == [1, "x"]
    assert decoded["s"].dtype == space.dtype
    assert len(json.dumps(encoded)) < 1000  # uniform image bounds stay scalars


def test_unserializable_model_config_value_names_the_key(tmp_path):
    class Holder(TorchRLModule):
        def setup(self):
            self.net = nn.Linear(4, 2)

    module = Holder(observation_space=OBS, action_space=ACT, model_config={"table": object()})
    with pytest.raises(TypeError, match=r"model_config'\]\['table'\] = <object.*not JSON"):
        module.save_to_path(tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and os.listdir(tmp_path) == []


# ---- atomic writes -------------------------------------------------------------------------

def test_write_dir_atomically_replaces_an_earlier_checkpoint(tmp_path):
    first, second = ppo(), ppo()
    first.save_to_path(tmp_path / "m")
    second.save_to_path(tmp_path / "m")
    assert same_weights(RLModule.from_checkpoint(tmp_path / "m"), second)
    assert os.listdir(tmp_path) == ["m"]  # no temp or backup directories left


def test_save_into_an_existing_empty_dir_and_refuse_other_dirs(tmp_path):
    (tmp_path / "empty").mkdir()
    ppo().save_to_path(tmp_path / "empty")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"'.*data': it exists and is not a checkpoint"):
        ppo().save_to_path(tmp_path / "data")
    assert (tmp_path / "data" / "notes.txt").read_text() == "keep me"


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old = ppo()
    old.save_to_path(tmp_path / "m")

    def half_write_then_fail(file, state):
        Path(file).write_bytes(b"\x00" * 10)
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_state_tensors", half_write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ppo().save_to_path(tmp_path / "m")
    assert same_weights(RLModule.from_checkpoint(tmp_path / "m"), old)
    assert os.listdir(tmp_path) == ["m"]


def test_crash_mid_save_leaves_the_old_checkpoint_and_nothing_that_looks_valid(tmp_path):
    old = ppo()
    old.save_to_path(tmp_path / "m")
    script = textwrap.dedent(f"""
        import os
        from rlmodules import checkpoint
        from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
        import gymnasium as gym
        module = DefaultPPOTorchRLModule(observation_space=gym.spaces.Box(-1, 1, (4,)),
                                         action_space=gym.spaces.Discrete(2),
                                         model_config={{"fcnet_hiddens": [8]}})
        checkpoint.write_metadata = lambda *args: os._exit(3)  # die after the weights
        module.save_to_path({str(tmp_path / "m")!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert result.returncode == 3, result.stderr.decode()
    assert same_weights(RLModule.from_checkpoint(tmp_path / "m"), old)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "m"]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".m.tmp-")
    assert weights_file(leftovers[0]).is_file()
    with pytest.raises(FileNotFoundError, match="has no metadata.json"):
        RLModule.from_checkpoint(leftovers[0])


# ---- bad checkpoints -----------------------------------------------------------------------

def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Checkpoint '.*nowhere' does not exist\.$"):
        RLModule.from_checkpoint(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist"):
        ppo().restore_from_path(tmp_path / "nowhere")


def test_missing_checkpoint_points_to_the_backup_of_an_interrupted_swap(tmp_path):
    ppo().save_to_path(tmp_path / "m")
    os.rename(tmp_path / "m", tmp_path / ".m.old-1234abcd")  # crash between the two renames
    with pytest.raises(FileNotFoundError, match=r"previous checkpoint at '.*\.m\.old-1234abcd'"):
        RLModule.from_checkpoint(tmp_path / "m")


def test_truncated_weights_name_the_file(tmp_path):
    ppo().save_to_path(tmp_path / "m")
    data = weights_file(tmp_path / "m").read_bytes()
    weights_file(tmp_path / "m").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"'.*m/module_state\.safetensors' are truncated"):
        RLModule.from_checkpoint(tmp_path / "m")
    weights_file(tmp_path / "m").unlink()
    with pytest.raises(FileNotFoundError, match=r"module_state\.safetensors' do not exist"):
        ppo().restore_from_path(tmp_path / "m")


def test_corrupt_or_newer_metadata_is_an_error_naming_the_path(tmp_path):
    ppo().save_to_path(tmp_path / "m")
    meta_file = tmp_path / "m" / ckpt.METADATA_FILE
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "format_version": ckpt.FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError, match=r"'.*m' has format version 2"):
        RLModule.from_checkpoint(tmp_path / "m")
    for text in ('{"kind": "rl_mod', '[1, 2]', '{"kind": "rl_module"}'):
        meta_file.write_text(text)
        with pytest.raises(CheckpointError, match=r"'.*m': metadata.json is corrupt"):
            RLModule.from_checkpoint(tmp_path / "m")


def test_shape_mismatch_names_path_parameter_and_both_shapes(tmp_path):
    ppo(hiddens=(8,)).save_to_path(tmp_path / "small")
    with pytest.raises(CheckpointError, match=r"Checkpoint '.*small' does not fit "
                                              r"DefaultPPOTorchRLModule: .*parameter "
                                              r"'encoder\..*net\.0\.weight' has shape \(16, 4\) in "
                                              r"the module but \(8, 4\) in the state"):
        ppo(hiddens=(16,)).restore_from_path(tmp_path / "small")


def test_dtype_mismatch_is_refused_before_any_weight_is_copied(tmp_path):
    ppo().save_to_path(tmp_path / "m")
    state = ckpt.load_state_tensors(weights_file(tmp_path / "m"))
    last = list(state)[-1]
    ckpt.save_state_tensors(weights_file(tmp_path / "m"),
                            {**state, last: state[last].astype(np.float64)})
    target = ppo()
    before = target.get_state()
    with pytest.raises(CheckpointError, match=rf"'.*m' does not fit DefaultPPOTorchRLModule: "
                                              rf"parameter '{re.escape(last)}' has dtype "
                                              r"float32 in the module but float64 in the state"):
        target.restore_from_path(tmp_path / "m")
    assert all(np.array_equal(before[k], v) for k, v in target.get_state().items())


def test_state_tensors_helpers_round_trip_numpy_and_torch(tmp_path):
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": torch.ones(3, 2).T,
             "c": np.zeros((4, 3), np.int64)[:, 1]}  # non-contiguous view
    ckpt.save_state_tensors(tmp_path / "w.safetensors", state)
    loaded = ckpt.load_state_tensors(tmp_path / "w.safetensors")
    assert np.array_equal(loaded["a"], state["a"])
    assert loaded["b"].shape == (2, 3) and loaded["b"].dtype == np.float32
    assert loaded["c"].shape == (4,)
