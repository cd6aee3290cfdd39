"""scripts/tune.py as a user runs it: a subprocess sweeping a grid on a local Ray of its own."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from algorithms import Algorithm

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "tune.py")


@pytest.mark.ray
def test_grid_sweep_prints_settings_table_and_a_loadable_best_checkpoint(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HOME": str(home)}
    storage = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, SCRIPT, "--grid", "lr=1e-3,3e-4", "--stop-iters", "2",
         "--grid", "train_batch_size_per_learner=500", "--storage-path", str(storage)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "settings that differ from the defaults: PPOConfig(env='CartPole-v1', " \
           "lr={'grid_search': [0.001, 0.0003]}, train_batch_size_per_learner=" \
           "{'grid_search': [500]})" in out
    assert "Trial status:" in out and "TERMINATED" in out  # Tune's progress table.
    best = re.search(r"^best trial: PPO_\S+ lr=(\S+) train_batch_size_per_learner=500: "
                     r"return [\d.]+ after 2 iterations$", out, re.M)
    assert best, out
    checkpoint = re.search(r"^best checkpoint: (.+)$", out, re.M).group(1)
    assert Path(checkpoint).is_relative_to(storage)
    trial_dirs = {p.parent for p in storage.rglob("events.out.tfevents.*")}
    assert len(trial_dirs) == 2  # TensorBoard files of both trials (Tune's default loggers).
    algo = Algorithm.from_checkpoint(checkpoint)
    try:
        assert algo.training_iteration == 2 and algo.config.lr == float(best.group(1))
        assert algo.config.train_batch_size_per_learner == 500
    finally:
        algo.stop()
    assert not (home / ".ray").exists() and not (home / "ray_results").exists()
