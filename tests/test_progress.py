"""What a run shows and leaves behind: the progress line, results.jsonl and TensorBoard files."""

import json
import math

import numpy as np
import pytest

from algorithms import run_log
from algorithms.run_log import RESULTS_FILE, Progress, RunLog, new_run_dir, read_results


def result(iteration, ret=50.0, steps_per_iter=1000):
    """A results dict shaped like Algorithm.train()'s (the parts the run log reads)."""
    return {"training_iteration": iteration,
            "num_env_steps_sampled_lifetime": iteration * steps_per_iter,
            "env_runners": {"episode_return_mean": ret,
                            "num_env_steps_sampled": steps_per_iter},
            "learners": {"default_policy": {"vf_loss": 1.0 / iteration}}}


@pytest.fixture
def clock(monkeypatch):
    """A perf_counter the test advances by hand."""
    now = [100.0]
    monkeypatch.setattr(run_log.time, "perf_counter", lambda: now[0])
    return now


def test_time_left_to_stop_iters_at_this_sessions_pace(clock):
    progress = Progress(stop_iters=10)
    lines = []
    for i in (1, 2):
        clock[0] += 2.0  # 2 s and 1000 steps per iteration.
        lines.append(progress.line(result(i)))
    assert lines[1] == ("iter    2  env steps     2000  mean return    50.00      500 steps/s"
                        "  time left 0:00:16")


def test_iterations_that_evaluated_show_the_evaluation_return(clock):
    progress = Progress()
    clock[0] += 1.0
    row = {**result(1), "evaluation": {"env_runners": {"episode_return_mean": 321.0}}}
    assert "mean return    50.00  eval return   321.00     1000 steps/s" in progress.line(row)
    assert "eval return" not in progress.line(result(2))


def test_time_left_to_stop_timesteps_counts_from_the_restored_steps(clock):
    progress = Progress(stop_timesteps=10_000)
    clock[0] += 1.0  # A run restored at 5000 steps does its 6th iteration (1000 steps) in 1 s.
    line = progress.line(result(6))
    assert line.endswith("1000 steps/s  time left 0:00:04")


def test_the_nearer_stop_condition_sets_the_time_left(clock):
    progress = Progress(stop_iters=3, stop_timesteps=1_000_000)
    clock[0] += 10.0
    assert progress.line(result(1)).endswith("time left 0:00:20")


def test_a_target_return_alone_gives_no_time_left(clock):
    progress = Progress()
    clock[0] += 1.0
    line = progress.line(result(1, ret=float("nan")))
    assert "mean return      nan" in line and "time left" not in line


def test_results_are_json_lines_readable_while_the_run_goes_on(tmp_path):
    log = RunLog(tmp_path)
    row = result(1, ret=float("nan"))
    row["learners"]["default_policy"].update(grad_norm=np.float32(0.5),
                                             action_counts=np.array([3, 4]))
    log.write(row)
    rows = read_results(tmp_path)  # Flushed: visible before close.
    assert len(rows) == 1 and math.isnan(rows[0]["env_runners"]["episode_return_mean"])
    assert rows[0]["learners"]["default_policy"]["grad_norm"] == 0.5
    assert rows[0]["learners"]["default_policy"]["action_counts"] == [3, 4]
    assert "NaN" in (tmp_path / RESULTS_FILE).read_text()
    with pytest.raises(TypeError, match=r"results.jsonl: cannot write .*\(object\)"):
        log.write({**row, "bad": object()})
    log.close()


def test_restarting_drops_rows_after_the_checkpoint_and_a_torn_last_line(tmp_path):
    with RunLog(tmp_path) as log:
        for i in range(1, 6):
            log.write(result(i))
    with open(tmp_path / RESULTS_FILE, "a") as f:
        f.write('{"training_iteration": 6, "num_env')  # Killed mid-write.
    assert [r["training_iteration"] for r in read_results(tmp_path)] == [1, 2, 3, 4, 5]

    with RunLog(tmp_path, start_iteration=3) as log:  # Resumed from iteration 3's checkpoint.
        log.write(result(4, ret=99.0))
    rows = read_results(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["env_runners"]["episode_return_mean"] == 99.0


def test_a_corrupt_line_before_the_end_is_an_error_naming_it(tmp_path):
    (tmp_path / RESULTS_FILE).write_text('{"training_iteration": 1}\nnot json\n{}\n')
    with pytest.raises(ValueError, match=r"results.jsonl:2 is not a JSON line"):
        read_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="pass a run directory"):
        read_results(tmp_path / "nothing")


def test_new_run_dirs_never_collide(tmp_path):
    first, second = new_run_dir(tmp_path), new_run_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


def test_tensorboard_scalars_against_env_steps_and_purged_on_restart(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: "
                                              "pip install -e '.[test]' to test its files")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunLog(tmp_path) as log:
        for i in range(1, 5):
            log.write(result(i, ret=10.0 * i))
    with RunLog(tmp_path, start_iteration=2) as log:  # Iterations 3 and 4 are redone.
        for i in (3, 4):
            log.write(result(i, ret=-1.0))

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    returns = events.Scalars("env_runners/episode_return_mean")
    assert [(e.step, e.value) for e in returns] == [(1000, 10.0), (2000, 20.0),
                                                    (3000, -1.0), (4000, -1.0)]
    assert "learners/default_policy/vf_loss" in events.Tags()["scalars"]
    assert json.loads((tmp_path / RESULTS_FILE).read_text().splitlines()[-1])[
        "env_runners"]["episode_return_mean"] == -1.0
