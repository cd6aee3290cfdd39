"""scripts/train.py on a real two-node Ray cluster on this machine (tests/ray_cluster.py).

The head has 2 CPUs, the second node 1; on a cluster train.py gives each env runner 1 CPU,
so its two runners must spread over both nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_cluster import LocalRayCluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "train.py")


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
