"""Catalogs: the base Catalog (encoder, action distribution, latent dims) and PPOCatalog
(actor-critic encoder, pi and vf heads), used by custom modules and by the default PPO one."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from algorithms.ppo import DefaultPPOTorchRLModule, PPOCatalog
from rlmodules import (ENCODER_OUT, Columns, DefaultModelConfig, RLModuleSpec, TorchRLModule,
                       ValueFunctionAPI)
from rlmodules.catalog import Catalog
from rlmodules.distributions import TorchCategorical, TorchDiagGaussian
from rlmodules.encoders import ACTOR, CRITIC, ActorCriticEncoder, LSTMEncoder
from rlmodules.heads import PolicyHead, ValueHead

VEC = gym.spaces.Box(-1, 1, (4,))
IMG = gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
DISCRETE = gym.spaces.Discrete(2)


# ---- base Catalog ---------------------------------------------------------------------------

def test_catalog_basic_workflow_steps_an_env():
    """RLlib's catalog guide: encoder + own head + the catalog's action distribution."""
    env = gym.make("CartPole-v1")
    catalog = Catalog(env.observation_space, env.action_space, model_config_dict={})
    encoder = catalog.build_encoder(framework="torch")
    dist_cls = catalog.get_action_dist_cls(framework="torch")
    assert issubclass(dist_cls, TorchCategorical) and catalog.latent_dims == (256,)
    head = nn.Linear(catalog.latent_dims[0], dist_cls.required_input_dim(env.action_space))
    obs, _ = env.reset(seed=0)
    encoding = encoder({Columns.OBS: torch.as_tensor(obs[None])})[ENCODER_OUT]
    action = dist_cls.from_logits(head(encoding)).sample().numpy()[0]
    assert env.action_space.contains(action)
    env.step(action)


@pytest.mark.parametrize("space, model_config", [
    (VEC, {"fcnet_hiddens": [32, 7]}),
    (VEC, {"fcnet_hiddens": []}),
    (IMG, {"conv_filters": [[4, 3, 2], [6, 3, 2, "valid"]]}),
    (IMG, {}),
    (VEC, {"use_lstm": True, "lstm_cell_size": 9}),
])
def test_latent_dims_is_the_built_encoders_output_size(space, model_config):
    catalog = Catalog(space, DISCRETE, model_config)
    encoder = catalog.build_encoder()
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(2)])[:, None])
    batch = {Columns.OBS: obs if isinstance(encoder, LSTMEncoder) else obs[:, 0]}
    if isinstance(encoder, LSTMEncoder):
        batch[Columns.STATE_IN] = {k: v.expand(2, -1) for k, v in
                                   encoder.get_initial_state().items()}
    assert catalog.latent_dims == (encoder.output_dim,)
    assert encoder(batch)[ENCODER_OUT].shape[-1] == catalog.latent_dims[0]


def test_catalog_reads_the_model_config_over_the_defaults_and_keeps_custom_keys():
    catalog = Catalog(VEC, DISCRETE, {"fcnet_hiddens": [8], "my_key": 3})
    assert isinstance(catalog.model_config, DefaultModelConfig)
    assert catalog.model_config.fcnet_hiddens == [8]
    assert catalog.model_config.fcnet_activation == DefaultModelConfig().fcnet_activation
    assert catalog._model_config_dict["my_key"] == 3
    assert catalog._model_config_dict["fcnet_hiddens"] == [8]
    from_dataclass = Catalog(VEC, DISCRETE, DefaultModelConfig(fcnet_hiddens=[5]))
    assert from_dataclass.latent_dims == (5,)
    catalog.latent_dims = (11,)  # settable, as in RLlib
    assert catalog.latent_dims == (11,)


def test_catalog_checks_only_when_building():
    catalog = Catalog(gym.spaces.Dict({"a": VEC}), gym.spaces.Text(3), {})  # no error yet
    with pytest.raises(ValueError, match="FlattenObservations"):
        catalog.build_encoder()
    with pytest.raises(ValueError, match="FlattenObservations"):
        catalog.latent_dims
    with pytest.raises(ValueError, match="No default action distribution"):
        catalog.get_action_dist_cls()
    with pytest.raises(ValueError, match=r"Catalog builds torch models only, got "
                                         r"framework='tf2'"):
        Catalog(VEC, DISCRETE, {}).build_encoder(framework="tf2")


# ---- PPOCatalog -----------------------------------------------------------------------------

def test_ppo_catalog_builds_actor_critic_encoder_and_heads():
    catalog = PPOCatalog(VEC, gym.spaces.Box(-1, 1, (3,)), {"fcnet_hiddens": [16],
                                                             "head_fcnet_hiddens": [8]})
    encoder = catalog.build_actor_critic_encoder(framework="torch")
    assert isinstance(encoder, ActorCriticEncoder) and not encoder.shared
    out = encoder({Columns.OBS: torch.randn(5, 4)})[ENCODER_OUT]
    assert set(out) == {ACTOR, CRITIC} and out[ACTOR].shape == (5, 16)
    pi, vf = catalog.build_pi_head(framework="torch"), catalog.build_vf_head(framework="torch")
    assert isinstance(pi, PolicyHead) and isinstance(vf, ValueHead)
    assert issubclass(catalog.get_action_dist_cls(), TorchDiagGaussian)
    assert pi(out[ACTOR]).shape == (5, 6) and vf(out[CRITIC]).shape == (5, 1)
    shared = PPOCatalog(VEC, DISCRETE, {"vf_share_layers": True}).build_actor_critic_encoder()
    assert shared.shared and hasattr(shared, "encoder") and not hasattr(shared, "actor_encoder")
    with pytest.raises(NotImplementedError, match="build_actor_critic_encoder"):
        catalog.build_encoder(framework="torch")


class CatalogPPOModule(TorchRLModule, ValueFunctionAPI):
    """A custom module built through ``self.catalog``, the way RLlib's docs show."""

    def setup(self):
        self.encoder = self.catalog.build_actor_critic_encoder(framework=self.framework)
        self.pi = self.catalog.build_pi_head(framework=self.framework)
        self.vf = self.catalog.build_vf_head(framework=self.framework)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self.encoder(batch)[ENCODER_OUT][ACTOR])}

    def _forward_train(self, batch, **kwargs):
        encoded = self.encoder(batch)[ENCODER_OUT]
        return {Columns.ACTION_DIST_INPUTS: self.pi(encoded[ACTOR]),
                Columns.EMBEDDINGS: encoded[CRITIC]}

    def compute_values(self, batch, embeddings=None):
        if embeddings is None:
            embeddings = self.encoder(batch)[ENCODER_OUT][CRITIC]
        return self.vf(embeddings).squeeze(-1)


def test_custom_module_built_through_its_catalog_trains_a_step():
    torch.manual_seed(0)
    module = RLModuleSpec(module_class=CatalogPPOModule, observation_space=VEC,
                          action_space=DISCRETE, catalog_class=PPOCatalog,
                          model_config={"fcnet_hiddens": [16], "my_key": 1}).build()
    assert isinstance(module.catalog, PPOCatalog)
    assert module.catalog.model_config.fcnet_hiddens == [16]
    obs = torch.randn(32, 4)
    batch = {Columns.OBS: obs}
    optim = torch.optim.Adam(module.parameters(), lr=0.05)
    before = [p.detach().clone() for p in module.parameters()]
    out = module.forward_train(batch)
    dist = module.get_train_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    actions = (obs[:, 0] > 0).long()
    values = module.compute_values(batch, out[Columns.EMBEDDINGS])
    loss = -dist.logp(actions).mean() + ((values - 1.0) ** 2).mean()
    optim.zero_grad()
    loss.backward()
    named = dict(module.named_parameters())
    assert all(named[k].grad is not None for k in named if k.startswith(
        ("encoder.actor_encoder", "encoder.critic_encoder", "pi", "vf")))
    optim.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, module.parameters()))
    after = module.forward_train(batch)
    new_dist = module.get_train_action_dist_cls().from_logits(after[Columns.ACTION_DIST_INPUTS])
    assert new_dist.logp(actions).mean() > dist.logp(actions).mean()


# ---- the default PPO module builds through its catalog ---------------------------------------

class WideValueCatalog(PPOCatalog):
    """Overrides one builder; the default module must use it."""

    def build_vf_head(self, framework="torch"):
        return nn.Sequential(nn.Linear(self.latent_dims[0], 7), nn.Tanh(), nn.Linear(7, 1))


def test_default_ppo_module_builds_with_the_specs_catalog():
    spec = RLModuleSpec(module_class=DefaultPPOTorchRLModule, observation_space=VEC,
                        action_space=DISCRETE, model_config={"fcnet_hiddens": [8]})
    plain = spec.build()
    assert isinstance(plain.catalog, PPOCatalog)  # made by setup when the spec names none
    spec.catalog_class = PPOCatalog
    with_catalog = spec.build()
    assert {k: v.shape for k, v in with_catalog.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()}
    spec.catalog_class = WideValueCatalog
    custom = spec.build()
    assert isinstance(custom.catalog, WideValueCatalog) and custom.vf[0].out_features == 7
    assert custom.compute_values({Columns.OBS: torch.randn(3, 4)}).shape == (3,)
    spec.catalog_class = Catalog
    with pytest.raises(TypeError, match=r"DefaultPPOTorchRLModule builds its networks with a "
                                        r"PPOCatalog, but the spec's catalog_class is Catalog"):
        spec.build()


def test_inference_only_build_through_a_catalog_leaves_out_the_critic():
    spec = RLModuleSpec(module_class=DefaultPPOTorchRLModule, observation_space=VEC,
                        action_space=DISCRETE, catalog_class=PPOCatalog,
                        model_config={"fcnet_hiddens": [8]})
    full, actor = spec.build(), spec.as_inference_only().build()
    assert not hasattr(actor, "vf") and not hasattr(actor.encoder, "critic_encoder")
    actor.set_state(full.get_state())
    obs = {Columns.OBS: torch.randn(3, 4)}
    assert torch.equal(actor.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                       full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])
