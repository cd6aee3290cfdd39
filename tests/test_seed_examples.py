"""The RLModule code examples of the seeds (docs in ../shared/seeds), run with only their
imports changed. Seed 000's literal-included files (the VPG module, the shared-encoder
MultiRLModule) are written here from the guide's description of them.
Examples that need an Algorithm (PPOConfig, ...) are tested with the algorithms."""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Mapping

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule as DefaultBCTorchRLModule
from rlmodules import (ENCODER_OUT, Columns, DefaultModelConfig, MultiRLModule,
                       MultiRLModuleSpec, RLModule, RLModuleSpec, TorchRLModule)
from rlmodules.compat import (MultiAgentRLModule, MultiAgentRLModuleConfig,
                              MultiAgentRLModuleSpec, RLModuleConfig, SingleAgentRLModuleSpec,
                              override)
from rlmodules.distributions import (TorchCategorical, TorchDeterministic,
                                     action_dist_from_output)
from rlmodules.specs import SpecCheckError, SpecType, TensorSpec, TorchTensorSpec

NestedDict = Dict  # seeds 001/002 import it from ray.rllib.utils.nested_dict, only as a hint.


def cartpole_obs(n: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.stack([gym.make("CartPole-v1").observation_space.sample()
                                      for _ in range(n)]))


# ---- seed 000: the current guide ---------------------------------------------------------

def test_000_construct_through_class_constructor():
    env = gym.make("CartPole-v1")
    rl_module = DefaultBCTorchRLModule(
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"fcnet_hiddens": [64]},
    )
    assert rl_module.model_config["fcnet_hiddens"] == [64]
    assert rl_module.forward_inference({"obs": cartpole_obs()})[Columns.ACTION_DIST_INPUTS] \
        .shape == (3, 2)


def test_000_construct_through_rl_module_spec():
    env = gym.make("CartPole-v1")
    spec = RLModuleSpec(
        module_class=DefaultBCTorchRLModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"fcnet_hiddens": [64]},
    )
    rl_module = spec.build()
    assert isinstance(rl_module, DefaultBCTorchRLModule)
    assert rl_module.encoder.output_dim == 64


def test_000_construct_through_multi_rl_module_spec():
    spec = MultiRLModuleSpec(
        rl_module_specs={
            "module_1": RLModuleSpec(
                module_class=DefaultBCTorchRLModule,
                observation_space=gym.spaces.Box(low=-1, high=1, shape=(10,)),
                action_space=gym.spaces.Discrete(2),
                model_config={"fcnet_hiddens": [32]},
            ),
            "module_2": RLModuleSpec(
                module_class=DefaultBCTorchRLModule,
                observation_space=gym.spaces.Box(low=-1, high=1, shape=(5,)),
                action_space=gym.spaces.Discrete(2),
                model_config={"fcnet_hiddens": [16]},
            ),
        },
    )
    multi_rl_module = spec.build()
    assert set(multi_rl_module.keys()) == {"module_1", "module_2"}
    out = multi_rl_module.forward_exploration({"module_1": {"obs": torch.zeros(4, 10)},
                                               "module_2": {"obs": torch.zeros(4, 5)}})
    assert out["module_2"][Columns.ACTION_DIST_INPUTS].shape == (4, 2)


class MyTorchPolicy(TorchRLModule):
    """Seed 000, "The setup() method"."""

    def setup(self):
        input_dim = self.observation_space.shape[0]
        hidden_dim = self.model_config["fcnet_hiddens"][0]
        output_dim = self.action_space.n
        self._pi_head = torch.nn.Sequential(
            torch.nn.Linear(input_dim, hidden_dim),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden_dim, output_dim),
        )

    # Seed 000, "Forward methods": one generic _forward for every phase.
    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._pi_head(batch[Columns.OBS])}


def test_000_setup_and_generic_forward_serve_all_three_phases():
    module = MyTorchPolicy(observation_space=gym.spaces.Box(-1, 1, (4,)),
                           action_space=gym.spaces.Discrete(3), model_config={"fcnet_hiddens": [8]})
    obs = torch.randn(5, 4)
    for method in (module.forward_exploration, module.forward_inference, module.forward_train):
        assert method({"obs": obs})[Columns.ACTION_DIST_INPUTS].shape == (5, 3)
    assert module.forward_train({"obs": obs})[Columns.ACTION_DIST_INPUTS].requires_grad
    assert not module.forward_exploration({"obs": obs})[Columns.ACTION_DIST_INPUTS].requires_grad


class MyActionsPolicy(MyTorchPolicy):
    """Seed 000, tab "Returning 'actions' key"."""

    def _forward_inference(self, batch):
        return {Columns.ACTIONS: self._pi_head(batch[Columns.OBS]).argmax(-1)}

    def _forward_exploration(self, batch):
        logits = self._pi_head(batch[Columns.OBS])
        return {Columns.ACTIONS: TorchCategorical.from_logits(logits).sample(),
                Columns.ACTION_DIST_INPUTS: logits}


def test_000_returning_actions_and_or_action_dist_inputs():
    module = MyActionsPolicy(observation_space=gym.spaces.Box(-1, 1, (4,)),
                             action_space=gym.spaces.Discrete(3),
                             model_config={"fcnet_hiddens": [8]})
    obs = torch.randn(5, 4)
    inference = module.forward_inference({"obs": obs})
    assert set(inference) == {Columns.ACTIONS}
    exploration = module.forward_exploration({"obs": obs})
    dist = action_dist_from_output(exploration, module.get_exploration_action_dist_cls())
    assert dist.logp(exploration[Columns.ACTIONS]).shape == (5,)


class GreedyDistPolicy(MyTorchPolicy):
    """Seed 000, "Custom action distributions": override the three getters."""

    def get_inference_action_dist_cls(self):
        return TorchDeterministic

    def get_exploration_action_dist_cls(self):
        return TorchCategorical

    def get_train_action_dist_cls(self):
        return TorchCategorical


def test_000_custom_action_distribution_getters():
    module = GreedyDistPolicy(observation_space=gym.spaces.Box(-1, 1, (4,)),
                              action_space=gym.spaces.Discrete(3),
                              model_config={"fcnet_hiddens": [8]})
    out = module.forward_inference({"obs": torch.randn(2, 4)})
    dist = action_dist_from_output(out, module.get_inference_action_dist_cls())
    assert isinstance(dist, TorchDeterministic)
    assert torch.equal(dist.sample(), out[Columns.ACTION_DIST_INPUTS])


class VPGTorchRLModule(TorchRLModule):
    """Seed 000's end-to-end example (vpg_torch_rlm.py), written from its description."""

    def setup(self):
        super().setup()
        hidden_dim = self.model_config["hidden_dim"]
        self._policy_net = nn.Sequential(
            nn.Linear(self.observation_space.shape[0], hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, self.action_space.n))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._policy_net(batch[Columns.OBS])}

    def _forward_train(self, batch, **kwargs):
        logits = self._policy_net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits}


def test_000_end_to_end_vpg_module_trains_a_bandit():
    torch.manual_seed(0)
    module = RLModuleSpec(module_class=VPGTorchRLModule,
                          observation_space=gym.spaces.Box(-1, 1, (4,)),
                          action_space=gym.spaces.Discrete(2),
                          model_config={"hidden_dim": 16}).build()
    optim = torch.optim.Adam(module.parameters(), lr=0.03)

    def accuracy() -> float:
        obs = torch.randn(512, 4)
        out = module.forward_inference({"obs": obs})
        actions = action_dist_from_output(out, TorchCategorical).to_deterministic().sample()
        return (actions == (obs[:, 0] > 0).long()).float().mean().item()

    before = accuracy()
    for _ in range(100):
        obs = torch.randn(64, 4)
        dist = TorchCategorical.from_logits(
            module.forward_exploration({"obs": obs})[Columns.ACTION_DIST_INPUTS])
        actions = dist.sample()
        rewards = (actions == (obs[:, 0] > 0).long()).float()
        train_dist = module.get_train_action_dist_cls().from_logits(
            module.forward_train({"obs": obs})[Columns.ACTION_DIST_INPUTS])
        loss = -(train_dist.logp(actions) * (rewards - rewards.mean())).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert accuracy() > max(0.9, before + 0.2)


SHARED_ENCODER_ID = "shared_encoder"


class SharedEncoder(TorchRLModule):
    """Seed 000's shared encoder: embeds the observations once for all policies."""

    def setup(self):
        self._net = nn.Sequential(
            nn.Linear(self.observation_space.shape[0], self.model_config["embedding_dim"]),
            nn.ReLU())

    def _forward(self, batch, **kwargs):
        return {ENCODER_OUT: self._net(batch[Columns.OBS])}


class PolicyAfterSharedEncoder(TorchRLModule):
    """Seed 000's policy sub-module: a policy head on the shared encoder's output."""

    def setup(self):
        self._pi_head = nn.Sequential(
            nn.Linear(self.model_config["embedding_dim"], self.model_config["hidden_dim"]),
            nn.ReLU(), nn.Linear(self.model_config["hidden_dim"], self.action_space.n))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._pi_head(batch[ENCODER_OUT])}


class MultiRLModuleWithSharedEncoder(MultiRLModule):
    """Seed 000's custom MultiRLModule: the encoder runs first, each policy reads its output."""

    def setup(self):
        super().setup()
        assert SHARED_ENCODER_ID in self and len(self) > 1
        self.encoder = self._rl_modules[SHARED_ENCODER_ID]

    def _forward(self, batch, **kwargs):
        outputs = {}
        for policy_id, policy_batch in batch.items():
            embeddings = self.encoder._forward(policy_batch)[ENCODER_OUT]
            outputs[policy_id] = self._rl_modules[policy_id]._forward(
                {**policy_batch, ENCODER_OUT: embeddings}, **kwargs)
        return outputs


def shared_encoder_spec() -> MultiRLModuleSpec:
    """Seed 000's "how to run" spec, with the spaces an algorithm would fill in."""
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    policy = dict(module_class=PolicyAfterSharedEncoder, observation_space=obs_space,
                  action_space=act_space, model_config={"embedding_dim": 8, "hidden_dim": 16})
    return MultiRLModuleSpec(
        multi_rl_module_class=MultiRLModuleWithSharedEncoder,
        rl_module_specs={
            "p0": RLModuleSpec(**policy),
            "p1": RLModuleSpec(**policy),
            SHARED_ENCODER_ID: RLModuleSpec(module_class=SharedEncoder,
                                            observation_space=obs_space, action_space=act_space,
                                            model_config={"embedding_dim": 8}),
        },
    )


def test_000_shared_encoder_multi_rl_module():
    module = shared_encoder_spec().build()
    batch = {"p0": {"obs": torch.randn(3, 4)}, "p1": {"obs": torch.randn(5, 4)}}
    out = module.forward_exploration(batch)
    assert out["p0"][Columns.ACTION_DIST_INPUTS].shape == (3, 2)
    assert out["p1"][Columns.ACTION_DIST_INPUTS].shape == (5, 2)
    # Training: both policies' losses reach the one encoder.
    train = module.forward_train(batch)
    (train["p0"][Columns.ACTION_DIST_INPUTS].sum()
     + train["p1"][Columns.ACTION_DIST_INPUTS].sum()).backward()
    assert module[SHARED_ENCODER_ID]._net[0].weight.grad.abs().sum() > 0
    assert module.encoder is module[SHARED_ENCODER_ID]


def test_000_shared_encoder_checkpoint_and_inference_only_copy(tmp_path):
    module = shared_encoder_spec().build()
    module.save_to_path(tmp_path / "ckpt")
    restored = RLModule.from_checkpoint(tmp_path / "ckpt")
    assert type(restored) is MultiRLModuleWithSharedEncoder
    obs = {"p1": {"obs": torch.randn(4, 4)}}
    assert torch.equal(restored.forward_inference(obs)["p1"][Columns.ACTION_DIST_INPUTS],
                       module.forward_inference(obs)["p1"][Columns.ACTION_DIST_INPUTS])
    actor = shared_encoder_spec().as_inference_only().build()
    actor.set_state(module.get_state())
    assert torch.equal(actor.forward_inference(obs)["p1"][Columns.ACTION_DIST_INPUTS],
                       module.forward_inference(obs)["p1"][Columns.ACTION_DIST_INPUTS])


def test_000_checkpointing_rl_modules():
    env = gym.make("CartPole-v1")
    rl_module = DefaultPPOTorchRLModule(
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=DefaultModelConfig(fcnet_hiddens=[32]),
    )
    module_ckpt_path = tempfile.mkdtemp()
    rl_module.save_to_path(module_ckpt_path)

    new_module = RLModule.from_checkpoint(module_ckpt_path)

    assert type(new_module) is DefaultPPOTorchRLModule
    obs = cartpole_obs(4)
    assert torch.equal(new_module.compute_values({"obs": obs}),
                       rl_module.compute_values({"obs": obs}))
    # "otherwise loading the state of ``module`` fails due to a shape mismatch":
    other_size = DefaultPPOTorchRLModule(observation_space=env.observation_space,
                                         action_space=env.action_space,
                                         model_config=DefaultModelConfig(fcnet_hiddens=[256]))
    with pytest.raises(ValueError, match=r"shape \(256, 4\) in the module but \(32, 4\)"):
        other_size.restore_from_path(module_ckpt_path)


# ---- seed 001/002: the alpha API --------------------------------------------------------

class DiscreteBCTorchModule001(TorchRLModule):
    """Seed 001: layers built in ``__init__(self, config)``."""

    def __init__(self, config: RLModuleConfig) -> None:
        super().__init__(config)

        input_dim = self.config.observation_space.shape[0]
        hidden_dim = self.config.model_config_dict["fcnet_hiddens"][0]
        output_dim = self.config.action_space.n

        self.policy = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

        self.input_dim = input_dim

    def _forward_inference(self, batch: NestedDict) -> Mapping[str, Any]:
        with torch.no_grad():
            return self._forward_train(batch)

    def _forward_exploration(self, batch: NestedDict) -> Mapping[str, Any]:
        with torch.no_grad():
            return self._forward_train(batch)

    def _forward_train(self, batch: NestedDict) -> Mapping[str, Any]:
        action_logits = self.policy(batch["obs"])
        return {"action_dist": torch.distributions.Categorical(logits=action_logits)}


class DiscreteBCTorchModule(TorchRLModule):
    """Seed 002: the same module, built in ``setup()``."""

    def __init__(self, config: RLModuleConfig) -> None:
        super().__init__(config)

    def setup(self):
        input_dim = self.config.observation_space.shape[0]
        hidden_dim = self.config.model_config_dict["fcnet_hiddens"][0]
        output_dim = self.config.action_space.n

        self.policy = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

        self.input_dim = input_dim

    def _forward_inference(self, batch: NestedDict) -> Mapping[str, Any]:
        with torch.no_grad():
            return self._forward_train(batch)

    def _forward_exploration(self, batch: NestedDict) -> Mapping[str, Any]:
        with torch.no_grad():
            return self._forward_train(batch)

    def _forward_train(self, batch: NestedDict) -> Mapping[str, Any]:
        action_logits = self.policy(batch["obs"])
        return {"action_dist": torch.distributions.Categorical(logits=action_logits)}


@pytest.mark.parametrize("module_class", [DiscreteBCTorchModule001, DiscreteBCTorchModule])
def test_001_002_single_agent_spec_and_as_multi_agent(module_class):
    env = gym.make("CartPole-v1")

    spec = SingleAgentRLModuleSpec(
        module_class=module_class,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config_dict={"fcnet_hiddens": [64]},
    )

    module = spec.build()
    marl_module = module.as_multi_agent()

    assert module.policy[0].out_features == 64
    out = module.forward_exploration({"obs": cartpole_obs()})
    assert isinstance(out["action_dist"], torch.distributions.Categorical)
    assert marl_module["default_policy"] is module
    dist = action_dist_from_output(out, module.get_exploration_action_dist_cls())
    assert dist.logp(dist.sample()).shape == (3,)


@pytest.mark.parametrize("module_class", [DiscreteBCTorchModule001, DiscreteBCTorchModule])
def test_001_002_multi_agent_spec(module_class):
    spec = MultiAgentRLModuleSpec(
        module_specs={
            "module_1": SingleAgentRLModuleSpec(
                module_class=module_class,
                observation_space=gym.spaces.Box(low=-1, high=1, shape=(10,)),
                action_space=gym.spaces.Discrete(2),
                model_config_dict={"fcnet_hiddens": [32]},
            ),
            "module_2": SingleAgentRLModuleSpec(
                module_class=module_class,
                observation_space=gym.spaces.Box(low=-1, high=1, shape=(5,)),
                action_space=gym.spaces.Discrete(2),
                model_config_dict={"fcnet_hiddens": [16]},
            ),
        },
    )

    marl_module = spec.build()

    assert isinstance(marl_module, MultiAgentRLModule)
    assert marl_module["module_2"].policy[0].in_features == 5
    out = marl_module.forward_inference({"module_1": {"obs": torch.zeros(2, 10)}})
    assert out["module_1"]["action_dist"].logits.shape == (2, 2)


def test_001_002_spec_with_only_module_class_is_filled_later():
    spec = MultiAgentRLModuleSpec(
        module_specs=SingleAgentRLModuleSpec(module_class=DiscreteBCTorchModule))
    with pytest.raises(ValueError, match="observation_space, action_space not set"):
        spec.build()
    sub = spec.module_specs(["p0", "p1"])
    for s in sub.values():
        s.update(RLModuleSpec(observation_space=gym.spaces.Box(-1, 1, (3,)),
                              action_space=gym.spaces.Discrete(2),
                              model_config={"fcnet_hiddens": [32, 32]}), override=False)
    built = MultiAgentRLModuleSpec(module_specs=sub).build()
    assert set(built.keys()) == {"p0", "p1"}


class SpecCheckedBCModule(DiscreteBCTorchModule):
    """Seeds 001/002: I/O specs as single keys, nested keys, tensor shapes and types."""

    @override(TorchRLModule)
    def input_specs_exploration(self) -> SpecType:
        # Enforce that input nested dict to exploration method has a key "obs"
        return ["obs"]

    @override(TorchRLModule)
    def output_specs_exploration(self) -> SpecType:
        # Enforce that output nested dict from exploration method has a key
        # "action_dist"
        return ["action_dist"]

    @override(TorchRLModule)
    def input_specs_inference(self) -> SpecType:
        # and its value is a torch.Tensor with shape (b, h) where b is the
        # batch size (determined at run-time) and h is the hidden size
        # (fixed at 10).
        return {"obs": TorchTensorSpec("b, h", h=10)}

    @override(TorchRLModule)
    def output_specs_inference(self) -> SpecType:
        # Enforce that output nested dict from exploration method has a key
        # "action_dist" and its value is a torch.distribution.Categorical
        return {"action_dist": torch.distributions.Categorical}

    @override(TorchRLModule)
    def input_specs_train(self) -> SpecType:
        return {"obs": TensorSpec("b, h", h=10, framework="torch")}


def build_spec_checked(obs_dim: int = 10) -> SpecCheckedBCModule:
    return SingleAgentRLModuleSpec(module_class=SpecCheckedBCModule,
                                   observation_space=gym.spaces.Box(-1, 1, (obs_dim,)),
                                   action_space=gym.spaces.Discrete(2),
                                   model_config_dict={"fcnet_hiddens": [8]}).build()


def test_001_002_io_specs_accept_matching_batches():
    module = build_spec_checked()
    module.forward_exploration({"obs": torch.zeros(3, 10)})
    module.forward_inference({"obs": np.zeros((3, 10), np.float32)})  # converted first
    module.forward_train({"obs": torch.zeros(1, 10)})


def test_001_002_io_specs_reject_bad_batches_naming_key_and_shape():
    module = build_spec_checked()
    with pytest.raises(SpecCheckError, match=r"input_specs_exploration.*missing key 'obs'"):
        module.forward_exploration({"observations": torch.zeros(3, 10)})
    with pytest.raises(SpecCheckError, match=r"\['obs'\].*dim 'h' must be 10.*\(3, 7\)"):
        module.forward_inference({"obs": torch.zeros(3, 7)})
    with pytest.raises(SpecCheckError, match="expected 2 dims"):
        module.forward_train({"obs": torch.zeros(10)})


def test_001_002_nested_key_spec():
    class NestedSpecModule(DiscreteBCTorchModule):
        @override(TorchRLModule)
        def input_specs_exploration(self) -> SpecType:
            # Enforce that input nested dict to exploration method has a key "obs"
            # and within that key, it has a key "global" and "local". There should
            # also be a key "action_mask"
            return [("obs", "global"), ("obs", "local"), "action_mask"]

        def _forward_exploration(self, batch):
            obs = torch.cat([batch["obs"]["global"], batch["obs"]["local"]], -1)
            return {"action_dist": torch.distributions.Categorical(logits=self.policy(obs))}

    module = NestedSpecModule(RLModuleConfig(
        observation_space=gym.spaces.Box(-1, 1, (4,)), action_space=gym.spaces.Discrete(2),
        model_config_dict={"fcnet_hiddens": [8]}))
    ok = {"obs": {"global": torch.zeros(1, 2), "local": torch.zeros(1, 2)},
          "action_mask": torch.ones(1, 2)}
    module.forward_exploration(ok)
    with pytest.raises(SpecCheckError, match=r"missing key 'obs'\]\['local'"):
        module.forward_exploration({"obs": {"global": torch.zeros(1, 2)},
                                    "action_mask": torch.ones(1, 2)})


def test_override_decorator_catches_misspelled_methods():
    with pytest.raises(NameError, match="no method 'input_spec_exploration'"):
        class Misspelled(TorchRLModule):
            @override(TorchRLModule)
            def input_spec_exploration(self):
                return ["obs"]


class BCTorchRLModuleWithSharedGlobalEncoder(TorchRLModule):
    """Seeds 001/002: a sub-module built with ``super().__init__(config=None)``."""

    def __init__(
        self, encoder: nn.Module, local_dim: int, hidden_dim: int, action_dim: int
    ) -> None:
        super().__init__(config=None)

        self.encoder = encoder
        self.policy_head = nn.Sequential(
            nn.Linear(hidden_dim + local_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, action_dim),
        )

    def _forward_inference(self, batch):
        with torch.no_grad():
            return self._common_forward(batch)

    def _forward_exploration(self, batch):
        with torch.no_grad():
            return self._common_forward(batch)

    def _forward_train(self, batch):
        return self._common_forward(batch)

    def _common_forward(self, batch):
        obs = batch["obs"]
        global_enc = self.encoder(obs["global"])
        policy_in = torch.cat([global_enc, obs["local"]], dim=-1)
        action_logits = self.policy_head(policy_in)

        return {"action_dist": torch.distributions.Categorical(logits=action_logits)}


def _shared_global_encoder_modules(module_specs):
    module_spec = next(iter(module_specs.values()))
    global_dim = module_spec.observation_space["global"].shape[0]
    hidden_dim = module_spec.model_config_dict["fcnet_hiddens"][0]
    shared_encoder = nn.Sequential(
        nn.Linear(global_dim, hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, hidden_dim),
    )

    rl_modules = {}
    for module_id, module_spec in module_specs.items():
        rl_modules[module_id] = BCTorchRLModuleWithSharedGlobalEncoder(
            encoder=shared_encoder,
            local_dim=module_spec.observation_space["local"].shape[0],
            hidden_dim=hidden_dim,
            action_dim=module_spec.action_space.n,
        )
    return rl_modules


class BCTorchMultiAgentModuleWithSharedEncoder001(MultiAgentRLModule):
    """Seed 001: overrides ``build()``."""

    def __init__(self, config: MultiAgentRLModuleConfig) -> None:
        super().__init__(config)

    def build(self):
        self._rl_modules = _shared_global_encoder_modules(self.config.modules)


class BCTorchMultiAgentModuleWithSharedEncoder(MultiAgentRLModule):
    """Seed 002: overrides ``setup()`` (the body is seed 002's, verbatim)."""

    def __init__(self, config: MultiAgentRLModuleConfig) -> None:
        super().__init__(config)

    def setup(self):

        module_specs = self.config.modules
        module_spec = next(iter(module_specs.values()))
        global_dim = module_spec.observation_space["global"].shape[0]
        hidden_dim = module_spec.model_config_dict["fcnet_hiddens"][0]
        shared_encoder = nn.Sequential(
            nn.Linear(global_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
        )

        rl_modules = {}
        for module_id, module_spec in module_specs.items():
            rl_modules[module_id] = BCTorchRLModuleWithSharedGlobalEncoder(
                encoder=shared_encoder,
                local_dim=module_spec.observation_space["local"].shape[0],
                hidden_dim=hidden_dim,
                action_dim=module_spec.action_space.n,
            )

        self._rl_modules = rl_modules


def shared_global_encoder_spec(marl_module_class) -> MultiAgentRLModuleSpec:
    return MultiAgentRLModuleSpec(
        marl_module_class=marl_module_class,
        module_specs={
            "local_2d": SingleAgentRLModuleSpec(
                observation_space=gym.spaces.Dict({
                    "global": gym.spaces.Box(low=-1, high=1, shape=(2,)),
                    "local": gym.spaces.Box(low=-1, high=1, shape=(2,)),
                }),
                action_space=gym.spaces.Discrete(2),
                model_config_dict={"fcnet_hiddens": [64]},
            ),
            "local_5d": SingleAgentRLModuleSpec(
                observation_space=gym.spaces.Dict({
                    "global": gym.spaces.Box(low=-1, high=1, shape=(2,)),
                    "local": gym.spaces.Box(low=-1, high=1, shape=(5,)),
                }),
                action_space=gym.spaces.Discrete(5),
                model_config_dict={"fcnet_hiddens": [64]},
            ),
        },
    )


@pytest.mark.parametrize("marl_module_class", [BCTorchMultiAgentModuleWithSharedEncoder001,
                                               BCTorchMultiAgentModuleWithSharedEncoder])
def test_001_002_multi_agent_module_with_shared_encoder(marl_module_class):
    module = shared_global_encoder_spec(marl_module_class).build()

    assert module["local_2d"].encoder is module["local_5d"].encoder
    n_params = sum(p.numel() for p in module.parameters())
    assert n_params == (2 * 64 + 64) + (64 * 64 + 64) + (66 * 64 + 64 + 64 * 2 + 2) \
        + (69 * 64 + 64 + 64 * 5 + 5), "the shared encoder must be registered (and counted once)"
    batch = {"local_5d": {"obs": {"global": torch.zeros(3, 2), "local": torch.zeros(3, 5)}}}
    out = module.forward_exploration(batch)
    assert out["local_5d"]["action_dist"].logits.shape == (3, 5)
    state = module.get_state()
    assert set(state) == {"local_2d", "local_5d"}
    module.set_state(state)


def test_002_multi_agent_module_checkpoint_round_trip(tmp_path):
    module = shared_global_encoder_spec(BCTorchMultiAgentModuleWithSharedEncoder).build()
    module.save_to_path(tmp_path / "ckpt")
    restored = RLModule.from_checkpoint(tmp_path / "ckpt")
    assert type(restored) is BCTorchMultiAgentModuleWithSharedEncoder
    batch = {"local_2d": {"obs": {"global": torch.ones(1, 2), "local": torch.ones(1, 2)}}}
    assert torch.equal(restored.forward_inference(batch)["local_2d"]["action_dist"].logits,
                       module.forward_inference(batch)["local_2d"]["action_dist"].logits)


# ---- seed 003: the notebook -------------------------------------------------------------

class DiscreteTorchModule(TorchRLModule):  # We inherit from base class TorchRLModule

    def __init__(
        self,
        observation_space,
        action_space,
        inference_only,
        model_config,
        catalog_class,
    ) -> None:
        super().__init__(
            observation_space=observation_space,
            action_space=action_space,
            inference_only=inference_only,
            model_config=model_config,
            catalog_class=catalog_class,
        )

    def setup(self):
        input_dim = self.observation_space.shape[0]
        hidden_dim = self.model_config["fcnet_hiddens"][0]
        output_dim = self.action_space.n

        self.policy = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

        self.input_dim = input_dim

    def _forward_inference(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        with torch.no_grad():
            action = np.argmax(self.policy(batch["obs"]))
            return {"actions": action}

    def _forward_exploration(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        exploration_epsilon = 0.2
        if np.random.rand() < exploration_epsilon:
            action = np.random.choice(self.action_space.n)
            return {"actions": action}
        else:
            logits = self.policy(batch["obs"])
            return {
                "action_dist_inputs": torch.distributions.Categorical(logits=logits)
            }

    def _forward_train(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        action_logits = self.policy(
            batch["obs"]
        )
        return {
            "action_dist_inputs": torch.distributions.Categorical(logits=action_logits)
        }


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # np.argmax(tensor)
def test_003_notebook_runs_as_written():
    np.random.seed(0)
    env = gym.make("CartPole-v1")
    spec = RLModuleSpec(
        module_class=DiscreteTorchModule,
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config={"fcnet_hiddens": [64]},
    )

    rlmodule = spec.build()

    batch = {"obs": torch.from_numpy(env.observation_space.sample())}

    inference = rlmodule.forward_inference(batch)
    inference_actions = inference["actions"]
    assert int(inference_actions) in (0, 1)

    seen = set()
    for _ in range(30):
        exploration = rlmodule.forward_exploration(batch)
        seen |= set(exploration)
        if "action_dist_inputs" in exploration:
            exploration_action_dist_inputs = exploration["action_dist_inputs"]
            assert exploration_action_dist_inputs.logits.shape == (2,)
            assert exploration_action_dist_inputs.probs.sum().item() == pytest.approx(1.0)
    assert seen == {"actions", "action_dist_inputs"}

    train = rlmodule.forward_train(batch)
    train_action_dist_inputs = train["action_dist_inputs"]
    assert train_action_dist_inputs.sample().item() in (0, 1)
    assert train_action_dist_inputs.logits.requires_grad


# ---- seed 004: the short overview -------------------------------------------------------

class MyModule(TorchRLModule):
    def setup(self):
        obs_dim = self.observation_space.shape[0]
        n_actions = self.action_space.n
        self.encoder = nn.Sequential(
            nn.Linear(obs_dim, 128), nn.ReLU(),
            nn.Linear(128, 128), nn.ReLU(),
        )
        self.policy_head = nn.Linear(128, n_actions)
        self.value_head = nn.Linear(128, 1)

    def _forward(self, batch, **kwargs):
        h = self.encoder(batch[Columns.OBS])
        return {
            Columns.ACTION_DIST_INPUTS: self.policy_head(h),
            Columns.VF_PREDS: self.value_head(h).squeeze(-1),
        }


def test_004_custom_module_multi_agent_spec_and_inference_only_load():
    obs_space, act_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    spec = MultiRLModuleSpec(rl_module_specs={
        "policy_a": RLModuleSpec(module_class=MyModule),
        "policy_b": RLModuleSpec(module_class=MyModule),
    })
    for sub in spec.rl_module_specs.values():  # What an algorithm fills in from the env.
        sub.observation_space, sub.action_space = obs_space, act_space
    full = spec.build()["policy_a"]
    checkpoint = {"module_state": full.state_dict()}

    inference_only = MyModule(observation_space=obs_space, action_space=act_space,
                              inference_only=True)
    inference_only.load_state_dict(checkpoint["module_state"])

    obs = torch.randn(2, 4)
    out = inference_only.forward_inference({Columns.OBS: obs})
    assert torch.equal(out[Columns.VF_PREDS], full.forward_inference({Columns.OBS: obs})[
        Columns.VF_PREDS])
