"""RayEnvRunnerGroup: N env runners as Ray actors, and the policy that schedules them.

The actors and their bookkeeping are an ``ActorPool``; this class is the policy: how sample
requests are dealt out (and around a straggler), which failures restart a runner, and what
a restarted runner must hold before it samples (the last synced weights).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from typing import Any, Callable

import ray

from runners.actor_pool import ActorPool, NotScheduled
from runners.config import EnvRunnerConfig
from runners.env_registry import EnvError, env_creator
from runners.env_runner import EnvRunner
from runners.env_runner_group import EnvRunnerGroup
from runners.fragment import Fragment, PackedFragments, count_env_steps, unpack_fragments
from runners.weights import weights_digest

logger = logging.getLogger(__name__)

ASYNC_SAMPLE = "sample_async"
"""Tag of the requests ``sample_async`` keeps in flight."""


class RayEnvRunnerGroup(EnvRunnerGroup):
    """N Ray actors (``num_cpus_per_env_runner`` each, worker indices 1..N, spread over the
    cluster's nodes).

    A runner that dies (its process, or its node), or whose env fails beyond what the runner
    repairs itself, is recreated with the last synced weights (``restart_failed_env_runners``,
    at most ``max_num_env_runner_restarts`` times in total); otherwise the error names the
    runner. Restarts do not block: the others sample on, and the new runner joins once Ray has
    placed and built it; until then the group is smaller and ``get_metrics()`` says so.
    """

    def __init__(self, config: EnvRunnerConfig) -> None:
        super().__init__(config)
        self.num_env_runner_restarts = 0
        self._restarted: list[int] = []  # Since the last restarted_env_runner_indices().
        self._request_s = 0.0  # How long the last sample() request took (0: none yet).
        if not ray.is_initialized():
            ray.init()
        wanted = config.num_env_runners * config.num_cpus_per_env_runner
        if wanted > ray.cluster_resources().get("CPU", 0):
            raise RuntimeError(self._cpu_message(wanted))
        # Actors get the env as a creator function: the driver's registrations stay here.
        actor_config = dataclasses.replace(config, env=env_creator(config.env))
        options: dict[str, Any] = {"num_cpus": config.num_cpus_per_env_runner}
        if ray.util.get_current_placement_group() is None:  # In a Tune trial: stay in its group.
            options["scheduling_strategy"] = "SPREAD"
        self.pool = ActorPool(
            self.runner_class, lambda index: ((actor_config,), {"worker_index": index}),
            range(1, config.num_env_runners + 1), name="EnvRunner", options=options,
            on_failure=self._restart_or_raise)
        try:
            self.pool.start(config.env_runner_start_timeout_s)
        except NotScheduled:
            raise RuntimeError(self._cpu_message(wanted, timed_out=True)) from None

    @property
    def remote_env_runners(self) -> list[Any]:
        """The actor handles (restarting ones included), in worker-index order."""
        return [self.pool.actors[index] for index in sorted(self.pool.actors)]

    @property
    def num_healthy_env_runners(self) -> int:
        self.pool.poll_starting()
        return len(self.pool.up)

    # ---- sampling ---------------------------------------------------------------------------

    def _sample(self, num_timesteps: int | None, num_episodes: int | None,
                explore: bool) -> list[Fragment]:
        self._check_running()
        if num_episodes is not None:
            return self._sample_episodes(num_episodes, explore)
        return self._sample_timesteps(num_timesteps, explore)

    def _sample_timesteps(self, num_timesteps: int | None, explore: bool) -> list[Fragment]:
        """Requests of up to one rollout_fragment_length per env go to idle runners until the
        requested steps are in flight. Once idle runners have waited a quarter of a request's
        time for the rest, they get more requests, so a straggler does not hold them back; its
        result is then collected first by the next call (sampled with one weights version
        less). A restarted runner gets requests once it is up."""
        cfg, n = self.config, len(self.pool.actors)
        per_request = cfg.rollout_fragment_length * cfg.num_envs_per_env_runner
        total = per_request * n if num_timesteps is None else num_timesteps
        per_request = min(per_request, math.ceil(total / n))
        fragments: list[Fragment] = []
        collected, straggler, started = 0, False, time.monotonic()
        while collected < total:
            self._check_running()
            self._request(total - collected, per_request, explore, everyone=straggler)
            if not self.pool.in_flight:  # No runner is up.
                self._wait_for_restarts()
                continue
            idle = len(self.pool.in_flight) < len(self.pool.up)
            event = self.pool.wait_any(self._request_s / 4 if idle and self._request_s else None)
            if event is None:
                straggler = True
            elif isinstance(event, tuple):
                call, result = event
                if call.issued_at >= started:  # A carried request also waited for the learner.
                    self._request_s = time.monotonic() - call.issued_at
                if call.tag == explore:  # Else it was asked for by another kind of call.
                    result = unpack_fragments(result)
                    fragments += result
                    collected += sum(len(f) for f in result)
        return fragments

    def _request(self, missing: int, steps: int, explore: bool, everyone: bool) -> None:
        """Idle runners get requests of ``steps`` until ``missing`` steps are in flight (or
        all of them, once a straggler holds the others back)."""
        expected = sum(steps for call in self.pool.in_flight.values() if call.tag == explore)
        for index in self.pool.up:
            if index not in self.pool.in_flight and (everyone or expected < missing):
                self.pool.submit(index, "sample_packed", num_timesteps=steps, explore=explore,
                                 tag=explore)
                expected += steps

    def _sample_episodes(self, num_episodes: int, explore: bool) -> list[Fragment]:
        """Each runner samples its share; a runner that failed (and was restarted) is made up
        for in another round."""
        fragments: list[Fragment] = []
        episode_ids: list[str] = []
        while len(episode_ids) < num_episodes:
            per_runner = math.ceil((num_episodes - len(episode_ids)) /
                                   max(1, self.num_healthy_env_runners))
            for result in self._call_all("sample_packed", num_episodes=per_runner,
                                         explore=explore):
                fragments += unpack_fragments(result)
                episode_ids = list(dict.fromkeys(f.episode_id for f in fragments))
        keep = set(episode_ids[:num_episodes])
        return [f for f in fragments if f.episode_id in keep]

    # ---- asynchronous sampling (APPO) -------------------------------------------------------

    # (object ref, seq_no, digest) of the last sync_weights_async; runners load it before
    # their next sample_async request.
    _async_weights: tuple[Any, int, dict[str, str]] | None = None

    def sample_async(self, timeout_s: float | None = 0.0) -> list[tuple[int, list[Fragment]]]:
        """The results of the sample requests that have finished, as they came, each as
        ``(weights_seq_no it was sampled with, fragments)``; waits up to ``timeout_s`` (None:
        as long as it takes) for the first if none has. Every runner that is up always has
        one request of one rollout_fragment_length per env in flight: one whose result is
        taken gets its next request at once, so runners never wait for the caller. A failed
        runner is restarted as for ``sample`` (its request is lost) and gets requests once up.
        """
        self._check_running()
        self.pool.poll_starting()
        results: list[tuple[int, list[Fragment]]] = []
        while True:
            self._request_async()
            if not self.pool.in_flight and not self.pool.starting:
                self._wait_for_restarts()  # Raises if no runner is up any more.
                continue
            event = self.pool.wait_any(timeout_s)
            if event is None:
                return results
            if isinstance(event, tuple) and event[0].tag == ASYNC_SAMPLE:
                version, packed = event[1]
                results.append((version, unpack_fragments(packed)))
                self.num_env_steps_sampled += count_env_steps(results[-1][1])
            timeout_s = 0.0  # Then only what has already finished.

    def sync_weights_async(self, weights: dict[str, dict[str, Any]], weights_seq_no: int) -> None:
        """Put ``weights`` into the object store once and return: each runner loads them
        (checked against their digest) before its next ``sample_async`` request, and a
        restarted runner as it starts. A later ``sync_weights`` supersedes them."""
        self._check_running()
        self._weights_seq_no = weights_seq_no
        digest = weights_digest(weights)
        ref = ray.put(weights)
        self._async_weights = (ref, weights_seq_no, digest)
        self.pool.set_replay(lambda actor: actor.set_weights.remote(ref, weights_seq_no, digest))

    def discard_async_samples(self) -> None:
        """Forget the ``sample_async`` requests in flight (e.g. after a restore their data
        was sampled with weights that no longer matter); runners get new ones with the next
        ``sample_async`` call."""
        for index in [i for i, call in self.pool.in_flight.items() if call.tag == ASYNC_SAMPLE]:
            del self.pool.in_flight[index]

    def _request_async(self) -> None:
        """A request for every runner that is up and has none in flight; it carries the
        last ``sync_weights_async`` weights unless a ``sync_weights`` came after them."""
        weights = self._async_weights
        if weights is not None and weights[1] != self._weights_seq_no:
            weights = None  # Every runner already holds the newer weights sync_weights sent.
        request = functools.partial(_sample_with_weights, weights=weights,
                                    explore=self.config.explore)
        for index in self.pool.up:
            if index not in self.pool.in_flight:
                self.pool.submit(index, "apply", request, tag=ASYNC_SAMPLE)

    # ---- weights and calls ------------------------------------------------------------------

    # (seq_no, digest, object ref) of the weights _load_weights put last.
    _put_weights: tuple[int, dict[str, str], Any] | None = None

    def _load_weights(self, weights: dict, seq_no: int, digest: dict[str, str]) -> None:
        """One copy in the object store for all runners, put once per version (runners skip
        a version they hold); a restarting runner loads it as soon as it is up."""
        self._check_running()
        if self._put_weights is None or self._put_weights[:2] != (seq_no, digest):
            self._put_weights = (seq_no, digest, ray.put(weights))
        ref = self._put_weights[2]
        self.pool.set_replay(lambda actor: actor.set_weights.remote(ref, seq_no, digest))
        reported = self._call_all("set_weights", ref, seq_no, digest)
        if any(s != seq_no for s in reported):
            raise RuntimeError(f"EnvRunners report weights versions {reported} after "
                               f"syncing version {seq_no}.")

    def foreach_env_runner(self, fn: Callable[[EnvRunner], Any]) -> list[Any]:
        """A runner that fails is restarted (if allowed) and left out of the results; a
        restarting one is waited for, but left out once it is not up within
        ``env_runner_start_timeout_s`` (e.g. no node has room for it)."""
        self._check_running()
        return self._call_all("apply", fn)

    def _call_all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        self._wait_for_restarts()
        return list(self.pool.call_all(method, *args, **kwargs).values())

    def stop(self) -> None:
        """Kill every actor."""
        self.pool.stop()

    def _check_running(self) -> None:
        if not self.pool.actors:
            raise self._stopped_error()

    # ---- failures ---------------------------------------------------------------------------

    def _restart_or_raise(self, index: int, err: Exception, pending: dict[int, Any]) -> None:
        """Recreate runner ``index`` after ``err`` if that is allowed, else stop and raise."""
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
        self.pool.restart(index)
        self.num_env_runner_restarts += 1
        self._restarted.append(index)

    def restarted_env_runner_indices(self) -> list[int]:
        indices, self._restarted = self._restarted, []
        return indices

    def _wait_for_restarts(self) -> None:
        """Waits for restarted runners until ``env_runner_start_timeout_s`` after their
        restart (those not up by then are left out until they are); raises if none is up."""
        late = self.pool.wait_starting(self.config.env_runner_start_timeout_s)
        if late:
            logger.warning("EnvRunners %s are not up %g s after their restart (no node has "
                           "room for them?); the group goes on without them until Ray "
                           "places them.", late, self.config.env_runner_start_timeout_s)
        if not self.pool.up:
            raise RuntimeError(self._none_up_message())

    def _cpu_message(self, wanted: float, timed_out: bool = False) -> str:
        cfg = self.config
        timing = (f" ({ray.available_resources().get('CPU', 0)} free): not all actors were "
                  f"scheduled within {cfg.env_runner_start_timeout_s}s") if timed_out else ""
        return (f"EnvRunnerGroup: {cfg.num_env_runners} env runners x "
                f"{cfg.num_cpus_per_env_runner} CPUs = {wanted} CPUs requested, but the Ray "
                f"cluster has {ray.cluster_resources().get('CPU', 0)} CPUs{timing}. Lower "
                "num_env_runners or num_cpus_per_env_runner (fractions such as 0.5 are fine), "
                "or give Ray more CPUs.")

    def _none_up_message(self) -> str:
        cfg = self.config
        return (f"EnvRunnerGroup: no env runner is up. Runners {sorted(self.pool.starting)} were "
                f"restarted, but Ray has not placed them within env_runner_start_timeout_s="
                f"{cfg.env_runner_start_timeout_s:g} s: each needs num_cpus_per_env_runner="
                f"{cfg.num_cpus_per_env_runner:g} CPUs and the cluster has "
                f"{ray.available_resources().get('CPU', 0):g} free (of "
                f"{ray.cluster_resources().get('CPU', 0):g}). Bring back the lost nodes or add "
                "some (the runners then join by themselves), or lower num_cpus_per_env_runner.")


def _sample_with_weights(runner: EnvRunner, weights: tuple[Any, int, dict[str, str]] | None,
                         explore: bool) -> tuple[int, PackedFragments]:
    """In the runner: load ``weights`` if it does not hold that version yet, then sample one
    rollout_fragment_length per env; returns the version it sampled with and the fragments
    (packed for the trip)."""
    if weights is not None and runner.weights_seq_no != weights[1]:
        ref, seq_no, digest = weights
        runner.set_weights(ray.get(ref), seq_no, digest)
    return runner.weights_seq_no, runner.sample_packed(explore=explore)
