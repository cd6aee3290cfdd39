"""scripts/train.py and Ray Tune on a real two-node Ray cluster on this machine
(tests/ray_cluster.py).

The head has 2 CPUs, the second node 1; on a cluster train.py gives each env runner 1 CPU,
so its two runners must spread over both nodes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cluster import LocalRayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = str(REPO / "scripts" / "train.py")


def start_training(cluster: LocalRayCluster, run_dir: Path, stop_iters: int) -> subprocess.Popen:
    run_dir.mkdir()
    return subprocess.Popen(
        [sys.executable, SCRIPT, "--address", cluster.address, "--num-env-runners", "2",
         "--stop-iters", str(stop_iters), "--stop-reward", "inf", "--run-dir", str(run_dir)],
        stdout=(run_dir / "out.log").open("w"), stderr=subprocess.STDOUT, env=cluster.env)


def finish(proc: subprocess.Popen, run_dir: Path, timeout_s: float = 180) -> list[dict]:
    """Wait for train.py; its results.jsonl, one dict per iteration."""
    try:
        code = proc.wait(timeout_s)
    finally:
        proc.kill()
    output = (run_dir / "out.log").read_text()
    assert code == 0, output[-3000:]
    return read_results(run_dir)


def read_results(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def returns(results: list[dict]) -> list[float]:
    return [r["env_runners"]["episode_return_mean"] for r in results]


def test_runners_spread_over_both_nodes_and_learn(ray_session, tmp_path):
    with LocalRayCluster(cpus_per_node=[2, 1]) as cluster:
        results = finish(start_training(cluster, tmp_path / "run", stop_iters=8), tmp_path / "run")
        started = cluster.processes()
    assert len(results) == 8
    for result in results:
        runners = result["env_runners"]
        assert runners["num_healthy_env_runners"] == 2
        assert len(runners["env_runner_node_ids"]) == 2  # One runner on each node.
    assert returns(results)[-1] > 2 * returns(results)[0]
    assert (tmp_path / "run" / "checkpoint" / "metadata.json").is_file()
    # Every process of the two nodes is gone; the test session's own Ray still works.
    assert started and not cluster.processes()
    assert ray_session.get(ray_session.remote(lambda: 42).remote()) == 42


def test_losing_a_node_moves_its_runner_and_training_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    with LocalRayCluster(cpus_per_node=[2, 1]) as cluster:
        proc = start_training(cluster, run_dir, stop_iters=40)
        deadline = time.monotonic() + 120
        while len(read_results(run_dir)) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "train.py did not get to iteration 3"
            time.sleep(0.1)
        cluster.kill_node(1)
        lost_at = len(read_results(run_dir))
        results = finish(proc, run_dir)
    assert len(results) == 40
    nodes = [tuple(r["env_runners"]["env_runner_node_ids"]) for r in results]
    both, head = nodes[0], nodes[-1]
    assert len(both) == 2 and nodes[:3] == [both] * 3
    # The lost node's runner was restarted on the head; both runners are up again.
    assert len(head) == 1 and head[0] in both
    last = results[-1]["env_runners"]
    assert last["num_env_runner_restarts"] >= 1 and last["num_healthy_env_runners"] == 2
    assert nodes.count(head) > 10, f"the loss at iteration {lost_at} came too late to test"
    steps = [r["num_env_steps_sampled_lifetime"] for r in results]
    assert all(a < b for a, b in zip(steps, steps[1:]))
    assert returns(results)[-1] > 2 * returns(results)[lost_at]


def job_client(cluster: LocalRayCluster):
    """A Ray Jobs client of the cluster's dashboard, sending the cluster's token (this test
    process's own Ray, if any, has another)."""
    from ray.job_submission import JobSubmissionClient

    token = Path(cluster.env["RAY_AUTH_TOKEN_PATH"]).read_text()
    return JobSubmissionClient(cluster.dashboard_url,
                               headers={"Authorization": f"Bearer {token}"})


def test_train_py_runs_unchanged_as_a_ray_job_and_learns():
    from ray.job_submission import JobStatus

    with LocalRayCluster(cpus_per_node=[2, 1], dashboard=True) as cluster:
        # As the README says to submit it, from the repository root.
        submit = subprocess.run(
            ["ray", "job", "submit", "--address", cluster.dashboard_url, "--working-dir", ".",
             "--submission-id", "train", "--no-wait", "--",
             "python", "scripts/train.py", "--address", "auto", "--num-env-runners", "2",
             "--stop-reward", "100", "--stop-iters", "30"],
            cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=120)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        client = job_client(cluster)
        deadline = time.monotonic() + 300
        while not (status := client.get_job_status("train")).is_terminal():
            assert time.monotonic() < deadline, client.get_job_logs("train")[-3000:]
            time.sleep(1)
        logs, message = client.get_job_logs("train"), client.get_job_info("train").message
    assert status == JobStatus.SUCCEEDED, f"{message}\n{logs[-3000:]}"
    assert "settings that differ from the defaults: PPOConfig(" in logs
    returns = [float(r) for r in re.findall(r"^iter .* mean return +(\S+)", logs, re.M)]
    assert len(returns) >= 2 and returns[-1] > 2 * returns[0], returns
    assert re.search(r"^checkpoint: .*/checkpoint$", logs, re.M)


# A Tune driver on the cluster (a process of its own: the test process may hold another Ray).
# Each trial records, from inside its actor, its placement group and where its env runner is.
TUNE_ON_CLUSTER = """
import json, sys
import ray
from ray import tune
from ray.util import get_current_placement_group, placement_group_table
from algorithms.ppo import PPO, PPOConfig
from algorithms.tune import trainable

def runner_placement(runner):
    group = get_current_placement_group()
    return {"group": group and group.id.hex(), "node": ray.get_runtime_context().get_node_id()}

def record_placement(algorithm, result, **kwargs):
    group = get_current_placement_group()
    result["placement"] = {
        "trial_group": group.id.hex(),
        "bundle_nodes": list(placement_group_table(group)["bundles_to_node_id"].values()),
        "runners": algorithm.env_runner_group.foreach_env_runner(runner_placement)}

ray.init(address=sys.argv[1], log_to_driver=False)
config = (PPOConfig().environment("CartPole-v1")
          .env_runners(num_env_runners=1, num_cpus_per_env_runner=0.5)
          .training(lr=tune.grid_search([1e-3, 3e-4]), train_batch_size_per_learner=256,
                    minibatch_size=128)
          .callbacks(on_train_result=record_placement)
          .debugging(seed=0))
grid = tune.Tuner(trainable(PPO), param_space=config, run_config=tune.RunConfig(
    storage_path=sys.argv[2], name="cluster", verbose=0, stop={"training_iteration": 2})).fit()
print(json.dumps({"errors": [repr(e) for e in grid.errors],
                  "trials": [r.metrics for r in grid]}, default=str))
"""


def test_two_tune_trials_place_their_env_runner_in_their_placement_group(tmp_path):
    # Each trial asks for 1 CPU (driver and local learner) + 0.5 (its runner): the two trials
    # take all 3 CPUs of the cluster, so a runner placed outside its group would never start.
    with LocalRayCluster(cpus_per_node=[2, 1]) as cluster:
        driver = subprocess.run([sys.executable, "-c", TUNE_ON_CLUSTER, cluster.address,
                                 str(tmp_path)], capture_output=True, text=True,
                                env=cluster.env, cwd=tmp_path, timeout=300)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    out = json.loads(driver.stdout.splitlines()[-1])
    assert out["errors"] == [] and len(out["trials"]) == 2
    groups = set()
    for trial in out["trials"]:
        assert trial["training_iteration"] == 2
        placement = trial["placement"]
        (runner,) = placement["runners"]
        assert runner["group"] == placement["trial_group"]
        assert runner["node"] == placement["bundle_nodes"][1]  # Bundle 0: the trial's driver.
        groups.add(placement["trial_group"])
    assert len(groups) == 2  # One placement group per trial.
