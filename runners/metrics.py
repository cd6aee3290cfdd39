"""Episode and step statistics of an env runner, and of a whole EnvRunnerGroup.

Each runner keeps a ``RunnerMetrics``; the group keeps one more into which it merges what its
runners report, so its lifetime counters and its window of recent episodes survive runner
restarts (and, through ``get_state``, checkpoint restores).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

WINDOW = 100  # Episode means, min and max are over this many most recent episodes.
COUNTS = ("num_env_steps_sampled", "num_episodes", "num_env_errors")  # Each also "..._lifetime".


class RunnerMetrics:
    """Returns and lengths of the last ``WINDOW`` completed episodes, and step, episode and
    env-error counts since the last ``reduce()`` and over the lifetime."""

    def __init__(self) -> None:
        self._returns: deque[float] = deque(maxlen=WINDOW)
        self._lengths: deque[int] = deque(maxlen=WINDOW)
        self._new_returns: list[float] = []  # Episodes completed since the last reduce().
        self._new_lengths: list[int] = []
        self._counts = dict.fromkeys(COUNTS, 0)  # Since the last reduce().
        self.lifetime = {f"{key}_lifetime": 0 for key in COUNTS}

    def count(self, key: str, n: int) -> None:
        """Add ``n`` to the ``key`` count (one of ``COUNTS``) and its lifetime total."""
        self._counts[key] += n
        self.lifetime[f"{key}_lifetime"] += n

    def add_episode(self, episode_return: float, length: int) -> None:
        episode_return, length = float(episode_return), int(length)
        self._returns.append(episode_return)
        self._lengths.append(length)
        self._new_returns.append(episode_return)
        self._new_lengths.append(length)
        self.count("num_episodes", 1)

    def merge(self, reduced: dict[str, Any]) -> None:
        """Count what another ``RunnerMetrics.reduce()`` reported (its new episodes in order)."""
        for episode_return, length in zip(reduced["episode_returns"],
                                          reduced["episode_lengths"]):
            self.add_episode(episode_return, length)
        self.count("num_env_steps_sampled", reduced["num_env_steps_sampled"])
        self.count("num_env_errors", reduced["num_env_errors"])

    def reduce(self) -> dict[str, Any]:
        """The metrics dict; restarts the since-last-call counts.

        ``episode_returns``/``episode_lengths`` list the episodes completed since the last
        call, oldest first (what a group merges); ``num_env_errors`` counts the env steps that
        raised since the last call (their episodes were dropped).
        """
        returns, lengths = self._returns, self._lengths
        out = {
            "episode_return_mean": sum(returns) / len(returns) if returns else math.nan,
            "episode_return_min": min(returns) if returns else math.nan,
            "episode_return_max": max(returns) if returns else math.nan,
            "episode_len_mean": sum(lengths) / len(lengths) if lengths else math.nan,
            "episode_returns": self._new_returns,
            "episode_lengths": self._new_lengths,
            **self._counts, **self.lifetime,
        }
        self._new_returns, self._new_lengths = [], []
        self._counts = dict.fromkeys(COUNTS, 0)
        return out

    def get_state(self) -> dict[str, Any]:
        """Lifetime counters and the episode window (not the since-last-call counts)."""
        return {**self.lifetime, "episode_return_window": list(self._returns),
                "episode_len_window": list(self._lengths)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load any subset of ``get_state()``'s keys."""
        self.lifetime.update({key: int(state[key]) for key in self.lifetime if key in state})
        if "episode_return_window" in state:
            returns, lengths = state["episode_return_window"], state["episode_len_window"]
            if len(returns) != len(lengths):
                raise ValueError(f"Runner metrics state: episode_return_window has {len(returns)} "
                                 f"entries but episode_len_window {len(lengths)}; they must be "
                                 "the same episodes.")
            self._returns = deque(map(float, returns), maxlen=WINDOW)
            self._lengths = deque(map(int, lengths), maxlen=WINDOW)
