"""Connection admission for the syslog listeners: a cap in total and a cap per source address.

Why two caps: the total cap alone lets one misbehaving device (or an attacker with one address) take every
slot with idle connections and lock every real sender out. A per-source cap bounds what one address can
hold; the idle and frame timeouts in :mod:`connectors.syslog.server` then give the slots back.

Why refuse instead of queueing: a refused TCP sender sees the close at once and retries (syslog senders
reconnect), while a queued one would sit behind connections that may never send anything.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

LIMIT_TOTAL = "max_connections"
LIMIT_PER_SOURCE = "max_connections_per_source"


class ConnectionLimiter:
    """Counts open connections per source; ``acquire`` says which limit (if any) refuses a new one.

    Thread-safe: the accept loop acquires, each connection's thread releases when it ends.
    """

    def __init__(self, max_connections: int, max_connections_per_source: int):
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self._open: Counter[str] = Counter()
        self._total = 0
        self._lock = threading.Lock()

    def acquire(self, source: str) -> str | None:
        """Take a slot for ``source``. None: admitted (call :meth:`release` later); else the limit's name."""
        with self._lock:
            if self._total >= self.max_connections:
                return LIMIT_TOTAL
            if self._open[source] >= self.max_connections_per_source:
                return LIMIT_PER_SOURCE
            self._open[source] += 1
            self._total += 1
            return None

    def release(self, source: str) -> None:
        with self._lock:
            if self._open[source] <= 0:
                return
            self._open[source] -= 1
            self._total -= 1
            if not self._open[source]:
                del self._open[source]  # bounded memory: only sources with open connections are kept

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self._total

    def open_from(self, source: str) -> int:
        with self._lock:
            return self._open.get(source, 0)


class RefusalLog:
    """Rate limits the "connection refused" warning: a flood of refusals must not flood the log.

    ``should_log`` returns how many refusals (including this one) the warning should report, or 0 to stay
    quiet; at most one warning per ``interval`` seconds per key (listener and limit).
    """

    def __init__(self, interval: float = 10.0):
        self.interval = interval
        self._last: dict[object, float] = {}
        self._pending: Counter[object] = Counter()
        self._lock = threading.Lock()

    def should_log(self, key: object) -> int:
        now = time.monotonic()
        with self._lock:
            self._pending[key] += 1
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return 0
            self._last[key] = now
            return self._pending.pop(key)
