"""The built-in env-runner metrics, logged into a runner's ``MetricsLogger`` under RLlib's
names, and the keys a group's report always has.

Per-call counts are sums cleared at every reduce; ``..._lifetime`` counts are sums that keep
adding up (in the group, across runner restarts and, through its state, checkpoint
restores); episode stats are windows of the last ``metrics_num_episodes_for_smoothing``
completed episodes.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping

from runners.metrics_logger import MetricsLogger

# Keys reported before anything was logged under them (e.g. right after a restore).
EPISODE_STATS = ("episode_return_mean", "episode_return_min", "episode_return_max",
                 "episode_len_mean", "episode_len_min", "episode_len_max",
                 "episode_duration_sec_mean")
COUNTS = ("num_env_steps_sampled", "num_episodes", "num_env_errors")  # Each also "_lifetime".


def log_count(metrics: MetricsLogger, key: str, n: int) -> None:
    """``key`` (a name or a path) since the last reduce, and its ``..._lifetime`` total."""
    path = (key,) if isinstance(key, str) else tuple(key)
    metrics.log_value(path, n, reduce="sum", clear_on_reduce=True)
    metrics.log_value((f"{path[0]}_lifetime", *path[1:]), n, reduce="sum")


def log_steps(metrics: MetricsLogger, env_steps: int, agent_steps: Mapping[Hashable, int],
              module_steps: Mapping[str, int]) -> None:
    """What one sample() call stepped: env steps, and agent steps per agent and module."""
    log_count(metrics, "num_env_steps_sampled", env_steps)
    for agent_id, n in agent_steps.items():
        log_count(metrics, ("num_agent_steps_sampled", str(agent_id)), n)
    for module_id, n in module_steps.items():
        log_count(metrics, ("num_module_steps_sampled", module_id), n)


def log_episode(metrics: MetricsLogger, window: int, length: int, episode_return: float,
                duration_s: float, agent_returns: Mapping[Hashable, float],
                module_returns: Mapping[str, float]) -> None:
    """One completed episode (returns unclipped)."""
    for name, value in (("return", float(episode_return)), ("len", int(length))):
        metrics.log_value(f"episode_{name}_mean", value, window=window)
        metrics.log_value(f"episode_{name}_min", value, reduce="min", window=window)
        metrics.log_value(f"episode_{name}_max", value, reduce="max", window=window)
    metrics.log_value("episode_duration_sec_mean", duration_s, window=window)
    for agent_id, value in agent_returns.items():
        metrics.log_value(("agent_episode_returns_mean", str(agent_id)), value, window=window)
    for module_id, value in module_returns.items():
        metrics.log_value(("module_episode_returns_mean", module_id), value, window=window)
    log_count(metrics, "num_episodes", 1)


def with_defaults(reduced: dict[str, Any]) -> dict[str, Any]:
    """``reduced`` with every built-in key present (NaN episode stats, zero counts)."""
    for key in EPISODE_STATS:
        reduced.setdefault(key, math.nan)
    for key in COUNTS:
        reduced.setdefault(key, 0)
        reduced.setdefault(f"{key}_lifetime", 0)
    return reduced
