"""scripts/train.py as a user runs it: a subprocess with flags, in its own working directory."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from algorithms.run_log import read_results
from ray_cluster import LocalRayCluster

SCRIPT = str(Path(__file__).resolve().parents[1] / "scripts" / "train.py")
_spec = importlib.util.spec_from_file_location("train", SCRIPT)
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)


def run(*flags, cwd, timeout=120, env=None):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def iter_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("iter")]


@pytest.mark.slow
def test_run_dir_holds_flags_results_and_checkpoint_and_resumes(tmp_path):
    first = run("--stop-iters", "2", "--checkpoint-dir", "ckpt", "--seed", "7",
                "--set", "training.lr=1e-3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()  # The default: ./runs/<time>/
    assert first.stdout.startswith(f"run dir: runs/{run_dir.name}\n")
    settings = "settings that differ from the defaults: PPOConfig("
    assert first.stdout.splitlines()[1].startswith(settings) and first.stdout.count(settings) == 1
    assert "lr=0.001" in first.stdout and "seed=7" in first.stdout
    lines = iter_lines(first.stdout)
    assert len(lines) == 2 and "env steps     4000" in lines[1] and "mean return" in lines[1]
    assert "time left" in lines[0]  # --stop-iters makes the end known.
    assert (tmp_path / "ckpt" / "metadata.json").is_file()
    rows = read_results(run_dir)
    assert [r["training_iteration"] for r in rows] == [1, 2]
    assert rows[1]["env_runners"]["num_env_steps_sampled"] == 2000

    # Continue the run: its saved flags (seed, checkpoint dir) hold unless given again.
    resumed = run("--restore", f"runs/{run_dir.name}", "--stop-iters", "3", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    lines = iter_lines(resumed.stdout)
    assert len(lines) == 1 and lines[0].startswith("iter    3  env steps     6000")
    assert f"checkpoint: {tmp_path / 'ckpt'}" in resumed.stdout
    assert "lr=0.001" in resumed.stdout  # The saved --set holds too.
    assert [r["training_iteration"] for r in read_results(run_dir)] == [1, 2, 3]
    assert len(list((tmp_path / "runs").iterdir())) == 1
    saved = json.loads((run_dir / "args.json").read_text())
    assert saved["seed"] == 7 and saved["stop_iters"] == 3


def test_a_run_dir_with_results_is_not_reused_without_restore(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(SystemExit):
        train.parse_args(["--run-dir", str(tmp_path)])
    assert f"--run-dir {tmp_path} holds the results of another run" in capsys.readouterr().err


def test_a_checkpoint_dir_that_saves_would_replace_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        train.parse_args(["--checkpoint-dir", str(tmp_path)])
    assert "exists and is neither a checkpoint nor empty" in capsys.readouterr().err
    (tmp_path / "notes.txt").unlink()
    assert train.parse_args(["--checkpoint-dir", str(tmp_path)]).checkpoint_dir == str(tmp_path)


@pytest.mark.parametrize("flags, message", [
    (["--algo", "DQN"], "invalid choice: 'DQN'"),
    (["--num-env-runners", "-1"], "--num-env-runners must be >= 0, got -1"),
    (["--checkpoint-every", "-2"], "--checkpoint-every must be >= 0, got -2"),
    (["--stop-iters", "0"], "--stop-iters must be > 0"),
    (["--eval-interval", "0"], "--eval-interval must be > 0"),
    (["--stop-reward", "high"], "invalid float value: 'high'"),
    (["--restore", "/no/such/dir"], "--restore /no/such/dir: no algorithm checkpoint"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--set", "training.lr"], "--set training.lr: expected SECTION.KEY=VALUE"),
    (["--set", "lr=3e-4"], "--set lr=3e-4: expected SECTION.KEY=VALUE"),
    (["--module", "MyModule"], "--module MyModule: give the class as package.module:Class"),
])
def test_bad_flags_exit_nonzero_with_a_message(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(flags)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


def test_set_goes_through_the_builder_methods_and_has_the_last_word():
    config = train.build_config(train.parse_args([
        "--num-env-runners", "2", "--set", "training.lr=3e-4", "--set", "training.lr=1e-3",
        "--set", "env_runners.num_env_runners=1",
        "--set", "env_runners.num_envs_per_env_runner=16",
        "--set", "rl_module.model_config={'fcnet_hiddens': [32]}",
        "--set", "environment.env=Acrobot-v1",  # Not a Python literal: taken as the text.
        "--set", "evaluation.evaluation_interval=None"]))
    assert config.lr == 1e-3 and config.num_env_runners == 1
    assert config.num_envs_per_env_runner == 16 and config.env == "Acrobot-v1"
    assert config.model_config == {"fcnet_hiddens": [32]}
    assert config.non_default_settings()["num_envs_per_env_runner"] == 16


@pytest.mark.parametrize("setting, message", [
    ("trainin.lr=1e-3", "'trainin' is not a section of PPOConfig; sections: api_stack, "),
    ("training.num_sgd_iter=3", "unknown key 'num_sgd_iter' (an RLlib name): use "
                                "training(num_epochs=...)"),
    ("training.lrr=1e-3", "unknown key 'lrr'; did you mean 'lr'?"),
    ("training.lr=fast", "lr='fast' is invalid"),
])
def test_a_bad_set_names_the_setting_and_what_is_wrong(setting, message):
    with pytest.raises(SystemExit) as exit_info:
        train.build_config(train.parse_args(["--set", setting]))
    assert str(exit_info.value.code).startswith(f"train.py: error: --set {setting}: ")
    assert message in str(exit_info.value.code)


@pytest.mark.parametrize("flags, message", [
    (["--env", "no_such_pkg.envs:Corridor"],
     "--env no_such_pkg.envs:Corridor: cannot import it (ModuleNotFoundError"),
    (["--module", "gymnasium:NoSuchClass"], "--module gymnasium:NoSuchClass: cannot import it"),
    (["--module", "gymnasium:Env"], "--module gymnasium:Env is not an RLModule subclass"),
])
def test_a_class_path_that_does_not_import_is_a_clear_error(flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train.build_config(train.parse_args(flags))
    assert message in str(exit_info.value.code)


def test_gymnasium_module_prefixed_ids_are_not_class_paths():
    assert train.is_class_path("my_pkg.envs:Corridor")
    assert not train.is_class_path("ale_py:ALE/Pong-v5")
    assert not train.is_class_path("my_pkg:Corridor-v0")
    assert not train.is_class_path("CartPole-v1")


CLASSES = """
import torch
from gymnasium.envs.classic_control import CartPoleEnv
from rlmodules import Columns, TorchRLModule
from rlmodules.apis import ValueFunctionAPI

class MyCartPole(CartPoleEnv):
    def __init__(self, env_config):
        super().__init__()

class TinyPolicy(TorchRLModule, ValueFunctionAPI):
    def setup(self):
        size = self.observation_space.shape[0]
        self.pi = torch.nn.Linear(size, self.action_space.n)
        self.vf = torch.nn.Linear(size, 1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS]).squeeze(-1)
"""


@pytest.mark.slow
def test_env_and_module_classes_from_the_current_directory_reach_ray_runners(ray_session,
                                                                              tmp_path):
    (tmp_path / "my_classes.py").write_text(CLASSES)
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    result = run("--env", "my_classes:MyCartPole", "--module", "my_classes:TinyPolicy",
                 "--address", "auto", "--num-env-runners", "1", "--stop-iters", "1",
                 "--run-dir", "r", cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "env=<class 'my_classes.MyCartPole'>" in result.stdout
    assert "module_class=<class 'my_classes.TinyPolicy'>" in result.stdout
    (row,) = read_results(tmp_path / "r")
    assert row["env_runners"]["num_healthy_env_runners"] == 1
    assert row["env_runners"]["num_env_steps_sampled"] == 2000


def test_with_eval_interval_the_stop_reward_is_the_evaluation_return():
    args = train.parse_args(["--eval-interval", "2", "--stop-reward", "100"])
    training = {"training_iteration": 1, "num_env_steps_sampled_lifetime": 2000,
                "env_runners": {"episode_return_mean": 500.0}}
    assert train.stop_reached(train.parse_args(["--stop-reward", "100"]), training)
    assert not train.stop_reached(args, training)  # An exploring return does not count.
    evaluated = {**training, "evaluation": {"env_runners": {"episode_return_mean": 50.0}}}
    assert not train.stop_reached(args, evaluated)
    evaluated["evaluation"]["env_runners"]["episode_return_mean"] = 100.0
    assert train.stop_reached(args, evaluated)


def test_eval_interval_evaluates_and_stops_on_the_evaluation_return(tmp_path):
    # Iteration 1 does not evaluate (its training return >= 0 does not stop the run); the
    # evaluation in iteration 2 reaches the target and stops it.
    result = run("--eval-interval", "2", "--eval-duration", "2", "--stop-reward", "0",
                 "--stop-iters", "5", "--run-dir", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = read_results(tmp_path / "r")
    assert [r["training_iteration"] for r in rows] == [1, 2]
    assert "evaluation" not in rows[0]
    assert rows[1]["evaluation"]["env_runners"]["num_episodes"] >= 2
    assert "eval return" in iter_lines(result.stdout)[1]


def test_unknown_env_is_a_clear_error(tmp_path):
    result = run("--env", "NoSuchEnv-v0", "--stop-iters", "1", cwd=tmp_path)
    assert result.returncode != 0
    assert "NoSuchEnv-v0" in result.stderr


def test_ctrl_c_stops_cleanly_and_says_how_to_continue(tmp_path):
    proc = subprocess.Popen([sys.executable, SCRIPT, "--checkpoint-every", "1",
                             "--run-dir", "r"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.startswith("iter    2"):
            break
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "interrupted; continue from the last checkpoint with --restore r" in stderr
    assert "Traceback" not in stderr


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def ray_client_address(ray_session):
    """ray://... of a Ray Client server in front of the test session's cluster."""
    pytest.importorskip("grpc", reason="ray:// needs Ray Client: pip install 'ray[client]'")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ray.util.client.server", "--mode", "legacy", "--port",
         str(port), "--address", ray_session.get_runtime_context().gcs_address],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _listening(port):
            assert time.monotonic() < deadline and server.poll() is None, \
                "the Ray Client server did not start"
            time.sleep(0.2)
        yield f"ray://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.mark.cluster
@pytest.mark.slow
def test_joins_a_ray_start_cluster_with_token_auth_at_host_port(tmp_path):
    # `ray start` turns token auth on when it finds a token (here RAY_AUTH_TOKEN_PATH's, as
    # it would ~/.ray/auth_token); train.py must send it although RAY_AUTH_MODE is unset.
    with LocalRayCluster(cpus_per_node=[1]) as cluster:
        env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
        result = run("--address", cluster.address, "--num-env-runners", "1", "--stop-iters",
                     "1", "--run-dir", "r", cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert iter_lines(result.stdout)[0].startswith("iter    1  env steps     2000")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["auto", "ray://"])
def test_joins_a_running_ray_cluster(how, ray_session, request, tmp_path):
    # The test session's Ray is a running cluster like any other: train.py joins it.
    env = dict(os.environ)
    if how == "auto":  # "auto" finds the cluster in RAY_ADDRESS (or the latest on this host).
        address, env["RAY_ADDRESS"] = "auto", ray_session.get_runtime_context().gcs_address
    else:
        address = request.getfixturevalue("ray_client_address")
    result = run("--address", address, "--num-env-runners", "1", "--stop-iters", "1",
                 "--run-dir", "r", cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert iter_lines(result.stdout)[0].startswith("iter    1  env steps     2000")
    assert read_results(tmp_path / "r")[0]["env_runners"]["num_healthy_env_runners"] == 1
