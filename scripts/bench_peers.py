"""Headline: wall time of ``python scripts/train.py`` to a mean return next to
Stable-Baselines3's PPO with its rl-zoo hyperparameters, on the same stop rule.

Both run as a user runs them, in a fresh process, imports included, and stop once the mean
return of the last 100 episodes reaches the task's threshold (ours: train.py's
--stop-reward; SB3: a callback on its Monitor's last 100 episodes, checked after every
rollout). Runs alternate, median of ``--rounds``; targets: ours <= 0.5x SB3 on CartPole-v1,
<= 0.7x on Acrobot-v1 and Pendulum-v1. Needs the ``bench`` extra (stable-baselines3).

    python scripts/bench_peers.py [cartpole acrobot pendulum] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# rl-baselines3-zoo's hyperparams/ppo.yml for each task ("lin_x": linear decay from x to 0
# over n_timesteps, as the zoo schedules it).
TASKS = {
    "cartpole": {"env": "CartPole-v1", "threshold": 450.0, "target": 0.5, "ours": [],
                 "zoo": dict(n_envs=8, n_timesteps=100_000, n_steps=32, batch_size=256,
                             gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                             learning_rate="lin_0.001", clip_range="lin_0.2")},
    "acrobot": {"env": "Acrobot-v1", "threshold": -100.0, "target": 0.7, "ours": [],
                "zoo": dict(n_envs=16, n_timesteps=1_000_000, normalize=True, n_steps=256,
                            gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0)},
    "pendulum": {"env": "Pendulum-v1", "threshold": -250.0, "target": 0.7,
                 "ours": ["--set", "training.gamma=0.9"],
                 "zoo": dict(n_envs=4, n_timesteps=100_000, n_steps=1024, gae_lambda=0.95,
                             gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
                             clip_range=0.2, use_sde=True, sde_sample_freq=4)},
}

SB3 = r"""
import json, sys, time
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

env_id, threshold, zoo = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
n_envs, n_timesteps = zoo.pop("n_envs"), zoo.pop("n_timesteps")
for key in ("learning_rate", "clip_range"):
    if isinstance(zoo.get(key), str):
        start = float(zoo[key][4:])
        zoo[key] = lambda progress, start=start: progress * start
env = make_vec_env(env_id, n_envs=n_envs, seed=0)
if zoo.pop("normalize", False):
    env = VecNormalize(env, gamma=zoo.get("gamma", 0.99))


class StopOnReturn(BaseCallback):
    def _on_step(self):
        return not getattr(self.model, "solved", False)

    def _on_rollout_end(self):
        returns = [e["r"] for e in self.model.ep_info_buffer]  # The last 100 episodes.
        if returns and np.mean(returns) >= threshold:
            self.model.solved = True


model = PPO("MlpPolicy", env, seed=0, device="cpu", **zoo)
model.learn(n_timesteps, callback=StopOnReturn())
print(json.dumps({"solved": bool(getattr(model, "solved", False)),
                  "steps": int(model.num_timesteps)}))
"""


def run(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise RuntimeError(f"{command[:3]} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def ours(task: dict, run_dir: str) -> tuple[float, bool]:
    seconds, out = run([sys.executable, os.path.join(HERE, "train.py"), "--env", task["env"],
                        "--stop-reward", str(task["threshold"]), "--stop-timesteps",
                        "1000000", "--run-dir", run_dir, *task["ours"]])
    last = [json.loads(line) for line in open(os.path.join(run_dir, "results.jsonl"))][-1]
    return seconds, last["env_runners"]["episode_return_mean"] >= task["threshold"]


def sb3(task: dict) -> tuple[float, bool]:
    seconds, out = run([sys.executable, "-c", SB3, task["env"], str(task["threshold"]),
                        json.dumps(task["zoo"])])
    return seconds, json.loads(out.strip().splitlines()[-1])["solved"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # No choices=: Python 3.11's argparse checks an empty list against them and refuses it.
    parser.add_argument("tasks", nargs="*", help=f"any of {', '.join(TASKS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    for name in args.tasks or list(TASKS):
        task = TASKS[name]
        mine, theirs = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                mine.append(ours(task, os.path.join(tmp, f"run{r}")))
                theirs.append(sb3(task))
        a, b = statistics.median(s for s, _ in mine), statistics.median(s for s, _ in theirs)
        print(f"{task['env']} to {task['threshold']:g}: train.py {a:.1f} s "
              f"(solved {sum(ok for _, ok in mine)}/{args.rounds})   SB3 PPO (rl-zoo) {b:.1f} s "
              f"(solved {sum(ok for _, ok in theirs)}/{args.rounds})   ratio {a / b:.2f} "
              f"(target <= {task['target']})", flush=True)


if __name__ == "__main__":
    main()
