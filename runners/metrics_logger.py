"""MetricsLogger: RLlib's way for runners, learners, callbacks and algorithms to log numbers.

``log_value(key, value, reduce=..., window=..., ema_coeff=..., clear_on_reduce=...)`` keeps
one ``Stats`` per key (a tuple key is a path into nested results). ``peek`` reads a reduced
value without changing anything; ``reduce`` returns the reduced results and clears what
``clear_on_reduce`` says to. Logging keeps raw values only; reduction is paid once per
``reduce()`` call, so a metric logged per step costs an append (tensors are converted to
numbers only then: logging inside a loss costs no device sync).

Several loggers' numbers are combined by shipping ``reduce(as_stats=True)`` (plain dicts,
cheap to send between Ray actors) and calling ``aggregate`` on the receiving logger. What is
shipped is what was logged since the last ``reduce()`` (EMAs: their current value), so the
receiver keeps its own windows and sums across many reduces, and across senders that are
replaced (a restarted env runner): sums add up, windows of means/min/max take in the new
values in order, EMAs average.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable, Mapping

REDUCES = ("mean", "sum", "min", "max", None)
DEFAULT_EMA_COEFF = 0.01  # A mean without a window is an EMA with this coefficient (RLlib's).


class Stats:
    """The values logged under one key and how they reduce to one number (or a list)."""

    def __init__(self, reduce: str | None = "mean", window: int | float | None = None,
                 ema_coeff: float | None = None, clear_on_reduce: bool = False) -> None:
        if reduce not in REDUCES:
            raise ValueError(f"reduce={reduce!r}; use one of {list(REDUCES)}.")
        if ema_coeff is not None and (reduce != "mean" or window is not None):
            raise ValueError("ema_coeff only applies to reduce='mean' without a window.")
        if window is not None and window != float("inf") and (
                not isinstance(window, int) or window < 1):
            raise ValueError(f"window={window!r}; use an int >= 1 (or None).")
        self.reduce_method = reduce
        self.window = None if window == float("inf") else window
        self.ema_coeff = ema_coeff if ema_coeff is not None or reduce != "mean" or \
            window is not None else DEFAULT_EMA_COEFF
        self.clear_on_reduce = clear_on_reduce
        self.values: deque = deque(maxlen=self.window)
        self.ema: float | None = None  # Folded-in EMA of values already reduced.
        self.num_new = 0  # Values pushed since the last reduce() (the last ones in values).

    def push(self, value: Any) -> None:
        self.values.append(value.detach() if hasattr(value, "detach") else value)
        self.num_new += 1

    def peek(self) -> Any:
        """The reduced value now (NaN for an empty mean, min or max; 0 for an empty sum)."""
        values = [_number(v) for v in self.values]
        if self.reduce_method is None:
            return list(values)
        if self.reduce_method == "sum":
            return sum(values) if values else 0
        if self.ema_coeff is not None:
            ema = self.ema
            for value in values:
                ema = value if ema is None else (1 - self.ema_coeff) * ema + self.ema_coeff * value
            return math.nan if ema is None else ema
        if not values:
            return math.nan
        if self.reduce_method == "mean":
            return sum(values) / len(values)
        return min(values) if self.reduce_method == "min" else max(values)

    def reduce(self) -> Any:
        """The reduced value; values are cleared with ``clear_on_reduce``, folded into one
        EMA, sum, min or max otherwise when there is no window (so the list never grows
        without bound)."""
        value = self.peek()
        self.num_new = 0
        if self.clear_on_reduce:
            self.values.clear()
            self.ema = None
        elif self.ema_coeff is not None:
            self.values.clear()
            self.ema = None if isinstance(value, float) and math.isnan(value) else value
        elif self.window is None and self.reduce_method is not None and self.values:
            self.values.clear()
            self.values.append(value)
        return value

    def new_state(self) -> dict[str, Any]:
        """``get_state()`` holding only the values logged since the last reduce() (an EMA:
        its current value): what another logger's ``aggregate`` takes in."""
        state = self.get_state()
        if self.ema_coeff is None:
            state["values"] = state["values"][len(self.values) - min(self.num_new,
                                                                     len(self.values)):]
        return state

    def merge(self, others: Iterable["Stats"]) -> None:
        """Take in other loggers' stats of this key (e.g. one per env runner)."""
        others = list(others)
        if self.reduce_method == "sum" and self.window is None:
            self.push(sum(o.peek() for o in others))
        elif self.ema_coeff is not None:
            emas = [v for v in (o.peek() for o in others) if not math.isnan(v)]
            if emas:
                self.push(sum(emas) / len(emas))
        else:
            for other in others:
                for value in other.values:
                    self.push(value)

    def get_state(self) -> dict[str, Any]:
        return {"reduce": self.reduce_method, "window": self.window, "ema_coeff": self.ema_coeff,
                "clear_on_reduce": self.clear_on_reduce, "values": [_number(v) for v in self.values],
                "ema": self.ema}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Stats":
        stats = cls(state["reduce"], state["window"], None if state["window"] else
                    state["ema_coeff"], state["clear_on_reduce"])
        stats.ema_coeff = state["ema_coeff"]
        stats.values.extend(state["values"])
        stats.ema = state["ema"]
        return stats


Key = str | tuple[str, ...]


class MetricsLogger:
    """Stats by key path; what ``metrics_logger`` / ``self.metrics`` are in RLlib's APIs."""

    def __init__(self) -> None:
        self.stats: dict[tuple[str, ...], Stats] = {}

    def log_value(self, key: Key, value: Any, *, reduce: str | None = "mean",
                  window: int | float | None = None, ema_coeff: float | None = None,
                  clear_on_reduce: bool = False) -> None:
        """Add ``value`` under ``key``; the first call for a key fixes how it reduces."""
        path = _path(key)
        stats = self.stats.get(path)
        if stats is None:
            stats = self.stats[path] = Stats(reduce, window, ema_coeff, clear_on_reduce)
        stats.push(value)

    def log_dict(self, value_dict: Mapping[str, Any], *, key: Key | None = None,
                 **how: Any) -> None:
        """``log_value`` for every leaf of a nested dict (under ``key``, if given)."""
        prefix = () if key is None else _path(key)
        for name, value in value_dict.items():
            if isinstance(value, Mapping):
                self.log_dict(value, key=(*prefix, name), **how)
            else:
                self.log_value((*prefix, name), value, **how)

    def peek(self, key: Key = (), *, default: Any = None) -> Any:
        """The reduced value of ``key`` (a nested dict for a key prefix), changing nothing."""
        path = _path(key)
        if path in self.stats:
            return self.stats[path].peek()
        below = {p[len(path):]: s for p, s in self.stats.items() if p[:len(path)] == path}
        if not below:
            if default is not None:
                return default
            raise KeyError(f"MetricsLogger.peek(): nothing logged under {key!r}; logged: "
                           f"{sorted('/'.join(p) for p in self.stats)[:10]}.")
        return _nest({p: s.peek() for p, s in below.items()})

    def reduce(self, *, as_stats: bool = False) -> dict[str, Any]:
        """Every key's reduced value as nested dicts; ``as_stats``: what was logged since the
        last reduce (as plain dicts) for another logger's ``aggregate``, then reduced as
        ``reduce()`` would."""
        if as_stats:
            out = {p: s.new_state() for p, s in self.stats.items()}
            for stats in self.stats.values():
                stats.reduce()
            return _nest(out)
        return _nest({p: s.reduce() for p, s in self.stats.items()})

    def aggregate(self, stats_dicts: Iterable[Mapping[str, Any]], *,
                  key: Key | None = None) -> None:
        """Merge ``reduce(as_stats=True)`` results of other loggers (under ``key``)."""
        prefix = () if key is None else _path(key)
        by_path: dict[tuple[str, ...], list[Stats]] = {}
        for stats_dict in stats_dicts:
            for path, state in _flatten_stats(stats_dict):
                by_path.setdefault((*prefix, *path), []).append(Stats.from_state(state))
        for path, others in by_path.items():
            if path not in self.stats:
                first = others[0]
                self.stats[path] = Stats(first.reduce_method, first.window,
                                         None if first.window else first.ema_coeff,
                                         first.clear_on_reduce)
            self.stats[path].merge(others)

    def get_state(self) -> dict[str, Any]:
        return {"/".join(p): s.get_state() for p, s in self.stats.items()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.stats = {tuple(k.split("/")): Stats.from_state(v) for k, v in state.items()}


def _path(key: Key) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(key)


def _number(value: Any) -> Any:
    """Tensors and numpy scalars as Python numbers (one device sync per logged value)."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", 0) == 0:
        return item()
    return value


def _nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _flatten_stats(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()):
    for name, value in tree.items():
        if isinstance(value, Mapping) and "reduce" in value and "values" in value:
            yield (*prefix, name), value
        elif isinstance(value, Mapping):
            yield from _flatten_stats(value, (*prefix, name))
