"""Shared fixtures: one real local Ray instance per test session, started on first use."""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs; tests size their actors (e.g. 0.5 CPU each) to fit it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()


@contextlib.contextmanager
def shipped_by_value(*modules: ModuleType) -> Iterator[None]:
    """Ray workers cannot import test files: pickle these modules' classes by value."""
    from ray import cloudpickle

    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
