"""LearnerGroup: one interface over the learners, in this process or as Ray actors.

``LearnerGroup(config=..., module_spec=..., learner_class=...)`` gives a ``LocalLearnerGroup``
(``num_learners=0``: the learner runs here, Ray is never imported) or a ``RayLearnerGroup``
(``learners/ray_learner_group.py``: N actors, data-parallel from two on).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Sequence

from learners.batching import group_by_module
from learners.learner import Learner
from rlmodules.multi_rl_module import MultiRLModuleSpec
from runners.fragment import Fragment


class LearnerGroup(ABC):
    """Update, weights and state of the learners behind one API."""

    STARTUP_TIMEOUT_S = 120.0
    """Learner actors must be scheduled and built within this time."""
    CALL_TIMEOUT_S = 1800.0
    """Upper bound for any call to the learner actors (and for their collectives)."""
    PEER_WAIT_S = 10.0
    """After one learner failed, how long the others get to finish their part of the call."""

    is_local = True

    def __new__(cls, *, config: Any, module_spec: MultiRLModuleSpec,
                learner_class: type[Learner]) -> "LearnerGroup":
        if cls is LearnerGroup:
            if int(config.num_learners) == 0:
                cls = LocalLearnerGroup
            else:
                from learners.ray_learner_group import RayLearnerGroup as cls
        return super().__new__(cls)

    def __init__(self, *, config: Any, module_spec: MultiRLModuleSpec,
                 learner_class: type[Learner]) -> None:
        self.config = config
        self.num_learners = int(config.num_learners)

    @abstractmethod
    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        """Train on ``fragments`` (split over the learners); metrics as ``Learner.update``."""

    @abstractmethod
    def update_async(self, fragments: Sequence[Fragment]) -> "PendingUpdate":
        """Start ``update(fragments)`` and return at once, so the caller keeps collecting
        samples meanwhile (APPO). Until its ``result()`` was taken, start no other call on
        the learners (weights, state, another update)."""

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
        if "learner" in state:
            self._set_learner_state(state["learner"])

    @abstractmethod
    def foreach_learner(self, fn: Callable[[Learner], Any]) -> list[Any]:
        """``fn(learner)`` on every learner (in its process); results in learner order."""

    def stop(self) -> None:
        """Free the learners (idempotent)."""

    @abstractmethod
    def _call_first(self, method: str, *args: Any) -> Any:
        """``method(*args)`` of learner 0."""

    @abstractmethod
    def _set_learner_state(self, state: Mapping[str, Any]) -> None:
        """Every learner loads ``state``."""


class LocalLearnerGroup(LearnerGroup):
    """The learner in this process."""

    def __init__(self, *, config: Any, module_spec: MultiRLModuleSpec,
                 learner_class: type[Learner]) -> None:
        super().__init__(config=config, module_spec=module_spec, learner_class=learner_class)
        self._learner = learner_class(config=config, module_spec=module_spec)
        self._learner.build()

    def update(self, fragments: Sequence[Fragment]) -> dict[str, dict[str, Any]]:
        return self._learner.update(fragments)

    def update_async(self, fragments: Sequence[Fragment]) -> "PendingUpdate":
        """The update runs in a thread of its own (torch releases the GIL while it computes);
        the thread ends with it."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="learner-update")
        future = executor.submit(self._learner.update, fragments)
        executor.shutdown(wait=False)
        return PendingUpdate(future.done, future.result)

    def foreach_learner(self, fn: Callable[[Learner], Any]) -> list[Any]:
        return [fn(self._learner)]

    def _call_first(self, method: str, *args: Any) -> Any:
        return getattr(self._learner, method)(*args)

    def _set_learner_state(self, state: Mapping[str, Any]) -> None:
        self._learner.set_state(state)


class PendingUpdate:
    """An update started by ``LearnerGroup.update_async``: ``done()`` says whether it has
    finished (without waiting), ``result()`` waits for it and returns its metrics (or
    raises its error, as ``update`` would)."""

    def __init__(self, done: Callable[[], bool],
                 result: Callable[[], dict[str, dict[str, Any]]]) -> None:
        self.done = done
        self.result = result


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
