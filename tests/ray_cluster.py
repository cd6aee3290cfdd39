"""A real multi-node Ray cluster on this machine, for tests: one `ray start --block` per node.

Each node has its own ports and temp dir and runs in its own process session, so a test
stops exactly the nodes it started (never `ray stop`, which would kill every Ray on the box).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``with LocalRayCluster(cpus_per_node=[1, 1]) as c: ... c.address ... c.kill_node(1)``.

    ``dashboard=True`` also starts the head's dashboard (the Ray Jobs server, needs
    ``ray[default]``) at ``c.dashboard_url``; off by default, as it slows the start.
    """

    def __init__(self, cpus_per_node: list[int], start_timeout_s: float = 60.0,
                 dashboard: bool = False):
        self.cpus_per_node = cpus_per_node
        self.start_timeout_s = start_timeout_s
        self.dashboard = dashboard
        self.root = Path(tempfile.mkdtemp(prefix="rc_", dir="/tmp"))  # Short: socket paths.
        self.procs: list[subprocess.Popen] = []
        self.address = self.dashboard_url = ""
        # Token auth as Ray 2.60 has it by default, with this cluster's own token (never the
        # user's ~/.ray/auth_token); clients only send it when told to: pin the mode for all.
        token = self.root / "auth_token"
        token.write_text(uuid.uuid4().hex)
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN_PATH=str(token))

    def __enter__(self) -> "LocalRayCluster":
        try:
            port, dashboard_port = _free_port(), _free_port()
            self.address = f"127.0.0.1:{port}"
            dashboard = [f"--include-dashboard={self.dashboard}"]
            if self.dashboard:
                self.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
                dashboard += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}"]
            for i, cpus in enumerate(self.cpus_per_node):
                # Ports with fixed defaults get free ones: other clusters may run on this box.
                args = ["ray", "start", "--block", f"--num-cpus={cpus}",
                        f"--temp-dir={self.root}/n{i}",
                        f"--dashboard-agent-listen-port={_free_port()}"]
                args += (["--head", f"--port={port}", *dashboard,
                          f"--ray-client-server-port={_free_port()}"] if i == 0
                         else [f"--address={self.address}"])
                self._start(args, log=self.root / f"node{i}.log")
                self._wait_for_nodes(i + 1)
            if self.dashboard:
                self._wait_for_jobs_server()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, args: list[str], log: Path) -> None:
        self.procs.append(subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))

    def _wait_for_nodes(self, n: int) -> None:
        self._poll("import ray, time\n"
                   f"ray.init(address='{self.address}', log_to_driver=False)\n"
                   f"while sum(x['Alive'] for x in ray.nodes()) < {n}: time.sleep(0.5)",
                   f"Ray node {n - 1} did not join")

    def _wait_for_jobs_server(self) -> None:
        """The dashboard comes up after its node: wait until its job server answers."""
        self._poll("import time\nfrom ray.job_submission import JobSubmissionClient\n"
                   "while True:\n    try:\n"
                   f"        JobSubmissionClient('{self.dashboard_url}').list_jobs(); break\n"
                   "    except Exception: time.sleep(0.5)",  # Not listening yet.
                   f"The Ray Jobs server at {self.dashboard_url} did not answer (see "
                   f"{self.root}/n0/session_latest/logs/dashboard.log)")

    def _poll(self, code: str, failure: str) -> None:
        """Run ``code`` in a client process, as the tests' clients will connect; on a timeout
        raise ``failure`` with the nodes' logs."""
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  env=self.env, timeout=self.start_timeout_s).returncode == 0
        except subprocess.TimeoutExpired:
            done = False
        if done:
            return
        logs = "\n".join(p.read_text()[-2000:] for p in sorted(self.root.glob("node*.log")))
        raise RuntimeError(f"{failure} within {self.start_timeout_s}s:\n{logs}")

    def stop_node(self, index: int, timeout_s: float = 30.0) -> None:
        """Stop one node (SIGTERM to its `ray start --block`, then ``kill_node``). Slow while
        the node runs workers: Ray then takes ~20 s to let go of them."""
        proc = self.procs[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self.kill_node(index)

    def kill_node(self, index: int) -> None:
        """The node fails as if its machine died: SIGKILL to all of its processes at once."""
        try:
            os.killpg(self.procs[index].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[index].wait()

    def processes(self) -> list[int]:
        """Pids of the live processes of the started nodes (all run in the nodes' sessions)."""
        sessions = {proc.pid for proc in self.procs}
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # It just exited.
                continue
            state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]
            if int(session) in sessions and state != "Z":
                pids.append(int(entry.name))
        return pids

    def __exit__(self, *exc) -> None:
        for i in reversed(range(len(self.procs))):
            self.stop_node(i)
        shutil.rmtree(self.root, ignore_errors=True)
