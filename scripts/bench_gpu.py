"""GPU learner throughput: PPOTorchLearner.update of PPO's default CNN on 84x84x4 frames with
num_gpus_per_learner=1, next to a bare torch PPO update of the same CNN on the same GPU.

    python scripts/bench_gpu.py [--batch-size 4096] [--minibatch-size 512] [--epochs 4]

Both train on the same fragments (sampled once on the CPU by a SingleAgentEnvRunner from
``SyntheticImages``, the spaces of wrapped Pong: the frames' content does not change the
cost of an update) and start each update from host memory: ours moves the batch through
pinned memory without blocking, the bare loop (``scripts/bench_learner.py``'s, with the
CNN layers of ``scripts/bench_images.py``) with plain ``.to("cuda")``. Env steps trained
per wall-clock second, the GPU synchronized around each update, best of alternating rounds.
Where torch sees no CUDA device it says so and exits with code 0.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bench_images import SyntheticImages, bare_learner_nets, image_config
from bench_learner import bare_update, best_rates, project_learner
from runners import SingleAgentEnvRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--minibatch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        why = "is a CPU-only build" if torch.version.cuda is None else "sees no CUDA device"
        print(f"bench_gpu.py: no GPU here (torch {torch.__version__} {why}); nothing to "
              "measure. Run it on a machine with an NVIDIA GPU and a CUDA build of torch.")
        sys.exit(0)
    torch.set_num_threads(1)  # As a learner actor with one CPU runs.
    config = image_config(SyntheticImages, args.batch_size, args.minibatch_size,
                          args.epochs).learners(num_gpus_per_learner=1)
    runner = SingleAgentEnvRunner(config.env_runner_config(config.get_multi_rl_module_spec()))
    fragments = runner.sample(num_timesteps=args.batch_size)
    runner.stop()
    steps = sum(len(f) for f in fragments)
    learner = project_learner(config)
    device = learner.device
    rates = best_rates(
        {"ours": lambda: learner.update(fragments),
         "bare": bare_update(config, fragments,
                             *bare_learner_nets(learner.module["default_policy"]), device)},
        steps, args.rounds, clock=time.perf_counter, sync=torch.cuda.synchronize)
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}: PPO update of "
          f"{steps} steps of [84, 84, 4] frames, {args.epochs} epochs x minibatch "
          f"{args.minibatch_size}, PPO's default CNN (env steps trained per second, best of "
          f"{args.rounds} alternating rounds)")
    print(f"  bare torch PPO update on the GPU: {rates['bare']:9.0f}")
    print(f"  PPOTorchLearner.update, 1 GPU   : {rates['ours']:9.0f}")
    print(f"  ratio                           : {rates['ours'] / rates['bare']:9.2f}")


if __name__ == "__main__":
    main()
