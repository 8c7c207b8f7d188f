"""A small cache of heavy objects (models, vector indexes) that are loaded lazily and freed when idle.

``cache.get(key, loader)`` returns the cached value or calls ``loader()`` once — concurrent callers
of the same key wait for that one load instead of loading twice — and remembers when each entry
was last used. Entries unused for longer than their idle TTL are evicted by ``sweep()``, which a
daemon thread runs while the cache holds anything (started on first insert, stopped by ``close``).
An evicted value's ``close()`` is called when it has one; dropping the last reference frees the
rest (torch modules, FAISS indexes). ``with cache.hold(key, loader) as value:`` keeps an entry
from being swept or closed while a long task (an embedding job) uses it.

One cache belongs to one ``Studio`` (``studio.cache``): no module-level state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    ttl: float
    last_used: float
    loading: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    holders: int = 0  # ``hold`` blocks using the value: it is neither swept nor closed meanwhile


class ModelCache:
    """Thread-safe ``key → value`` cache with an idle TTL per entry.

    ``idle_ttl`` is the default time-to-live after the last use, in seconds (``0`` disables
    caching: every ``get`` loads afresh and keeps nothing); ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        idle_ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float | None = None,
    ) -> None:
        self.idle_ttl = float(idle_ttl)
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._held: dict[int, _Entry] = {}  # id(value) → its entry, while ``hold`` blocks use it
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.loads = 0
        self.evictions = 0
        # told of each hit (``observer(key, "hit", 0.0)``) and each load (``"load"``, its seconds):
        # the Studio counts them for /metrics; an observer that raises is ignored
        self.observer: Callable[[Hashable, str, float], None] | None = None

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for e in self._entries.values() if e.loading.is_set() and e.error is None)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry.loading.is_set() and entry.error is None

    def keys(self) -> list[Hashable]:
        with self._lock:
            return [k for k, e in self._entries.items() if e.loading.is_set() and e.error is None]

    def get(self, key: Hashable, loader: Callable[[], T], *, ttl: float | None = None) -> T:
        """The value under ``key``, loading it with ``loader()`` on a miss.

        A loader that raises caches nothing: the error reaches every caller that waited for that
        load, and the next ``get`` tries again.
        """
        return self._get(key, loader, ttl, hold=False)

    @contextlib.contextmanager
    def hold(self, key: Hashable, loader: Callable[[], T], *, ttl: float | None = None) -> Iterator[T]:
        """``get``, with the entry kept (not swept, not closed) until the block ends. An entry
        evicted meanwhile (``evict``, ``clear``) is closed when its last holder lets go."""
        value = self._get(key, loader, ttl, hold=True)
        try:
            yield value
        finally:
            with self._lock:
                entry = self._held.pop(id(value), None)
                orphan = False
                if entry is not None:
                    entry.holders -= 1
                    entry.last_used = self._clock()
                    if entry.holders:
                        self._held[id(value)] = entry
                    orphan = entry.holders == 0 and self._entries.get(key) is not entry
            if orphan:
                self._close(value)

    def _get(self, key: Hashable, loader: Callable[[], T], ttl: float | None, *, hold: bool) -> T:
        ttl = self.idle_ttl if ttl is None else float(ttl)
        if ttl <= 0:
            return loader()
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is None:
                    entry = _Entry(value=None, ttl=ttl, last_used=self._clock())
                    self._entries[key] = entry
                    owner = True
                else:
                    owner = False
                    if entry.loading.is_set():
                        if entry.error is None:
                            entry.last_used = self._clock()
                            if hold:
                                self._take(entry)
                            value: T = entry.value
                            self._observe(key, "hit", 0.0)
                            return value
                        del self._entries[key]  # a failed load: retry below
                        continue
            if owner:
                return self._load(key, entry, loader, hold=hold)
            entry.loading.wait()
            if entry.error is not None:
                raise entry.error

    def _take(self, entry: _Entry) -> None:
        """Count one more holder of ``entry`` (called with the lock held)."""
        entry.holders += 1
        self._held[id(entry.value)] = entry

    def _observe(self, key: Hashable, event: str, seconds: float) -> None:
        if self.observer is not None:
            try:
                self.observer(key, event, seconds)
            except Exception:  # metrics must never break a model load
                log.debug("model cache observer failed", exc_info=True)

    def _load(self, key: Hashable, entry: _Entry, loader: Callable[[], T], *, hold: bool = False) -> T:
        started = time.perf_counter()
        try:
            value = loader()
        except BaseException as exc:
            with self._lock:
                entry.error = exc
                if self._entries.get(key) is entry:
                    del self._entries[key]
            entry.loading.set()
            raise
        with self._lock:
            entry.value = value
            entry.last_used = self._clock()
            if hold:
                self._take(entry)
            self.loads += 1
            self._start_sweeper()
        entry.loading.set()
        self._observe(key, "load", time.perf_counter() - started)
        return value

    def peek(self, key: Hashable) -> Any | None:
        """The cached value or ``None``, without loading and without counting as a use."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.loading.is_set() or entry.error is not None:
                return None
            return entry.value

    def evict(self, key: Hashable) -> bool:
        """Drop ``key`` now (closing its value). Returns whether it was cached."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.loading.is_set():
                return False
            del self._entries[key]
            held = entry.holders > 0  # closed by its last holder instead
        if not held:
            self._close(entry.value)
        self.evictions += 1
        return True

    def sweep(self) -> int:
        """Evict every entry idle for longer than its TTL. Returns how many were evicted."""
        now = self._clock()
        with self._lock:
            stale = [
                k
                for k, e in self._entries.items()
                if e.loading.is_set() and e.error is None and not e.holders and now - e.last_used > e.ttl
            ]
            values = [self._entries.pop(k).value for k in stale]
        for v in values:
            self._close(v)
        self.evictions += len(values)
        if values:
            log.debug("model cache evicted %d idle entr%s", len(values), "y" if len(values) == 1 else "ies")
        return len(values)

    def clear(self) -> None:
        """Evict everything."""
        with self._lock:
            values = [
                e.value
                for e in self._entries.values()
                if e.loading.is_set() and e.error is None and not e.holders
            ]
            self._entries.clear()
        for v in values:
            self._close(v)

    def close(self) -> None:
        """Evict everything and stop the sweeper thread."""
        self._stop.set()
        self.clear()
        sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=5)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _close(value: Any) -> None:
        close = getattr(value, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    def _start_sweeper(self) -> None:
        """Start the sweeping thread if none runs (called with the lock held)."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return
        if self._stop.is_set():
            return
        self._sweeper = threading.Thread(target=self._sweep_loop, name="model-cache-sweeper", daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while True:
            with self._lock:
                ttls = [e.ttl for e in self._entries.values()]
                if not ttls:
                    self._sweeper = None  # the next insert starts a new one
                    return
            interval = self._sweep_interval or min(60.0, max(1.0, min(ttls) / 2))
            if self._stop.wait(interval):
                return
            try:
                self.sweep()
            except Exception:  # never let a close() bug kill the sweeper silently
                log.exception("model cache sweep failed")
