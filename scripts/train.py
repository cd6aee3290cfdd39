"""Train PPO (or VPG) until a mean return is reached, then write a checkpoint.

    python scripts/train.py                        # PPO on CartPole-v1, local, until return >= 450
    python scripts/train.py --algo VPG --stop-reward 400
    python scripts/train.py --num-env-runners 2 --num-learners 2     # Ray actors on this machine
    python scripts/train.py --address 10.0.0.5:6379 --num-env-runners 8   # a running Ray cluster
    python scripts/train.py --restore runs/<time>/checkpoint --stop-iters 10   # continue a run

Local mode (no runners, no learners, no --address) never imports Ray. The run stops at the
first of --stop-reward / --stop-timesteps / --stop-iters.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=["PPO", "VPG"], default="PPO")
    parser.add_argument("--env", default="CartPole-v1",
                        help="gymnasium id or a name registered with runners.register_env")
    parser.add_argument("--num-env-runners", type=int, default=0,
                        help="Ray env runner actors; 0 samples in this process")
    parser.add_argument("--num-learners", type=int, default=0,
                        help="Ray learner actors (>= 2: data-parallel); 0 learns in this process")
    parser.add_argument("--address", default=None,
                        help="address of a running Ray cluster to connect to (e.g. host:6379)")
    parser.add_argument("--stop-reward", type=float, default=450.0,
                        help="stop once the mean return over the last 100 episodes reaches this")
    parser.add_argument("--stop-timesteps", type=int, default=None)
    parser.add_argument("--stop-iters", type=int, default=None)
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where to write the final checkpoint (default: "
                             "./runs/<timestamp>/checkpoint)")
    parser.add_argument("--restore", default=None,
                        help="algorithm checkpoint to continue from (weights, optimizer, counters)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag in ("num_env_runners", "num_learners"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("stop_timesteps", "stop_iters"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if args.restore is not None and not os.path.isfile(os.path.join(args.restore,
                                                                    "metadata.json")):
        parser.error(f"--restore {args.restore}: no algorithm checkpoint there (expected a "
                     "directory written by this script or Algorithm.save_to_path)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.address or args.num_env_runners or args.num_learners:
        import ray

        ray.init(address=args.address)  # None starts a local Ray instance.

    # 1. Config: the algorithm's defaults plus what the flags say.
    if args.algo == "PPO":
        from algorithms.ppo import PPOConfig as Config
    else:
        from algorithms.vpg import VPGConfig as Config
    cpus = 1 if args.address else 0.5  # Local Ray: runners and learners share the cores.
    config = (Config()
              .environment(args.env)
              .env_runners(num_env_runners=args.num_env_runners, num_cpus_per_env_runner=cpus)
              .learners(num_learners=args.num_learners, num_cpus_per_learner=cpus)
              .debugging(seed=args.seed))

    # 2. Build: env runners, learners, first weight sync (then, if asked, load a checkpoint).
    try:
        algo = config.build_algo()
    except (ValueError, TypeError, KeyError) as err:  # Bad env, spaces, module, ...
        sys.exit(f"train.py: error: {err}")
    if args.restore:
        try:
            algo.restore_from_path(args.restore)
        except (ValueError, KeyError) as err:  # A checkpoint of another algorithm or env.
            algo.stop()
            sys.exit(f"train.py: error: --restore {args.restore}: {err}")

    # 3. Train until a stop criterion holds.
    start, sampled = time.perf_counter(), 0
    while True:
        result = algo.train()
        steps = result["num_env_steps_sampled_lifetime"]
        sampled += result["env_runners"]["num_env_steps_sampled"]
        mean_return = result["env_runners"]["episode_return_mean"]
        rate = sampled / (time.perf_counter() - start)
        print(f"iter {result['training_iteration']:4d}  env steps {steps:8d}  "
              f"mean return {mean_return:8.2f}  {rate:7.0f} steps/s", flush=True)
        if (mean_return >= args.stop_reward
                or (args.stop_timesteps is not None and steps >= args.stop_timesteps)
                or (args.stop_iters is not None
                    and result["training_iteration"] >= args.stop_iters)):
            break

    # 4. Checkpoint.
    path = args.checkpoint_dir or os.path.join(
        "runs", time.strftime("%Y%m%d-%H%M%S"), "checkpoint")
    print(f"checkpoint: {algo.save_to_path(path)}")
    algo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
