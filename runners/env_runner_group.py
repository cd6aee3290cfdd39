"""EnvRunnerGroup: one in-process runner, or N runners as Ray actors that sample in parallel."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, Callable, NamedTuple

from runners.config import EnvRunnerConfig
from runners.env_registry import EnvError, env_creator, is_multi_agent
from runners.env_runner import EnvRunner, SingleAgentEnvRunner
from runners.fragment import Fragment
from runners.metrics import RunnerMetrics
from runners.multi_agent_env_runner import MultiAgentEnvRunner

logger = logging.getLogger(__name__)


class _Request(NamedTuple):
    """A sample() call running on a remote runner."""

    ref: Any
    explore: bool
    steps: int
    issued_at: float


class _Start(NamedTuple):
    """A restarted runner that is not up yet: ``ref`` answers once it is built and holds the
    last synced weights."""

    ref: Any
    since: float


class EnvRunnerGroup:
    """``num_env_runners=0``: one local runner and Ray is never imported. ``N>0``: N Ray actors
    (``num_cpus_per_env_runner`` each, worker indices 1..N, spread over the cluster's nodes)
    and no local runner.

    A remote runner that dies (its process, or its node), or whose env fails beyond what the
    runner repairs itself, is recreated with the last synced weights
    (``restart_failed_env_runners``, at most ``max_num_env_runner_restarts`` times in total);
    otherwise the error names the runner. Restarts do not block: the others sample on, and the
    new runner joins once Ray has placed and built it (on a surviving node, or on one that joins
    later); until then the group is smaller and ``get_metrics()`` says so.
    """

    def __init__(self, config: EnvRunnerConfig):
        self.config = config
        self._runner_class = MultiAgentEnvRunner if is_multi_agent(config.env, config.env_config) \
            else SingleAgentEnvRunner
        self.num_env_runner_restarts = 0
        self._weights_ref: Any = None  # The last synced weights in Ray's object store.
        self._weights_seq_no = 0
        self._in_flight: dict[int, _Request] = {}  # Runner index -> its running sample().
        self._request_s = 0.0  # How long the last sample() request took (0: none yet).
        self._metrics = RunnerMetrics()  # All runners' reports: survives their restarts.
        self._actors: dict[int, Any] = {}  # Worker index -> actor, up or (re)starting.
        self._starting: dict[int, _Start] = {}  # Restarted runners that are not up yet.
        self.local_env_runner: EnvRunner | None = None
        if config.num_env_runners == 0:
            self.local_env_runner = self._runner_class(config, worker_index=0)
        else:
            # Actors get the env as a creator function: the driver's registrations stay here.
            self._actor_config = dataclasses.replace(config, env=env_creator(config.env))
            self._start_actors()

    @property
    def remote_env_runners(self) -> list[Any]:
        """The Ray actor handles (restarting ones included), in worker-index order (empty in
        local mode)."""
        return [self._actors[index] for index in sorted(self._actors)]

    @property
    def num_remote_env_runners(self) -> int:
        return len(self._actors)

    @property
    def num_healthy_env_runners(self) -> int:
        """Runners that take requests: the local one, or the remote ones that are up."""
        if self.local_env_runner is not None:
            return 1
        self._poll_starting()
        return len(self._actors) - len(self._starting)

    # ---- sampling ---------------------------------------------------------------------------

    def sample(self, num_timesteps: int | None = None, num_episodes: int | None = None,
               explore: bool = True) -> list[Fragment]:
        """At least ``num_timesteps`` env steps over all runners (default: one
        rollout_fragment_length of every env), or exactly ``num_episodes`` whole episodes."""
        if num_timesteps is not None and num_episodes is not None:
            raise ValueError("sample(): pass num_timesteps or num_episodes, not both.")
        self._check_running()
        if self.local_env_runner is not None:
            return self.local_env_runner.sample(num_timesteps=num_timesteps,
                                                num_episodes=num_episodes, explore=explore)
        if num_episodes is not None:
            return self._sample_episodes(num_episodes, explore)
        return self._sample_timesteps(num_timesteps, explore)

    def _sample_timesteps(self, num_timesteps: int | None, explore: bool) -> list[Fragment]:
        """Requests of up to one rollout_fragment_length per env go to idle runners until the
        requested steps are in flight. Once idle runners have waited a quarter of a request's
        time for the rest, they get more requests, so a straggler does not hold them back; its
        result is then collected first by the next call (sampled with one weights version
        less). A restarted runner gets requests once it is up."""
        import ray

        cfg, n = self.config, self.num_remote_env_runners
        per_request = cfg.rollout_fragment_length * cfg.num_envs_per_env_runner
        total = per_request * n if num_timesteps is None else num_timesteps
        per_request = min(per_request, math.ceil(total / n))
        fragments: list[Fragment] = []
        collected, straggler, started = 0, False, time.monotonic()
        while collected < total:
            self._check_running()
            expected = collected + sum(r.steps for r in self._in_flight.values()
                                       if r.explore == explore)
            for index, actor in sorted(self._actors.items()):
                if index not in self._in_flight and index not in self._starting and (
                        straggler or expected < total):
                    ref = actor.sample.remote(num_timesteps=per_request, explore=explore)
                    self._in_flight[index] = _Request(ref, explore, per_request, time.monotonic())
                    expected += per_request
            if not self._in_flight:  # No runner is up.
                self._wait_for_restarts()
                continue
            refs = {request.ref: index for index, request in self._in_flight.items()}
            probes = {start.ref: index for index, start in self._starting.items()}
            idle = len(self._in_flight) < n - len(self._starting)
            ready, _ = ray.wait([*refs, *probes], num_returns=1,
                                timeout=self._request_s / 4 if idle and self._request_s else None)
            if not ready:
                straggler = True
                continue
            if ready[0] in probes:
                self._on_started(probes[ready[0]])
                continue
            index = refs[ready[0]]
            request = self._in_flight.pop(index)
            try:
                result = ray.get(request.ref)
            except Exception as err:
                self._restart_or_raise(index, err)
                continue
            if request.issued_at >= started:  # A carried request also waited for the learner.
                self._request_s = time.monotonic() - request.issued_at
            if request.explore == explore:  # Else it was asked for by another kind of call.
                fragments += result
                collected += sum(len(f) for f in result)
        return fragments

    def _sample_episodes(self, num_episodes: int, explore: bool) -> list[Fragment]:
        """Each runner samples its share; a runner that failed (and was restarted) is made up
        for in another round."""
        fragments: list[Fragment] = []
        episode_ids: list[str] = []
        while len(episode_ids) < num_episodes:
            per_runner = math.ceil((num_episodes - len(episode_ids)) /
                                   max(1, self.num_healthy_env_runners))
            for result in self._call_all("sample", num_episodes=per_runner, explore=explore):
                fragments += result
                episode_ids = list(dict.fromkeys(f.episode_id for f in fragments))
        keep = set(episode_ids[:num_episodes])
        return [f for f in fragments if f.episode_id in keep]

    # ---- weights, metrics, state ------------------------------------------------------------

    def sync_weights(self, weights: dict[str, dict[str, Any]],
                     weights_seq_no: int | None = None) -> None:
        """Every runner loads ``{module_id: {param: array}}``, tagged with ``weights_seq_no``
        (default: the last one + 1). Remote runners all read one copy in Ray's object store;
        a restarting runner loads it as soon as it is up."""
        self._check_running()
        self._weights_seq_no = self._weights_seq_no + 1 if weights_seq_no is None \
            else weights_seq_no
        seq_no = self._weights_seq_no
        if self.local_env_runner is not None:
            self.local_env_runner.set_weights(weights, seq_no)
        if self._actors:
            import ray

            self._weights_ref = ray.put(weights)
            for index, start in self._starting.items():  # Queued after its construction.
                ref = self._actors[index].set_weights.remote(self._weights_ref, seq_no)
                self._starting[index] = start._replace(ref=ref)
            reported = self._call_all("set_weights", self._weights_ref, seq_no)
            if any(s != seq_no for s in reported):
                raise RuntimeError(f"EnvRunners report weights versions {reported} after "
                                   f"syncing version {seq_no}.")

    def get_metrics(self) -> dict[str, Any]:
        """Episode statistics over the last 100 episodes of all runners, step, episode and
        env-error counts since the last call and over the lifetime (these survive runner
        restarts and checkpoint restores), restarts, how many runners are up and the Ray node
        ids they run on (``env_runner_node_ids``, sorted; empty for the local runner)."""
        reports = self.foreach_env_runner(_metrics_and_node_id)
        for metrics, _ in reports:
            self._metrics.merge(metrics)
        out = self._metrics.reduce()
        del out["episode_returns"], out["episode_lengths"]  # Per episode: too long to report.
        out["num_env_runner_restarts"] = self.num_env_runner_restarts
        out["num_healthy_env_runners"] = len(reports)
        out["env_runner_node_ids"] = sorted({node for _, node in reports if node})
        return out

    def get_state(self) -> dict[str, Any]:
        """Connector state (of the first runner), counters and the recent-episode window, for
        algorithm checkpoints."""
        first = self.foreach_env_runner(
            lambda runner: runner.connector.get_state() if runner.connector else {})[0]
        return {"connector": first, "weights_seq_no": self._weights_seq_no,
                "num_env_runner_restarts": self.num_env_runner_restarts,
                **self._metrics.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load any subset of ``get_state()``'s keys."""
        self._weights_seq_no = int(state.get("weights_seq_no", self._weights_seq_no))
        self.num_env_runner_restarts = int(state.get("num_env_runner_restarts",
                                                     self.num_env_runner_restarts))
        self._metrics.set_state(state)
        connector_state = state.get("connector")
        if connector_state:
            self.foreach_env_runner(lambda runner: runner.set_state(
                {"connector": connector_state}))

    # ---- running things on every runner -----------------------------------------------------

    def foreach_env_runner(self, fn: Callable[[EnvRunner], Any]) -> list[Any]:
        """``fn(runner)`` on every runner, local or remote; the results in runner order.

        A remote runner that fails is restarted (if allowed) and left out of the results; a
        restarting one is waited for, but left out once it is not up within
        ``env_runner_start_timeout_s`` (e.g. no node has room for it).
        """
        self._check_running()
        if self.local_env_runner is not None:
            return [fn(self.local_env_runner)]
        return self._call_all("apply", fn)

    def _check_running(self) -> None:
        if self.local_env_runner is None and not self._actors:
            raise RuntimeError("This EnvRunnerGroup was stopped (by stop() or after a runner "
                               "failure it could not recover from); build a new one.")

    def _call_all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        """``method(*args, **kwargs)`` on every actor that is up (see ``_wait_for_restarts``);
        a failed one is restarted (or raises) and left out of the results."""
        import ray

        self._wait_for_restarts()
        up = [index for index in sorted(self._actors) if index not in self._starting]
        refs = [getattr(self._actors[index], method).remote(*args, **kwargs) for index in up]
        results = []
        for index, ref in zip(up, refs):
            try:
                results.append(ray.get(ref))
            except Exception as err:
                self._restart_or_raise(index, err)
        return results

    def stop(self) -> None:
        """Stop the local runner and kill every actor."""
        if self.local_env_runner is not None:
            self.local_env_runner.stop()
            self.local_env_runner = None
        if self._actors:
            import ray

            for actor in self._actors.values():
                ray.kill(actor)
        self._actors, self._in_flight, self._starting = {}, {}, {}

    # ---- actors -----------------------------------------------------------------------------

    def _new_actor(self, index: int) -> Any:
        import ray

        actor_class = ray.remote(num_cpus=self.config.num_cpus_per_env_runner, max_restarts=0,
                                 scheduling_strategy="SPREAD")(self._runner_class)
        return actor_class.remote(self._actor_config, worker_index=index)

    def _start_actors(self) -> None:
        import ray

        cfg = self.config
        if not ray.is_initialized():
            ray.init()
        wanted = cfg.num_env_runners * cfg.num_cpus_per_env_runner
        have = ray.cluster_resources().get("CPU", 0)
        if wanted > have:
            raise RuntimeError(self._cpu_message(wanted, have))
        self._actors = {i: self._new_actor(i) for i in range(1, cfg.num_env_runners + 1)}
        ready = [actor.apply.remote(_worker_index) for actor in self._actors.values()]
        done, _ = ray.wait(ready, num_returns=len(ready), timeout=cfg.env_runner_start_timeout_s)
        try:
            if len(done) < len(ready):
                raise RuntimeError(self._cpu_message(wanted, ray.cluster_resources().get("CPU"),
                                                     ray.available_resources().get("CPU", 0)))
            for index, ref in enumerate(ready, start=1):
                try:
                    ray.get(ref)
                except Exception as err:
                    raise RuntimeError(f"EnvRunner {index} could not start: {err}") from err
        except BaseException:
            self.stop()
            raise

    def _cpu_message(self, wanted: float, have: float, free: float | None = None) -> str:
        cfg = self.config
        timing = "" if free is None else (
            f" ({free} free): not all actors were scheduled within "
            f"{cfg.env_runner_start_timeout_s}s")
        return (f"EnvRunnerGroup: {cfg.num_env_runners} env runners x "
                f"{cfg.num_cpus_per_env_runner} CPUs = {wanted} CPUs requested, but the Ray "
                f"cluster has {have} CPUs{timing}. Lower num_env_runners or "
                "num_cpus_per_env_runner (fractions such as 0.5 are fine), or give Ray more CPUs.")

    def _restart_or_raise(self, index: int, err: Exception) -> None:
        """Recreate runner ``index`` after ``err``; it loads the last synced weights first."""
        import ray

        cfg = self.config
        cause = getattr(err, "cause", None) or err  # A task error wraps what the runner raised.
        restartable = isinstance(cause, EnvError) or (
            isinstance(err, ray.exceptions.RayActorError) and not err.actor_init_failed)
        why = ("restart_failed_env_runners is False" if not cfg.restart_failed_env_runners else
               f"max_num_env_runner_restarts={cfg.max_num_env_runner_restarts} reached"
               if self.num_env_runner_restarts >= cfg.max_num_env_runner_restarts else None)
        if not restartable or why is not None:
            self.stop()
            reason = f" and was not restarted: {why}" if restartable else ""
            raise RuntimeError(f"EnvRunner {index} failed{reason}. Cause: "
                               f"{type(cause).__name__}: {cause}") from err
        logger.warning("EnvRunner %d failed and is restarted: %s", index, err)
        try:
            ray.kill(self._actors[index])
        except Exception:  # Already gone.
            pass
        self._in_flight.pop(index, None)
        actor = self._actors[index] = self._new_actor(index)
        probe = (actor.apply.remote(_worker_index) if self._weights_ref is None else
                 actor.set_weights.remote(self._weights_ref, self._weights_seq_no))
        self._starting[index] = _Start(probe, time.monotonic())
        self.num_env_runner_restarts += 1

    def _poll_starting(self) -> None:
        """Restarted runners that are up by now take requests again."""
        if self._starting:
            import ray

            probes = {start.ref: index for index, start in self._starting.items()}
            ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=0)
            for ref in ready:
                self._on_started(probes[ref])

    def _on_started(self, index: int) -> None:
        import ray

        start = self._starting.pop(index)
        try:
            ray.get(start.ref)
        except Exception as err:
            self._restart_or_raise(index, err)

    def _wait_for_restarts(self) -> None:
        """Waits for restarted runners until ``env_runner_start_timeout_s`` after their
        restart (those not up by then are left out until they are); raises if no runner is
        up."""
        import ray

        limit = self.config.env_runner_start_timeout_s
        self._poll_starting()
        while self._starting:
            now = time.monotonic()
            waiting = {start.ref: index for index, start in self._starting.items()
                       if start.since + limit > now}
            if not waiting:
                break
            last = max(self._starting[index].since for index in waiting.values())
            ready, _ = ray.wait(list(waiting), num_returns=len(waiting),
                                timeout=last + limit - now)
            for ref in ready:
                self._on_started(waiting[ref])  # Or restarts it once more.
            if len(ready) < len(waiting):
                late = sorted(index for ref, index in waiting.items() if ref not in ready)
                logger.warning("EnvRunners %s are not up %g s after their restart (no node has "
                               "room for them?); the group goes on without them until Ray "
                               "places them.", late, limit)
                break
        if len(self._starting) == len(self._actors):
            raise RuntimeError(self._none_up_message())

    def _none_up_message(self) -> str:
        import ray

        cfg = self.config
        free = ray.available_resources().get("CPU", 0)
        return (f"EnvRunnerGroup: no env runner is up. Runners {sorted(self._starting)} were "
                f"restarted, but Ray has not placed them within env_runner_start_timeout_s="
                f"{cfg.env_runner_start_timeout_s:g} s: each needs num_cpus_per_env_runner="
                f"{cfg.num_cpus_per_env_runner:g} CPUs and the cluster has {free:g} free (of "
                f"{ray.cluster_resources().get('CPU', 0):g}). Bring back the lost nodes or add "
                "some (the runners then join by themselves), or lower num_cpus_per_env_runner.")


def _worker_index(runner: EnvRunner) -> int:
    return runner.worker_index


def _metrics_and_node_id(runner: EnvRunner) -> tuple[dict[str, Any], str | None]:
    """What a runner reports to the group: its metrics, and for a Ray actor its node id."""
    if runner.worker_index == 0:
        return runner.get_metrics(), None
    import ray

    return runner.get_metrics(), ray.get_runtime_context().get_node_id()
