"""PPO's default CNN on uint8 image fragments, its fused forward, and the learner's device."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.ppo import PPOConfig
from rlmodules import Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.encoders import CNNEncoder

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class UInt8Frames(gym.Env):
    """[84, 84, 4] uint8 frames, all dark or all bright; action 1 pays on bright ones."""

    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, env_config: dict | None = None) -> None:
        self._bright, self._t = False, 0

    def _frame(self) -> np.ndarray:
        return np.full(self.observation_space.shape, 200 if self._bright else 30, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._bright, self._t = bool(self.np_random.integers(2)), 0
        return self._frame(), {}

    def step(self, action):
        reward = float(int(action) == int(self._bright))
        self._bright, self._t = bool(self.np_random.integers(2)), self._t + 1
        return self._frame(), reward, False, self._t >= 16, {}


def image_config(**learners) -> PPOConfig:
    return (PPOConfig().environment(UInt8Frames)
            .env_runners(num_envs_per_env_runner=2)
            .training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1)
            .learners(**learners).debugging(seed=0))


def test_default_cnn_trains_on_uint8_frames_kept_uint8_until_the_module():
    algo = image_config().build_algo()
    try:
        learner = algo.learner_group.foreach_learner(lambda learner: learner)[0]
        module = learner.module["default_policy"]
        assert isinstance(module.encoder.actor_encoder, CNNEncoder)
        fragments = algo.env_runner.sample(num_timesteps=64)
        assert all(f.columns[Columns.OBS].dtype == np.uint8 for f in fragments)
        batch = learner.build_module_batch("default_policy", fragments)
        assert batch[Columns.OBS].dtype == torch.uint8  # 4x less to copy than float32.
        before = algo.get_module().get_state()
        result = algo.train()
        metrics = result["learners"]["default_policy"]
        assert np.isfinite([metrics["policy_loss"], metrics["vf_loss"]]).all()
        assert result["learners"]["__all_modules__"]["num_env_steps_trained"] == 64
        after = algo.get_module().get_state()
        assert any(not np.array_equal(before[k], after[k]) for k in before)
    finally:
        algo.stop()


@pytest.mark.parametrize("shape, filters", [
    ((84, 84, 4), None),                                  # the default: folded and plain pads
    ((12, 10, 3), [[4, 3, 2], [6, 3, 1, "valid"], [5, [3, 1], [2, 1], 1]]),
])
def test_cnn_encoder_forward_computes_what_its_layers_do(shape, filters):
    torch.manual_seed(0)
    encoder = CNNEncoder(shape, DefaultModelConfig(conv_filters=filters))
    images = torch.rand(5, *shape, requires_grad=True)
    fused = encoder({Columns.OBS: images})["encoder_out"]
    fused.square().sum().backward()
    fused_grads = [images.grad.clone()] + [p.grad.clone() for p in encoder.parameters()]
    images.grad = None
    encoder.zero_grad()
    plain = encoder.net(images.permute(0, 3, 1, 2))
    plain.square().sum().backward()
    plain_grads = [images.grad] + [p.grad for p in encoder.parameters()]
    torch.testing.assert_close(fused, plain)
    for fused_grad, plain_grad in zip(fused_grads, plain_grads):
        torch.testing.assert_close(fused_grad, plain_grad)
    as_uint8 = torch.randint(0, 256, (2, 3, *shape), dtype=torch.uint8)
    out = encoder({Columns.OBS: as_uint8})["encoder_out"]
    assert out.shape == (2, 3, encoder.output_dim) and out.dtype == torch.float32


def test_learner_device_follows_num_gpus_per_learner():
    config = image_config()
    learner = config.get_learner_class()(config=config,
                                         module_spec=config.get_multi_rl_module_spec())
    learner.build()
    assert learner.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in learner.module.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_learner_without_cuda_names_the_setting_and_the_fix():
    config = image_config(num_gpus_per_learner=1)
    learner = config.get_learner_class()(config=config,
                                         module_spec=config.get_multi_rl_module_spec())
    why = "built without CUDA" if torch.version.cuda is None else "CUDA_VISIBLE_DEVICES"
    with pytest.raises(RuntimeError, match=rf"num_gpus_per_learner=1 but learner 0 sees no "
                                           rf"CUDA device \(.*{why}.*\); set "
                                           rf"num_gpus_per_learner=0 to train on CPU"):
        learner.build()
    with pytest.raises(ValueError, match="num_gpus_per_learner=1 but torch sees no CUDA"):
        config.build_algo()


@needs_cuda
def test_gpu_learner_trains_with_module_and_batches_on_the_gpu():
    algo = image_config(num_gpus_per_learner=1).build_algo()
    try:
        learner = algo.learner_group.foreach_learner(lambda learner: learner)[0]
        assert learner.device == torch.device("cuda", 0)
        assert all(p.device.type == "cuda" for p in learner.module.parameters())
        batch = learner.build_module_batch("default_policy",
                                           algo.env_runner.sample(num_timesteps=64))
        assert {t.device.type for t in batch.values()} == {"cuda"}
        assert batch[Columns.OBS].dtype == torch.uint8
        before = algo.get_module().get_state()
        result = algo.train()
        assert np.isfinite(result["learners"]["default_policy"]["policy_loss"])
        after = algo.get_module().get_state()  # Weights come back as numpy for runners.
        assert any(not np.array_equal(before[k], after[k]) for k in before)
    finally:
        algo.stop()
