"""scripts/plot.py on run directories written by the real run log from real training."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from algorithms.ppo import PPOConfig
from algorithms.run_log import RunLog, read_results

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot, train = _load("plot"), _load("train")


def make_run(run_dir: Path, *flags: str) -> Path:
    """A run directory with args.json as scripts/train.py writes it for ``flags``."""
    train.make_run_dir(train.parse_args(["--run-dir", str(run_dir), *flags]))
    return run_dir


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Two short PPO CartPole runs (seeds 0 and 1) logged as scripts/train.py logs them."""
    dirs = []
    for seed in (0, 1):
        run_dir = make_run(tmp_path_factory.mktemp(f"seed{seed}"), "--seed", str(seed))
        algo = (PPOConfig().environment("CartPole-v1")
                .training(train_batch_size_per_learner=500, minibatch_size=250)
                .debugging(seed=seed).build_algo())
        with RunLog(run_dir) as log:
            for _ in range(3):
                log.write(algo.train())
        algo.stop()
        dirs.append(run_dir)
    return dirs


def legend_and_bands():
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    ax = plt.gcf().axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    plt.close("all")
    return labels, bands, ax


def test_seeds_of_one_config_are_one_mean_line_with_a_band(run_dirs, tmp_path, capsys):
    out = tmp_path / "plots" / "curves.png"
    assert plot.main([*map(str, run_dirs), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    labels, bands, ax = legend_and_bands()
    assert labels == ["PPO CartPole-v1 seeds 0, 1 (mean, min-max)"]
    assert len(bands) == 1 and ax.get_ylabel() == "env_runners/episode_return_mean"

    steps, returns = plot.load_curve(run_dirs[0])
    assert len(steps) == 3 and list(steps) == sorted(set(steps)) and all(returns > 0)
    assert list(plot.load_curve(run_dirs[1])[1]) != list(returns)  # Two different runs.
    (x, mean, low, high), = [plot.mean_band([plot.load_curve(d) for d in run_dirs], run_dirs)]
    assert list(x) == list(steps)  # Same batch sizes: same env steps, nothing interpolated.
    assert (low <= mean).all() and (mean <= high).all() and (low < high).any()


def test_runs_are_labelled_by_algo_env_seed_and_the_flags_they_differ_in(run_dirs, tmp_path):
    other = make_run(tmp_path / "vpg", "--algo", "VPG", "--seed", "3")
    ray_run = make_run(tmp_path / "runners", "--num-env-runners", "2", "--seed", "5")
    for run in (other, ray_run):
        shutil.copy(run_dirs[0] / "results.jsonl", run)
    groups = plot.group_runs([run_dirs[0], other, ray_run, run_dirs[1]])
    assert groups == {
        "PPO CartPole-v1 num_env_runners=0 seeds 0, 1 (mean, min-max)": run_dirs,
        "VPG CartPole-v1 num_env_runners=0 seed 3": [other],
        "PPO CartPole-v1 num_env_runners=2 seed 5": [ray_run]}
    # Without args.json (a run logged by hand) the directory is the label.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dirs[0] / "results.jsonl", bare)
    assert plot.group_runs([bare, run_dirs[1]]) == {
        str(bare): [bare], "PPO CartPole-v1 seed 1": [run_dirs[1]]}


def test_mean_band_interpolates_on_the_common_x_range():
    runs = [(np.array([0., 10, 20]), np.array([0., 10, 20])),
            (np.array([5., 15, 25]), np.array([1., 1, 1]))]
    x, mean, low, high = plot.mean_band(runs, [Path("a"), Path("b")])
    assert list(x) == [5, 10, 15, 20]
    assert list(mean) == [3, 5.5, 8, 10.5]
    assert list(low) == [1, 1, 1, 1] and list(high) == [5, 10, 15, 20]
    with pytest.raises(ValueError, match="runs a, b .* share no x range"):
        plot.mean_band([runs[0], (np.array([30., 40]), np.array([1., 1]))],
                       [Path("a"), Path("b")])


def test_any_key_against_env_steps_or_wall_time(run_dirs, tmp_path, capsys):
    rows = read_results(run_dirs[0])
    steps, sampled = plot.load_curve(run_dirs[0], key="env_runners/num_env_steps_sampled")
    assert list(steps) == [row["num_env_steps_sampled_lifetime"] for row in rows]
    assert list(sampled) == [row["env_runners"]["num_env_steps_sampled"] for row in rows]
    assert sampled[0] >= 500 and list(np.cumsum(sampled)) == list(steps)
    seconds, _ = plot.load_curve(run_dirs[0], x="time")
    assert (seconds > 0).all() and (np.diff(seconds) > 0).all()
    if "time_total_s" not in rows[0]:
        assert seconds[-1] == pytest.approx(sum(row["time_this_iter_s"] for row in rows))
    out = tmp_path / "time.png"
    assert plot.main([str(run_dirs[0]), "--key", "env_runners/num_env_steps_sampled",
                      "--x", "time", "--out", str(out)]) == 0
    labels, bands, ax = legend_and_bands()
    assert labels == ["PPO CartPole-v1 seed 0"] and not bands
    assert ax.get_xlabel() == "wall time (s)"
    assert ax.get_title() == "env_runners/num_env_steps_sampled"


def test_a_key_in_some_iterations_only_is_plotted_where_it_is(run_dirs, tmp_path):
    rows = read_results(run_dirs[0])
    rows[1]["evaluation"] = {"env_runners": {"episode_return_mean": 77.0}}
    rows[2]["evaluation"] = {"env_runners": {"episode_return_mean": float("nan")}}
    with RunLog(tmp_path) as log:  # An evaluation every 2nd iteration; NaN: no episode ended.
        for row in rows:
            log.write(row)
    x, y = plot.load_curve(tmp_path, key="evaluation/env_runners/episode_return_mean")
    assert list(x) == [rows[1]["num_env_steps_sampled_lifetime"]] and list(y) == [77.0]


def test_a_missing_key_lists_keys_like_it(run_dirs, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert plot.main([str(run_dirs[0]), "--key", "evaluation/env_runners/episode_return_mean",
                      "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no number under --key 'evaluation/env_runners/episode_return_mean'" in err
    assert "env_runners/episode_return_mean" in err.split("keys like it:")[1]
    assert not out.exists()


def test_a_directory_without_results_is_named(tmp_path, capsys):
    assert plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{tmp_path}/results.jsonl' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
