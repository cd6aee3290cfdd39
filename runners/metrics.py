"""Episode and step statistics of env runners, and how the group combines them."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

WINDOW = 100  # Episode means, min and max are over this many most recent episodes.


class RunnerMetrics:
    """Returns and lengths of the last ``WINDOW`` completed episodes plus step counters."""

    def __init__(self) -> None:
        self._returns: deque[float] = deque(maxlen=WINDOW)
        self._lengths: deque[int] = deque(maxlen=WINDOW)
        self._steps = 0  # Since the last reduce().
        self._episodes = 0
        self.steps_lifetime = 0
        self.episodes_lifetime = 0
        self.env_errors = 0

    def add_steps(self, n: int) -> None:
        self._steps += n
        self.steps_lifetime += n

    def add_episode(self, episode_return: float, length: int) -> None:
        self._returns.append(float(episode_return))
        self._lengths.append(int(length))
        self._episodes += 1
        self.episodes_lifetime += 1

    def reduce(self) -> dict[str, Any]:
        """The metrics dict; restarts the since-last-call counters."""
        returns, lengths = self._returns, self._lengths
        out = {
            "episode_return_mean": sum(returns) / len(returns) if returns else math.nan,
            "episode_return_min": min(returns) if returns else math.nan,
            "episode_return_max": max(returns) if returns else math.nan,
            "episode_len_mean": sum(lengths) / len(lengths) if lengths else math.nan,
            "num_episodes": self._episodes,
            "num_env_steps_sampled": self._steps,
            "num_env_steps_sampled_lifetime": self.steps_lifetime,
            "num_episodes_lifetime": self.episodes_lifetime,
            "num_env_errors": self.env_errors,
        }
        self._steps = self._episodes = 0
        return out

    def get_state(self) -> dict[str, int]:
        return {"num_env_steps_sampled_lifetime": self.steps_lifetime,
                "num_episodes_lifetime": self.episodes_lifetime}

    def set_state(self, state: dict[str, Any]) -> None:
        self.steps_lifetime = int(state.get("num_env_steps_sampled_lifetime", self.steps_lifetime))
        self.episodes_lifetime = int(state.get("num_episodes_lifetime", self.episodes_lifetime))


def aggregate(per_runner: list[dict[str, Any]]) -> dict[str, Any]:
    """One dict for several runners: means weighted by each runner's window, sums otherwise.

    A runner's window holds min(num_episodes_lifetime, WINDOW) episodes.
    """
    weights = [min(m["num_episodes_lifetime"], WINDOW) for m in per_runner]
    total = sum(weights)

    def weighted_mean(key: str) -> float:
        if not total:
            return math.nan
        return sum(m[key] * w for m, w in zip(per_runner, weights) if w) / total

    with_eps = [m for m, w in zip(per_runner, weights) if w]
    return {
        "episode_return_mean": weighted_mean("episode_return_mean"),
        "episode_return_min": min((m["episode_return_min"] for m in with_eps), default=math.nan),
        "episode_return_max": max((m["episode_return_max"] for m in with_eps), default=math.nan),
        "episode_len_mean": weighted_mean("episode_len_mean"),
        **{key: sum(m[key] for m in per_runner) for key in (
            "num_episodes", "num_env_steps_sampled", "num_env_steps_sampled_lifetime",
            "num_episodes_lifetime", "num_env_errors")},
    }
