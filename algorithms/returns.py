"""Discounted sums over the time axis of concatenated fragments (used by PPO and VPG)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def discounted_cumsum(x: np.ndarray, discount: float, ends: np.ndarray) -> np.ndarray:
    """``out[t] = x[t] + discount * out[t + 1]``, restarting after every ``ends[t]``.

    ``x`` is several fragments laid end to end; ``ends`` marks each one's last step, so no
    sum runs across a fragment border. One reverse pass over plain floats: about 0.1 us a
    step, cheaper than any numpy formulation that stays exact for long episodes.
    """
    out = [0.0] * len(x)
    acc = 0.0
    for t, (value, end) in zip(range(len(x) - 1, -1, -1), zip(x[::-1].tolist(),
                                                            ends[::-1].tolist())):
        acc = value + (0.0 if end else discount * acc)
        out[t] = acc
    return np.asarray(out, dtype=np.float32)


def fragment_ends(lengths: Sequence[int]) -> np.ndarray:
    """Boolean [sum(lengths)] marking the last step of each of the laid-out fragments."""
    ends = np.zeros(int(np.sum(lengths)), dtype=bool)
    ends[np.cumsum(lengths) - 1] = True
    return ends


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit std (e.g. advantages or returns over a module's whole batch)."""
    return (x - x.mean()) / (x.std() + 1e-8)
