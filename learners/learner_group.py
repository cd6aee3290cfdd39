"""LearnerGroup: one learner in-process, or N learners as (data-parallel) Ray actors.

num_learners=0 runs the learner here and never imports ray. num_learners>=1 starts Ray actors
(num_cpus_per_learner / num_gpus_per_learner each); with two or more they form a
torch.distributed group (see ``learners.distributed``), each trains on its share of the
fragments, and averaged gradients keep their weights identical.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable, Mapping, Sequence

from rlmodules.multi_rl_module import MultiRLModuleSpec
from runners.fragment import Fragment
from learners.batching import group_by_module
from learners.learner import Learner


class LearnerGroup:
    """Runs ``learner_class`` locally or as Ray actors behind one update/state API."""

    STARTUP_TIMEOUT_S = 120.0
    """Learner actors must be scheduled and built within this time."""
    CALL_TIMEOUT_S = 1800.0
    """Upper bound for any call to the learner actors (and for their collectives)."""
    PEER_WAIT_S = 10.0
    """After one learner failed, how long the others get to finish their part of the call."""

    def __init__(self, *, config: Any, module_spec: MultiRLModuleSpec,
                 learner_class: type[Learner]) -> None:
        self.config = config
        self.num_learners = int(config.num_learners)
        self.is_local = self.num_learners == 0
        self._learner: Learner | None = None
        self._actors: list[Any] = []
        if self.is_local:
            self._learner = learner_class(config=config, module_spec=module_spec)
            self._learner.build()
        else:
            self._start_actors(learner_class, module_spec)

    # ---- training -----------------------------------------------------------------------------

    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """Train on ``fragments``, split over the learners; metrics as ``Learner.update``.

        Counts (ints) are summed over learners, everything else is averaged.
        """
        if self.is_local:
            return self._learner.update(fragments)
        shards = split_fragments(fragments, self.num_learners)
        results = self._gather([actor.call.remote("update", shard)
                                for actor, shard in zip(self._remote, shards)], "update")
        return reduce_metrics(results)

    # ---- weights and state --------------------------------------------------------------------

    def get_weights(self, module_ids: Sequence[str] | None = None,
                    inference_only: bool = True) -> dict[str, dict[str, Any]]:
        """Weights of learner 0 (all learners hold the same), by default for env runners."""
        return self._call_first("get_weights", module_ids, inference_only)

    def get_state(self, components: str | Sequence[str] | None = None) -> dict[str, Any]:
        """``{"learner": state}``; components are learner paths, "learner/" prefix optional."""
        if components is not None:
            paths = [components] if isinstance(components, str) else list(components)
            components = [p.removeprefix("learner").strip("/") for p in paths]
            components = None if "" in components else components
        return {"learner": self._call_first("get_state", components)}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Apply ``state["learner"]`` (possibly partial) to every learner."""
        if set(state) - {"learner"}:
            raise KeyError(f"LearnerGroup.set_state(): expected {{'learner': ...}}, got keys "
                           f"{sorted(state)}.")
        if "learner" not in state:
            return
        if self.is_local:
            self._learner.set_state(state["learner"])
            return
        import ray

        ref = ray.put(state["learner"])  # Into the object store once for all learners.
        self._gather([a.call.remote("set_state", ref) for a in self._remote], "set_state")

    def foreach_learner(self, fn: Callable[[Learner], Any]) -> list[Any]:
        """``fn(learner)`` on every learner (in its process); results in learner order."""
        if self.is_local:
            return [fn(self._learner)]
        return self._gather([a.apply.remote(fn) for a in self._remote], "foreach_learner")

    def stop(self) -> None:
        """Free the learner actors (idempotent)."""
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor, no_restart=True)
            self._actors = []

    # ---- Ray plumbing -------------------------------------------------------------------------

    @property
    def _remote(self) -> list[Any]:
        if not self._actors:
            raise RuntimeError("This LearnerGroup was stopped and its learner actors are gone; "
                               "build a new one.")
        return self._actors

    def _call_first(self, method: str, *args: Any) -> Any:
        if self.is_local:
            return getattr(self._learner, method)(*args)
        return self._gather([self._remote[0].call.remote(method, *args)], method)[0]

    def _start_actors(self, learner_class: type[Learner], module_spec: MultiRLModuleSpec) -> None:
        import ray

        from learners.distributed import select_backend

        cpus = float(self.config.num_cpus_per_learner)
        gpus = float(self.config.num_gpus_per_learner or 0)
        actor_class = ray.remote(LearnerActor).options(num_cpus=cpus, num_gpus=gpus)
        self._actors = [actor_class.remote(learner_class, self.config, module_spec, rank,
                                           self.num_learners)
                        for rank in range(self.num_learners)]
        try:
            refs = [actor.ready.remote() for actor in self._actors]
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=self.STARTUP_TIMEOUT_S)
            if pending:
                raise RuntimeError(self._unscheduled_message(len(pending), cpus, gpus))
            self._gather(refs, "start")
            address = (self._gather([self._actors[0].rendezvous_address.remote()], "start")[0]
                       if self.num_learners > 1 else None)
            self._gather([actor.build.remote(address, select_backend(gpus), self.CALL_TIMEOUT_S)
                          for actor in self._actors], "build", self.STARTUP_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def _unscheduled_message(self, num_pending: int, cpus: float, gpus: float) -> str:
        import ray

        total, free = ray.cluster_resources(), ray.available_resources()
        n = self.num_learners
        return (
            f"LearnerGroup: {num_pending} of {n} learner actor(s) were not scheduled within "
            f"{self.STARTUP_TIMEOUT_S:g} s. Each learner requests num_cpus_per_learner={cpus:g} "
            f"and num_gpus_per_learner={gpus:g} ({n * cpus:g} CPUs and {n * gpus:g} GPUs in "
            f"total); the Ray cluster has {total.get('CPU', 0):g} CPUs ({free.get('CPU', 0):g} "
            f"free) and {total.get('GPU', 0):g} GPUs ({free.get('GPU', 0):g} free). Lower "
            "num_learners or the per-learner resources, or add resources to the cluster.")

    def _gather(self, refs: list[Any], what: str, timeout_s: float | None = None) -> list[Any]:
        """Results of one call per learner, in order; fails fast on the first failed learner."""
        import ray

        timeout_s = self.CALL_TIMEOUT_S if timeout_s is None else timeout_s
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending, deadline = list(refs), time.monotonic() + timeout_s
        while pending:
            ready, pending = ray.wait(pending, num_returns=1,
                                      timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(
                    f"LearnerGroup.{what}: learner(s) {sorted(index[r] for r in pending)} did not "
                    f"answer within {timeout_s:g} s. Stop the group and check the learners' "
                    "logs (raise LearnerGroup.CALL_TIMEOUT_S for very long updates).")
            for ref in ready:
                try:
                    results[index[ref]] = ray.get(ref)
                except Exception as error:
                    self._raise_failure(what, index[ref], error, pending, index)
        return results

    def _raise_failure(self, what: str, learner: int, error: Exception, pending: list[Any],
                       index: dict[Any, int]) -> None:
        """Raise the error for learner ``learner``'s failed call, naming the learner that died
        if one did (its peers then fail in their collectives too, and may do so first). If
        the others do not finish, they wait in a collective for a peer that left it: the group
        is stopped instead of hanging until CALL_TIMEOUT_S."""
        import ray
        from ray.exceptions import RayActorError

        stuck: list[Any] = []
        if not isinstance(error, RayActorError) and pending:
            done, stuck = ray.wait(pending, num_returns=len(pending), timeout=self.PEER_WAIT_S)
            for ref in done:
                try:
                    ray.get(ref)
                except RayActorError as died:
                    learner, error, stuck = index[ref], died, []
                    break
                except Exception:  # Failed alike; the first failure is reported.
                    pass
        of = f"learner {learner} (of {len(index)})"
        if isinstance(error, RayActorError):
            raise RuntimeError(
                f"LearnerGroup.{what}: {of} died. The learner group cannot continue: stop() it "
                "and build a new one (e.g. from the last checkpoint). Cause: "
                f"{_describe(error)}") from error
        if stuck:
            self.stop()
            cause = getattr(error, "cause", None) or error  # What the learner raised.
            raise RuntimeError(
                f"LearnerGroup.{what}: {of} raised {type(cause).__name__}: {cause}. Learner(s) "
                f"{sorted(index[r] for r in stuck)} still wait for it in a collective, so the "
                "group was stopped; fix the cause and build a new one.") from error
        raise error


class LearnerActor:
    """Hosts one learner inside a Ray actor process."""

    def __init__(self, learner_class: type[Learner], config: Any,
                 module_spec: MultiRLModuleSpec, rank: int, world_size: int) -> None:
        import torch

        # One intra-op thread per requested CPU, so co-located learners do not oversubscribe.
        torch.set_num_threads(max(1, int(config.num_cpus_per_learner)))
        self.learner = learner_class(config=config, module_spec=module_spec,
                                     learner_index=rank, world_size=world_size)

    def ready(self) -> bool:
        return True

    def rendezvous_address(self) -> tuple[str, int]:
        from learners.distributed import rendezvous_address

        return rendezvous_address()

    def build(self, address: tuple[str, int] | None, backend: str, timeout_s: float) -> None:
        if address is not None:
            from learners.distributed import init_process_group

            init_process_group(backend, address, self.learner.learner_index,
                               self.learner.world_size, timeout_s)
        self.learner.build()

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.learner, method)(*args)

    def apply(self, fn: Callable[[Learner], Any]) -> Any:
        return fn(self.learner)


def split_fragments(fragments: Sequence[Fragment], n: int) -> list[list[Fragment]]:
    """Deal fragments to ``n`` learners so each gets about equal timesteps of every module.

    Fragments stay whole (bootstrapping needs their ends); within a module, the longest goes
    first to the learner with the fewest timesteps so far. Shards keep the input order.
    """
    owner: dict[int, int] = {}
    for frags in group_by_module(fragments).values():
        load = [0] * n
        for fragment in sorted(frags, key=len, reverse=True):
            learner = min(range(n), key=load.__getitem__)
            owner[id(fragment)] = learner
            load[learner] += len(fragment)
    shards: list[list[Fragment]] = [[] for _ in range(n)]
    for fragment in fragments:
        shards[owner[id(fragment)]].append(fragment)
    return shards


def reduce_metrics(results: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-learner metrics -> one dict: ints (counts) summed, floats averaged over the
    learners that reported them."""
    merged: dict[str, dict[str, list[Any]]] = {}
    for result in results:
        for key, metrics in result.items():
            for name, value in metrics.items():
                merged.setdefault(key, {}).setdefault(name, []).append(value)
    return {key: {name: (sum(values) if all(isinstance(v, int) for v in values)
                         else sum(values) / len(values))
                  for name, values in metrics.items()}
            for key, metrics in merged.items()}


def _describe(error: BaseException) -> str:
    """Ray's error text without terminal color codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip() or type(error).__name__
