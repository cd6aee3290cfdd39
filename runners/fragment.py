"""Fragment: what env runners hand to learners, one contiguous piece of one trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable

import numpy as np


@dataclass
class Fragment:
    """Steps ``t = 0..T-1`` of one agent in one env, as time-major numpy columns.

    ``columns`` holds at least ``obs`` [T, ...], ``actions`` [T, ...], ``rewards`` [T],
    ``terminateds`` [T] and ``truncateds`` [T] (only the last entry may be True), plus
    ``action_logp`` [T] and ``action_dist_inputs`` [T, D] when the module produced them and
    any extra tensor the module returned (e.g. ``vf_preds``). Stateful modules add
    ``state_in``: a dict of [T, ...] arrays, the recurrent state before each step.

    ``agent_id`` is None for single-agent envs. ``last_obs`` is the observation after step
    T-1: the terminal observation when ``terminated``, otherwise the one to bootstrap the
    value from (time-limit truncation or a fragment cut by ``rollout_fragment_length``).
    """

    module_id: str
    agent_id: Hashable | None
    episode_id: str
    columns: dict[str, Any]
    last_obs: np.ndarray
    terminated: bool
    truncated: bool

    def __len__(self) -> int:
        return len(self.columns["rewards"])

    @property
    def is_done(self) -> bool:
        """The episode ended inside this fragment (terminated or truncated)."""
        return self.terminated or self.truncated


def concat_fragments(pieces: list[Fragment]) -> Fragment:
    """Consecutive pieces of one agent's trajectory as one fragment (ends as the last piece)."""
    first, last = pieces[0], pieces[-1]
    return Fragment(module_id=first.module_id, agent_id=first.agent_id,
                    episode_id=first.episode_id,
                    columns=_concat([p.columns for p in pieces]), last_obs=last.last_obs,
                    terminated=last.terminated, truncated=last.truncated)


def _concat(columns: list[Any]) -> Any:
    if isinstance(columns[0], dict):
        return {k: _concat([c[k] for c in columns]) for k in columns[0]}
    return np.concatenate(columns)
