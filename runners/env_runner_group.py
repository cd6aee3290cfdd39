"""EnvRunnerGroup: one interface over the env runners, in this process or as Ray actors.

``EnvRunnerGroup(config)`` gives a ``LocalEnvRunnerGroup`` (``num_env_runners=0``: one runner
here, Ray is never imported) or a ``RayEnvRunnerGroup`` (``runners/ray_env_runner_group.py``:
N actors). What both share lives here: the group-level metrics that survive runner restarts,
checkpoint state, and versioned, digest-checked weight syncs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from runners.config import EnvRunnerConfig
from runners.env_registry import is_multi_agent
from runners.env_runner import EnvRunner, SingleAgentEnvRunner
from runners.fragment import Fragment, count_env_steps
from runners.metrics import with_defaults
from runners.metrics_logger import MetricsLogger
from runners.multi_agent_env_runner import MultiAgentEnvRunner
from runners.weights import weights_digest


class EnvRunnerGroup(ABC):
    """Samples fragments, syncs weights and reports metrics for all env runners."""

    local_env_runner: EnvRunner | None = None

    def __new__(cls, config: EnvRunnerConfig) -> "EnvRunnerGroup":
        if cls is EnvRunnerGroup:
            if config.num_env_runners == 0:
                cls = LocalEnvRunnerGroup
            else:
                from runners.ray_env_runner_group import RayEnvRunnerGroup as cls
        return super().__new__(cls)

    def __init__(self, config: EnvRunnerConfig) -> None:
        self.config = config
        self.runner_class = MultiAgentEnvRunner if is_multi_agent(config.env, config.env_config) \
            else SingleAgentEnvRunner
        self._weights_seq_no = 0
        self._metrics = MetricsLogger()  # All runners' reports: survives their restarts.
        self.num_env_steps_sampled = 0  # Handed out by sample()/sample_async() (explore as
        # configured), so train() can count an iteration's steps without asking the runners.

    # ---- what each implementation provides -----------------------------------------------------

    remote_env_runners: list[Any] = []
    num_env_runner_restarts = 0

    @property
    def num_remote_env_runners(self) -> int:
        return len(self.remote_env_runners)

    @property
    @abstractmethod
    def num_healthy_env_runners(self) -> int:
        """Runners that take requests."""

    @abstractmethod
    def _sample(self, num_timesteps: int | None, num_episodes: int | None,
                explore: bool) -> list[Fragment]:
        """What ``sample`` asks for, from all runners."""

    @abstractmethod
    def _load_weights(self, weights: dict, seq_no: int, digest: dict[str, str]) -> None:
        """Every runner loads ``weights`` as version ``seq_no`` and checks ``digest``."""

    @abstractmethod
    def foreach_env_runner(self, fn: Callable[[EnvRunner], Any]) -> list[Any]:
        """``fn(runner)`` on every runner that is up; the results in runner order."""

    @abstractmethod
    def stop(self) -> None:
        """Free every runner."""

    # ---- shared -----------------------------------------------------------------------------

    def sample(self, num_timesteps: int | None = None, num_episodes: int | None = None,
               explore: bool | None = None) -> list[Fragment]:
        """At least ``num_timesteps`` env steps over all runners (default: one
        rollout_fragment_length of every env), or exactly ``num_episodes`` whole episodes;
        ``explore`` defaults to ``config.explore`` (the other value is not counted in the
        metrics)."""
        if num_timesteps is not None and num_episodes is not None:
            raise ValueError("sample(): pass num_timesteps or num_episodes, not both.")
        explore = self.config.explore if explore is None else explore
        fragments = self._sample(num_timesteps, num_episodes, explore)
        if explore == self.config.explore:
            self.num_env_steps_sampled += count_env_steps(fragments)
        return fragments

    def restarted_env_runner_indices(self) -> list[int]:
        """Worker indices of the runners recreated since the last call (for the
        algorithm's ``on_env_runners_recreated``); the local runner is never recreated."""
        return []

    def sync_weights(self, weights: dict[str, dict[str, Any]],
                     weights_seq_no: int | None = None) -> None:
        """Every runner loads ``{module_id: {param: array}}``, tagged with ``weights_seq_no``
        (default: the last one + 1), and checks what it loaded against the weights' digest
        (``runners.weights``); a runner that holds that version already does not load it
        again."""
        self._weights_seq_no = self._weights_seq_no + 1 if weights_seq_no is None \
            else weights_seq_no
        self._load_weights(weights, self._weights_seq_no, weights_digest(weights))

    def get_metrics(self) -> dict[str, Any]:
        """All runners' metrics reduced together (what ``result["env_runners"]`` is): episode
        stats over the last ``metrics_num_episodes_for_smoothing`` episodes of all runners,
        counts since the last call and over the lifetime (per env, agent and module), and
        whatever callbacks logged, reduced as they asked; lifetime counts and episode
        windows survive runner restarts and checkpoint restores. Also restarts, how many
        runners are up, the weights version each holds (``weights_seq_nos``, in runner
        order) and the Ray node ids they run on (``env_runner_node_ids``, sorted; empty for
        the local runner)."""
        reports = self.foreach_env_runner(_report)
        self._metrics.aggregate([report["metrics"] for report in reports])
        out = with_defaults(self._metrics.reduce())
        out["num_env_runner_restarts"] = self.num_env_runner_restarts
        out["num_healthy_env_runners"] = len(reports)
        out["weights_seq_nos"] = [report["weights_seq_no"] for report in reports]
        out["env_runner_node_ids"] = sorted({r["node_id"] for r in reports if r["node_id"]})
        return out

    def sync_env_runner_states(self) -> dict[str, Any]:
        """Merge the connector states of all runners (e.g. every MeanStdFilter's counts) and
        load the result into each; returns it ({} without stateful pieces)."""
        states = self.foreach_env_runner(_connector_state)
        if not any(states):
            return {}
        return self.foreach_env_runner(lambda runner: runner.merge_connector_states(states))[0]

    def get_state(self) -> dict[str, Any]:
        """Connector state (of the first runner), counters and the recent-episode window, for
        algorithm checkpoints."""
        first = self.foreach_env_runner(_connector_state)[0]
        return {"connector": first, "weights_seq_no": self._weights_seq_no,
                "num_env_runner_restarts": self.num_env_runner_restarts,
                "metrics": self._metrics.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load any subset of ``get_state()``'s keys."""
        self._weights_seq_no = int(state.get("weights_seq_no", self._weights_seq_no))
        self.num_env_runner_restarts = int(state.get("num_env_runner_restarts",
                                                     self.num_env_runner_restarts))
        if "metrics" in state:
            self._metrics.set_state(state["metrics"])
        connector_state = state.get("connector")
        if connector_state:
            self.foreach_env_runner(lambda runner: runner.set_state(
                {"connector": connector_state}))

    def _stopped_error(self) -> RuntimeError:
        return RuntimeError("This EnvRunnerGroup was stopped (by stop() or after a runner "
                            "failure it could not recover from); build a new one.")


class LocalEnvRunnerGroup(EnvRunnerGroup):
    """One runner in this process (worker index 0)."""

    def __init__(self, config: EnvRunnerConfig) -> None:
        super().__init__(config)
        self.local_env_runner = self.runner_class(config, worker_index=0)

    @property
    def num_healthy_env_runners(self) -> int:
        return int(self.local_env_runner is not None)

    def _runner(self) -> EnvRunner:
        if self.local_env_runner is None:
            raise self._stopped_error()
        return self.local_env_runner

    def _sample(self, num_timesteps: int | None, num_episodes: int | None,
                explore: bool) -> list[Fragment]:
        return self._runner().sample(num_timesteps=num_timesteps, num_episodes=num_episodes,
                                     explore=explore)

    def _load_weights(self, weights: dict, seq_no: int, digest: dict[str, str]) -> None:
        self._runner().set_weights(weights, seq_no, digest)

    def foreach_env_runner(self, fn: Callable[[EnvRunner], Any]) -> list[Any]:
        return [fn(self._runner())]

    def stop(self) -> None:
        if self.local_env_runner is not None:
            self.local_env_runner.stop()
            self.local_env_runner = None


def _connector_state(runner: EnvRunner) -> dict[str, Any]:
    return runner.get_connector_state()


def _report(runner: EnvRunner) -> dict[str, Any]:
    """What a runner reports to the group: its metrics, weights version and Ray node id."""
    node_id = None
    if runner.worker_index > 0:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    return {"metrics": runner.metrics.reduce(as_stats=True),
            "weights_seq_no": runner.weights_seq_no,
            "node_id": node_id}
