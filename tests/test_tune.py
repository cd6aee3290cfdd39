"""Ray Tune runs our algorithms: search spaces, RLlib's result keys, trial checkpoints, PBT,
ASHA, experiment restore and trial retries."""

from pathlib import Path

import pytest

from algorithms import Algorithm
from algorithms.ppo import PPO, PPOConfig

RETURN = "env_runners/episode_return_mean"
LR = "learners/default_policy/default_optimizer_lr"


def tiny_ppo(**training):
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_envs_per_env_runner=2)
            .learners(num_cpus_per_learner=0.5)
            .training(train_batch_size_per_learner=128, minibatch_size=64, **training)
            .rl_module(model_config={"fcnet_hiddens": [16]})
            .debugging(seed=0))


def test_search_spaces_are_stored_unchecked_and_checked_when_set():
    grid = {"grid_search": [1e-3, 3e-4]}
    config = tiny_ppo(lr=grid).rl_module(model_config={"fcnet_hiddens": {"grid_search": [[8]]}})
    assert config.lr == grid and config.to_dict()["lr"] == grid
    assert config.model_config == {"fcnet_hiddens": {"grid_search": [[8]]}}
    assert PPOConfig.from_dict({"policies": {"grid_search": [["a"]]}}).policies == \
        {"grid_search": [["a"]]}  # Not converted to a set.
    with pytest.raises(ValueError, match=r"lr=-1.0 is invalid"):
        PPOConfig().update_from_dict({"lr": -1.0})


@pytest.mark.ray
def test_resources_and_trial_value_errors():
    from ray import tune

    from algorithms.tune import trainable

    config = tiny_ppo(lr=tune.uniform(1e-4, 1e-3)).env_runners(num_env_runners=2)
    assert type(config.lr).__name__ == "Float"
    request = trainable(PPO).default_resource_request(
        {**config.to_dict(), "lr": 1e-3, "num_learners": 2, "num_cpus_per_learner": 2.0})
    assert request.bundles == [{"CPU": 1}, {"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 2.0},
                               {"CPU": 2.0}]
    local = trainable(PPO).default_resource_request(tiny_ppo())
    assert local.bundles == [{"CPU": 1.0}]  # The local learner's 0.5 CPU fit the driver's 1.
    with pytest.raises(ValueError, match=r"lr=-0.5 is invalid"):  # The trial's value.
        trainable(PPO).default_resource_request({**config.to_dict(), "lr": -0.5})


def test_algorithms_import_neither_ray_nor_tune():
    import subprocess
    import sys

    code = ("import sys, algorithms, algorithms.ppo; "
            "assert not any(m == 'ray' or m.startswith('ray.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_grid_of_two_lrs_with_checkpoints(ray_session, tmp_path):
    from ray import tune

    from algorithms.tune import trainable

    home_results = Path.home() / "ray_results"
    had_home_results = home_results.exists()
    lrs = [1e-3, 3e-4]
    config = tiny_ppo(lr=tune.grid_search(lrs)).rl_module(
        model_config={"fcnet_hiddens": tune.choice([[16]])})  # Nested search space.
    tuner = tune.Tuner(trainable(PPO), param_space=config, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="grid", verbose=0,
        stop={"training_iteration": 2},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1,
                                                checkpoint_at_end=True, num_to_keep=2)))
    grid = tuner.fit()
    assert not grid.errors
    assert sorted(r.config["lr"] for r in grid) == sorted(lrs)
    for result in grid:
        assert result.metrics["training_iteration"] == 2
        assert result.metrics["num_env_steps_sampled_lifetime"] >= 256
        assert result.metrics["learners"]["default_policy"]["default_optimizer_lr"] == \
            pytest.approx(result.config["lr"])
        assert list(result.metrics_dataframe[LR]) == pytest.approx([result.config["lr"]] * 2)
    best = grid.get_best_result(metric=RETURN, mode="max")
    returns = [r.metrics_dataframe[RETURN].iloc[-1] for r in grid]
    assert best.metrics["env_runners"]["episode_return_mean"] == max(returns)
    assert len(best.best_checkpoints) == 2

    algo = Algorithm.from_checkpoint(best.checkpoint.path)
    try:
        assert algo.training_iteration == 2 and algo.config.lr == best.config["lr"]
        assert algo.config.model_config == {"fcnet_hiddens": [16]}
        assert algo.train()["training_iteration"] == 3  # Counters continue.
    finally:
        algo.stop()
    assert had_home_results or not home_results.exists()


def test_pbt_exchanges_checkpoints_and_resets_lr_in_place(ray_session, tmp_path):
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from algorithms.tune import trainable

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=1,
                                  hyperparam_mutations={"lr": [1e-2, 1e-5]},
                                  resample_probability=1.0)
    config = tiny_ppo(lr=tune.grid_search([1e-3, 2e-3]))
    one_cpu = tune.with_resources(trainable(PPO), tune.PlacementGroupFactory([{"CPU": 1}]))
    grid = tune.Tuner(
        one_cpu, param_space=config,
        tune_config=tune.TuneConfig(scheduler=pbt, metric=RETURN, mode="max",
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pbt", verbose=0,
                                  stop={"training_iteration": 4},
                                  checkpoint_config=tune.CheckpointConfig(
                                      checkpoint_frequency=1, num_to_keep=4))).fit()
    assert not grid.errors
    histories = [r.metrics_dataframe for r in grid]
    perturbed = [h for h in histories if set(h[LR].round(8)) - {1e-3, 2e-3}]
    assert perturbed, "PBT changed no trial's learning rate"
    for result in grid:  # The optimizers run at the trial's (perturbed) lr.
        assert result.metrics["learners"]["default_policy"]["default_optimizer_lr"] == \
            pytest.approx(result.config["lr"])


def _iterations_and_steps(result):
    """The trial's reported (training_iteration, num_env_steps_sampled_lifetime) rows."""
    frame = result.metrics_dataframe
    return list(zip(frame["training_iteration"], frame["num_env_steps_sampled_lifetime"]))


@pytest.mark.ray
def test_interrupted_experiment_resumes_with_counters_continuing(ray_session, tmp_path):
    import os
    import signal

    from ray import tune

    from algorithms.tune import trainable

    marker = tmp_path / "interrupted"

    class InterruptOnce(tune.Callback):
        """Stops the experiment as Ctrl+C does (Tune ends its run on SIGUSR1 like on SIGINT,
        saving the experiment's state), once: Tuner.restore brings this callback back too."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result["training_iteration"] == 2 and not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGUSR1)

    run_config = tune.RunConfig(
        storage_path=str(tmp_path), name="resume", verbose=0, callbacks=[InterruptOnce()],
        stop={"training_iteration": 4},
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))
    first = tune.Tuner(trainable(PPO), param_space=tiny_ppo(), run_config=run_config).fit()
    assert marker.exists() and first[0].metrics["training_iteration"] < 4
    path = str(tmp_path / "resume")
    assert tune.Tuner.can_restore(path)

    grid = tune.Tuner.restore(path, trainable=trainable(PPO)).fit()
    assert not grid.errors
    (result,) = grid
    rows = _iterations_and_steps(result)  # Those of the first run, then those after restore.
    iterations = [it for it, _ in rows]
    assert iterations[:2] == [1, 2] and iterations[-1] == 4
    # The restored trial went on from its last checkpoint (of iteration 1 or 2, depending on
    # whether Tune had registered the second one when it stopped), not from scratch.
    repeated = [iterations[i] for i in range(1, len(rows)) if iterations[i] <= iterations[i - 1]]
    assert repeated in ([], [2])
    steps_per_iter = rows[0][1]
    assert all(steps == it * steps_per_iter for it, steps in rows)
    algo = Algorithm.from_checkpoint(result.checkpoint.path)
    try:
        assert algo.training_iteration == 4
    finally:
        algo.stop()


@pytest.mark.ray
def test_asha_stops_a_trial_that_does_not_learn(ray_session, tmp_path):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from algorithms.tune import trainable

    max_t = 8
    asha = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=3,
                         reduction_factor=2)
    # One trial at a time: the good lr's returns are recorded at each rung before the tiny
    # lr's trial reaches it, so ASHA compares the two in a fixed order.
    config = tiny_ppo(lr=tune.grid_search([3e-3, 1e-9])).reporting(
        metrics_num_episodes_for_smoothing=5)
    grid = tune.Tuner(
        trainable(PPO), param_space=config,
        tune_config=tune.TuneConfig(scheduler=asha, metric=RETURN, mode="max",
                                    max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="asha", verbose=0)).fit()
    assert not grid.errors
    iterations = {r.config["lr"]: r.metrics["training_iteration"] for r in grid}
    assert iterations[3e-3] == max_t
    assert iterations[1e-9] < max_t


@pytest.mark.ray
def test_failed_trial_is_retried_from_its_last_checkpoint(ray_session, tmp_path):
    from ray import tune

    from algorithms.tune import trainable

    marker = tmp_path / "failed_once"

    def fail_once(algorithm, result, **kwargs):  # Runs in the trial's actor.
        if result["training_iteration"] == 3 and not marker.exists():
            marker.touch()
            raise RuntimeError("the trial's first attempt fails in iteration 3")

    config = tiny_ppo().callbacks(on_train_result=fail_once)
    grid = tune.Tuner(trainable(PPO), param_space=config, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="retry", verbose=0, stop={"training_iteration": 4},
        failure_config=tune.FailureConfig(max_failures=1),
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    assert marker.exists(), "the trial never failed"
    assert not grid.errors
    (result,) = grid
    rows = _iterations_and_steps(result)
    steps_per_iter = rows[0][1]
    # Retried from the checkpoint of iteration 2: the counters go on from there.
    assert [it for it, _ in rows] == [1, 2, 3, 4]
    assert all(steps == it * steps_per_iter for it, steps in rows)
