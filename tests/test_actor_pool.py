"""ActorPool with plain Ray actors: start, calls, failures, restarts with replay, requests."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from conftest import shipped_by_value

pytestmark = pytest.mark.ray


class Counter:
    """A tiny actor: holds a value that replay can set, and fails on request."""

    def __init__(self, start: int) -> None:
        self.value = start

    def get(self) -> int:
        return self.value

    def set(self, value: int) -> int:
        self.value = value
        return value

    def pid(self) -> int:
        return os.getpid()

    def fail(self) -> None:
        raise ValueError("asked to fail")

    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


@pytest.fixture(scope="module")
def shipped(ray_session):
    with shipped_by_value(sys.modules[__name__]):
        yield


@pytest.fixture
def pool_factory(shipped):
    """Makes pools whose failures are recorded (not raised); stops them after the test."""
    from runners.actor_pool import ActorPool

    pools = []

    def make(n=2, cpus=0.25):
        failures = []
        pool = ActorPool(Counter, lambda i: ((10 * i,), {}), range(1, n + 1),
                         options={"num_cpus": cpus}, name="Counter",
                         on_failure=lambda i, err, pending: failures.append(
                             (i, type(err).__name__, sorted(pending))))
        pool.failures = failures
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def test_start_and_calls_in_index_order(pool_factory):
    pool = pool_factory(n=3)
    pool.start(timeout_s=60)
    assert pool.up == [1, 2, 3]
    assert pool.call_all("get") == {1: 10, 2: 20, 3: 30}
    pool.stop()
    assert pool.up == [] and pool.actors == {}


def test_actors_ray_cannot_place_are_named_and_nothing_is_left(pool_factory, ray_session):
    from runners.actor_pool import NotScheduled

    pool = pool_factory(n=2, cpus=2)  # 4 CPUs on a 2-CPU Ray: at most one fits.
    free = ray_session.available_resources().get("CPU", 0)
    with pytest.raises(NotScheduled) as info:
        pool.start(timeout_s=2)
    assert info.value.pending and set(info.value.pending) <= {1, 2}
    assert pool.actors == {}
    deadline = time.monotonic() + 30
    while ray_session.available_resources().get("CPU", 0) < free:
        assert time.monotonic() < deadline, "the started actor was not killed"
        time.sleep(0.2)


def test_a_failed_call_goes_to_the_policy_with_the_pending_calls(pool_factory):
    pool = pool_factory(n=2)
    pool.start(timeout_s=60)
    calls = {1: pool.actors[1].fail.remote(), 2: pool.actors[2].slow.remote(1.0)}
    assert pool.gather(calls) == {2: 1.0}
    assert pool.failures == [(1, "RayTaskError(ValueError)", [2])]


def test_a_restarted_actor_replays_its_state_before_it_takes_calls(pool_factory):
    pool = pool_factory(n=2)
    pool.start(timeout_s=60)
    pool.set_replay(lambda actor: actor.set.remote(7))
    old_pid = pool.call_all("pid")[1]
    os.kill(old_pid, signal.SIGKILL)
    assert pool.call_all("get") == {2: 20}
    assert pool.failures and pool.failures[0][:2] == (1, "ActorDiedError")
    pool.restart(1)
    assert pool.up == [2] and list(pool.starting) == [1]
    assert pool.wait_starting(limit_s=60) == []
    assert pool.up == [1, 2]
    assert pool.call_all("get") == {1: 7, 2: 20}  # Replayed, not built anew (10).
    assert pool.call_all("pid")[1] != old_pid


def test_a_restarted_actor_without_room_stays_out_until_it_fits(pool_factory, ray_session):
    pool = pool_factory(n=1, cpus=1)
    pool.start(timeout_s=60)
    os.kill(pool.call_all("pid")[1], signal.SIGKILL)
    blocker = ray_session.remote(num_cpus=2)(Counter).remote(0)  # Takes every CPU once free.
    try:
        ray_session.get(blocker.get.remote(), timeout=60)
        pool.restart(1)
        assert pool.wait_starting(limit_s=1) == [1]
        assert pool.up == []
    finally:
        ray_session.kill(blocker)
    assert pool.wait_starting(limit_s=60) == []
    assert pool.up == [1] and pool.call_all("get") == {1: 10}


def test_requests_in_flight_are_taken_as_they_finish(pool_factory):
    pool = pool_factory(n=2)
    pool.start(timeout_s=60)
    pool.submit(1, "slow", 1.0, tag="slow one")
    pool.submit(2, "slow", 0.0, tag="fast one")
    assert set(pool.in_flight) == {1, 2}
    call, result = pool.wait_any(timeout_s=30)
    assert (call.index, call.tag, result) == (2, "fast one", 0.0)
    assert pool.wait_any(timeout_s=0.01) is None  # The slow one is still running.
    call, result = pool.wait_any(timeout_s=30)
    assert (call.index, call.tag) == (1, "slow one") and pool.in_flight == {}
    pool.submit(1, "fail")
    assert pool.wait_any(timeout_s=30) == 1
    assert pool.failures == [(1, "RayTaskError(ValueError)", [])]
