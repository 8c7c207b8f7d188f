"""The model cache: lazy loading once, idle TTL eviction, failed loads not cached, closing values."""

from __future__ import annotations

import threading
import time

import pytest

from vistudio.ml.inference.cache import ModelCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_loads_once_and_evicts_after_the_idle_ttl() -> None:
    clock = Clock()
    cache = ModelCache(idle_ttl=10, clock=clock)
    calls = []
    value = Closable()

    def load() -> Closable:
        calls.append(1)
        return value

    assert cache.get("m", load) is value
    clock.now = 9
    assert cache.get("m", load) is value  # a use resets the idle time
    clock.now = 18
    assert cache.sweep() == 0 and "m" in cache
    clock.now = 19.5
    assert cache.sweep() == 1
    assert "m" not in cache and value.closed and len(calls) == 1
    cache.get("m", load)
    assert len(calls) == 2
    cache.close()


def test_per_entry_ttl_peek_and_evict() -> None:
    clock = Clock()
    cache = ModelCache(idle_ttl=100, clock=clock)
    cache.get("short", lambda: 1, ttl=1)
    cache.get("long", lambda: 2)
    assert cache.peek("long") == 2 and cache.peek("missing") is None
    clock.now = 2
    cache.sweep()
    assert cache.keys() == ["long"]
    assert cache.evict("long") and not cache.evict("long")
    assert len(cache) == 0
    cache.close()


def test_a_failed_load_is_not_cached() -> None:
    cache = ModelCache()

    def boom() -> int:
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError, match="no weights"):
        cache.get("m", boom)
    assert "m" not in cache
    assert cache.get("m", lambda: 5) == 5
    cache.close()


def test_concurrent_callers_share_one_load() -> None:
    cache = ModelCache()
    started = threading.Event()
    calls = []

    def slow() -> object:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4 and len({id(r) for r in results}) == 1
    cache.close()


def test_zero_ttl_caches_nothing_and_the_sweeper_thread_evicts() -> None:
    cache = ModelCache(idle_ttl=0)
    assert cache.get("m", lambda: 1) == 1 and len(cache) == 0
    cache.close()

    value = Closable()
    live = ModelCache(idle_ttl=0.05, sweep_interval=0.02)
    live.get("m", lambda: value)
    deadline = time.monotonic() + 5
    while "m" in live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "m" not in live and value.closed
    live.close()


def test_a_held_value_is_neither_swept_nor_closed_until_released() -> None:
    """A long job (an embedding run) holds its encoder: idle sweeps pass it by, and an explicit
    eviction closes it only when the job lets go."""
    clock = Clock()
    cache = ModelCache(idle_ttl=10, clock=clock)
    value = Closable()
    with cache.hold("enc", lambda: value) as held:
        assert held is value
        with cache.hold("enc", lambda: Closable()) as again:  # a second holder shares it
            assert again is value
        clock.now = 100
        assert cache.sweep() == 0 and not value.closed and "enc" in cache
    clock.now = 105
    assert cache.sweep() == 0  # released at 100: idle for 5 s only
    clock.now = 111
    assert cache.sweep() == 1 and value.closed

    other = Closable()
    with cache.hold("enc", lambda: other):
        assert cache.evict("enc") and "enc" not in cache and not other.closed
        cache.clear()
        assert not other.closed
    assert other.closed  # its last holder let go
    cache.close()
