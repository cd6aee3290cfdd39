"""Sampling throughput: one SingleAgentEnvRunner vs a bare gymnasium + torch loop, then Ray.

    python scripts/bench_sampling.py [--seconds 2] [--rounds 5]

All single-process figures use 8 CartPole-v1 envs in a SyncVectorEnv, the same 64x64 tanh MLP
and torch at 1 thread. The bare loop does per vector step only what any sampler must: one
forward pass, one Categorical sample, one env step. The runner does that plus what learners
need (logp, dist inputs, preallocated fragment buffers, episode bookkeeping, action checks).
The target is a ratio >= 0.90. Two more runners show what the connector path and episode
callbacks cost (both keep episode objects; no target): one with a MeanStdFilter
env-to-module connector, one with an on_episode_step callback. The single-process figures
are env steps per CPU-second of this process; the Ray groups' (1 and 2 runners, num_cpus=0.5
each) are env steps of ``sample()`` calls per wall-clock second and per CPU-second of the
driver and the runner actors' processes (the one-runner target compares the latter). Every
round measures all of them one after the other and each figure is its best round (5 rounds),
so that other load on the machine, which comes and goes, does not skew the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import torch
from torch import nn

from rlmodules import Columns, RLModuleSpec, TorchRLModule
from runners import EnvRunnerConfig, EnvRunnerGroup, SingleAgentEnvRunner
from runners.connectors import MeanStdFilter

NUM_ENVS = 8


def mlp(obs_dim: int, num_actions: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, num_actions))


class MLPModule(TorchRLModule):
    def setup(self) -> None:
        self.pi = mlp(self.observation_space.shape[0], self.action_space.n)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def bare_loop(seconds: float) -> float:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * NUM_ENVS)
    net = mlp(4, 2)
    obs, _ = envs.reset(seed=0)
    steps, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(100):
            with torch.no_grad():
                logits = net(torch.from_numpy(obs))
                actions = torch.distributions.Categorical(logits=logits,
                                                          validate_args=False).sample()
            obs, _, _, _, _ = envs.step(actions.numpy())
        steps += 100 * NUM_ENVS
    return steps / (time.process_time() - start)


def on_episode_step(*, episode, **kwargs) -> None:
    """The cheapest callback: what keeping episodes for a hook costs by itself."""


def config(num_env_runners: int = 0, **settings) -> EnvRunnerConfig:
    return EnvRunnerConfig(env="CartPole-v1", rl_module_spec=RLModuleSpec(module_class=MLPModule),
                           num_envs_per_env_runner=NUM_ENVS, rollout_fragment_length=250,
                           num_env_runners=num_env_runners, seed=0,
                           **{"num_cpus_per_env_runner": 1, **settings})


def sampled_per_cpu_s(runner: SingleAgentEnvRunner, seconds: float) -> float:
    """Env steps per CPU-second of this process of back-to-back ``sample()`` calls."""
    steps, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        steps += sum(len(f) for f in runner.sample())
    return steps / (time.process_time() - start)


def ray_sampled(group: EnvRunnerGroup, seconds: float) -> tuple[float, float]:
    """Env steps per wall-clock second and per CPU-second (this driver's and the runner
    actors' processes, all their threads) of back-to-back ``group.sample()`` calls."""
    def actors_cpu() -> float:
        return sum(group.foreach_env_runner(lambda runner: time.process_time()))

    steps, cpu = 0, actors_cpu() + time.process_time()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += sum(len(f) for f in group.sample())
    wall = time.perf_counter() - start
    return steps / wall, steps / (actors_cpu() + time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # A local Ray only: no token file.
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    runners = {
        "SingleAgentEnvRunner": SingleAgentEnvRunner(config()),
        "  with MeanStdFilter": SingleAgentEnvRunner(
            config(env_to_module_connector=lambda env: MeanStdFilter())),
        "  with on_episode_step": SingleAgentEnvRunner(
            config(callbacks_hooks={"on_episode_step": on_episode_step})),
    }
    # Both groups live through all rounds: half a CPU per runner, so 3 runners fit Ray's 2.
    groups = {n: EnvRunnerGroup(config(n, num_cpus_per_env_runner=0.5)) for n in (1, 2)}
    try:
        for sampler in [*runners.values(), *groups.values()]:
            for _ in range(3):  # Warm-up: actor processes are up and have run a few times.
                sampler.sample()
        bare, ours = [], {name: [] for name in runners}
        ray_figures: dict[int, list[tuple[float, float]]] = {n: [] for n in groups}
        for _ in range(args.rounds):
            bare.append(bare_loop(args.seconds))
            for name, runner in runners.items():
                ours[name].append(sampled_per_cpu_s(runner, args.seconds))
            for n, group in groups.items():
                ray_figures[n].append(ray_sampled(group, args.seconds))
    finally:
        for sampler in [*runners.values(), *groups.values()]:
            sampler.stop()
        ray.shutdown()
    print(f"bare loop (SyncVectorEnv + MLP + Categorical): {max(bare):>9,.0f} env steps/CPU-s")
    for name, figures in ours.items():
        print(f"{name + ':':<47}{max(figures):>9,.0f} env steps/CPU-s, "
              f"ratio to bare {max(figures) / max(bare):.2f}")
    print("target: SingleAgentEnvRunner / bare >= 0.90")
    wall = {n: max(w for w, _ in figures) for n, figures in ray_figures.items()}
    cpu = {n: max(c for _, c in figures) for n, figures in ray_figures.items()}
    for n in ray_figures:
        print(f"EnvRunnerGroup, {n} Ray runner(s) x {NUM_ENVS} envs: {wall[n]:>9,.0f} env "
              f"steps/s, {cpu[n]:>9,.0f} env steps/CPU-s")
    local = max(ours["SingleAgentEnvRunner"])
    print(f"1 Ray runner / local runner, per CPU-second: {cpu[1] / local:.2f} (target >= 0.90; "
          f"wall-clock over the local runner's CPU-second: {wall[1] / local:.2f}); "
          f"2 Ray runners / 1, wall-clock: {wall[2] / wall[1]:.2f} (target >= 1.80)")


if __name__ == "__main__":
    main()
