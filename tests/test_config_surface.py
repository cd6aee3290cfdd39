"""RLlib's config surface: repr, resources/checkpointing/experimental, batch_mode,
gym_env_vectorize_mode, lr and entropy schedules, save/restore, env_runner and the resource
request a Tune trial makes."""

import functools
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms import Algorithm
from algorithms.algorithm import TrainingResult
from algorithms.ppo import PPO, PPOConfig


def small_config(**training) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1").debugging(seed=0)
            .env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size_per_learner=64, minibatch_size=64, num_epochs=1,
                      **training))


def test_repr_names_class_and_changed_settings_only():
    assert repr(PPOConfig()) == "PPOConfig()"
    config = PPOConfig().environment("CartPole-v1").training(lr=3e-4)
    assert repr(config) == "PPOConfig(env='CartPole-v1', lr=0.0003)"
    assert config.non_default_settings() == {"env": "CartPole-v1", "lr": 3e-4}


def test_resources_checkpointing_experimental_are_settings_with_hints():
    config = (PPOConfig().resources(num_cpus_for_main_process=2, placement_strategy="SPREAD")
              .checkpointing(export_native_model_files=True)
              .experimental(_torch_lr_scheduler_classes=[torch.optim.lr_scheduler.StepLR]))
    assert config.num_cpus_for_main_process == 2 and config.placement_strategy == "SPREAD"
    assert config.export_native_model_files is True
    assert config.to_dict()["_torch_lr_scheduler_classes"] == [torch.optim.lr_scheduler.StepLR]
    with pytest.raises(TypeError, match=r"'num_gpus'.*learners\(num_gpus_per_learner"):
        config.resources(num_gpus=1)
    with pytest.raises(TypeError, match=r"'num_cpus_per_learner_worker'.*num_cpus_per_learner"):
        config.resources(num_cpus_per_learner_worker=1)
    with pytest.raises(ValueError, match="placement_strategy='TIGHT'.*'STRICT_PACK'"):
        config.resources(placement_strategy="TIGHT")
    with pytest.raises(ValueError, match="_torch_lr_scheduler_classes"):
        config.experimental(_torch_lr_scheduler_classes=torch.optim.lr_scheduler.StepLR)
    with pytest.raises(TypeError, match=r"'lr_schedule'.*training\(lr=\[\[timestep"):
        config.training(lr_schedule=[[0, 1e-3]])


def test_grad_clip_by_other_than_global_norm_is_refused():
    assert PPOConfig().training(grad_clip_by="global_norm").grad_clip_by == "global_norm"
    with pytest.raises(ValueError, match="grad_clip_by='value'.*'global_norm'"):
        PPOConfig().training(grad_clip_by="value")


def test_gym_env_vectorize_mode_sync_only():
    assert PPOConfig().env_runners(gym_env_vectorize_mode=gym.VectorizeMode.SYNC)
    assert PPOConfig().env_runners(gym_env_vectorize_mode="SYNC").gym_env_vectorize_mode == "SYNC"
    with pytest.raises(ValueError, match="gym_env_vectorize_mode='ASYNC'.*num_env_runners"):
        PPOConfig().env_runners(gym_env_vectorize_mode="ASYNC")
    with pytest.raises(ValueError, match="gym_env_vectorize_mode"):
        PPOConfig().env_runners(gym_env_vectorize_mode=gym.VectorizeMode.ASYNC)


def test_lr_schedule_is_checked_and_interpolated_over_trained_steps():
    with pytest.raises(ValueError, match=r"lr=\[\[10, 0.001\]\].*starting at timestep 0"):
        PPOConfig().training(lr=[[10, 1e-3]])
    with pytest.raises(ValueError, match="lr="):
        PPOConfig().training(lr=[[0, 1e-3], [100, -1.0]])
    algo = small_config(lr=[[0, 1e-3], [128, 1e-4]]).build_algo()
    try:
        lrs = [algo.train()["learners"]["default_policy"]["default_optimizer_lr"]
               for _ in range(2)]
        optimizer = algo.learner_group.foreach_learner(
            lambda learner: learner.get_optimizer("default_policy"))[0]
    finally:
        algo.stop()
    assert lrs == pytest.approx([np.interp(64, [0, 128], [1e-3, 1e-4]), 1e-4])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_entropy_coeff_schedule():
    with pytest.raises(ValueError, match="entropy_coeff="):
        PPOConfig().training(entropy_coeff=[[0, -0.1]])
    algo = small_config(entropy_coeff=[[0, 0.01], [128, 0.0]]).build_algo()
    try:
        learner = algo.learner_group.foreach_learner(lambda learner: learner)[0]
        assert learner.entropy_coeff == pytest.approx(0.01)
        coeffs = [algo.train()["learners"]["default_policy"]["curr_entropy_coeff"]
                  for _ in range(2)]
    finally:
        algo.stop()
    assert coeffs == pytest.approx([0.005, 0.0])


def test_torch_lr_scheduler_classes_step_the_optimizer():
    config = small_config(lr=1e-3).experimental(_torch_lr_scheduler_classes=[
        functools.partial(torch.optim.lr_scheduler.ExponentialLR, gamma=0.5)])
    algo = config.build_algo()
    try:
        lrs = [algo.train()["learners"]["default_policy"]["default_optimizer_lr"]
               for _ in range(2)]
    finally:
        algo.stop()
    assert lrs == pytest.approx([5e-4, 2.5e-4])


def test_complete_episodes_returns_whole_episodes_of_at_least_the_timesteps():
    config = small_config().env_runners(batch_mode="complete_episodes",
                                        rollout_fragment_length=10)
    algo = config.build_algo()
    try:
        runner = algo.env_runner
        for _ in range(2):
            fragments = runner.sample(num_timesteps=60)
            assert sum(len(f) for f in fragments) >= 60
            assert all(f.terminated or f.truncated for f in fragments)
            assert len({f.episode_id for f in fragments}) == len(fragments)
            # Each fragment starts at its episode's reset (CartPole starts near 0).
            assert all(np.abs(f.columns["obs"][0]).max() <= 0.05 for f in fragments)
        result = algo.train()
    finally:
        algo.stop()
    assert result["learners"]["__all_modules__"]["num_env_steps_trained"] >= 64


def test_truncate_episodes_cuts_at_the_timesteps():
    algo = small_config().build_algo()
    try:
        fragments = algo.env_runner.sample(num_timesteps=60)
    finally:
        algo.stop()
    assert sum(len(f) for f in fragments) == 60
    assert not all(f.terminated or f.truncated for f in fragments)


def test_save_restore_and_env_runner(tmp_path):
    algo = small_config().build_algo()
    try:
        assert algo.env_runner is algo.env_runner_group.local_env_runner is not None
        algo.train()
        saved = algo.save(str(tmp_path / "ckpt"))
        assert isinstance(saved, TrainingResult) and os.path.isdir(saved.checkpoint.path)
        weights = algo.learner_group.get_weights()
        algo.train()
        algo.restore(saved)
        assert algo.training_iteration == 1
        restored = algo.learner_group.get_weights()
        assert all(np.array_equal(weights["default_policy"][k], restored["default_policy"][k])
                   for k in weights["default_policy"])
        algo.restore(saved.checkpoint.path)  # A plain path works too.
        default_dir = algo.save().checkpoint.path
        assert os.path.isdir(default_dir) and "checkpoint_000001" in default_dir
    finally:
        algo.stop()
    loaded = Algorithm.from_checkpoint(saved.checkpoint.path)
    try:
        assert loaded.training_iteration == 1
    finally:
        loaded.stop()


def test_default_resource_request():
    local = PPOConfig().learners(num_cpus_per_learner=2)
    assert PPO.default_resource_request(local) == [{"CPU": 2, "GPU": 0}]
    config = (PPOConfig().resources(num_cpus_for_main_process=0.5)
              .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.25)
              .evaluation(evaluation_num_env_runners=1)
              .learners(num_learners=2, num_cpus_per_learner=3))
    expected = [{"CPU": 0.5, "GPU": 0}, {"CPU": 0.25, "GPU": 0}, {"CPU": 0.25, "GPU": 0},
                {"CPU": 0.25, "GPU": 0}, {"CPU": 3, "GPU": 0}, {"CPU": 3, "GPU": 0}]
    assert PPO.default_resource_request(config) == expected
    assert PPO.default_resource_request(config.to_dict()) == expected


def test_search_spaces_inside_module_specs_are_resolved_by_tune():
    from ray.tune.search.variant_generator import generate_variants

    from rlmodules import MultiRLModuleSpec, RLModuleSpec

    spec = MultiRLModuleSpec(rl_module_specs={
        "p0": RLModuleSpec(model_config={"fcnet_hiddens": {"grid_search": [[8], [16]]}}),
        "p1": RLModuleSpec(model_config={"fcnet_hiddens": [4]})})
    config = PPOConfig().environment("CartPole-v1").rl_module(rl_module_spec=spec)
    as_dict = config.to_dict()
    assert as_dict["rl_module_spec"]["_spec_class"] == "MultiRLModuleSpec"
    trials = [resolved for _, resolved in generate_variants(as_dict)]
    assert len(trials) == 2  # Tune saw the grid inside the spec.
    hidden = []
    for trial in trials:
        restored = PPOConfig.from_dict(trial).rl_module_spec
        assert isinstance(restored, MultiRLModuleSpec)
        assert isinstance(restored.rl_module_specs["p0"], RLModuleSpec)
        assert restored.rl_module_specs["p1"].model_config == {"fcnet_hiddens": [4]}
        hidden.append(restored.rl_module_specs["p0"].model_config["fcnet_hiddens"])
    assert sorted(hidden) == [[8], [16]]
    assert PPOConfig.from_dict(PPOConfig().rl_module(
        rl_module_spec=RLModuleSpec(model_config={"a": 1})).to_dict()).rl_module_spec == \
        RLModuleSpec(model_config={"a": 1})
