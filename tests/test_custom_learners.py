"""Custom learners as RLlib users write them: optimizers, lr schedules and schedulers,
self.metrics, and the learner's result keys (__all_modules__, env steps, vf_explained_var)."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.ppo import DefaultPPOTorchRLModule, PPOConfig, PPOTorchLearner
from algorithms.ppo.ppo_torch_learner import explained_variance
from learners import ALL_MODULES, DEFAULT_OPTIMIZER
from learners.distributed import reduce_metrics
from rlmodules import MultiRLModuleSpec, RLModuleSpec
from runners.fragment import count_env_steps
from test_learner_support import (BCLearner, TinyActorCritic, build_learner, make_fragments,
                                  spec_for)
from test_ppo_learner import bandit_fragments, prob_of_action_0

torch.set_num_threads(1)

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Discrete(2)


# ---- RLlib's example learners, with imports changed -----------------------------------------

class PPOTorchLearnerWithSeparateVfOptimizer(PPOTorchLearner):
    """RLlib's examples/learners/classes/separate_vf_lr_and_optimizer_learner.py."""

    def configure_optimizers_for_module(self, module_id, config=None):
        module = self.module[module_id]
        pi_params = (self.get_parameters(module.encoder.actor_encoder)
                     + self.get_parameters(module.pi))
        self.register_optimizer(module_id=module_id, optimizer_name="optim_for_pi",
                                optimizer=torch.optim.Adam(params=pi_params), params=pi_params,
                                lr_or_lr_schedule=config.lr)
        vf_params = (self.get_parameters(module.encoder.critic_encoder)
                     + self.get_parameters(module.vf))
        self.register_optimizer(module_id=module_id, optimizer_name="optim_for_vf",
                                optimizer=torch.optim.Adam(params=vf_params), params=vf_params,
                                lr_or_lr_schedule=config.learner_config_dict.get("lr_vf", config.lr))


class PPOTorchLearnerWithWeightRegularizerLoss(PPOTorchLearner):
    """RLlib's examples/learners/classes/custom_ppo_loss_fn_learner.py."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        base_total_loss = super().compute_loss_for_module(
            module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        parameters = self.get_parameters(self.module[module_id])
        mean_weight = torch.mean(torch.stack([w.mean() for w in parameters]))
        self.metrics.log_value(key=(module_id, "mean_weight"), value=mean_weight, window=1)
        self.metrics.log_value((module_id, "mean_weight_ema"), mean_weight)  # reduce="mean"
        return base_total_loss + config.learner_config_dict["regularizer_coeff"] * mean_weight


def ppo_learner(learner_class, **training):
    config = PPOConfig().training(**{"train_batch_size_per_learner": 256, "minibatch_size": 64,
                                     **training}).debugging(seed=0)
    learner = learner_class(config=config, module_spec=MultiRLModuleSpec(rl_module_specs={
        "default_policy": RLModuleSpec(module_class=DefaultPPOTorchRLModule,
                                       observation_space=OBS, action_space=ACT,
                                       model_config={"fcnet_hiddens": [16]})}))
    learner.build()
    return learner


def test_separate_value_function_optimizer_with_its_own_lr_trains_and_steps_both():
    learner = ppo_learner(PPOTorchLearnerWithSeparateVfOptimizer, lr=3e-3, num_epochs=2,
                          grad_clip=100.0, learner_config_dict={"lr_vf": 0.02})
    names = [name for name, _ in learner.get_optimizers_for_module("default_policy")]
    assert names == ["optim_for_pi", "optim_for_vf"]
    assert learner.get_optimizer("default_policy", "optim_for_vf").param_groups[0]["lr"] == 0.02
    before = prob_of_action_0(learner)
    for i in range(5):
        results = learner.update(bandit_fragments(learner, seed=i))
    assert prob_of_action_0(learner) > before + 0.15
    metrics = results["default_policy"]
    assert metrics["optim_for_pi_lr"] == 3e-3 and metrics["optim_for_vf_lr"] == 0.02
    assert metrics["gradients_optim_for_pi_global_norm"] > 0
    assert metrics["gradients_optim_for_vf_global_norm"] > 0
    optimizers = learner.get_state("optimizer")["optimizer"]
    assert sorted(optimizers) == ["default_policy_optim_for_pi", "default_policy_optim_for_vf"]
    for state in optimizers.values():  # 5 updates x 2 epochs x 4 minibatches each.
        assert {float(s["step"]) for s in state["state"].values()} == {40.0}


def test_separate_optimizers_are_checkpointed_with_the_algorithm(tmp_path):
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_envs_per_env_runner=2)
              .training(learner_class=PPOTorchLearnerWithSeparateVfOptimizer,
                        learner_config_dict={"lr_vf": 0.02}, train_batch_size_per_learner=128,
                        minibatch_size=64, num_epochs=1)
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path / "ckpt"))
        saved = algo.learner_group.get_state("learner/optimizer")["learner"]["optimizer"]
    finally:
        algo.stop()
    restored = config.build_algo()
    try:
        restored.restore_from_path(str(tmp_path / "ckpt"))
        loaded = restored.learner_group.get_state("learner/optimizer")["learner"]["optimizer"]
    finally:
        restored.stop()
    assert sorted(loaded) == ["default_policy_optim_for_pi", "default_policy_optim_for_vf"]
    for name, state in saved.items():
        assert loaded[name]["param_groups"][0]["lr"] == state["param_groups"][0]["lr"]
        for key, moments in state["state"].items():
            np.testing.assert_array_equal(loaded[name]["state"][key]["exp_avg"],
                                          moments["exp_avg"])


def test_metrics_log_value_in_the_loss_reaches_the_results_per_module():
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_envs_per_env_runner=2)
              .training(learner_class=PPOTorchLearnerWithWeightRegularizerLoss,
                        learner_config_dict={"regularizer_coeff": 0.1},
                        train_batch_size_per_learner=128, minibatch_size=64, num_epochs=1)
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        results = [algo.train()["learners"] for _ in range(2)]
        learner = algo.learner_group.foreach_learner(lambda learner: learner)[0]
        module = learner.module["default_policy"]
        with torch.no_grad():
            mean_weight = torch.stack([w.mean() for w in learner.get_parameters(module)]).mean()
    finally:
        algo.stop()
    metrics = results[-1]["default_policy"]
    assert type(metrics["mean_weight"]) is float and np.isfinite(metrics["mean_weight_ema"])
    # window=1: the last minibatch's value, i.e. the weights before the last step.
    assert metrics["mean_weight"] == pytest.approx(float(mean_weight), abs=1e-2)
    assert metrics["mean_weight"] != results[0]["default_policy"]["mean_weight"]
    assert results[-1][ALL_MODULES]["num_env_steps_trained"] == 128


# ---- register_optimizer ------------------------------------------------------------------------

class TwoOptimizerBC(BCLearner):
    """Policy and value head with their own optimizers (the value head gets no gradient)."""

    def configure_optimizers_for_module(self, module_id, config):
        module = self.module[module_id]
        for name, net in (("pi_optim", module.pi), ("vf_optim", module.vf)):
            params = self.get_parameters(net)
            self.register_optimizer(module_id=module_id, optimizer_name=name,
                                    optimizer=torch.optim.SGD(params, lr=0.5), params=params)


def test_register_optimizer_keyword_api_and_its_errors():
    learner = build_learner(TwoOptimizerBC, grad_clip=100.0)
    assert [n for n, _ in learner.get_optimizers_for_module("default_policy")] == [
        "pi_optim", "vf_optim"]
    optimizer = learner.get_optimizer("default_policy", "pi_optim")
    assert learner.get_optimizer(optimizer_name="default_policy_pi_optim") is optimizer
    assert optimizer.param_groups[0]["lr"] == 0.5  # No lr_or_lr_schedule: its own lr.
    results = learner.update(make_fragments(2, 8))["default_policy"]
    assert results["pi_optim_lr"] == 0.5 and "gradients_pi_optim_global_norm" in results
    assert "gradients_vf_optim_global_norm" not in results  # No gradient: not stepped.
    assert DEFAULT_OPTIMIZER == "default_optimizer"
    params = learner.get_parameters(learner.module["default_policy"].pi)
    with pytest.raises(ValueError, match="already registered as 'pi_optim' of 'default_policy'"):
        learner.register_optimizer(module_id="default_policy", optimizer_name="pi_optim",
                                   optimizer=torch.optim.SGD(params, lr=1.0), params=params)
    with pytest.raises(TypeError, match="must be a torch.optim.Optimizer, got list"):
        learner.register_optimizer(module_id="x", optimizer=params, params=params)
    with pytest.raises(TypeError):  # RLlib's signature is keyword-only.
        learner.register_optimizer("x", torch.optim.SGD(params, lr=1.0), params)
    with pytest.raises(ValueError, match=r"'x_default_optimizer'.*starting at timestep 0"):
        learner.register_optimizer(module_id="x", optimizer=torch.optim.SGD(params, lr=1.0),
                                   params=params, lr_or_lr_schedule=[[10, 1e-3], [20, 1e-4]])
    with pytest.raises(KeyError, match=r"No optimizer 'nope'.*'default_policy_pi_optim'"):
        learner.get_optimizer("default_policy", "nope")


# ---- learning-rate schedules and torch lr schedulers -----------------------------------------

def lr_of(learner):
    return learner.get_optimizer().param_groups[0]["lr"]


def test_piecewise_lr_schedule_follows_the_trained_env_steps_and_is_checkpointed():
    schedule = [[0, 1e-2], [64, 1e-3]]
    learner = build_learner(lr=schedule)  # Each update trains 32 env steps.
    assert lr_of(learner) == pytest.approx(1e-2)
    reported = [learner.update(make_fragments(2, 16))["default_policy"]["default_optimizer_lr"]
                for _ in range(3)]
    assert reported == pytest.approx([5.5e-3, 1e-3, 1e-3])  # Beyond the last point: its lr.
    assert lr_of(learner) == pytest.approx(1e-3)
    half_way = build_learner(lr=schedule)
    half_way.update(make_fragments(2, 16))
    restored = build_learner(lr=schedule)
    restored.set_state(half_way.get_state())  # Lifetime steps come along: 32 trained.
    restored.update(make_fragments(2, 16))
    assert lr_of(restored) == pytest.approx(1e-3)


class LambdaLRLearner(BCLearner):
    """A torch lr scheduler built from learner_config_dict values."""

    def configure_optimizers_for_module(self, module_id, config):
        super().configure_optimizers_for_module(module_id, config)
        decay = config.learner_config_dict["lr_decay"]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.get_optimizer(module_id), lambda update: decay ** update)
        self.register_lr_scheduler(module_id=module_id, scheduler=scheduler)


def test_torch_lr_scheduler_from_learner_config_dict_steps_once_per_update():
    kwargs = dict(learner_config_dict={"lr_decay": 0.5}, num_epochs=3, minibatch_size=8,
                  train_batch_size_per_learner=32)  # 12 optimizer steps per update.
    learner = build_learner(LambdaLRLearner, **kwargs)
    for k in (1, 2, 3):
        metrics = learner.update(make_fragments(2, 16))["default_policy"]
        assert metrics["default_optimizer_lr"] == pytest.approx(1e-2 * 0.5 ** k)
    restored = build_learner(LambdaLRLearner, **kwargs)
    restored.set_state(learner.get_state())  # The scheduler's epoch, not only the lr.
    restored.update(make_fragments(2, 16))
    assert lr_of(restored) == pytest.approx(1e-2 * 0.5 ** 4)
    with pytest.raises(ValueError, match="built on another optimizer"):
        other = torch.optim.SGD(learner.get_parameters(learner.module), lr=1.0)
        learner.register_lr_scheduler(module_id="default_policy",
                                      scheduler=torch.optim.lr_scheduler.StepLR(other, 1))


def test_torch_lr_scheduler_classes_from_the_config():
    # RLlib: config.experimental(_torch_lr_scheduler_classes=[...]), applied in sequence.
    learner = build_learner(_torch_lr_scheduler_classes=[
        functools.partial(torch.optim.lr_scheduler.ConstantLR, factor=0.5, total_iters=2),
        functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.9)])
    lrs = [learner.update(make_fragments(2, 16))["default_policy"]["default_optimizer_lr"]
           for _ in range(3)]
    assert lrs == pytest.approx([1e-2 * 0.5 * 0.9, 1e-2 * 0.9 ** 2, 1e-2 * 0.9 ** 3])


# ---- result keys -----------------------------------------------------------------------------

def agent_fragments(episode_id, lengths, module_ids):
    """One fragment per agent of one multi-agent episode."""
    fragments = []
    for agent, (length, mid) in enumerate(zip(lengths, module_ids)):
        fragment = make_fragments(1, length, mid, seed=agent)[0]
        fragment.agent_id, fragment.episode_id = agent, episode_id
        fragments.append(fragment)
    return fragments


def test_env_steps_count_a_step_of_several_agents_once():
    first = agent_fragments("e0", [10, 10], ["p0", "p1"])
    second = agent_fragments("e1", [4, 6], ["p0", "p0"])  # One agent left early.
    split = make_fragments(2, 5)  # Single-agent: one episode in two fragments.
    for fragment in split:
        fragment.episode_id = "e2"
    assert count_env_steps(first + second + split) == 10 + 6 + 10
    learner = build_learner(spec=spec_for(p0=TinyActorCritic, p1=TinyActorCritic))
    results = learner.update(first + second)
    assert results[ALL_MODULES]["num_env_steps_trained"] == 16
    assert results[ALL_MODULES]["num_module_steps_trained"] == 30
    assert (results["p0"]["num_module_steps_trained"], results["p1"][
        "num_module_steps_trained"]) == (20, 10)
    assert ALL_MODULES == "__all_modules__" and "__all__" not in results


def test_nested_metrics_reduce_over_learners():
    reduced = reduce_metrics([
        {"p0": {"loss": 1.0, "n": 2, "extra": {"x": 1.0}}, ALL_MODULES: {"steps": 5}},
        {"p0": {"loss": 3.0, "n": 3, "extra": {"x": 2.0}, "hist": [1]},
         "p1": {"loss": 2.0, "hist": [2]}}])
    assert reduced == {"p0": {"loss": 2.0, "n": 5, "extra": {"x": 1.5}, "hist": [1]},
                       ALL_MODULES: {"steps": 5}, "p1": {"loss": 2.0, "hist": [2]}}


def test_explained_variance():
    targets = torch.linspace(-2.0, 3.0, 50)
    assert float(explained_variance(targets, targets)) == pytest.approx(1.0)
    assert float(explained_variance(targets, targets.mean().expand(50))) == pytest.approx(
        0.0, abs=1e-5)
    assert float(explained_variance(targets, -5 * targets)) == -1.0  # Clipped below.
    noisy = targets + 0.3 * torch.randn(50, generator=torch.Generator().manual_seed(0))
    assert 0.9 < float(explained_variance(targets, noisy)) < 1.0
    # Padded steps of sequences do not count.
    mask = torch.tensor([[True, True, False], [True, True, True]])
    padded = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    predictions = padded.clone()
    predictions[0, 2] = -100.0
    assert float(explained_variance(padded, predictions, mask)) == pytest.approx(1.0)


def test_ppo_reports_vf_explained_var_rising_as_the_value_fn_learns():
    learner = ppo_learner(PPOTorchLearner, lr=1e-3, num_epochs=1)
    explained = []
    for i in range(15):  # One-step episodes paying obs[0]: a value fn can predict it all.
        fragments = bandit_fragments(learner, seed=i)
        for fragment in fragments:
            fragment.columns["rewards"] = fragment.columns["obs"][:, 0].copy()
        explained.append(learner.update(fragments)["default_policy"]["vf_explained_var"])
    assert all(-1.0 <= v <= 1.0 for v in explained)
    assert explained[-1] > max(0.7, explained[0] + 0.25)
