"""PPO learner update throughput vs a bare torch PPO update, measured in the same run.

Both do one whole PPO update on the same CartPole-shaped data (fragments of real episodes
from a random policy): values with bootstrap, GAE, then num_epochs x minibatches of the
clipped-surrogate + value + entropy loss on the same 64x64 tanh actor-critic (separate
value net), fused Adam. The project side is ``PPOTorchLearner.update(fragments)`` with PPO's
default module, exactly as ``PPO.train()`` runs it in local mode. The two alternate, round
after round, and each keeps its best round in env steps trained per CPU-second of this
process, so that other load on the machine skews neither; prints both and the ratio
(target: >= 0.95). ``scripts/bench_images.py`` and ``scripts/bench_gpu.py`` reuse these
pieces for the default CNN.

    python scripts/bench_learner.py [--batch-size 2000] [--minibatch-size 500] [--epochs 6]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.ppo import PPOConfig, PPOTorchLearner
from runners.fragment import Fragment


def random_policy_fragments(num_steps: int, seed: int = 0) -> list[Fragment]:
    """CartPole episodes of a uniform policy cut into fragments, like a runner's output."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    fragments, rows = [], []
    for t in range(num_steps):
        action = int(rng.integers(2))
        next_obs, reward, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, reward))
        obs = next_obs
        if terminated or truncated or t == num_steps - 1:
            o, a, r = (np.array(x) for x in zip(*rows))
            n = len(rows)
            fragments.append(Fragment(
                module_id="default_policy", agent_id=None, episode_id=str(len(fragments)),
                columns={"obs": o.astype(np.float32), "actions": a.astype(np.int64),
                         "rewards": r.astype(np.float32),
                         "terminateds": np.eye(1, n, n - 1, dtype=bool)[0] & terminated,
                         "truncateds": np.eye(1, n, n - 1, dtype=bool)[0] & truncated,
                         "action_logp": np.full(n, np.log(0.5), np.float32),
                         "action_dist_inputs": np.zeros((n, 2), np.float32)},
                last_obs=obs.astype(np.float32), terminated=terminated, truncated=truncated))
            rows = []
            if terminated or truncated:
                obs, _ = env.reset()
    return fragments


def project_learner(config: PPOConfig) -> PPOTorchLearner:
    """The config's learner with its module spec (PPO's default module for the config's
    env), built as ``PPO`` builds its local learner."""
    learner = config.get_learner_class()(config=config,
                                         module_spec=config.get_multi_rl_module_spec())
    learner.build()
    return learner


def bare_update(config: PPOConfig, fragments: list[Fragment], pi: nn.Module, vf: nn.Module,
                device: torch.device = torch.device("cpu")) -> Callable[[], None]:
    """What a single-file PPO does: plain nets, numpy GAE, index-sliced minibatches.

    The columns are concatenated once, outside the timed update; each update moves them to
    ``device`` (nothing to do on the CPU), as a learner fed from host memory must.
    """
    pi, vf = pi.to(device), vf.to(device)
    optimizer = torch.optim.Adam([*pi.parameters(), *vf.parameters()], lr=config.lr, fused=True)
    host_obs = torch.from_numpy(np.concatenate([f.columns["obs"] for f in fragments]))
    host_actions = torch.from_numpy(np.concatenate([f.columns["actions"] for f in fragments]))
    host_logp = torch.from_numpy(np.concatenate([f.columns["action_logp"] for f in fragments]))
    host_last_obs = torch.from_numpy(np.stack([f.last_obs for f in fragments]))
    rewards = np.concatenate([f.columns["rewards"] for f in fragments])
    ends = np.cumsum([len(f) for f in fragments]) - 1
    not_terminal = np.array([0.0 if f.terminated else 1.0 for f in fragments])
    n, gamma, lam, clip = len(host_obs), config.gamma, config.lambda_, config.clip_param

    def update() -> None:
        obs, actions = host_obs.to(device), host_actions.to(device)
        old_logp, last_obs = host_logp.to(device), host_last_obs.to(device)
        with torch.no_grad():
            values = vf(obs)[:, 0].cpu().numpy()
            bootstrap = vf(last_obs)[:, 0].cpu().numpy() * not_terminal
        next_values = np.append(values[1:], 0.0)
        next_values[ends] = bootstrap
        deltas = rewards + gamma * next_values - values
        advantages = np.zeros(n, np.float32)
        running = 0.0
        is_end = np.zeros(n, bool)
        is_end[ends] = True
        for t in range(n - 1, -1, -1):
            running = deltas[t] + (0.0 if is_end[t] else gamma * lam * running)
            advantages[t] = running
        targets = torch.from_numpy(advantages + values).to(device)
        adv = torch.from_numpy((advantages - advantages.mean()) / (advantages.std() + 1e-8)
                               ).to(device)
        for _ in range(config.num_epochs):
            for idx in torch.randperm(n, device=device).split(config.minibatch_size):
                dist = torch.distributions.Categorical(logits=pi(obs[idx]))
                ratio = torch.exp(dist.log_prob(actions[idx]) - old_logp[idx])
                surrogate = torch.min(ratio * adv[idx], ratio.clamp(1 - clip, 1 + clip) * adv[idx])
                vf_loss = ((vf(obs[idx])[:, 0] - targets[idx]) ** 2).mean()
                loss = (-surrogate.mean() + config.vf_loss_coeff * vf_loss
                        - config.entropy_coeff * dist.entropy().mean())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    return update


def best_rates(updates: dict[str, Callable[[], object]], num_steps: int, rounds: int,
               clock: Callable[[], float] = time.process_time,
               sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Steps per second of each update (by ``clock``), best of ``rounds`` alternating rounds."""
    for update in updates.values():
        update()  # Warm-up (lazy imports, allocator).
    best = dict.fromkeys(updates, float("inf"))
    for _ in range(rounds):
        for name, update in updates.items():
            sync()
            start = clock()
            update()
            sync()
            best[name] = min(best[name], clock() - start)
    return {name: num_steps / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--minibatch-size", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)  # As every learner process runs.

    config = PPOConfig().environment("CartPole-v1").training(
        train_batch_size_per_learner=args.batch_size, minibatch_size=args.minibatch_size,
        num_epochs=args.epochs).debugging(seed=0)
    fragments = random_policy_fragments(args.batch_size)

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                             nn.Linear(64, out))

    learner = project_learner(config)
    rates = best_rates({"ours": lambda: learner.update(fragments),
                        "bare": bare_update(config, fragments, mlp(2), mlp(1))},
                       args.batch_size, args.rounds)
    print(f"PPO update of {args.batch_size} steps ({len(fragments)} fragments), "
          f"{args.epochs} epochs x minibatch {args.minibatch_size}, 64x64 tanh actor-critic, "
          f"best of {args.rounds} alternating rounds")
    print(f"  bare torch PPO update : {rates['bare']:9.0f} env steps/CPU-s")
    print(f"  PPOTorchLearner.update: {rates['ours']:9.0f} env steps/CPU-s")
    print(f"  ratio                 : {rates['ours'] / rates['bare']:9.2f}   (target >= 0.95)")


if __name__ == "__main__":
    main()
