"""Durable runs for real: processes killed with SIGKILL mid-save and mid-training, then resumed."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from algorithms import Algorithm
from algorithms.ppo import PPOConfig
from algorithms.run_log import read_results

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "train.py")

# Continues the checkpoint at argv[1] (or starts) and saves it after every small iteration.
SAVER = """
import sys
from algorithms import Algorithm
from algorithms.ppo import PPOConfig
path = sys.argv[1]
try:
    algo = Algorithm.from_checkpoint(path)
except FileNotFoundError:
    algo = (PPOConfig().environment("CartPole-v1")
            .training(train_batch_size_per_learner=200, minibatch_size=100).build_algo())
while True:
    algo.train()
    print("saving", algo.training_iteration, flush=True)
    algo.save_to_path(path)
    print("saved", algo.training_iteration, flush=True)
"""


def loaded_iteration(path):
    """The training iteration of the checkpoint at ``path``, loaded as a user would."""
    algo = Algorithm.from_checkpoint(str(path))
    algo.stop()
    return algo.training_iteration


def leftovers(path):
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_sigkill_mid_save_always_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "checkpoint"
    rng = random.Random(0)
    last_loaded, kills, mid_save = 0, 0, 0
    while mid_save < 3:  # Kill the saver until three kills have hit a save.
        assert kills < 12, f"only {mid_save} of {kills} kills hit a save"
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        saved = 0
        for line in proc.stdout:  # After a first save: a random later save, a random moment.
            kind, iteration = line.split()
            if kind == "saved":
                saved = int(iteration)
            elif saved and rng.random() < 0.3:
                time.sleep(rng.uniform(0.0, 0.01))  # A save takes about 10 ms.
                break
        assert saved, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        rest = proc.communicate()[0].split()
        saved = max([saved] + [int(n) for kind, n in zip(rest[::2], rest[1::2])
                               if kind == "saved"])
        kills += 1
        mid_save += not rest or rest[-2] == "saving"

        algo = Algorithm.from_checkpoint(str(path))  # Complete and loadable, every time,
        try:
            # holding the last save that finished or the one that was being made.
            assert algo.training_iteration in (saved, saved + 1)
            assert algo.training_iteration > last_loaded  # The next run continued it.
            last_loaded = algo.training_iteration
        finally:
            algo.stop()

    # The next save clears what killed saves left next to the checkpoint.
    algo = Algorithm.from_checkpoint(str(path))
    algo.save_to_path(str(path))
    algo.stop()
    assert leftovers(path) == [] and loaded_iteration(path) == last_loaded


def test_a_save_killed_between_its_renames_loads_from_the_copy_it_left(tmp_path):
    path = tmp_path / "checkpoint"
    algo = (PPOConfig().environment("CartPole-v1")
            .training(train_batch_size_per_learner=200, minibatch_size=100).build_algo())
    try:
        algo.train()
        algo.save_to_path(str(path))
        algo.train()
        # What write_dir_atomically leaves when killed after moving the old copy away and
        # before moving the new one in: both complete, the path itself missing.
        new = Path(algo.save_to_path(str(tmp_path / "new")))
        os.rename(path, tmp_path / ".checkpoint.old-1234abcd")
        os.rename(new, tmp_path / ".checkpoint.tmp-5678")
        (tmp_path / ".checkpoint.tmp-9999").mkdir()  # An unfinished copy of a later save.

        assert loaded_iteration(path) == 2
        algo.restore_from_path(str(path))
        assert algo.training_iteration == 2

        algo.train()
        algo.save_to_path(str(path))
        assert leftovers(path) == [] and loaded_iteration(path) == 3
    finally:
        algo.stop()


def test_train_py_killed_resumes_and_reaches_its_stop_condition(tmp_path):
    flags = ["--checkpoint-every", "1", "--stop-timesteps", "40000", "--run-dir", "run"]
    proc = subprocess.Popen([sys.executable, SCRIPT, *flags], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("iter    8"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    run_dir = tmp_path / "run"
    before = read_results(run_dir)
    killed_at = loaded_iteration(run_dir / "checkpoint")
    assert killed_at >= 7

    resumed = subprocess.run([sys.executable, SCRIPT, "--restore", "run"], cwd=tmp_path,
                             text=True, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    first_line = next(line for line in resumed.stdout.splitlines() if line.startswith("iter"))
    assert first_line.startswith(f"iter {killed_at + 1:4d}  env steps {(killed_at + 1) * 2000:8d}")

    rows = read_results(run_dir)  # One history: rows after the checkpoint were replaced.
    assert [r["training_iteration"] for r in rows] == list(range(1, len(rows) + 1))
    steps = [r["num_env_steps_sampled_lifetime"] for r in rows]
    assert steps == [2000 * (i + 1) for i in range(len(rows))]
    assert steps[-1] >= 40000 > steps[-2]  # Stopped by the saved --stop-timesteps.
    assert json.loads((run_dir / "args.json").read_text())["stop_timesteps"] == 40000

    # The return continues from where it was, far above an untrained policy's.
    untrained = before[0]["env_runners"]["episode_return_mean"]
    after = [r["env_runners"]["episode_return_mean"] for r in rows[killed_at:]]
    first_after = next(ret for ret in after if not math.isnan(ret))
    assert first_after > 3 * untrained, (untrained, first_after)
    assert loaded_iteration(run_dir / "checkpoint") == len(rows)
