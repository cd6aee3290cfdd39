"""RayLearnerGroup: N learners as Ray actors (data-parallel from two on), and its policy.

Each learner requests num_cpus_per_learner / num_gpus_per_learner; two or more form a
torch.distributed group (``learners.distributed``), each trains on its share of the
fragments, and averaged gradients keep their weights identical. The actors live in an
``ActorPool``; what this class adds is the failure policy: a learner is never restarted (its
peers' collectives would break), so any failure is an error that names the learner, and a
group whose learners still wait in a collective for a failed peer is stopped, not left hanging.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

import ray
import torch
from ray.exceptions import RayActorError

from learners import distributed
from learners.learner import Learner
from learners.learner_group import LearnerGroup, PendingUpdate, split_fragments
from rlmodules.multi_rl_module import MultiRLModuleSpec
from runners.actor_pool import ActorPool, NotScheduled
from runners.fragment import Fragment


class LearnerActor:
    """Hosts one learner inside a Ray actor process."""

    def __init__(self, learner_class: type[Learner], config: Any,
                 module_spec: MultiRLModuleSpec, rank: int, world_size: int) -> None:
        # One intra-op thread per requested CPU, so co-located learners do not oversubscribe.
        torch.set_num_threads(max(1, int(config.num_cpus_per_learner)))
        self.learner = learner_class(config=config, module_spec=module_spec,
                                     learner_index=rank, world_size=world_size)

    def rendezvous_address(self) -> tuple[str, int]:
        return distributed.rendezvous_address()

    def build(self, address: tuple[str, int] | None, backend: str, timeout_s: float) -> None:
        if address is not None:
            distributed.init_process_group(backend, address, self.learner.learner_index,
                                           self.learner.world_size, timeout_s)
        self.learner.build()

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.learner, method)(*args)

    def apply(self, fn: Callable[[Learner], Any]) -> Any:
        return fn(self.learner)


class RayLearnerGroup(LearnerGroup):
    is_local = False

    def __init__(self, *, config: Any, module_spec: MultiRLModuleSpec,
                 learner_class: type[Learner]) -> None:
        super().__init__(config=config, module_spec=module_spec, learner_class=learner_class)
        n, cpus = self.num_learners, float(config.num_cpus_per_learner)
        gpus = float(config.num_gpus_per_learner or 0)
        self._what = "start"  # The call being gathered, for error messages.
        self.pool = ActorPool(
            LearnerActor, lambda rank: ((learner_class, config, module_spec, rank, n), {}),
            range(n), name="learner", options={"num_cpus": cpus, "num_gpus": gpus},
            on_failure=self._raise_failure)
        try:
            self.pool.start(self.STARTUP_TIMEOUT_S)
        except NotScheduled as err:
            raise RuntimeError(self._unscheduled_message(len(err.pending), cpus, gpus)) from None
        try:
            address = self._gather("start", {0: self._actor(0).rendezvous_address.remote()}
                                   )[0] if n > 1 else None
            self._gather("build", {rank: actor.build.remote(
                address, distributed.select_backend(gpus), self.CALL_TIMEOUT_S)
                for rank, actor in self.pool.actors.items()}, self.STARTUP_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """Each learner trains on its shard; they reduce their metrics among themselves, so
        learner 0's are everyone's."""
        shards = split_fragments(fragments, self.num_learners)
        return self._gather("update", {rank: self._actor(rank).call.remote("update", shard)
                                       for rank, shard in enumerate(shards)})[0]

    def update_async(self, fragments: Sequence[Fragment]) -> PendingUpdate:
        """The shards go to the learner actors at once; ``result()`` gathers them as
        ``update`` does (same failure handling)."""
        shards = split_fragments(fragments, self.num_learners)
        calls = {rank: self._actor(rank).call.remote("update", shard)
                 for rank, shard in enumerate(shards)}
        refs = list(calls.values())
        return PendingUpdate(
            lambda: not ray.wait(refs, num_returns=len(refs), timeout=0)[1],
            lambda: self._gather("update", calls)[0])

    def foreach_learner(self, fn: Callable[[Learner], Any]) -> list[Any]:
        return list(self._gather("foreach_learner", {
            rank: self._actor(rank).apply.remote(fn) for rank in range(self.num_learners)
        }).values())

    def stop(self) -> None:
        self.pool.stop()

    def _call_first(self, method: str, *args: Any) -> Any:
        return self._gather(method, {0: self._actor(0).call.remote(method, *args)})[0]

    def _set_learner_state(self, state: Mapping[str, Any]) -> None:
        ref = ray.put(state)  # Into the object store once for all learners.
        self._gather("set_state", {rank: self._actor(rank).call.remote("set_state", ref)
                                   for rank in range(self.num_learners)})

    # ---- failures -----------------------------------------------------------------------------

    def _actor(self, rank: int) -> Any:
        if not self.pool.actors:
            raise RuntimeError("This LearnerGroup was stopped and its learner actors are gone; "
                               "build a new one.")
        return self.pool.actors[rank]

    def _gather(self, what: str, calls: dict[int, Any],
                timeout_s: float | None = None) -> dict[int, Any]:
        """Results of one call per learner, in rank order; fails fast on a failed learner."""
        self._what = what
        timeout_s = self.CALL_TIMEOUT_S if timeout_s is None else timeout_s
        try:
            return self.pool.gather(calls, timeout_s)
        except TimeoutError as err:
            raise TimeoutError(
                f"LearnerGroup.{what}: {err}. Stop the group and check the learners' logs "
                "(raise LearnerGroup.CALL_TIMEOUT_S for very long updates).") from None

    def _raise_failure(self, rank: int, error: Exception, pending: dict[int, Any]) -> None:
        """Raise the error for learner ``rank``'s failed call, naming the learner that died
        if one did (its peers then fail in their collectives too, and may do so first). If
        the others do not finish, they wait in a collective for a peer that left it: the group
        is stopped instead of hanging until CALL_TIMEOUT_S."""
        stuck: list[int] = []
        if not isinstance(error, RayActorError) and pending:
            refs = {ref: peer for peer, ref in pending.items()}
            done, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=self.PEER_WAIT_S)
            stuck = sorted(refs[ref] for ref in waiting)
            for ref in done:
                try:
                    ray.get(ref)
                except RayActorError as died:
                    rank, error, stuck = refs[ref], died, []
                    break
                except Exception:  # Failed alike; the first failure is reported.
                    pass
        of = f"learner {rank} (of {self.num_learners})"
        if isinstance(error, RayActorError):
            raise RuntimeError(
                f"LearnerGroup.{self._what}: {of} died. The learner group cannot continue: "
                "stop() it and build a new one (e.g. from the last checkpoint). Cause: "
                f"{_describe(error)}") from error
        if stuck:
            self.stop()
            cause = getattr(error, "cause", None) or error  # What the learner raised.
            raise RuntimeError(
                f"LearnerGroup.{self._what}: {of} raised {type(cause).__name__}: {cause}. "
                f"Learner(s) {stuck} still wait for it in a collective, so the group was "
                "stopped; fix the cause and build a new one.") from error
        raise error

    def _unscheduled_message(self, num_pending: int, cpus: float, gpus: float) -> str:
        total, free = ray.cluster_resources(), ray.available_resources()
        n = self.num_learners
        return (
            f"LearnerGroup: {num_pending} of {n} learner actor(s) were not scheduled within "
            f"{self.STARTUP_TIMEOUT_S:g} s. Each learner requests num_cpus_per_learner={cpus:g} "
            f"and num_gpus_per_learner={gpus:g} ({n * cpus:g} CPUs and {n * gpus:g} GPUs in "
            f"total); the Ray cluster has {total.get('CPU', 0):g} CPUs ({free.get('CPU', 0):g} "
            f"free) and {total.get('GPU', 0):g} GPUs ({free.get('GPU', 0):g} free). Lower "
            "num_learners or the per-learner resources, or add resources to the cluster.")


def _describe(error: BaseException) -> str:
    """Ray's error text without terminal color codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip() or type(error).__name__
