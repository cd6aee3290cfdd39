"""config.callbacks(...) on the algorithm side: each hook fires with RLlib's keyword arguments,
on_train_result may change the result, custom metrics reach the result and results.jsonl, and
callbacks survive checkpoints (classes by name, lambdas only with the config passed)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from algorithms import Algorithm
from algorithms.callbacks import RLlibCallback
from algorithms.ppo import PPOConfig
from algorithms.run_log import RunLog, read_results
from conftest import shipped_by_value
from rlmodules.checkpoint import CheckpointError
from runners.metrics_logger import MetricsLogger

CALLS: list[tuple[str, dict]] = []  # (hook, kwargs) of every algorithm-side call.


class Recorder(RLlibCallback):
    """Records the algorithm-side hooks with their keyword arguments."""

    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs):
        CALLS.append(("on_algorithm_init", dict(algorithm=algorithm,
                                                metrics_logger=metrics_logger, **kwargs)))

    def on_train_result(self, *, algorithm, metrics_logger=None, result, **kwargs):
        CALLS.append(("on_train_result", dict(algorithm=algorithm, metrics_logger=metrics_logger,
                                              result=result, **kwargs)))

    def on_evaluate_start(self, *, algorithm, metrics_logger=None, **kwargs):
        CALLS.append(("on_evaluate_start", dict(algorithm=algorithm,
                                                metrics_logger=metrics_logger, **kwargs)))

    def on_evaluate_end(self, *, algorithm, metrics_logger=None, evaluation_metrics, **kwargs):
        CALLS.append(("on_evaluate_end", dict(algorithm=algorithm, metrics_logger=metrics_logger,
                                              evaluation_metrics=evaluation_metrics, **kwargs)))

    def on_env_runners_recreated(self, *, algorithm, env_runner_group, env_runner_indices,
                                 is_evaluation, **kwargs):
        CALLS.append(("on_env_runners_recreated", dict(
            algorithm=algorithm, env_runner_group=env_runner_group,
            env_runner_indices=env_runner_indices, is_evaluation=is_evaluation, **kwargs)))

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):
        CALLS.append(("on_checkpoint_loaded", dict(algorithm=algorithm, **kwargs)))


class RecordsRecreated(RLlibCallback):
    """Keeps its calls on the algorithm: shipped to Ray actors by value, a class must not
    refer to globals that hold the algorithm (they would be pickled with it)."""

    def on_env_runners_recreated(self, *, algorithm, **kwargs):
        vars(algorithm).setdefault("recreated", []).append(kwargs)


class EpisodeLength(RLlibCallback):
    """A custom metric from the runners, as RLlib's docs log one."""

    def on_episode_end(self, *, episode, metrics_logger, **kwargs):
        metrics_logger.log_value("my_episode_len", len(episode))


@pytest.fixture(autouse=True)
def calls():
    CALLS.clear()
    yield CALLS
    CALLS.clear()


def small_ppo(**env_runners):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_envs_per_env_runner=2, **env_runners)
            .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
            .debugging(seed=0))


def hooks(calls):
    return [hook for hook, _ in calls]


def test_algorithm_hooks_fire_in_order_with_rllibs_keyword_arguments(tmp_path, calls):
    config = small_ppo().callbacks(Recorder).evaluation(evaluation_interval=2,
                                                        evaluation_duration=1)
    algo = config.build_algo()
    try:
        assert hooks(calls) == ["on_algorithm_init"]
        assert calls[0][1] == {"algorithm": algo, "metrics_logger": algo.metrics}
        assert isinstance(algo.metrics, MetricsLogger)
        results = [algo.train() for _ in range(2)]
        assert hooks(calls) == ["on_algorithm_init", "on_train_result", "on_evaluate_start",
                                "on_evaluate_end", "on_train_result"]
        assert [c[1]["result"] for c in calls if c[0] == "on_train_result"] == results
        evaluate_end = calls[3][1]
        assert set(evaluate_end) == {"algorithm", "metrics_logger", "evaluation_metrics"}
        assert evaluate_end["evaluation_metrics"] is results[1]["evaluation"]
        algo.save_to_path(str(tmp_path / "ckpt"))
        calls.clear()
        algo.restore_from_path(str(tmp_path / "ckpt"))
        assert calls == [("on_checkpoint_loaded", {"algorithm": algo})]
    finally:
        algo.stop()
    calls.clear()
    # The class is stored by name (it fits the callbacks_class slot) and rebuilt.
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    try:
        assert restored.config.callbacks_class is Recorder
        assert hooks(calls) == ["on_algorithm_init", "on_checkpoint_loaded"]
        assert calls[1][1] == {"algorithm": restored}
    finally:
        restored.stop()


def test_per_hook_callables_and_lists_run_in_order_and_a_hook_given_again_replaces():
    seen = []
    config = small_ppo().callbacks(
        Recorder, on_train_result=[lambda **kw: seen.append("f"), lambda **kw: seen.append("g")],
        on_algorithm_init=lambda algorithm, metrics_logger, **kw: seen.append("init"))
    config.callbacks(on_algorithm_init=None)  # Removes that hook, keeps the class and the rest.
    assert config.callbacks_class is Recorder and list(config.callbacks_hooks) == [
        "on_train_result"]
    assert PPOConfig.from_dict(config.to_dict()).callbacks_hooks == config.callbacks_hooks
    algo = config.build_algo()
    try:
        algo.train()
    finally:
        algo.stop()
    assert seen == ["f", "g"]
    with pytest.raises(TypeError, match="on_train_result"):
        small_ppo().callbacks(on_train_result=42)
    with pytest.raises(TypeError, match="unknown key 'on_train_results'.*on_train_result"):
        small_ppo().callbacks(on_train_results=print)


def test_on_train_result_changes_the_result_and_metrics_logged_land_at_the_top():
    def on_train_result(*, algorithm, metrics_logger, result, **kwargs):
        result["env_runners"]["episode_return_mean"] = -1.0
        result["my_iteration"] = algorithm.training_iteration
        metrics_logger.log_value("my_sum", 2, reduce="sum")
        metrics_logger.log_value(("my_group", "last"), algorithm.training_iteration, window=1)

    algo = small_ppo().callbacks(on_train_result=on_train_result).build_algo()
    try:
        results = [algo.train() for _ in range(2)]
    finally:
        algo.stop()
    assert [r["env_runners"]["episode_return_mean"] for r in results] == [-1.0, -1.0]
    assert [r["my_iteration"] for r in results] == [1, 2]
    assert [r["my_sum"] for r in results] == [2, 4]  # A lifetime sum, as RLlib's reduce="sum".
    assert [r["my_group"]["last"] for r in results] == [1, 2]



def test_metrics_logged_to_the_algorithm_go_on_after_a_restore(tmp_path):
    def on_train_result(*, metrics_logger, **kwargs):
        metrics_logger.log_value("my_sum", 2, reduce="sum")

    config = small_ppo().callbacks(on_train_result=on_train_result)
    algo = config.build_algo()
    try:
        algo.train()
        algo.save_to_path(str(tmp_path))
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path), config=config)
    try:
        assert restored.train()["my_sum"] == 4
    finally:
        restored.stop()


def test_custom_metrics_from_runner_callbacks_reach_the_result_and_results_jsonl(tmp_path):
    algo = small_ppo().callbacks(EpisodeLength).build_algo()
    try:
        with RunLog(tmp_path) as log:
            for _ in range(3):
                result = algo.train()
                log.write(result)
    finally:
        algo.stop()
    assert result["env_runners"]["my_episode_len"] > 5  # CartPole episodes last >= 8 steps.
    rows = read_results(tmp_path)
    assert rows[-1]["env_runners"]["my_episode_len"] == pytest.approx(
        result["env_runners"]["my_episode_len"])


def test_lambdas_in_the_hooks_are_not_saved_and_need_the_config(tmp_path):
    config = small_ppo().callbacks(on_train_result=lambda **kw: None)
    algo = config.build_algo()
    try:
        algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    with pytest.raises(CheckpointError, match="on_train_result.*was not saved.*config="):
        Algorithm.from_checkpoint(str(tmp_path / "ckpt"))
    Algorithm.from_checkpoint(str(tmp_path / "ckpt"), config=config).stop()
    # An importable function is stored by name, but no checkpoint may name a hook's code.
    algo = small_ppo().callbacks(on_sample_end=os.system).build_algo()
    try:
        algo.save_to_path(str(tmp_path / "named"))
    finally:
        algo.stop()
    with pytest.raises(CheckpointError, match=r"on_sample_end.*'posix:system' is refused"):
        Algorithm.from_checkpoint(str(tmp_path / "named"))


@pytest.mark.ray
def test_on_env_runners_recreated_after_a_runner_is_killed(ray_session):
    with shipped_by_value(sys.modules[__name__]):
        algo = small_ppo(num_env_runners=2, num_cpus_per_env_runner=0.5).callbacks(
            RecordsRecreated).build_algo()
        try:
            algo.train()
            assert not hasattr(algo, "recreated")
            (index, pid), _ = algo.env_runner_group.foreach_env_runner(
                lambda runner: (runner.worker_index, os.getpid()))
            os.kill(pid, signal.SIGKILL)
            algo.train()
            algo.train()
        finally:
            algo.stop()
    assert algo.recreated == [{"env_runner_group": algo.env_runner_group,
                               "env_runner_indices": [index], "is_evaluation": False}]
