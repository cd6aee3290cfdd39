"""Image throughput: PPO's default CNN on 84x84x4 frames, sampling and learning, each next to
a bare torch loop measured in the same run.

    python scripts/bench_images.py [--seconds 2] [--batch-size 1024] [--minibatch-size 128]

The env is ale-py's Pong through ``wrap_atari_for_new_api_stack(dim=84, framestack=4)``
(float32 [84, 84, 4] frames, 6 actions), or, where ale-py is missing, ``SyntheticImages``
with the same spaces. The module is what ``PPOConfig`` builds for that space (actor and
critic CNN encoders, linear heads); the bare loops run the same layers with the same
weights as plain torch (symmetric "same" paddings written as the convs' own, as one would
by hand).

* Sampling: one ``SingleAgentEnvRunner`` with 8 envs vs a loop over a ``SyncVectorEnv`` of
  the same 8 envs doing per vector step one forward of the actor CNN, one Categorical
  sample and one env step. Env steps per CPU-second of this process, best of alternating
  rounds (target: ratio >= 0.9).
* Learning: ``PPOTorchLearner.update`` on fragments the runner sampled vs the bare torch
  PPO update of ``scripts/bench_learner.py`` with the same CNNs, minibatch size and
  epochs. Env steps trained per CPU-second, best of alternating rounds (target >= 0.9).
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.ppo import PPOConfig
from bench_learner import bare_update, best_rates, project_learner
from bench_sampling import sampled_per_s
from runners import SingleAgentEnvRunner
from runners.envs import wrap_atari_for_new_api_stack

NUM_ENVS = 8

try:
    import ale_py
except ImportError:
    ale_py = None


class SyntheticImages(gym.Env):
    """The spaces of wrapped Pong (float32 [84, 84, 4] in [-1, 1), 6 actions) at almost no
    cost per step: frames cycle through a fixed random set, rare +-1 rewards, 1000-step
    episodes."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (84, 84, 4), np.float32)
    action_space = gym.spaces.Discrete(6)

    def __init__(self, env_config: dict | None = None) -> None:
        self._frames = np.random.default_rng(0).uniform(
            -1.0, 1.0, (16, *self.observation_space.shape)).astype(np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._frames[0].copy(), {}

    def step(self, action: Any):
        self._t += 1
        draw = self.np_random.random()
        reward = 1.0 if draw < 0.01 else -1.0 if draw > 0.99 else 0.0
        return self._frames[self._t % len(self._frames)].copy(), reward, self._t >= 1000, \
            False, {}


def make_env(env_config: dict | None = None) -> gym.Env:
    """Wrapped Pong as RLlib's Atari examples make it, or SyntheticImages without ale-py."""
    if ale_py is None:
        return SyntheticImages()
    gym.register_envs(ale_py)
    return wrap_atari_for_new_api_stack(
        gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0), dim=84,
        framestack=4)


def image_config(env: Callable[[dict], gym.Env], batch_size: int, minibatch_size: int,
                 epochs: int) -> PPOConfig:
    """PPO with its default module on ``env``, 8 envs per runner."""
    return (PPOConfig().environment(env)
            .env_runners(num_envs_per_env_runner=NUM_ENVS, rollout_fragment_length=32)
            .training(train_batch_size_per_learner=batch_size, minibatch_size=minibatch_size,
                      num_epochs=epochs)
            .debugging(seed=0))


class ChannelsFirst(nn.Module):
    """[N, H, W, C] images as the [N, C, H, W] view convs take."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2)


def plain_cnn(encoder_net: nn.Sequential) -> list[nn.Module]:
    """Copies of a CNN encoder's layers (same weights) as one writes them by hand: a
    symmetric ZeroPad2d becomes the next conv's own padding, asymmetric ones stay."""
    layers, plain = list(copy.deepcopy(encoder_net)), []
    for i, layer in enumerate(layers):
        after = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, nn.ZeroPad2d) and isinstance(after, nn.Conv2d):
            left, right, top, bottom = layer.padding
            if left == right and top == bottom and after.padding == (0, 0):
                after.padding = (top, left)
                continue
        plain.append(layer)
    return plain


def bare_net(encoder_net: nn.Sequential, head_net: nn.Sequential) -> nn.Sequential:
    """Images -> head outputs with copies of the module's encoder and head layers."""
    return nn.Sequential(ChannelsFirst(), *plain_cnn(encoder_net), *copy.deepcopy(head_net))


def bare_learner_nets(module: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """The policy and value nets of a DefaultPPOTorchRLModule (separate encoders)."""
    return (bare_net(module.encoder.actor_encoder.net, module.pi.net),
            bare_net(module.encoder.critic_encoder.net, module.vf.net))


def bare_sampler(policy: nn.Module) -> Callable[[float], float]:
    """A loop over a SyncVectorEnv of NUM_ENVS envs: one forward, one Categorical sample and
    one env step per vector step; returns env steps per CPU-second over ``seconds``."""
    envs = gym.vector.SyncVectorEnv([make_env] * NUM_ENVS)
    obs = [envs.reset(seed=0)[0]]

    def run(seconds: float) -> float:
        steps, start = 0, time.process_time()
        while time.process_time() - start < seconds:
            for _ in range(32):
                with torch.no_grad():
                    logits = policy(torch.from_numpy(obs[0]))
                    actions = torch.distributions.Categorical(logits=logits,
                                                              validate_args=False).sample()
                obs[0] = envs.step(actions.numpy())[0]
            steps += 32 * NUM_ENVS
        return steps / (time.process_time() - start)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per sampling measurement")
    parser.add_argument("--rounds", type=int, default=5, help="sampling rounds")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--minibatch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learner-rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # As every runner and learner process runs.

    config = image_config(make_env, args.batch_size, args.minibatch_size, args.epochs)
    env_name = "SyntheticImages (ale-py missing)" if ale_py is None else "ALE/Pong-v5, wrapped"
    runner = SingleAgentEnvRunner(config.env_runner_config(config.get_multi_rl_module_spec()))
    module = runner.module["default_policy"]
    sample_bare = bare_sampler(bare_net(module.encoder.actor_encoder.net, module.pi.net))
    runner.sample()
    sample_bare(0.1)  # Warm-up.
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(sample_bare(args.seconds))
        ours.append(sampled_per_s(runner, args.seconds, time.process_time))
    print(f"{env_name}: [84, 84, 4] frames, {NUM_ENVS} envs, PPO's default CNN "
          f"({sum(p.numel() for p in module.parameters()):,} actor parameters)")
    print("sampling (env steps per CPU-second, best of "
          f"{args.rounds} alternating rounds of {args.seconds:g} s):")
    print(f"  bare loop (SyncVectorEnv + CNN + Categorical): {max(bare):8.0f}")
    print(f"  SingleAgentEnvRunner                         : {max(ours):8.0f}")
    print(f"  ratio                                        : {max(ours) / max(bare):8.2f}"
          "   (target >= 0.90)")

    fragments = runner.sample(num_timesteps=args.batch_size)
    runner.stop()
    steps = sum(len(f) for f in fragments)
    learner = project_learner(config)
    rates = best_rates({"ours": lambda: learner.update(fragments),
                        "bare": bare_update(config, fragments,
                                            *bare_learner_nets(learner.module["default_policy"]))},
                       steps, args.learner_rounds)
    print(f"PPO update of {steps} steps ({len(fragments)} fragments), {args.epochs} epochs x "
          f"minibatch {args.minibatch_size} (env steps trained per CPU-second, best of "
          f"{args.learner_rounds} alternating rounds):")
    print(f"  bare torch PPO update : {rates['bare']:8.1f}")
    print(f"  PPOTorchLearner.update: {rates['ours']:8.1f}")
    print(f"  ratio                 : {rates['ours'] / rates['bare']:8.2f}   (target >= 0.90)")


if __name__ == "__main__":
    main()
