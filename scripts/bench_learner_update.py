"""Learner update throughput vs a bare torch PPO update loop, measured in the same run.

Both train the same 64x64 actor-critic MLP with the same clipped-surrogate loss, Adam,
grad-norm clipping and minibatch size; the learner's time includes turning fragments into
a device batch. Prints the time per minibatch of each and the ratio (target: >= 0.8).

    python scripts/bench_learner_update.py [--minibatch-size 128] [--batch-size 4096]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from learners import TorchLearner
from rlmodules import Columns, MultiRLModuleSpec, RLModuleSpec, TorchRLModule
from runners.fragment import Fragment

OBS_DIM, NUM_ACTIONS, CLIP = 4, 2, 0.2


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(OBS_DIM, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())


class ActorCritic(TorchRLModule):
    def setup(self):
        self.pi = nn.Sequential(mlp(), nn.Linear(64, NUM_ACTIONS))
        self.vf = nn.Sequential(mlp(), nn.Linear(64, 1))

    def _forward(self, batch, **kwargs):
        obs = batch[Columns.OBS]
        return {Columns.ACTION_DIST_INPUTS: self.pi(obs), Columns.VF_PREDS: self.vf(obs)[:, 0]}


def ppo_loss(logits, values, actions, old_logp, advantages, targets):
    logp = torch.distributions.Categorical(logits=logits).log_prob(actions)
    ratio = torch.exp(logp - old_logp)
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - CLIP, 1 + CLIP) * advantages)
    return -surrogate.mean() + 0.5 * ((values - targets) ** 2).mean()


class BenchLearner(TorchLearner):
    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        return ppo_loss(fwd_out[Columns.ACTION_DIST_INPUTS], fwd_out[Columns.VF_PREDS],
                        batch[Columns.ACTIONS], batch[Columns.ACTION_LOGP],
                        batch[Columns.ADVANTAGES], batch[Columns.VALUE_TARGETS])


def make_fragments(batch_size: int, length: int = 200) -> list[Fragment]:
    rng = np.random.default_rng(0)
    fragments = []
    for i in range(batch_size // length):
        columns = {
            Columns.OBS: rng.normal(size=(length, OBS_DIM)).astype(np.float32),
            Columns.ACTIONS: rng.integers(0, NUM_ACTIONS, length),
            Columns.ACTION_LOGP: np.full(length, np.log(1 / NUM_ACTIONS), np.float32),
            Columns.ADVANTAGES: rng.normal(size=length).astype(np.float32),
            Columns.VALUE_TARGETS: rng.normal(size=length).astype(np.float32),
            Columns.REWARDS: np.ones(length, np.float32),
            Columns.TERMINATEDS: np.zeros(length, bool),
            Columns.TRUNCATEDS: np.zeros(length, bool),
        }
        fragments.append(Fragment("default_policy", None, str(i), columns,
                                  np.zeros(OBS_DIM, np.float32), False, False))
    return fragments


def time_learner(fragments, config) -> float:
    spec = MultiRLModuleSpec(rl_module_specs={"default_policy": RLModuleSpec(
        module_class=ActorCritic, observation_space=gym.spaces.Box(-1, 1, (OBS_DIM,)),
        action_space=gym.spaces.Discrete(NUM_ACTIONS))})
    learner = BenchLearner(config=config, module_spec=spec)
    learner.build()
    learner.update(fragments)  # Warm-up.
    start = time.perf_counter()
    learner.update(fragments)
    return time.perf_counter() - start


def time_bare(fragments, config, **adam_kwargs) -> float:
    """The same update written as a plain torch loop over pre-made tensors."""
    columns = {k: torch.from_numpy(np.concatenate([f.columns[k] for f in fragments]))
               for k in fragments[0].columns}
    module = ActorCritic(observation_space=None, action_space=None)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, **adam_kwargs)
    n, size = len(columns[Columns.OBS]), config.minibatch_size
    iterations = config.num_epochs * (config.train_batch_size_per_learner // size)

    def run():
        for i in range(iterations):
            if i % (n // size) == 0:
                perm = torch.randperm(n)
            idx = perm[(i % (n // size)) * size:(i % (n // size) + 1) * size]
            obs = columns[Columns.OBS][idx]
            loss = ppo_loss(module.pi(obs), module.vf(obs)[:, 0], columns[Columns.ACTIONS][idx],
                            columns[Columns.ACTION_LOGP][idx], columns[Columns.ADVANTAGES][idx],
                            columns[Columns.VALUE_TARGETS][idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
            optimizer.step()

    run()  # Warm-up.
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minibatch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4000)
    parser.add_argument("--num-epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # As in learner actors.
    config = SimpleNamespace(
        lr=3e-4, grad_clip=0.5, num_epochs=args.num_epochs, minibatch_size=args.minibatch_size,
        train_batch_size_per_learner=args.batch_size, policies_to_train=None, seed=0,
        num_gpus_per_learner=0)
    fragments = make_fragments(args.batch_size)
    iterations = args.num_epochs * (args.batch_size // args.minibatch_size)
    learner_s = bare_s = bare_default_s = float("inf")
    for _ in range(args.repeats):  # Interleaved, best of each: robust to machine noise.
        learner_s = min(learner_s, time_learner(fragments, config))
        bare_s = min(bare_s, time_bare(fragments, config, fused=True))
        bare_default_s = min(bare_default_s, time_bare(fragments, config))
    print(f"{iterations} minibatches of {args.minibatch_size}, 64x64 actor-critic MLP, 1 thread")
    print(f"bare torch loop, Adam(fused=True) as the learner : "
          f"{1e6 * bare_s / iterations:8.1f} us/minibatch")
    print(f"bare torch loop, torch's default Adam            : "
          f"{1e6 * bare_default_s / iterations:8.1f} us/minibatch")
    print(f"TorchLearner.update (incl. fragments -> batch)   : "
          f"{1e6 * learner_s / iterations:8.1f} us/minibatch")
    print(f"throughput ratio learner / bare (same optimizer): {bare_s / learner_s:.2f} "
          "(target >= 0.80)")
    print(f"throughput ratio learner / bare (default Adam)  : {bare_default_s / learner_s:.2f}")


if __name__ == "__main__":
    main()
