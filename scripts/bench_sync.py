"""Weight sync: EnvRunnerGroup.sync_weights to Ray runners vs the object store's floor.

    python scripts/bench_sync.py [--reps 9]

For 2 and 8 Ray runners (0.25 CPUs each, Ray on 2 CPUs) and inference weights of 0.5, 8 and
32 MB (an MLP sized for each), it times what Algorithm.sync_weights does with the learner's
numpy weights, ``group.sync_weights(weights, seq_no)`` (digest, one put, every runner loads
and checks), next to the floor measured in the same run: one ``ray.put`` of the same numpy
weights and as many minimal actors each copying them into a torch module of the same shape
(they reserve no CPUs, so they fit next to the runners; the two never run at once). Rounds
alternate ours and the floor; the figures are medians; the target is a ratio <= 1.3 at every
size. "skip" is a sync of the version every runner holds already (none loads it again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from rlmodules import DEFAULT_MODULE_ID, Columns, RLModuleSpec, TorchRLModule
from runners import EnvRunnerConfig, EnvRunnerGroup

SIZES_MB = (0.5, 8.0, 32.0)
NUM_RUNNERS = (2, 8)
CPUS_PER_RUNNER = 0.25


def mlp(hidden: int) -> nn.Sequential:
    """CartPole's 4 inputs and 2 actions around two hidden layers: about hidden^2 floats."""
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, 2))


def hidden_for(megabytes: float) -> int:
    return int((megabytes * 2**20 / 4) ** 0.5)


class MLPModule(TorchRLModule):
    def setup(self) -> None:
        self.pi = mlp(self.model_config["hidden"])

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def bare_module(hidden: int) -> nn.Module:
    """A plain torch module with MLPModule's parameter names."""
    module = nn.Module()
    module.pi = mlp(hidden)
    return module


class FloorActor:
    """The floor's runner: a module of the same shape that copies the weights in, no more."""

    def __init__(self, hidden: int) -> None:
        torch.set_num_threads(1)
        self.module = bare_module(hidden)

    def load(self, weights: dict[str, dict[str, np.ndarray]]) -> None:
        params = weights[DEFAULT_MODULE_ID]
        with torch.no_grad():
            for name, tensor in self.module.state_dict().items():
                np.copyto(tensor.numpy(), params[name])


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(num_runners: int, megabytes: float, reps: int) -> dict[str, float]:
    """Median seconds of our sync, the floor and a skipped sync."""
    import ray

    hidden = hidden_for(megabytes)
    group = EnvRunnerGroup(EnvRunnerConfig(
        env="CartPole-v1", rl_module_spec=RLModuleSpec(module_class=MLPModule,
                                                       model_config={"hidden": hidden}),
        num_env_runners=num_runners, num_cpus_per_env_runner=CPUS_PER_RUNNER,
        num_envs_per_env_runner=1, rollout_fragment_length=8, seed=0))
    floor_actors = [ray.remote(num_cpus=0)(FloorActor).remote(hidden)
                    for _ in range(num_runners)]
    try:
        params = {k: v.detach().numpy().copy()
                  for k, v in bare_module(hidden).state_dict().items()}
        weights = {DEFAULT_MODULE_ID: params}
        seq_no = 0

        def floor() -> None:
            ref = ray.put(weights)
            ray.get([actor.load.remote(ref) for actor in floor_actors])

        def ours() -> None:
            nonlocal seq_no
            seq_no += 1
            group.sync_weights(weights, seq_no)

        floor(), ours()  # Warm-up: every actor has loaded once.
        figures: dict[str, list[float]] = {"ours": [], "floor": [], "skip": []}
        for _ in range(reps):
            figures["floor"].append(timed(floor))
            figures["ours"].append(timed(ours))
            figures["skip"].append(timed(lambda: group.sync_weights(weights, seq_no)))
        out = {name: statistics.median(values) for name, values in figures.items()}
        out["megabytes"] = sum(v.nbytes for v in params.values()) / 2**20
        return out
    finally:
        group.stop()
        for actor in floor_actors:
            ray.kill(actor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="rounds per size (median)")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # No token file in ~/.ray.
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"load average {os.getloadavg()[0]:.1f}")
    try:
        print(f"{'runners':>7} {'weights':>8} {'ours ms':>8} {'floor ms':>9} {'ratio':>6} "
              f"{'skip ms':>8}")
        for num_runners in NUM_RUNNERS:
            for megabytes in SIZES_MB:
                r = measure(num_runners, megabytes, args.reps)
                print(f"{num_runners:>7} {r['megabytes']:>6.1f}MB {r['ours'] * 1e3:>8.1f} "
                      f"{r['floor'] * 1e3:>9.1f} {r['ours'] / r['floor']:>6.2f} "
                      f"{r['skip'] * 1e3:>8.1f}", flush=True)
    finally:
        ray.shutdown()
    print(f"load average {os.getloadavg()[0]:.1f}; target: ours / floor <= 1.3 at every size")


if __name__ == "__main__":
    main()
