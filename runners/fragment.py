"""What env runners track and hand over: the open ``Episode`` of each env, and the pieces of
it a sample() call cut as ``Fragment``s for learners."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Hashable, Sequence

import numpy as np

from rlmodules import Columns
from rlmodules.tree import map_tree


@dataclass
class Fragment:
    """Steps ``t = 0..T-1`` of one agent in one env, as time-major numpy columns.

    ``columns`` holds at least ``obs`` [T, ...], ``actions`` [T, ...], ``rewards`` [T],
    ``terminateds`` [T] and ``truncateds`` [T] (only the last entry may be True), plus
    ``action_logp`` [T] and ``action_dist_inputs`` [T, D] when the module produced them and
    any extra tensor the module returned (e.g. ``vf_preds``), and ``infos``: a list of the
    env's info dicts, ``infos[t]`` the one that came with ``obs[t]`` (learners skip it; the
    reset's is ``{}``). Stateful modules add
    ``state_in``: a dict of [T, ...] arrays, the recurrent state before each step.
    Observations and actions of Dict/Tuple spaces are nested as the space: dicts/tuples of
    [T, ...] arrays in ``columns`` (and of single observations in ``last_obs``).

    ``t_started`` is the episode step at which the fragment begins; ``lookback_obs`` (only
    from runners with an env-to-module connector that reads past steps) holds up to that
    many observations before ``obs[0]``, [L, ...].

    ``agent_id`` is None for single-agent envs. ``last_obs`` is the observation after step
    T-1: the terminal observation when ``terminated``, otherwise the one to bootstrap the
    value from (time-limit truncation or a fragment cut by ``rollout_fragment_length``).
    """

    module_id: str
    agent_id: Hashable | None
    episode_id: str
    columns: dict[str, Any]
    last_obs: Any
    terminated: bool
    truncated: bool
    t_started: int = 0
    lookback_obs: Any = None

    def __len__(self) -> int:
        return len(self.columns["rewards"])

    @property
    def is_done(self) -> bool:
        """The episode ended inside this fragment (terminated or truncated)."""
        return self.terminated or self.truncated


@dataclass(eq=False)
class Episode:
    """The open episode of env ``env_index``; what ``policy_mapping_fn(agent_id, episode)``
    gets. Return and length count the steps already accounted with ``add_steps``."""

    env_index: int
    id_: str = field(default_factory=lambda: uuid.uuid4().hex)
    start: int = 0  # Buffer row where the episode's piece in the current sample() call begins.
    episode_return: float = 0.0
    length: int = 0
    started_at: float = field(default_factory=time.perf_counter)  # For its duration.

    def __len__(self) -> int:
        return self.length

    def get_return(self) -> float:
        return self.episode_return

    def add_steps(self, num_steps: int, reward: float) -> None:
        self.length += num_steps
        self.episode_return += float(reward)

    def fragment(self, module_id: str, columns: dict[str, Any], last_obs: Any,
                 terminated: bool = False, truncated: bool = False,
                 agent_id: Hashable | None = None, t_started: int = 0) -> Fragment:
        """A Fragment of this episode (the runner may fill its columns in later)."""
        return Fragment(module_id, agent_id, self.id_, columns, last_obs, terminated, truncated,
                        t_started)


def concat_fragments(pieces: list[Fragment]) -> Fragment:
    """Consecutive pieces of one agent's trajectory as one fragment (ends as the last piece)."""
    infos = [info for p in pieces for info in p.columns.get(Columns.INFOS, ())]
    columns = map_tree(lambda *parts: np.concatenate(parts),
                       *({k: v for k, v in p.columns.items() if k != Columns.INFOS}
                         for p in pieces))
    if Columns.INFOS in pieces[0].columns:
        columns[Columns.INFOS] = infos
    return dataclasses.replace(pieces[-1], columns=columns, t_started=pieces[0].t_started,
                               lookback_obs=pieces[0].lookback_obs)


def count_env_steps(fragments: Sequence[Fragment]) -> int:
    """Env steps in ``fragments``: per episode, the most steps one of its agents took (its
    fragments summed), so a step in which several agents act counts once, as RLlib's env
    steps; single-agent, simply all steps. Agents that act in turns (one per env step) are
    counted as the busiest agent's steps, i.e. below the env steps taken."""
    agent_steps: dict[tuple[str, Any], int] = {}
    for fragment in fragments:
        key = (fragment.episode_id, fragment.agent_id)
        agent_steps[key] = agent_steps.get(key, 0) + len(fragment)
    episode_steps: dict[str, int] = {}
    for (episode_id, _), steps in agent_steps.items():
        episode_steps[episode_id] = max(episode_steps.get(episode_id, 0), steps)
    return sum(episode_steps.values())


@dataclass
class PackedFragments:
    """Fragments as a few large arrays (one per column of each group of alike fragments) for
    the trip from a Ray runner: Ray ships a handful of big arrays far faster than the
    thousands of small ones a call's fragments hold. ``unpack_fragments`` rebuilds them."""

    groups: list[dict[str, Any]]


def pack_fragments(fragments: list[Fragment]) -> PackedFragments:
    """Fragments grouped by module and columns, each group's columns concatenated."""
    groups: dict[tuple, list[Fragment]] = {}
    for fragment in fragments:
        groups.setdefault((fragment.module_id, tuple(fragment.columns)), []).append(fragment)
    packed = []
    for (module_id, _), members in groups.items():
        try:
            columns = map_tree(lambda *parts: np.concatenate(parts), *(
                {k: v for k, v in f.columns.items() if k != Columns.INFOS} for f in members))
            last_obs = map_tree(lambda *xs: np.stack(xs), *(f.last_obs for f in members))
        except (ValueError, TypeError):  # Shapes that do not stack: as they are.
            packed.append({"fragments": members})
            continue
        packed.append({"module_id": module_id, "columns": columns, "last_obs": last_obs,
                       "lengths": [len(f) for f in members],
                       "infos": [f.columns.get(Columns.INFOS) for f in members],
                       "meta": [(f.agent_id, f.episode_id, f.terminated, f.truncated,
                                 f.t_started, f.lookback_obs) for f in members]})
    return PackedFragments(packed)


def unpack_fragments(packed: PackedFragments) -> list[Fragment]:
    """The fragments ``pack_fragments`` packed; their columns are views into one writable
    copy of each group's arrays (Ray hands them over read-only)."""
    fragments: list[Fragment] = []
    for group in packed.groups:
        if "fragments" in group:
            fragments += group["fragments"]
            continue
        columns, last_obs = (map_tree(np.array, group[k]) for k in ("columns", "last_obs"))
        flat = not any(isinstance(v, (dict, tuple)) for v in columns.values())
        bounds = np.cumsum([0, *group["lengths"]]).tolist()
        for j, (agent_id, episode_id, terminated, truncated, t_started, lookback) in \
                enumerate(group["meta"]):
            rows = slice(bounds[j], bounds[j + 1])
            # Plain columns (no Dict/Tuple spaces): sliced without a map_tree call each.
            own = {k: v[rows] for k, v in columns.items()} if flat else \
                map_tree(lambda v: v[rows], columns)
            if group["infos"][j] is not None:
                own[Columns.INFOS] = group["infos"][j]
            fragments.append(Fragment(group["module_id"], agent_id, episode_id, own,
                                      last_obs[j] if isinstance(last_obs, np.ndarray) else
                                      map_tree(lambda v: v[j], last_obs), terminated,
                                      truncated, t_started, lookback))
    return fragments
