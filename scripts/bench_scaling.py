"""Scaling past the cores: EnvRunnerGroup.sample() over 1-32 Ray runners vs N plain processes.

    python scripts/bench_scaling.py [--seconds 3] [--rounds 2] [--fragment 32]

The env's step() sleeps 2 ms (a stand-in for a simulator that waits), so many runners fit on
this machine's cores. Each runner has 4 envs and the 64x64 tanh MLP of bench_sampling.py;
runners get 2/N CPUs each (Ray on 2 CPUs), up to 1. The floor is N plain processes
(multiprocessing, forked before Ray starts; no Ray) doing the same env steps with the same
forward pass and a Categorical sample, all stepping over the same seconds. At each N the
two alternate (best of ``--rounds``). Printed per N: env steps/s of both, efficiency =
ours / floor (target >= 0.9 at 32 runners), the time of one sample() call (one request of
``--fragment`` steps per env per runner) and the driver's CPU time per runner per call:
where N times the latter reaches the former, one driver stops scaling. A third figure, in
the same rounds, is the bare Ray barrier over the same actors (``ray.get`` of one
``sample_packed`` request per runner, unpacked): what any synchronous sample() can reach, so
ours / barrier is the group's own cost and barrier / floor the cost of waiting for the
slowest runner. A fourth, also in the same rounds, has each of the same runners call
sample() in a loop of its own over the same seconds (one Ray call per runner, nothing
between them and the driver; steps counted within the window): free / floor is what running
inside Ray actors costs on these cores, ours / free what the driver's orchestration costs.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlmodules import Columns, RLModuleSpec, TorchRLModule
from runners import EnvRunnerConfig, EnvRunnerGroup
from runners.fragment import unpack_fragments

NUM_RUNNERS = (1, 4, 16, 32)
NUM_ENVS = 4
STEP_SLEEP_S = 0.002


class SleepEnv(gym.Env):
    """CartPole's spaces; step() sleeps 2 ms; episodes of 200 steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, config: dict | None = None) -> None:
        self._t = 0
        self._obs = np.zeros(4, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs, {}

    def step(self, action):
        time.sleep(STEP_SLEEP_S)
        self._t += 1
        return self._obs, 1.0, False, self._t >= 200, {}


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 2))


class MLPModule(TorchRLModule):
    def setup(self) -> None:
        self.pi = mlp()

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def floor_worker(pipe: Any) -> None:
    """One plain process: NUM_ENVS envs, one batched forward + sample per vector step; on each
    ``(start, seconds)`` it gets, it steps from monotonic time ``start`` for ``seconds`` and
    sends back its env steps."""
    torch.set_num_threads(1)
    envs, net = [SleepEnv() for _ in range(NUM_ENVS)], mlp()
    obs = np.stack([env.reset()[0] for env in envs])
    while (job := pipe.recv()) is not None:
        start, seconds = job
        time.sleep(max(0.0, start - time.monotonic()))
        steps = 0
        while time.monotonic() < start + seconds:
            with torch.no_grad():
                logits = net(torch.from_numpy(obs))
                actions = torch.distributions.Categorical(
                    logits=logits, validate_args=False).sample().numpy()
            for i, env in enumerate(envs):
                o, _, terminated, truncated, _ = env.step(actions[i])
                obs[i] = env.reset()[0] if terminated or truncated else o
            steps += NUM_ENVS
        pipe.send(steps)


class Floor:
    """``num`` floor processes, forked before Ray starts (fast, and none holds Ray's state)."""

    def __init__(self, num: int) -> None:
        context = mp.get_context("fork")
        self.pipes = []
        for _ in range(num):
            ours_end, theirs = context.Pipe()
            context.Process(target=floor_worker, args=(theirs,), daemon=True).start()
            self.pipes.append(ours_end)

    def rate(self, num: int, seconds: float) -> float:
        """Env steps/s of the first ``num`` processes stepping together for ``seconds``."""
        start = time.monotonic() + 0.1
        for pipe in self.pipes[:num]:
            pipe.send((start, seconds))
        return sum(pipe.recv() for pipe in self.pipes[:num]) / seconds

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)


def ours(group: EnvRunnerGroup, seconds: float) -> tuple[float, float, float]:
    """Env steps/s of ``group.sample()``, ms per call, and the driver's CPU ms per runner per
    call."""
    steps, calls = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        steps += sum(len(f) for f in group.sample())
        calls += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return steps / wall, wall / calls * 1e3, cpu / calls / group.num_remote_env_runners * 1e3


def barrier(group: EnvRunnerGroup, seconds: float) -> float:
    """Env steps/s of bare Ray calls: one request per runner, all awaited, then the next."""
    import ray

    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for packed in ray.get([actor.sample_packed.remote()
                               for actor in group.remote_env_runners]):
            steps += sum(len(f) for f in unpack_fragments(packed))
    return steps / (time.perf_counter() - start)


def _sample_until(runner: Any, start: float, seconds: float) -> float:
    """In a runner: sample() from monotonic time ``start`` until ``seconds`` have passed;
    its env steps within that window (the last call's steps pro rata), so every runner is
    busy through the whole window."""
    time.sleep(max(0.0, start - time.monotonic()))
    steps, end, now = 0.0, start + seconds, time.monotonic()
    while now < end:
        began, got = now, sum(len(f) for f in runner.sample())
        now = time.monotonic()
        steps += got * (min(now, end) - began) / (now - began)
    return steps


def free_running(group: EnvRunnerGroup, seconds: float) -> float:
    """Env steps/s of the runners each sampling in a loop of its own over the same seconds."""
    start = time.monotonic() + 0.1
    return sum(group.foreach_env_runner(
        lambda runner: _sample_until(runner, start, seconds))) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best of)")
    parser.add_argument("--fragment", type=int, default=32,
                        help="rollout_fragment_length (steps per env per request)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    floor = Floor(max(NUM_RUNNERS))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # No token file in ~/.ray.
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"load average {os.getloadavg()[0]:.1f}; {NUM_ENVS} envs per runner, "
          f"rollout_fragment_length {args.fragment}")
    print(f"{'runners':>7} {'ours steps/s':>13} {'floor steps/s':>14} {'efficiency':>10} "
          f"{'ms/sample()':>11} {'driver ms/runner/call':>22} {'barrier steps/s':>16} "
          f"{'ours/barrier':>12} {'free-running steps/s':>20} {'free/floor':>10} "
          f"{'ours/free':>9}")
    try:
        for num in NUM_RUNNERS:
            group = EnvRunnerGroup(EnvRunnerConfig(
                env=SleepEnv, rl_module_spec=RLModuleSpec(module_class=MLPModule),
                num_env_runners=num, num_cpus_per_env_runner=min(1.0, 2 / num),
                num_envs_per_env_runner=NUM_ENVS, rollout_fragment_length=args.fragment,
                seed=0))
            try:
                group.sample()  # Warm-up: every actor has sampled once.
                floor_rates, runs, barriers, free = [], [], [], []
                for _ in range(args.rounds):
                    floor_rates.append(floor.rate(num, args.seconds))
                    runs.append(ours(group, args.seconds))
                    barriers.append(barrier(group, args.seconds))
                    free.append(free_running(group, args.seconds))
            finally:
                group.stop()
            rate, call_ms, driver_ms = max(runs)
            print(f"{num:>7} {rate:>13,.0f} {max(floor_rates):>14,.0f} "
                  f"{rate / max(floor_rates):>10.2f} {call_ms:>11.0f} {driver_ms:>22.2f} "
                  f"{max(barriers):>16,.0f} {rate / max(barriers):>12.2f} {max(free):>20,.0f} "
                  f"{max(free) / max(floor_rates):>10.2f} {rate / max(free):>9.2f}", flush=True)
    finally:
        ray.shutdown()
        floor.close()
    print(f"load average {os.getloadavg()[0]:.1f}; target: efficiency >= 0.9 at 32 runners")


if __name__ == "__main__":
    main()
