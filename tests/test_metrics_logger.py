"""MetricsLogger: RLlib's reduce semantics, and combining several loggers' numbers."""

from __future__ import annotations

import math

import pytest
import torch

from runners.metrics_logger import MetricsLogger


def test_reduce_methods_windows_and_ema():
    m = MetricsLogger()
    for v in (1, 2, 3, 4):
        m.log_value("win", v, window=2)
        m.log_value("total", v, reduce="sum")
        m.log_value("low", v, reduce="min")
        m.log_value("high", v, reduce="max", window=3)
        m.log_value("all", v, reduce=None)
        m.log_value("ema", v, ema_coeff=0.5)
    m.log_value(("nested", "t"), torch.tensor(2.5))
    assert m.peek("win") == 3.5 and m.peek("total") == 10 and m.peek("low") == 1
    assert m.peek("high") == 4 and m.peek("all") == [1, 2, 3, 4]
    assert m.peek("ema") == pytest.approx(((1 * .5 + 2 * .5) * .5 + 3 * .5) * .5 + 4 * .5)
    assert m.peek("nested") == {"t": 2.5} and m.peek(("nested", "t")) == 2.5
    out = m.reduce()
    assert out["total"] == 10 and out["nested"]["t"] == 2.5
    m.log_value("total", 5, reduce="sum")
    assert m.reduce()["total"] == 15  # A sum without clear_on_reduce keeps adding up.
    assert m.peek("missing", default=0) == 0
    with pytest.raises(KeyError, match="nothing logged under 'missing'"):
        m.peek("missing")
    with pytest.raises(ValueError, match="reduce='median'"):
        m.log_value("x", 1, reduce="median")


def test_clear_on_reduce_and_empty_values():
    m = MetricsLogger()
    m.log_value("per_call", 3, reduce="sum", clear_on_reduce=True)
    m.log_value("mean", 2.0, window=5, clear_on_reduce=True)
    assert m.reduce() == {"per_call": 3, "mean": 2.0}
    again = m.reduce()
    assert again["per_call"] == 0 and math.isnan(again["mean"])


def test_aggregate_takes_only_what_was_logged_since_the_last_reduce():
    root, a, b = MetricsLogger(), MetricsLogger(), MetricsLogger()
    for logger, values in ((a, (1, 2)), (b, (10,))):
        for v in values:
            logger.log_value("steps", v, reduce="sum")
            logger.log_value("per_call", v, reduce="sum", clear_on_reduce=True)
            logger.log_value("ret", v, window=3)
            logger.log_value("lo", v, reduce="min", window=3)
    root.aggregate([a.reduce(as_stats=True), b.reduce(as_stats=True)])
    first = root.reduce()
    assert first["steps"] == 13 and first["per_call"] == 13
    assert first["ret"] == pytest.approx(13 / 3) and first["lo"] == 1
    a.log_value("steps", 4, reduce="sum")
    a.log_value("ret", 100, window=3)
    fresh = MetricsLogger()  # A restarted sender: its own numbers start from zero.
    fresh.log_value("steps", 1, reduce="sum")
    root.aggregate([a.reduce(as_stats=True), fresh.reduce(as_stats=True),
                    b.reduce(as_stats=True)])
    second = root.reduce()
    assert second["steps"] == 18 and second["per_call"] == 0
    assert second["ret"] == pytest.approx((2 + 10 + 100) / 3)  # Window of 3, no repeats.
    root.aggregate([{"x": a.reduce(as_stats=True)["steps"]}], key="sub")
    assert root.peek(("sub", "x")) == 0


def test_state_round_trip_keeps_windows_and_totals():
    m = MetricsLogger()
    for v in (1.0, 2.0, 3.0):
        m.log_value(("r", "mean"), v, window=2)
        m.log_value("n", 1, reduce="sum")
    m.reduce()
    back = MetricsLogger()
    back.set_state(m.get_state())
    assert back.peek(("r", "mean")) == 2.5 and back.peek("n") == 3
    back.log_value("n", 1, reduce="sum")
    assert back.reduce()["n"] == 4
    other = MetricsLogger()
    other.aggregate([back.reduce(as_stats=True)])
    assert other.peek("n") == 0  # Nothing new since the last reduce.
