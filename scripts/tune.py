"""Sweep PPO (or VPG) hyperparameters with Ray Tune, printing the best trial's checkpoint.

    python scripts/tune.py --grid lr=1e-3,3e-4 --stop-iters 20        # 2 trials, local Ray
    python scripts/tune.py --algo VPG --grid lr=1e-3,3e-4 --grid gamma=0.98,0.99 --num-samples 2
    python scripts/tune.py --address auto --num-env-runners 2 --grid lr=1e-3,3e-4

Each --grid KEY=V1,V2,... has Tune try every value of the config setting KEY (any setting:
lr, gamma, minibatch_size, model_config, ...); the values are Python literals (a value that is
not one, e.g. CartPole-v1, is a string), and several --grid flags multiply. --num-samples
repeats the whole grid; trials are not seeded, so repeats differ. A trial stops at the first
of --stop-reward (its mean training return) and --stop-iters, and checkpoints then.

Results are Tune's: one directory per trial under --storage-path (default ~/ray_results)
with progress.csv, result.json, TensorBoard event files and the checkpoint, which
Algorithm.from_checkpoint loads. On a cluster of several nodes, --storage-path must be a
path every node reaches (NFS) or a cloud URI, as Tune needs for trial checkpoints.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import sys
from typing import Any

from algorithms import ALGORITHMS, get_algorithm_class
from train import init_ray, parse_value  # scripts/train.py: this directory is on sys.path.
RETURN = "env_runners/episode_return_mean"


def grid_flag(flag: str) -> tuple[str, list[Any]]:
    """``lr=1e-3,3e-4`` -> ``("lr", [0.001, 0.0003])``; ``env=CartPole-v1`` -> a string."""
    key, _, values = flag.partition("=")
    if not key.strip() or not values.strip():
        raise argparse.ArgumentTypeError(
            f"'{flag}' is not KEY=V1,V2,... (for example lr=1e-3,3e-4)")
    try:
        parsed = list(ast.literal_eval(f"({values},)"))
    except (ValueError, SyntaxError):  # Some value is no literal: split at every comma.
        parsed = [parse_value(value) for value in values.split(",")]
    return key.strip(), parsed


def _final_return(result: Any) -> float:
    """The trial's last mean return; -inf before its first episode ended (NaN)."""
    value = result.metrics["env_runners"]["episode_return_mean"]
    return -math.inf if math.isnan(value) else value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="PPO")
    parser.add_argument("--env", default="CartPole-v1",
                        help="gymnasium id or a name registered with runners.register_env")
    parser.add_argument("--num-samples", type=int, default=1,
                        help="how many times Tune runs the whole grid")
    parser.add_argument("--grid", type=grid_flag, action="append", default=[],
                        metavar="KEY=V1,V2", help="try each value of a config setting; repeat "
                                                  "the flag to sweep several settings")
    parser.add_argument("--stop-reward", type=float, default=450.0,
                        help="a trial stops once its mean return (over the last 100 "
                             "episodes) reaches this")
    parser.add_argument("--stop-iters", type=int, default=None,
                        help="a trial stops after this many iterations")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: 'auto', host:port, or ray://host:10001 "
                             "(default: start a local Ray)")
    parser.add_argument("--num-env-runners", type=int, default=0,
                        help="Ray env runner actors per trial; 0 samples in the trial's actor")
    parser.add_argument("--storage-path", default=None,
                        help="where Tune writes the experiment (default: ~/ray_results)")
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        parser.error(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.stop_iters is not None and args.stop_iters <= 0:
        parser.error(f"--stop-iters must be > 0, got {args.stop_iters}")
    if args.num_env_runners < 0:
        parser.error(f"--num-env-runners must be >= 0, got {args.num_env_runners}")
    keys = [key for key, _ in args.grid]
    for key in sorted({key for key in keys if keys.count(key) > 1}):
        parser.error(f"--grid {key}=... is given twice; put all its values in one flag")
    default_config = get_algorithm_class(args.algo).get_default_config
    for key, values in args.grid:  # Each value checked now rather than in a failing trial.
        for value in values:
            try:
                default_config().update_from_dict({key: value})
            except (ValueError, TypeError, KeyError) as err:
                parser.error(f"--grid {key}=...: {err}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.address is None:  # A Ray of our own needs no auth (and so writes no ~/.ray token).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    init_ray(args.address)
    from ray import tune

    from algorithms.tune import trainable

    algo_class = get_algorithm_class(args.algo)
    config = (algo_class.get_default_config()
              .environment(args.env)
              .env_runners(num_env_runners=args.num_env_runners)
              .update_from_dict({key: tune.grid_search(values) for key, values in args.grid}))
    print(f"settings that differ from the defaults: {config!r}", flush=True)  # As train.py.

    stop = {RETURN: args.stop_reward}
    if args.stop_iters is not None:
        stop["training_iteration"] = args.stop_iters
    storage = args.storage_path  # Trials write from their own working directories:
    if storage and "://" not in storage:  # a local path has to be absolute.
        storage = os.path.abspath(storage)
    grid = tune.Tuner(
        trainable(algo_class), param_space=config,
        tune_config=tune.TuneConfig(num_samples=args.num_samples, metric=RETURN, mode="max"),
        run_config=tune.RunConfig(storage_path=storage, stop=stop,
                                  checkpoint_config=tune.CheckpointConfig(
                                      checkpoint_at_end=True))).fit()

    print(f"results: {grid.experiment_path} (tensorboard --logdir {grid.experiment_path})")
    for error in grid.errors:
        print(f"tune.py: a trial failed: {error}", file=sys.stderr)
    finished = [result for result in grid if result.error is None]
    if not finished:
        return 1
    best = max(finished, key=_final_return)
    swept = "".join(f" {key}={best.config[key]!r}" for key, _ in args.grid)
    print(f"best trial: {os.path.basename(best.path)}{swept}: return "
          f"{_final_return(best):.1f} after {best.metrics['training_iteration']} iterations")
    print(f"best checkpoint: {best.checkpoint.path}")
    return 1 if grid.errors else 0


if __name__ == "__main__":
    sys.exit(main())
