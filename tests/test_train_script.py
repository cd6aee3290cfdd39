"""scripts/train.py as a user runs it: a subprocess with flags."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "train.py")


def run(*flags, timeout=120):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True,
                          timeout=timeout)


def test_trains_checkpoints_and_resumes(tmp_path):
    checkpoint = str(tmp_path / "ckpt")
    first = run("--stop-iters", "2", "--checkpoint-dir", checkpoint)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stdout.splitlines() if line.startswith("iter")]
    assert len(lines) == 2 and "env steps     4000" in lines[1] and "mean return" in lines[1]
    assert os.path.isfile(os.path.join(checkpoint, "metadata.json"))

    resumed = run("--restore", checkpoint, "--stop-iters", "3",
                  "--checkpoint-dir", str(tmp_path / "ckpt2"))
    assert resumed.returncode == 0, resumed.stderr
    lines = [line for line in resumed.stdout.splitlines() if line.startswith("iter")]
    assert len(lines) == 1 and lines[0].startswith("iter    3  env steps     6000")


@pytest.mark.parametrize("flags, message", [
    (["--algo", "DQN"], "invalid choice: 'DQN'"),
    (["--num-env-runners", "-1"], "--num-env-runners must be >= 0, got -1"),
    (["--stop-iters", "0"], "--stop-iters must be > 0"),
    (["--stop-reward", "high"], "invalid float value: 'high'"),
    (["--restore", "/no/such/dir"], "--restore /no/such/dir: no algorithm checkpoint"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_bad_flags_exit_nonzero_with_a_message(flags, message):
    result = run(*flags, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr


def test_unknown_env_is_a_clear_error(tmp_path):
    result = run("--env", "NoSuchEnv-v0", "--stop-iters", "1")
    assert result.returncode != 0
    assert "NoSuchEnv-v0" in result.stderr


def test_connects_to_a_running_ray_cluster(ray_session, tmp_path):
    # The test session's Ray is a running cluster like any other: train.py joins it.
    address = ray_session.get_runtime_context().gcs_address
    result = run("--address", address, "--num-env-runners", "1", "--stop-iters", "1",
                 "--checkpoint-dir", str(tmp_path / "ckpt"), timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("iter    1  env steps     2000")
