"""Generalized advantage estimation (GAE) over fragments."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from algorithms.returns import discounted_cumsum, fragment_ends
from rlmodules import Columns
from runners.fragment import Fragment


def compute_gae(fragments: Sequence[Fragment], values: Sequence[np.ndarray], gamma: float,
                lambda_: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Advantages and value targets ([T] each) for every fragment.

    ``values[i]`` holds V(obs_0..obs_{T-1}) and, last, V(last_obs) of fragment i. That last
    value is the bootstrap where the fragment was cut or truncated by a time limit; after a
    termination the future is worth nothing, so it is ignored.
    """
    lengths = [len(f) for f in fragments]
    for i, (fragment, v) in enumerate(zip(fragments, values)):
        if len(v) != len(fragment) + 1:
            raise ValueError(f"compute_gae(): fragment {i} has {len(fragment)} steps, so its "
                             f"values need {len(fragment) + 1} entries (with V(last_obs)), "
                             f"got {len(v)}.")
    v_now = np.concatenate([v[:-1] for v in values])
    v_next = np.concatenate([np.append(v[1:-1], 0.0 if f.terminated else v[-1])
                             for f, v in zip(fragments, values)])
    rewards = np.concatenate([f.columns[Columns.REWARDS] for f in fragments])
    deltas = rewards + gamma * v_next - v_now
    advantages = discounted_cumsum(deltas, gamma * lambda_, fragment_ends(lengths))
    targets = advantages + v_now
    splits = np.cumsum(lengths)[:-1]
    return np.split(advantages, splits), np.split(targets.astype(np.float32), splits)
