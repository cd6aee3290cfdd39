"""scripts/plot.py on run directories written by the real run log from real training."""

import importlib.util
from pathlib import Path

import pytest

from algorithms.ppo import PPOConfig
from algorithms.run_log import RunLog

_spec = importlib.util.spec_from_file_location(
    "plot", Path(__file__).resolve().parents[1] / "scripts" / "plot.py")
plot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plot)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Two short PPO runs (different seeds) logged as scripts/train.py logs them."""
    dirs = []
    for seed in (0, 1):
        run_dir = tmp_path_factory.mktemp(f"seed{seed}")
        algo = (PPOConfig().environment("CartPole-v1")
                .training(train_batch_size_per_learner=500, minibatch_size=250)
                .debugging(seed=seed).build_algo())
        with RunLog(run_dir) as log:
            for _ in range(3):
                log.write(algo.train())
        algo.stop()
        dirs.append(run_dir)
    return dirs


def test_learning_curves_of_two_runs_in_one_png(run_dirs, tmp_path):
    out = tmp_path / "plots" / "curves.png"
    assert plot.main([*map(str, run_dirs), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000

    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (600, 960)  # 8x5 inches at 120 dpi.
    steps, returns = plot.load_curve(run_dirs[0])
    assert len(steps) == 3 and steps == sorted(set(steps)) and all(r > 0 for r in returns)
    assert plot.load_curve(run_dirs[1])[1] != returns  # Two different runs, two lines.


def test_a_directory_without_results_is_named(tmp_path, capsys):
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{tmp_path}/results.jsonl' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
