"""AlgorithmConfig: the builder, its errors, and the module spec / runner config it produces."""

import inspect

import gymnasium as gym
import pytest
import torch

from algorithms import AlgorithmConfig
from algorithms.ppo import DefaultPPOTorchRLModule, PPOConfig
from algorithms.vpg import VPGConfig
from rlmodules import (Columns, DefaultModelConfig, MultiRLModuleSpec, RLModuleSpec,
                       TorchRLModule, ValueFunctionAPI)
from runners import EnvRunnerConfig
from runners.envs import MultiAgentCartPole


class PolicyOnly(TorchRLModule):
    """A module without a value function: fine for VPG, not for PPO."""

    def setup(self):
        self.net = torch.nn.Linear(self.observation_space.shape[0], self.action_space.n)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.net(batch[Columns.OBS])}


def test_builder_methods_chain_and_set_values():
    config = (PPOConfig()
              .environment("CartPole-v1", env_config={"a": 1})
              .env_runners(num_env_runners=2, num_envs_per_env_runner=4,
                           num_cpus_per_env_runner=0.5, rollout_fragment_length=50)
              .learners(num_learners=2, num_cpus_per_learner=0.5)
              .training(lr=1e-4, gamma=0.9, train_batch_size_per_learner=1000,
                        minibatch_size=100, num_epochs=3, grad_clip=1.0, lambda_=0.9,
                        clip_param=0.3, use_kl_loss=True)
              .multi_agent(policies={"p0"}, policy_mapping_fn=lambda aid, ep, **kw: "p0")
              .debugging(seed=7)
              .fault_tolerance(restart_failed_env_runners=False, max_num_env_runner_restarts=3)
              .api_stack(enable_rl_module_and_learner=True,
                         enable_env_runner_and_connector_v2=True))
    assert isinstance(config, PPOConfig)
    assert (config.env, config.env_config, config.num_env_runners, config.lr, config.lambda_,
            config.policies, config.seed, config.restart_failed_env_runners) == (
        "CartPole-v1", {"a": 1}, 2, 1e-4, 0.9, {"p0"}, 7, False)
    assert config.total_train_batch_size == 2000


@pytest.mark.parametrize("call, message", [
    (lambda c: c.training(lrr=0.1), r"training\(\) got an unknown key 'lrr'; did you mean 'lr'"),
    (lambda c: c.env_runners(num_env_runner=2), "unknown key 'num_env_runner'; did you mean"),
    (lambda c: c.environment("CartPole-v1", envconfig={}), "unknown key 'envconfig'"),
    (lambda c: c.learners(num_gpus=1), "unknown key 'num_gpus'"),
    (lambda c: c.rl_module(spec=None), "unknown key 'spec'"),
    (lambda c: c.multi_agent(policy_map=None), "unknown key 'policy_map'"),
    (lambda c: c.debugging(sed=1), "unknown key 'sed'; did you mean 'seed'"),
])
def test_unknown_keys_are_named(call, message):
    with pytest.raises(TypeError, match=message):
        call(PPOConfig())


@pytest.mark.parametrize("call, message", [
    (lambda c: c.training(lr=-1.0), "lr=-1.0 is invalid; it must be a number > 0"),
    (lambda c: c.training(gamma=1.5), "gamma=1.5 is invalid"),
    (lambda c: c.training(num_epochs=0), "num_epochs=0 is invalid"),
    (lambda c: c.training(minibatch_size=2.5), "minibatch_size=2.5 is invalid"),
    (lambda c: c.env_runners(num_env_runners=-1), "num_env_runners=-1 is invalid"),
    (lambda c: c.env_runners(num_envs_per_env_runner=True), "num_envs_per_env_runner=True"),
    (lambda c: c.learners(num_learners="2"), "num_learners='2' is invalid"),
    (lambda c: c.multi_agent(policies="p0"), "policies='p0' is invalid"),
    (lambda c: c.rl_module(rl_module_spec=PolicyOnly), "rl_module_spec=.* is invalid"),
    (lambda c: c.api_stack(enable_rl_module_and_learner=False), "only has the RLModule"),
    (lambda c: c.framework("tf2"), "framework='tf2' is not supported"),
])
def test_invalid_values_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call(PPOConfig())


def test_cross_key_checks_run_at_build():
    with pytest.raises(ValueError, match="no env set"):
        PPOConfig().build_algo()
    config = PPOConfig().environment("CartPole-v1").training(
        train_batch_size_per_learner=100, minibatch_size=200)
    with pytest.raises(ValueError, match=r"minibatch_size \(200\) is larger than "
                                         r"train_batch_size_per_learner \(100\)"):
        config.build_algo()
    with pytest.raises(ValueError, match="no algo_class"):
        AlgorithmConfig().environment("CartPole-v1").build_algo()
    with pytest.raises(TypeError, match="learner_class dict is not a subclass of "
                                        "learners.Learner"):
        PPOConfig().environment("CartPole-v1").training(learner_class=dict).build_algo()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="num_gpus_per_learner=1 but torch sees no CUDA"):
            PPOConfig().environment("CartPole-v1").learners(num_gpus_per_learner=1).build_algo()


def test_module_spec_is_completed_from_env_and_algorithm_default():
    spec = PPOConfig().environment("CartPole-v1").get_multi_rl_module_spec()
    sub = spec.rl_module_specs["default_policy"]
    assert sub.module_class is DefaultPPOTorchRLModule
    assert sub.observation_space.shape == (4,) and sub.action_space == gym.spaces.Discrete(2)
    assert sub.model_config == {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"}


def test_model_config_dict_updates_the_default_and_dataclass_replaces_it():
    merged = PPOConfig().rl_module(model_config={"fcnet_hiddens": [8]}).effective_model_config()
    assert merged == {"fcnet_hiddens": [8], "fcnet_activation": "tanh"}
    replaced = DefaultModelConfig(fcnet_hiddens=[32])
    assert PPOConfig().rl_module(model_config=replaced).effective_model_config() is replaced


def test_user_spec_keeps_its_class_and_config():
    spec = (VPGConfig().environment("CartPole-v1")
            .rl_module(rl_module_spec=RLModuleSpec(module_class=PolicyOnly, model_config={"k": 1}))
            .get_multi_rl_module_spec())
    sub = spec.rl_module_specs["default_policy"]
    assert (sub.module_class, sub.model_config) == (PolicyOnly, {"k": 1})


def test_multi_agent_policies_each_get_a_spec_with_their_agents_spaces():
    config = (PPOConfig().environment(MultiAgentCartPole, env_config={"num_agents": 2})
              .multi_agent(policies={"p0", "p1"},
                           policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
              .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={
                  "p0": RLModuleSpec(model_config={"fcnet_hiddens": [8]})})))
    specs = config.get_multi_rl_module_spec().rl_module_specs
    assert sorted(specs) == ["p0", "p1"]
    assert specs["p0"].model_config == {"fcnet_hiddens": [8]}
    assert specs["p1"].module_class is DefaultPPOTorchRLModule  # No spec given: the default.
    assert all(s.observation_space.shape == (4,) for s in specs.values())


def test_ppo_requires_the_value_function_api_at_build():
    assert PPOConfig().get_default_learner_class().rl_module_required_apis() == [ValueFunctionAPI]
    config = PPOConfig().environment("CartPole-v1").rl_module(
        rl_module_spec=RLModuleSpec(module_class=PolicyOnly))
    with pytest.raises(TypeError, match="Module 'default_policy' .*PolicyOnly.* does not "
                                        "implement ValueFunctionAPI"):
        config.build_algo()


def test_env_runner_config_carries_the_settings():
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=5,
                           env_runner_start_timeout_s=7.5, num_torch_threads=2)
              .training(train_batch_size_per_learner=1000, minibatch_size=100)
              .fault_tolerance(max_num_env_runner_restarts=4)
              .debugging(seed=3))
    runner_config = config.env_runner_config()
    # "auto": one sample() of all runners (2 runners x 5 envs) fills one train batch.
    assert runner_config.rollout_fragment_length == 100
    assert (runner_config.env, runner_config.num_env_runners,
            runner_config.num_envs_per_env_runner, runner_config.seed) == ("CartPole-v1", 2, 5, 3)
    assert (runner_config.env_runner_start_timeout_s, runner_config.num_torch_threads,
            runner_config.max_num_env_runner_restarts, runner_config.module_ids) == (
        7.5, 2, 4, ["default_policy"])
    config.env_config["x"] = 1  # The runners' config is a copy.
    assert runner_config.env_config == {}


def test_env_runner_config_built_directly_checks_its_values():
    with pytest.raises(ValueError, match="rollout_fragment_length='auto' needs a train batch"):
        EnvRunnerConfig(env="CartPole-v1")
    with pytest.raises(ValueError, match="EnvRunnerConfig: num_envs_per_env_runner=0 is invalid"):
        EnvRunnerConfig(env="CartPole-v1", rollout_fragment_length=10, num_envs_per_env_runner=0)


def test_copy_is_independent():
    config = PPOConfig().environment("CartPole-v1", env_config={"x": [1]})
    clone = config.copy()
    clone.env_config["x"].append(2)
    clone.training(lr=0.5)
    assert config.env_config == {"x": [1]} and config.lr != 0.5


def test_algorithm_configs_override_shared_defaults_and_add_their_own_keys():
    base, ppo, vpg = AlgorithmConfig(), PPOConfig(), VPGConfig()
    assert (base.lr, base.num_envs_per_env_runner, base.rollout_fragment_length) == (
        1e-3, 1, "auto")
    assert (ppo.lr, ppo.num_envs_per_env_runner, ppo.minibatch_size, ppo.lambda_) == (
        3e-3, 8, 500, 0.95)
    assert (vpg.lr, vpg.rollout_fragment_length, vpg.minibatch_size) == (1e-2, 50, None)
    assert not hasattr(base, "lambda_") and not hasattr(vpg, "lambda_")
    with pytest.raises(TypeError, match="unknown key 'lambda_'"):
        VPGConfig().training(lambda_=0.9)
    assert ppo.env_config is not PPOConfig().env_config  # Mutable defaults are per config.


def test_builder_methods_are_introspectable_and_settings_are_plain_attributes():
    params = inspect.signature(PPOConfig().training).parameters
    assert {"lr", "lambda_", "normalize_advantages"} <= set(params)
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    assert "lambda_" in PPOConfig.training.__doc__
    assert "lambda_" not in AlgorithmConfig.training.__doc__
    assert PPOConfig().environment(env="CartPole-v1").env == "CartPole-v1"
    with pytest.raises(TypeError, match="environment\\(\\) got 2 positional arguments"):
        PPOConfig().environment("CartPole-v1", {})
    config = PPOConfig().env_runners(num_env_runners=3)
    assert vars(config)["num_env_runners"] == 3 and "lambda_" in vars(config)


def test_to_dict_round_trips_through_from_dict():
    config = (PPOConfig().environment("CartPole-v1", env_config={"a": [1]})
              .env_runners(num_env_runners=2, env_runner_start_timeout_s=9.0)
              .training(lr=1e-4, lambda_=0.9, normalize_advantages=None)
              .multi_agent(policies=["p0", "p1"], policies_to_train=["p0"])
              .debugging(seed=5))
    as_dict = config.to_dict()
    assert as_dict["lr"] == 1e-4 and as_dict["lambda_"] == 0.9 and "algo_class" not in as_dict
    assert as_dict["policies"] == {"p0", "p1"} and as_dict["policies_to_train"] == {"p0"}
    restored = PPOConfig.from_dict(as_dict)
    assert isinstance(restored, PPOConfig) and restored.to_dict() == as_dict
    as_dict["env_config"]["a"].append(2)  # A copy: the config keeps its own values.
    assert config.env_config == {"a": [1]}
    assert PPOConfig().update_from_dict({"num_epochs": 2}).num_epochs == 2


@pytest.mark.parametrize("config_dict, error, message", [
    ({"lrr": 0.1}, TypeError, r"update_from_dict\(\) got an unknown key 'lrr'; did you mean 'lr'"),
    ({"lambda": 0.9}, TypeError, "did you mean 'lambda_'"),
    ({"num_epochs": 0}, ValueError, "num_epochs=0 is invalid; it must be an int >= 1"),
    ({"policies": "p0"}, ValueError, "policies='p0' is invalid"),
])
def test_from_dict_checks_keys_and_values_as_the_builders_do(config_dict, error, message):
    with pytest.raises(error, match=message):
        PPOConfig.from_dict(config_dict)
