"""Learning benchmarks: env steps and wall time until each task's mean return is reached.

    python scripts/bench_learning.py                    # all tasks
    python scripts/bench_learning.py ppo-pendulum cli   # some of them

Tasks (mean return over the last 100 episodes, local mode, seed 0):
    cli           `python scripts/train.py` as a user runs it (PPO CartPole-v1 >= 450),
                  wall time imports included; target: within 10 s on 2 cores
    ppo-cartpole  PPO, CartPole-v1 >= 450 (defaults)
    ppo-acrobot   PPO, Acrobot-v1 >= -100 (defaults)
    ppo-pendulum  PPO, Pendulum-v1 >= -400 (continuous actions; shorter horizon, more epochs)
    vpg-cartpole  VPG, CartPole-v1 >= 400 (defaults)
Exits non-zero if a task misses its return within its step budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

TASKS = {
    # name: (algorithm, env, target return, step budget, training overrides)
    "ppo-cartpole": ("PPO", "CartPole-v1", 450.0, 300_000, {}),
    "ppo-acrobot": ("PPO", "Acrobot-v1", -100.0, 300_000, {}),
    "ppo-pendulum": ("PPO", "Pendulum-v1", -400.0, 400_000, {
        "gamma": 0.9, "lr": 1e-3, "train_batch_size_per_learner": 4000, "minibatch_size": 64,
        "num_epochs": 10}),
    "vpg-cartpole": ("VPG", "CartPole-v1", 400.0, 500_000, {}),
}


def run_task(algo_name: str, env: str, target: float, budget: int,
             training: dict) -> tuple[bool, int, float, float]:
    """(solved, env steps, wall seconds from build to solved, final mean return)."""
    if algo_name == "PPO":
        from algorithms.ppo import PPOConfig as Config
    else:
        from algorithms.vpg import VPGConfig as Config
    start = time.perf_counter()
    algo = Config().environment(env).training(**training).debugging(seed=0).build_algo()
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
        start = time.perf_counter()
        out = subprocess.run([sys.executable, script, "--checkpoint-dir",
                              os.path.join(tmp, "ckpt")], capture_output=True, text=True)
        wall = time.perf_counter() - start
    lines = [line.split() for line in out.stdout.splitlines() if line.startswith("iter")]
    if out.returncode or not lines:
        print(out.stderr, file=sys.stderr)
        return False, 0, wall, float("nan")
    steps, mean_return = int(lines[-1][4]), float(lines[-1][7])
    return mean_return >= 450.0 and wall <= 10.0, steps, wall, mean_return


def main(names: list[str]) -> int:
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
        if not solved:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
