"""Learning benchmarks: env steps and wall time until each task's mean return is reached.

    python scripts/bench_learning.py                    # all tasks
    python scripts/bench_learning.py ppo-pendulum cli   # some of them

Tasks (mean return over the last 100 episodes, local mode, seed 0):
    cli           `python scripts/train.py` as a user runs it (PPO CartPole-v1 >= 450),
                  wall time imports included; target: within 10 s on 2 cores. Printed next
                  to a bare single-file PPO (gymnasium SyncVectorEnv + torch, PPOConfig's
                  default hyperparameters, same stop rule) run the same way, and the ratio.
    ppo-cartpole  PPO, CartPole-v1 >= 450 (defaults)
    ppo-acrobot   PPO, Acrobot-v1 >= -100 (defaults)
    ppo-pendulum  PPO, Pendulum-v1 >= -400 (continuous actions; shorter horizon, more epochs)
    vpg-cartpole  VPG, CartPole-v1 >= 400 (defaults)
    appo-cartpole APPO, CartPole-v1 >= 450 (defaults; local mode runs it sequentially)
    appo-acrobot  APPO, Acrobot-v1 >= -100 (defaults)
Exits non-zero if a task misses its return within its step budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import deque

TASKS = {
    # name: (algorithm, env, target return, step budget, training overrides)
    "ppo-cartpole": ("PPO", "CartPole-v1", 450.0, 300_000, {}),
    "ppo-acrobot": ("PPO", "Acrobot-v1", -100.0, 300_000, {}),
    "ppo-pendulum": ("PPO", "Pendulum-v1", -400.0, 400_000, {
        "gamma": 0.9, "lr": 1e-3, "train_batch_size_per_learner": 4000, "minibatch_size": 64,
        "num_epochs": 10}),
    "vpg-cartpole": ("VPG", "CartPole-v1", 400.0, 500_000, {}),
    "appo-cartpole": ("APPO", "CartPole-v1", 450.0, 300_000, {}),
    "appo-acrobot": ("APPO", "Acrobot-v1", -100.0, 300_000, {}),
}


def run_task(algo_name: str, env: str, target: float, budget: int,
             training: dict) -> tuple[bool, int, float, float]:
    """(solved, env steps, wall seconds from build to solved, final mean return)."""
    if algo_name == "PPO":
        from algorithms.ppo import PPOConfig as Config
    elif algo_name == "APPO":
        from algorithms.appo import APPOConfig as Config
    else:
        from algorithms.vpg import VPGConfig as Config
    start = time.perf_counter()
    config = Config().environment(env).training(**training).debugging(seed=0)
    # One train batch per iteration (APPO's default iteration lasts 10 s), as PPO's.
    algo = config.reporting(min_time_s_per_iteration=0).build_algo()
    try:
        while True:
            result = algo.train()
            steps = result["num_env_steps_sampled_lifetime"]
            mean_return = result["env_runners"]["episode_return_mean"]
            if mean_return >= target or steps >= budget:
                return mean_return >= target, steps, time.perf_counter() - start, mean_return
    finally:
        algo.stop()


def run_cli() -> tuple[bool, int, float, float]:
    """`python scripts/train.py` in a fresh process: what a user waits for."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
    with tempfile.TemporaryDirectory() as tmp:
        return _timed_run([script, "--checkpoint-dir", os.path.join(tmp, "ckpt")])


def run_bare_cli() -> tuple[bool, int, float, float]:
    """The bare PPO below in a fresh process, timed like ``run_cli``."""
    return _timed_run([os.path.abspath(__file__), "--bare-ppo"])


def _timed_run(args: list[str]) -> tuple[bool, int, float, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line.split() for line in out.stdout.splitlines() if line.startswith("iter")]
    if out.returncode or not lines:
        print(out.stderr, file=sys.stderr)
        return False, 0, wall, float("nan")
    steps, mean_return = int(lines[-1][4]), float(lines[-1][7])
    return mean_return >= 450.0 and wall <= 10.0, steps, wall, mean_return


def bare_ppo_cartpole() -> None:
    """Single-file PPO on CartPole-v1 with PPOConfig's defaults, no framework around it."""
    import gymnasium as gym
    import numpy as np
    import torch
    from torch import nn

    from algorithms.ppo import PPOConfig  # Only for its default numbers.

    c = PPOConfig()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n_envs = c.num_envs_per_env_runner
    t_steps = c.train_batch_size_per_learner // n_envs
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * n_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    def mlp(out: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                             nn.Linear(64, out))

    pi, vf = mlp(2), mlp(1)
    optimizer = torch.optim.Adam([*pi.parameters(), *vf.parameters()], lr=c.lr, fused=True)
    obs_buf = torch.zeros(t_steps, n_envs, 4)
    act_buf = torch.zeros(t_steps, n_envs, dtype=torch.long)
    logp_buf, rew_buf = torch.zeros(t_steps, n_envs), np.zeros((t_steps, n_envs), np.float32)
    term_buf, trunc_buf = np.zeros((t_steps, n_envs), bool), np.zeros((t_steps, n_envs), bool)
    final_values = np.zeros((t_steps, n_envs), np.float32)  # V(final obs) at truncations
    returns, ep_return = deque(maxlen=100), np.zeros(n_envs)
    obs, _ = envs.reset(seed=0)
    steps, iteration = 0, 0
    while True:
        with torch.no_grad():
            for t in range(t_steps):
                obs_buf[t] = torch.from_numpy(obs)
                dist = torch.distributions.Categorical(logits=pi(obs_buf[t]))
                act_buf[t] = dist.sample()
                logp_buf[t] = dist.log_prob(act_buf[t])
                obs, rew_buf[t], term_buf[t], trunc_buf[t], info = envs.step(act_buf[t].numpy())
                ep_return += rew_buf[t]
                for i in np.flatnonzero(term_buf[t] | trunc_buf[t]):
                    returns.append(ep_return[i])
                    ep_return[i] = 0.0
                    if trunc_buf[t, i]:
                        final_values[t, i] = vf(torch.from_numpy(info["final_obs"][i]))[0]
            values = vf(obs_buf)[..., 0].numpy()
            next_value = vf(torch.from_numpy(obs))[:, 0].numpy()
        advantages, running = np.zeros_like(rew_buf), np.zeros(n_envs, np.float32)
        for t in reversed(range(t_steps)):
            v_next = next_value if t == t_steps - 1 else values[t + 1]
            done = term_buf[t] | trunc_buf[t]
            v_next = np.where(trunc_buf[t], final_values[t], np.where(done, 0.0, v_next))
            delta = rew_buf[t] + c.gamma * v_next - values[t]
            running = delta + c.gamma * c.lambda_ * np.where(done, 0.0, running)
            advantages[t] = running
        b_obs, b_act, b_logp = obs_buf.reshape(-1, 4), act_buf.reshape(-1), logp_buf.reshape(-1)
        b_targets = torch.from_numpy((advantages + values).reshape(-1))
        b_adv = torch.from_numpy(advantages.reshape(-1))
        b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        for _ in range(c.num_epochs):
            for idx in torch.randperm(len(b_obs)).split(c.minibatch_size):
                dist = torch.distributions.Categorical(logits=pi(b_obs[idx]))
                ratio = torch.exp(dist.log_prob(b_act[idx]) - b_logp[idx])
                surrogate = torch.min(ratio * b_adv[idx], ratio.clamp(
                    1 - c.clip_param, 1 + c.clip_param) * b_adv[idx])
                vf_loss = ((vf(b_obs[idx])[:, 0] - b_targets[idx]) ** 2).mean()
                loss = -surrogate.mean() + c.vf_loss_coeff * vf_loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        steps, iteration = steps + t_steps * n_envs, iteration + 1
        mean_return = float(np.mean(returns)) if returns else float("nan")
        print(f"iter {iteration:4d}  env steps {steps:8d}  mean return {mean_return:8.2f}",
              flush=True)
        if mean_return >= 450.0:
            return


def main(names: list[str]) -> int:
    if names == ["--bare-ppo"]:
        bare_ppo_cartpole()
        return 0
    unknown = [n for n in names if n != "cli" and n not in TASKS]
    if unknown:
        print(f"unknown task(s) {unknown}; choose from {['cli', *TASKS]}", file=sys.stderr)
        return 2
    failed = []
    for name in names or ["cli", *TASKS]:
        solved, steps, wall, mean_return = run_cli() if name == "cli" else run_task(*TASKS[name])
        goal = "450 within 10 s, imports included" if name == "cli" else f"{TASKS[name][2]:g}"
        print(f"{name:13s} {'OK    ' if solved else 'FAILED'} return {mean_return:8.1f} "
              f"(goal {goal})  {steps:7d} env steps  {wall:6.1f} s wall", flush=True)
        if name == "cli":
            _, bare_steps, bare_wall, bare_return = run_bare_cli()
            print(f"{'  bare PPO':13s}        return {bare_return:8.1f} (same stop rule)"
                  f"{bare_steps:29d} env steps  {bare_wall:6.1f} s wall   "
                  f"speed-up over bare: {bare_wall / wall:.2f}x", flush=True)
        if not solved:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
