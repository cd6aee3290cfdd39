"""Helpers for the algorithm tests (no tests here)."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_states_equal(a: Any, b: Any, path: str = "") -> None:
    """Nested dicts/lists of arrays are exactly equal, key for key; errors name the path."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {list(a)} vs {list(b)}"
        for key in a:
            assert_states_equal(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_states_equal(x, y, f"{path}/{i}")
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
