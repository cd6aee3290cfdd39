"""Shared fixtures: one real local Ray instance per test session, started on first use.

Tests that start Ray are marked ``ray`` (those using ``ray_session`` here, ``cluster`` ones
by their marker), so ``pytest -m "not ray"`` is a quick loop that never imports Ray.
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest


@pytest.hookimpl(tryfirst=True)  # Before `-m` deselects by marker.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "ray_session" in item.fixturenames or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session", autouse=True)
def ray_auth_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Ray token in the session's temp dir, for Ray and train.py's subprocesses alike:
    without one, a new local Ray (token auth by default) writes ~/.ray/auth_token."""
    token = tmp_path_factory.mktemp("ray_auth") / "auth_token"
    token.write_text(uuid.uuid4().hex)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
        yield token


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
