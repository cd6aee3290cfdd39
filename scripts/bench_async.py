"""Asynchronous sampling: APPO against PPO with Ray env runners, measured in the same run.

    python scripts/bench_async.py [--seconds 8] [--rounds 2] [--cartpole-seeds 3] [--kills 10]

1. The sleep env of bench_scaling.py (each step sleeps 2 ms, like a slow simulator): 8
   runners of 4 envs, a train batch of one sampling round (ROLLOUT vector steps per runner),
   and learners whose update first sleeps as long as that round's env steps take
   (ROLLOUT * 4 * 2 ms). PPO samples, then updates, so its runners wait half the time;
   APPO's runners never wait for the learner.
   Figures: env steps sampled per second (wall clock, after a warm-up iteration), rounds
   alternating between the two; APPO's mean policy lag (learner version minus the version a
   trained fragment was sampled with). Targets: APPO / PPO >= 1.7, policy lag <= 2.
2. CartPole-v1 with 2 runners, each algorithm's defaults, seeds 0..N-1 alternating: wall time
   from the first train() until the mean return >= 450. Target: APPO no slower than PPO.
   Then Acrobot-v1 to -100 the same way, seed 0 (APPO must reach it).
3. APPO on CartPole with 2 runners, a runner killed (SIGKILL) every 2 iterations, --kills
   times: no iteration fails, env-step counters rise with every iteration, the return rises.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np

import bench_scaling
from algorithms.appo import APPOConfig, APPOTorchLearner
from algorithms.ppo import PPOConfig, PPOTorchLearner
from bench_scaling import NUM_ENVS, STEP_SLEEP_S, SleepEnv

ROLLOUT = 10
"""Vector steps per runner and sample request (rollout_fragment_length)."""
NUM_RUNNERS = 8


class SlowUpdate:
    """A learner whose update costs ``learner_config_dict["sleep_s"]`` more (GIL released)."""

    def update(self, fragments):
        time.sleep(self.config.learner_config_dict["sleep_s"])
        return super().update(fragments)


class SlowPPOLearner(SlowUpdate, PPOTorchLearner):
    pass


class SlowAPPOLearner(SlowUpdate, APPOTorchLearner):
    pass


def sleep_env_config(algo: str):
    round_s = ROLLOUT * NUM_ENVS * STEP_SLEEP_S  # A runner steps its envs one by one.
    shared = dict(train_batch_size_per_learner=NUM_RUNNERS * NUM_ENVS * ROLLOUT,
                  minibatch_size=None, num_epochs=1, learner_config_dict={"sleep_s": round_s})
    if algo == "PPO":
        config = PPOConfig().training(learner_class=SlowPPOLearner, **shared)
    else:  # Train each batch once, as soon as it is full: the freshest data.
        config = (APPOConfig().training(learner_class=SlowAPPOLearner,
                                        circular_buffer_num_batches=1,
                                        circular_buffer_iterations_per_batch=1, **shared)
                  .reporting(min_time_s_per_iteration=2.0))
    return (config.environment(SleepEnv)
            .env_runners(num_env_runners=NUM_RUNNERS, num_envs_per_env_runner=NUM_ENVS,
                         num_cpus_per_env_runner=0.25, rollout_fragment_length=ROLLOUT)
            .debugging(seed=0))


def sampled_per_s(algo_name: str, seconds: float) -> tuple[float, float | None]:
    """(env steps sampled per wall second, mean policy lag or None) after one warm-up."""
    algo = sleep_env_config(algo_name).build_algo()
    try:
        first = algo.train()
        start, lags = time.perf_counter(), []
        while time.perf_counter() - start < seconds:
            result = algo.train()
            lags.append(result.get("policy_lag_mean"))
        steps = result["num_env_steps_sampled_lifetime"] - first["num_env_steps_sampled_lifetime"]
        return steps / (time.perf_counter() - start), (
            None if lags[0] is None else float(np.mean(lags)))
    finally:
        algo.stop()


def wall_time(algo_name: str, seed: int, env: str = "CartPole-v1", target: float = 450.0,
              limit_s: float = 120.0) -> tuple[float, int]:
    """(seconds from the first train() to a mean return >= target, env steps sampled).
    APPO's iterations last 0.2 s, about as long as one of PPO's, so both look at the
    return as often."""
    config = APPOConfig().reporting(min_time_s_per_iteration=0.2) if algo_name == "APPO" \
        else PPOConfig()
    algo = (config.environment(env)
            .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.5)
            .debugging(seed=seed).build_algo())
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < limit_s:
            result = algo.train()
            if result["env_runners"]["episode_return_mean"] >= target:
                break
        return time.perf_counter() - start, result["num_env_steps_sampled_lifetime"]
    finally:
        algo.stop()


def killed_runners(kills: int) -> None:
    """APPO on CartPole with 2 runners, one killed every 2 iterations, ``kills`` times: every
    iteration must succeed, counters only grow, the return keeps rising."""
    algo = (APPOConfig().environment("CartPole-v1").reporting(min_time_s_per_iteration=0.5)
            .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.5)
            .debugging(seed=0).build_algo())
    results = []
    try:
        for kill in range(kills):
            results += [algo.train()["env_runners"] for _ in range(2)]
            pid = algo.env_runner_group.foreach_env_runner(lambda r: os.getpid())[kill % 2]
            os.kill(pid, signal.SIGKILL)
        results += [algo.train()["env_runners"] for _ in range(2)]
    finally:
        algo.stop()
    steps = [r["num_env_steps_sampled_lifetime"] for r in results]
    returns = [r["episode_return_mean"] for r in results]
    monotonic = all(a < b for a, b in zip(steps, steps[1:]))
    print(f"APPO, CartPole-v1, 2 runners, a runner killed {kills} times: {len(results)} "
          f"iterations, none failed; restarts {results[-1]['num_env_runner_restarts']}; "
          f"env steps strictly rising: {monotonic}; return {returns[0]:.0f} -> "
          f"{max(returns[-4:]):.0f} (best of the last 4)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per sleep-env measurement")
    parser.add_argument("--rounds", type=int, default=2, help="sleep-env rounds per algorithm")
    parser.add_argument("--cartpole-seeds", type=int, default=3, help="0: skip CartPole")
    parser.add_argument("--kills", type=int, default=10, help="runner kills; 0: skip")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # A local Ray only: no token file.
    import ray

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(bench_scaling)  # Ray workers cannot import scripts.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        figures: dict[str, list[tuple[float, float | None]]] = {"PPO": [], "APPO": []}
        for _ in range(args.rounds):
            for name in figures:
                figures[name].append(sampled_per_s(name, args.seconds))
        ppo = np.mean([steps for steps, _ in figures["PPO"]])
        appo = np.mean([steps for steps, _ in figures["APPO"]])
        lag = np.mean([lag for _, lag in figures["APPO"]])
        round_ms = ROLLOUT * NUM_ENVS * STEP_SLEEP_S * 1e3
        print(f"sleep env of bench_scaling.py, {NUM_RUNNERS} runners x {NUM_ENVS} envs, step "
              f"{STEP_SLEEP_S * 1e3:g} ms, learner update +{round_ms:g} ms (one sampling round):")
        print(f"  PPO : {ppo:>8,.0f} env steps sampled/s")
        print(f"  APPO: {appo:>8,.0f} env steps sampled/s, ratio {appo / ppo:.2f} "
              f"(target >= 1.7), mean policy lag {lag:.2f} (target <= 2)")
        if args.cartpole_seeds:
            times: dict[str, list[tuple[float, int]]] = {"PPO": [], "APPO": []}
            for seed in range(args.cartpole_seeds):
                for name in times:
                    times[name].append(wall_time(name, seed))
            print(f"CartPole-v1, 2 runners, defaults, seeds 0-{args.cartpole_seeds - 1}: "
                  "wall time to a mean return of 450")
            for name, runs in times.items():
                print(f"  {name:<4}: mean {np.mean([s for s, _ in runs]):5.1f} s  (" +
                      ", ".join(f"{s:.1f} s / {n:,} steps" for s, n in runs) + ")")
            ratio = np.mean([s for s, _ in times["APPO"]]) / np.mean([s for s, _ in times["PPO"]])
            print(f"  APPO / PPO wall time {ratio:.2f} (target <= 1.0)")
            print("Acrobot-v1, 2 runners, defaults, seed 0: wall time to a mean return of -100")
            for name in times:
                seconds, steps = wall_time(name, 0, "Acrobot-v1", -100.0)
                print(f"  {name:<4}: {seconds:5.1f} s / {steps:,} steps")
        if args.kills:
            killed_runners(args.kills)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
