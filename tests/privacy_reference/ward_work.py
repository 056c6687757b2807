"""The ward-work memory as it was before it was kept per patient: one entry per access in a deque per user.

The oracle of ``engine.enrich.ward_work.WardWork`` (tests/test_ward_work.py) and the reference enricher's
own memory (tests/test_privacy_fast_path.py). Do not change it to follow the new code.
"""

from __future__ import annotations

import threading
from collections import deque


class ReferenceWardWork:
    """Which departments' patients each user opened in the last ``window_ms``: the memory behind
    ``ehr.relationship.worked_department``.

    Why: staff work on wards other than their roster department (a nurse sent to help another ward, a
    resident covering two wards on a late shift); the patients they open there are their work, while a
    snooper opens the one chart and nothing else there. Only the past is known at ingest, so an access counts
    the user's accesses *before* it (never after): a restart or an out-of-order backfill loses context and
    gives more alerts, never fewer. Memory: one entry per access in the window, per user."""

    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        self._by_user: dict[str, deque[tuple[int, str | None, str]]] = {}
        self._adds = 0
        #: held by the caller around ``add`` and ``others`` (the enricher holds it for a whole batch: taking
        #: it per access cost more than the rest of ``add``). The service's connectors share one enrichment
        #: chain from scheduler threads, and a deque iterated while another thread appends raises.
        self.lock = threading.Lock()

    def add(self, user: str, ts_ms: int, department: str | None, patient_id: str) -> None:
        horizon = ts_ms - self.window_ms
        recent = self._by_user.get(user)
        if recent is None:
            recent = self._by_user[user] = deque()
        recent.append((ts_ms, department, patient_id))
        while recent[0][0] < horizon:  # never empties: the access just added is inside its own window
            recent.popleft()
        self._adds += 1
        if self._adds >= 200_000:   # forget users who have been idle for a whole window
            self._adds = 0
            for name in [u for u, r in self._by_user.items() if not r or r[-1][0] < horizon]:
                del self._by_user[name]

    def others(self, user: str, ts_ms: int, department: str, patient_id: str, enough: int) -> int:
        """Distinct other patients of ``department`` the user opened in ``[ts_ms - window, ts_ms]``, counted
        up to ``enough`` (newest first: the answer is usually found in the last few accesses)."""
        horizon = ts_ms - self.window_ms
        seen: set[str] = set()
        for t, d, p in reversed(self._by_user.get(user, ())):
            if d == department and p != patient_id and horizon <= t <= ts_ms:
                seen.add(p)
                if len(seen) >= enough:
                    break
        return len(seen)
