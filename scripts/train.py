"""Train PPO (or VPG) until a mean return is reached, logging to a run directory.

    python scripts/train.py                        # PPO on CartPole-v1, local, until return >= 450
    python scripts/train.py --algo VPG --stop-reward 400
    python scripts/train.py --num-env-runners 2 --num-learners 2     # Ray actors on this machine
    python scripts/train.py --address auto --num-env-runners 8       # a running Ray cluster
    python scripts/train.py --checkpoint-every 10  # a checkpoint every 10 iterations
    python scripts/train.py --restore runs/<time>  # continue a killed or finished run
    python scripts/train.py --eval-interval 5      # greedy evaluation every 5 iterations
    python scripts/train.py --set training.lr=3e-4 --set env_runners.num_envs_per_env_runner=16
    python scripts/train.py --env my_envs:MyEnv --module my_modules:MyModule

Every run has a run directory (--run-dir, default ./runs/<time>/) holding its flags
(args.json), every iteration's results (results.jsonl, TensorBoard files if installed) and its
checkpoint (checkpoint/, unless --checkpoint-dir says otherwise). --restore continues a run
with its saved flags (flags given again override them) and keeps logging into its directory.
Local mode (no runners, no learners, no --address) never imports Ray. The run stops at the
first of --stop-reward / --stop-timesteps / --stop-iters. With --eval-interval N, every N-th
iteration evaluates greedily for --eval-duration episodes (an evaluation runner in this
process) and --stop-reward applies to that evaluation's mean return instead of the training
return (which explores).

--set SECTION.KEY=VALUE sets any config setting: SECTION is the config's builder method
(training, env_runners, environment, rl_module, learners, evaluation, ...), VALUE a Python
literal (3e-4, 16, [64, 64], {'fcnet_hiddens': [32]}, True, None) or else a plain string; the
last --set of a key wins. --env and --module also take package.module:Class, imported from
the installed packages or the current directory. At the start the script prints the settings
that differ from the algorithm's defaults.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from algorithms import ALGORITHMS, get_algorithm_class
from algorithms.algorithm_config import AlgorithmConfig
from algorithms.checkpoints import find_checkpoint
from algorithms.run_log import RESULTS_FILE, Progress, RunLog, new_run_dir
from rlmodules import RLModule, RLModuleSpec
from rlmodules.checkpoint import lookup as lookup_class_path

ARGS_FILE = "args.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="PPO")
    parser.add_argument("--env", default="CartPole-v1",
                        help="gymnasium id, a name registered with runners.register_env, or "
                             "an env class as package.module:Class")
    parser.add_argument("--module", default=None, metavar="PACKAGE.MODULE:CLASS",
                        help="the RLModule class to train (default: the algorithm's)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any config setting, e.g. training.lr=3e-4 (repeatable)")
    parser.add_argument("--num-env-runners", type=int, default=0,
                        help="Ray env runner actors; 0 samples in this process")
    parser.add_argument("--num-learners", type=int, default=0,
                        help="Ray learner actors (>= 2: data-parallel); 0 learns in this process")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join: 'auto', host:port, or ray://host:10001 "
                             "(Ray Client; needs pip install 'ray[client]')")
    parser.add_argument("--stop-reward", type=float, default=450.0,
                        help="stop once the mean return over the last 100 episodes (with "
                             "--eval-interval: of an evaluation) reaches this")
    parser.add_argument("--stop-timesteps", type=int, default=None)
    parser.add_argument("--stop-iters", type=int, default=None)
    parser.add_argument("--run-dir", default=None,
                        help="where results and the checkpoint go (default: ./runs/<time>/)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="where checkpoints go (default: <run dir>/checkpoint)")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                        help="also checkpoint every N iterations (0: only at the end)")
    parser.add_argument("--restore", default=None, metavar="DIR",
                        help="run directory or algorithm checkpoint to continue from")
    parser.add_argument("--eval-interval", type=int, default=None, metavar="N",
                        help="evaluate greedily every N iterations; stop on its return")
    parser.add_argument("--eval-duration", type=int, default=10, metavar="EPISODES",
                        help="episodes per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.restore is not None:  # The run's saved flags become the defaults; argv still wins.
        checkpoint, run_dir, saved = locate_restore(args.restore, parser)
        parser.set_defaults(**saved, run_dir=run_dir)
        args = parser.parse_args(argv)
        args.restore = checkpoint
    for flag in ("num_env_runners", "num_learners", "checkpoint_every"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("stop_timesteps", "stop_iters", "eval_interval", "eval_duration"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    for text in args.set:
        try:
            parse_setting(text)
        except ValueError as err:
            parser.error(str(err))
    if args.module is not None and not is_class_path(args.module):
        parser.error(f"--module {args.module}: give the class as package.module:Class")
    ckpt = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    if ckpt and ckpt.exists() and not (ckpt.is_dir() and (
            (ckpt / "metadata.json").is_file() or not any(ckpt.iterdir()))):
        parser.error(f"--checkpoint-dir {args.checkpoint_dir} exists and is neither a "
                     "checkpoint nor empty; checkpoints replace it, so choose another path")
    if args.run_dir and not args.restore and (Path(args.run_dir) / RESULTS_FILE).exists():
        parser.error(f"--run-dir {args.run_dir} holds the results of another run; continue it "
                     f"with --restore {args.run_dir} or choose a new directory")
    return args


def locate_restore(path: str, parser: argparse.ArgumentParser
                   ) -> tuple[str, str | None, dict]:
    """--restore RUN_DIR or CHECKPOINT -> (checkpoint, its run dir or None, the run's flags)."""
    given = Path(path)
    run_dir = given if (given / ARGS_FILE).is_file() else \
        given.parent if (given.parent / ARGS_FILE).is_file() else None
    saved = json.loads((run_dir / ARGS_FILE).read_text()) if run_dir else {}
    checkpoint = Path(saved.get("checkpoint_dir") or given / "checkpoint") if run_dir == given \
        else given
    checkpoint = find_checkpoint(checkpoint)
    if not (checkpoint / "metadata.json").is_file():
        parser.error(f"--restore {path}: no algorithm checkpoint there (expected a run "
                     "directory or checkpoint written by this script or Algorithm.save_to_path)")
    return str(checkpoint), str(run_dir) if run_dir else None, saved


def parse_value(text: str) -> Any:
    """A Python literal where ``text`` is one, else the text itself (so env names need no
    quotes)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError):
        return text.strip()


def parse_setting(text: str) -> tuple[str, str, Any]:
    """--set SECTION.KEY=VALUE -> (section, key, value), the value as ``parse_value`` reads it."""
    target, equals, value = text.partition("=")
    section, dot, key = target.partition(".")
    if not (equals and dot and section and key):
        raise ValueError(f"--set {text}: expected SECTION.KEY=VALUE, e.g. training.lr=3e-4")
    return section, key, parse_value(value)


def is_class_path(name: str) -> bool:
    """Whether ``name`` is package.module:Class (gymnasium's module:Env-v0 ids are not)."""
    module, colon, qualname = name.partition(":")
    return bool(colon) and all(part.isidentifier() for part in [*module.split("."),
                                                                 *qualname.split(".")])


def import_class(flag: str, path: str) -> Any:
    """The class package.module:Class names. The current directory is searched too, as Ray
    workers (which import it again) search their driver's."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return lookup_class_path(path)
    except Exception as err:  # Whatever importing the module raised.
        sys.exit(f"train.py: error: {flag} {path}: cannot import it ({type(err).__name__}: "
                 f"{err}); give package.module:Class of a module importable from here")


def build_config(args: argparse.Namespace) -> AlgorithmConfig:
    """The algorithm's defaults, then the flags, then each --set (so --set has the last word)."""
    default_config = get_algorithm_class(args.algo).get_default_config
    cpus = 1 if args.address else 0.5  # Local Ray: runners and learners share the cores.
    env = import_class("--env", args.env) if is_class_path(args.env) else args.env
    config = (default_config()
              .environment(env)
              .env_runners(num_env_runners=args.num_env_runners, num_cpus_per_env_runner=cpus)
              .learners(num_learners=args.num_learners, num_cpus_per_learner=cpus)
              .debugging(seed=args.seed))
    if args.module:
        module_class = import_class("--module", args.module)
        if not (isinstance(module_class, type) and issubclass(module_class, RLModule)):
            sys.exit(f"train.py: error: --module {args.module} is not an RLModule subclass")
        config.rl_module(rl_module_spec=RLModuleSpec(module_class=module_class))
    if args.eval_interval:
        config.evaluation(evaluation_interval=args.eval_interval,
                          evaluation_duration=args.eval_duration)
    sections = sorted(type(config).sections())
    for text in args.set:
        section, key, value = parse_setting(text)
        if section not in sections:
            sys.exit(f"train.py: error: --set {text}: '{section}' is not a section of "
                     f"{type(config).__name__}; sections: {', '.join(sections)}")
        try:  # The builder method checks the key and the value, naming what is wrong.
            getattr(config, section)(**{key: value})
        except (TypeError, ValueError) as err:
            sys.exit(f"train.py: error: --set {text}: {err}")
    return config


def make_run_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """The run directory (with the flags in args.json, for --restore) and the checkpoint path."""
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = os.path.abspath(args.checkpoint_dir or run_dir / "checkpoint")
    flags = {k: v for k, v in vars(args).items() if k not in ("restore", "run_dir")}
    (run_dir / ARGS_FILE).write_text(json.dumps(flags | {"checkpoint_dir": checkpoint}, indent=1))
    return run_dir, checkpoint


def stop_reached(args: argparse.Namespace, result: dict) -> bool:
    """--stop-reward on the evaluation's return where --eval-interval is set (in iterations
    that evaluated), else on the training return; or a step or iteration limit."""
    returns = result.get("evaluation", {}) if args.eval_interval else result
    return (returns.get("env_runners", {}).get("episode_return_mean", -math.inf)
            >= args.stop_reward
            or (args.stop_timesteps is not None
                and result["num_env_steps_sampled_lifetime"] >= args.stop_timesteps)
            or (args.stop_iters is not None and result["training_iteration"] >= args.stop_iters))


def init_ray(address: str | None) -> None:
    # Ray 2.60's `ray start` turns on token auth once it finds a token (RAY_AUTH_TOKEN_PATH, else
    # ~/.ray/auth_token), but a client only sends it when RAY_AUTH_MODE=token; without that,
    # joining such a cluster fails. (Set before importing ray, which reads it then.)
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if "RAY_AUTH_MODE" not in os.environ and token.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    ray.init(address=address)  # None starts a local Ray; "auto", host:port, ray://... join one.


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # 1. Config: the algorithm's defaults plus what the flags say.
    config = build_config(args)
    run_dir, checkpoint = make_run_dir(args)
    print(f"run dir: {run_dir}", flush=True)
    print(f"settings that differ from the defaults: {config!r}", flush=True)
    if args.address or config.num_env_runners or config.num_learners or \
            config.evaluation_num_env_runners:
        init_ray(args.address)

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

    # 3. Train until a stop criterion holds, checkpointing every --checkpoint-every iterations.
    try:
        with RunLog(run_dir, start_iteration=algo.training_iteration) as log:
            progress = Progress(stop_iters=args.stop_iters, stop_timesteps=args.stop_timesteps)
            while True:
                result = algo.train()
                log.write(result)
                print(progress.line(result), flush=True)
                done = stop_reached(args, result)
                if done or (args.checkpoint_every
                            and result["training_iteration"] % args.checkpoint_every == 0):
                    algo.save_to_path(checkpoint)  # 4. Checkpoint (atomically).
                if done:
                    break
    except KeyboardInterrupt:
        sys.exit(f"train.py: interrupted; continue from the last checkpoint with --restore "
                 f"{run_dir}" if os.path.isdir(checkpoint) else
                 "train.py: interrupted before the first checkpoint (see --checkpoint-every)")
    finally:
        algo.stop()
    print(f"checkpoint: {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
