"""ActorPool: the Ray actors behind a group, and all of their bookkeeping.

Both groups keep their actors here: creating them (placed by resources, built within a
timeout), calls to every actor that is up, requests in flight, and restarting a failed actor
so that it first takes the state it must hold (``replay``, e.g. the last synced weights). A
restarted actor that Ray cannot place yet ("no room") is left out until it is up, so the
pool shrinks and rejoins by itself. What to do about a failure is the group's call
(``on_failure``); this module holds no policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import ray

OnFailure = Callable[[int, Exception, dict[int, Any]], None]
"""``on_failure(index, error, pending)``: a call on actor ``index`` raised ``error`` while
``pending`` ({index: ref}) calls of the same gather still run. It restarts or raises."""


@dataclass
class Call:
    """A call running on actor ``index``; ``tag`` is what the group needs to remember of it."""

    index: int
    ref: Any
    issued_at: float
    tag: Any = None


class NotScheduled(RuntimeError):
    """Ray did not place and build these actors within the start timeout."""

    def __init__(self, pending: list[int]) -> None:
        super().__init__(f"actors {pending} were not scheduled in time")
        self.pending = pending


class ActorPool:
    """Actors ``indices`` of ``actor_class``, built from ``make_args(index) -> (args, kwargs)``
    with Ray ``options`` (resources, scheduling strategy). Ray never restarts them itself."""

    def __init__(self, actor_class: type, make_args: Callable[[int], tuple[tuple, dict]],
                 indices: Iterable[int], *, options: dict[str, Any], name: str,
                 on_failure: OnFailure) -> None:
        self._remote_class = ray.remote(actor_class).options(max_restarts=0, **options)
        self._make_args = make_args
        self._indices = list(indices)
        self.name = name
        self.on_failure = on_failure
        self.actors: dict[int, Any] = {}
        self.in_flight: dict[int, Call] = {}
        self.starting: dict[int, Call] = {}  # Restarted and not up yet: their first call.
        self.replay: Callable[[Any], Any] | None = None

    def _new(self, index: int) -> Any:
        args, kwargs = self._make_args(index)
        return self._remote_class.remote(*args, **kwargs)

    # ---- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float) -> None:
        """Create every actor and wait until all are built; raises NotScheduled naming the
        ones Ray did not place in time, or the error of one that failed to build. On any
        failure nothing is left running."""
        self.actors = {index: self._new(index) for index in self._indices}
        probes = {index: actor.__ray_ready__.remote() for index, actor in self.actors.items()}
        try:
            _, pending = ray.wait(list(probes.values()), num_returns=len(probes),
                                  timeout=timeout_s)
            if pending:
                raise NotScheduled(sorted(i for i, ref in probes.items() if ref in pending))
            for index, ref in probes.items():
                try:
                    ray.get(ref)
                except Exception as err:
                    raise RuntimeError(f"{self.name} {index} could not start: {err}") from err
        except BaseException:
            self.stop()
            raise

    def restart(self, index: int) -> None:
        """Replace actor ``index``; the new one first runs ``replay`` (if set) and takes
        calls once that answered (see ``poll_starting``)."""
        try:
            ray.kill(self.actors[index])
        except Exception:  # Already gone.
            pass
        self.in_flight.pop(index, None)
        actor = self.actors[index] = self._new(index)
        probe = self.replay(actor) if self.replay else actor.__ray_ready__.remote()
        self.starting[index] = Call(index, probe, time.monotonic())

    def set_replay(self, replay: Callable[[Any], Any]) -> None:
        """What every new actor runs first from now on; queued for the ones starting now."""
        self.replay = replay
        for index, start in self.starting.items():
            start.ref = replay(self.actors[index])

    def stop(self) -> None:
        """Kill every actor (idempotent)."""
        for actor in self.actors.values():
            ray.kill(actor, no_restart=True)
        self.actors, self.in_flight, self.starting = {}, {}, {}

    # ---- health -----------------------------------------------------------------------------

    @property
    def up(self) -> list[int]:
        """Indices of the actors that take calls, in order."""
        return [index for index in sorted(self.actors) if index not in self.starting]

    def poll_starting(self, timeout_s: float = 0.0) -> None:
        """Take in the restarted actors that are up within ``timeout_s`` (a failed start goes
        to ``on_failure``)."""
        probes = {start.ref: index for index, start in self.starting.items()}
        if probes:
            ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=timeout_s)
            for ref in ready:
                self._took_start(probes[ref])

    def _took_start(self, index: int) -> None:
        """Actor ``index``'s first call answered: it is up, or it failed (``on_failure``)."""
        start = self.starting.pop(index)
        try:
            ray.get(start.ref)
        except Exception as err:
            self.on_failure(index, err, {})

    def wait_starting(self, limit_s: float) -> list[int]:
        """Wait for restarted actors until ``limit_s`` after their restart; returns those this
        call waited for in vain (Ray has no room for them yet: they stay out until up)."""
        waited: set[int] = set()
        while True:
            self.poll_starting()
            now = time.monotonic()
            pending = [i for i, s in self.starting.items() if s.issued_at + limit_s > now]
            if not pending:
                return sorted(i for i in waited if i in self.starting)
            waited.update(pending)
            self.poll_starting(max(self.starting[i].issued_at for i in pending) + limit_s - now)

    # ---- calls ------------------------------------------------------------------------------

    def call_all(self, method: str, *args: Any, **kwargs: Any) -> dict[int, Any]:
        """``method(*args, **kwargs)`` on every actor that is up; ``{index: result}``."""
        return self.gather({index: getattr(self.actors[index], method).remote(*args, **kwargs)
                            for index in self.up})

    def gather(self, calls: dict[int, Any], timeout_s: float | None = None) -> dict[int, Any]:
        """The results of ``{index: ref}`` in index order, taken as they arrive; a failed call
        goes to ``on_failure`` with the calls still pending. TimeoutError names the actors
        that did not answer within ``timeout_s``."""
        pending = {ref: index for index, ref in calls.items()}
        results: dict[int, Any] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            if not ready:
                raise TimeoutError(f"{self.name}(s) {sorted(pending.values())} did not answer "
                                   f"within {timeout_s:g} s")
            index = pending.pop(ready[0])
            try:
                results[index] = ray.get(ready[0])
            except Exception as err:
                self.on_failure(index, err, {i: ref for ref, i in pending.items()})
        return dict(sorted(results.items()))

    def submit(self, index: int, method: str, *args: Any, tag: Any = None, **kwargs: Any) -> None:
        """Start a request on actor ``index`` and keep it in ``in_flight`` until taken."""
        ref = getattr(self.actors[index], method).remote(*args, **kwargs)
        self.in_flight[index] = Call(index, ref, time.monotonic(), tag)

    def wait_any(self, timeout_s: float | None) -> tuple[Call, Any] | int | None:
        """The next event: ``(call, result)`` for a finished request; the index of an actor
        whose start answered or whose request failed (``on_failure`` has handled it); None
        at the timeout."""
        requests = {call.ref: call for call in self.in_flight.values()}
        probes = {start.ref: index for index, start in self.starting.items()}
        ready, _ = ray.wait([*requests, *probes], num_returns=1, timeout=timeout_s)
        if not ready:
            return None
        if ready[0] in probes:
            self._took_start(probes[ready[0]])
            return probes[ready[0]]
        call = self.in_flight.pop(requests[ready[0]].index)
        try:
            return call, ray.get(call.ref)
        except Exception as err:
            self.on_failure(call.index, err, {})
            return call.index
