"""The config names RLlib users type: accepted ones behave as in RLlib, refused ones say what
to use instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from algorithms.ppo import PPOConfig, PPOTorchLearner
from algorithms.ppo.ppo_catalog import PPOCatalog
from algorithms.vpg import VPGConfig
from learners import ALL_MODULES
from rlmodules import Columns, RLModuleSpec, TorchRLModule
from runners.envs import MultiAgentCartPole

torch.set_num_threads(1)


@pytest.mark.parametrize("settings, num_learners, per_learner, total", [
    ({}, 0, 2000, 2000),  # Neither set: 2000 per learner, as before.
    ({}, 3, 2000, 6000),
    ({"train_batch_size": 4000}, 0, 4000, 4000),  # RLlib's total, split over the learners.
    ({"train_batch_size": 4000}, 2, 2000, 4000),
    ({"train_batch_size": 4000, "train_batch_size_per_learner": 500}, 2, 500, 1000),
])
def test_train_batch_size_is_the_total_split_over_learners(settings, num_learners, per_learner,
                                                           total):
    config = PPOConfig().training(**settings).learners(num_learners=num_learners)
    assert (config.train_batch_size_per_learner, config.total_train_batch_size) == (
        per_learner, total)
    restored = PPOConfig.from_dict(config.to_dict())  # Unset sizes stay unset.
    assert restored.to_dict()["train_batch_size_per_learner"] == settings.get(
        "train_batch_size_per_learner")
    assert restored.learners(num_learners=1).train_batch_size_per_learner == settings.get(
        "train_batch_size_per_learner", settings.get("train_batch_size", 2000))


class RecordingPPOLearner(PPOTorchLearner):
    """Scales its loss by learner_config_dict["loss_scale"] and records it."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch,
                                               fwd_out=fwd_out)
        return loss * config.learner_config_dict["loss_scale"]


def test_train_batch_size_and_learner_config_dict_reach_the_learner():
    algo = (PPOConfig().environment("CartPole-v1")
            .training(train_batch_size=256, minibatch_size=128, num_epochs=1,
                      learner_class=RecordingPPOLearner, learner_config_dict={"loss_scale": 0.0})
            .debugging(seed=0).build_algo())
    try:
        before = algo.learner_group.get_weights()
        results = algo.train()["learners"]
        assert results[ALL_MODULES]["num_env_steps_trained"] == 256
        after = algo.learner_group.get_weights()
        # A zero loss scale from learner_config_dict: no gradient, no weight change.
        assert all(np.array_equal(before["default_policy"][k], v)
                   for k, v in after["default_policy"].items())
    finally:
        algo.stop()


@pytest.mark.parametrize("policies_to_train", [{"p0"}, ["p0"], lambda mid, batch: mid == "p0"])
def test_policies_to_train_collection_or_callable(policies_to_train):
    algo = (VPGConfig().environment(MultiAgentCartPole, env_config={"num_agents": 2})
            .multi_agent(policies={"p0", "p1"}, policies_to_train=policies_to_train,
                         policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
            .training(num_episodes_per_train_batch=2)
            .debugging(seed=0).build_algo())
    try:
        before = algo.learner_group.get_weights()
        results = algo.train()["learners"]
        after = algo.learner_group.get_weights()
        changed = {mid: any(not np.array_equal(before[mid][k], v) for k, v in after[mid].items())
                   for mid in after}
        assert changed == {"p0": True, "p1": False}
        assert "p1" not in results
    finally:
        algo.stop()


class CustomKeysPolicy(TorchRLModule):
    """Reads its own model_config keys."""

    def setup(self):
        self.net = torch.nn.Linear(self.observation_space.shape[0] * self.model_config["repeat"],
                                   self.action_space.n)

    def _forward(self, batch, **kwargs):
        obs = batch[Columns.OBS].repeat(1, self.model_config["repeat"])
        return {Columns.ACTION_DIST_INPUTS: self.net(obs)}


def test_model_config_dict_reaches_a_custom_module_untouched():
    custom = {"repeat": 2, "nested": {"sizes": [3, 4], "name": "x"}}
    algo = (VPGConfig().environment("CartPole-v1")
            .rl_module(rl_module_spec=RLModuleSpec(module_class=CustomKeysPolicy),
                       model_config=custom)
            .build_algo())
    try:
        module = algo.get_module()
        assert {k: module.model_config[k] for k in custom} == custom
        assert algo.env_runner_group.local_env_runner.module["default_policy"].model_config[
            "nested"] == custom["nested"]
        algo.train()
    finally:
        algo.stop()


@pytest.mark.parametrize("call, message", [
    (lambda c: c.training(num_sgd_iter=3), r"'num_sgd_iter' \(an RLlib name\): use "
                                           r"training\(num_epochs=\.\.\.\)"),
    (lambda c: c.training(sgd_minibatch_size=64), r"use training\(minibatch_size=\.\.\.\)"),
    (lambda c: c.training(model={"fcnet_hiddens": [8]}),
     r"'model' \(an RLlib name\): use rl_module\(model_config=\{\.\.\.\}\)"),
    (lambda c: c.env_runners(num_rollout_workers=2), r"use env_runners\(num_env_runners=\.\.\.\)"),
    (lambda c: c.env_runners(num_gpus_per_env_runner=1),
     "'num_gpus_per_env_runner' .*not supported: env runners act on CPU"),
    (lambda c: c.learners(num_gpus=1), r"use learners\(num_gpus_per_learner=\.\.\.\)"),
    (lambda c: c.rl_module(model_config_dict={}), r"use rl_module\(model_config="),
    (lambda c: c.environment(action_space=None), r"RLModuleSpec\(observation_space=\.\.\., "
                                                 r"action_space=\.\.\.\)"),
    (lambda c: c.environment(is_atari=True), r"wrap_atari_for_new_api_stack"),
    (lambda c: c.update_from_dict({"num_sgd_iter": 3}), r"update_from_dict\(\) got an unknown "
                                                        r"key 'num_sgd_iter' \(an RLlib name\)"),
])
def test_refused_rllib_names_say_what_to_use(call, message):
    with pytest.raises(TypeError, match=message):
        call(PPOConfig())


def test_rllib_methods_that_do_not_exist_say_what_to_use():
    with pytest.raises(AttributeError, match=r"no rollouts\(\).*use env_runners\(\)"):
        PPOConfig().rollouts(num_rollout_workers=2)
    with pytest.raises(TypeError, match=r"'num_gpus'.*learners\(num_gpus_per_learner"):
        PPOConfig().resources(num_gpus=1)
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        PPOConfig().no_such_thing


def test_accepted_rllib_names_and_their_checks():
    config = PPOConfig().training(grad_clip_by="global_norm", tau=0.005,
                                  target_network_update_freq=0, learner_config_dict={"a": 1})
    assert (config.tau, config.target_network_update_freq, config.learner_config_dict) == (
        0.005, 0, {"a": 1})
    with pytest.raises(ValueError, match="grad_clip_by='value' is invalid; it must be "
                                         "'global_norm'"):
        PPOConfig().training(grad_clip_by="value")
    with pytest.raises(ValueError, match="tau=1.5 is invalid"):
        PPOConfig().training(tau=1.5)


def test_ppo_default_module_spec_names_the_ppo_catalog():
    assert PPOConfig().get_default_rl_module_spec().catalog_class is PPOCatalog
    spec = PPOConfig().environment("CartPole-v1").get_multi_rl_module_spec()
    assert spec.rl_module_specs["default_policy"].catalog_class is PPOCatalog
