"""The memory behind ``ehr.relationship.worked_department``: whose patients each user opened, where, lately.

Why the flag: staff work on wards other than their roster department (a nurse sent to help another ward, a
resident covering two wards on a late shift); the patients they open there are their work, while a snooper
opens the one chart and nothing else there. Only the past is known at ingest, so an access counts the
user's accesses *before* it (never after): a restart or an out-of-order backfill loses context and gives
more alerts, never fewer.

Why this shape (user -> department -> patient -> time of the latest access), not a list of accesses: every
access of a roster user is added, flagged or not, so ``add`` is on the ingest's hot path. Kept per access,
the memory cost a tuple per access and a scan of the user's window per question (issue 11's ingest
measurement: 1.7 µs per event). Per patient it is three dictionary steps, holds one entry per (user,
department, patient) instead of one per access, and skips accesses whose patient is on no department, which
no question asks about.
"""

from __future__ import annotations

import threading

#: adds between two sweeps of the entries older than every window still asked about
_SWEEP_EVERY = 20_000


class WardWork:
    """Which departments' patients each user opened in the last ``window_ms``.

    ``others`` counts exactly the distinct other patients a user opened on the department within the window
    when accesses are added in time order (what ingest does within a stream). Added out of order, a patient
    is counted only when the time kept for it (its latest *added* access) lies in the window: never a patient
    the user did not open there in the window, sometimes fewer than were."""

    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        #: user -> department key -> patient -> the time of their last added access, oldest first
        self._by_user: dict[str, dict[str, dict[str, int]]] = {}
        self._newest = 0
        self._adds = 0
        #: held by the caller around ``add`` and ``others`` (the enricher holds it for a whole batch: taking
        #: it per access cost more than the rest of ``add``). The service's connectors share one enrichment
        #: chain from scheduler threads, and a dict iterated while another thread inserts raises.
        self.lock = threading.Lock()

    def add(self, user: str, ts_ms: int, department: str | None, patient_id: str) -> None:
        if department is None:  # no department: never counted by ``others``
            return
        by_department = self._by_user.get(user)
        if by_department is None:
            by_department = self._by_user[user] = {}
        seen = by_department.get(department)
        if seen is None:
            seen = by_department[department] = {}
        seen.pop(patient_id, None)  # to the end: the newest patients are last
        seen[patient_id] = ts_ms
        if ts_ms > self._newest:
            self._newest = ts_ms
        self._adds += 1
        if self._adds >= _SWEEP_EVERY:
            self._adds = 0
            self._sweep(self._newest - self.window_ms)

    def others(self, user: str, ts_ms: int, department: str, patient_id: str, enough: int) -> int:
        """Distinct other patients of ``department`` the user opened in ``[ts_ms - window, ts_ms]``, counted
        up to ``enough`` (newest first: the answer is usually found in the last few entries)."""
        by_department = self._by_user.get(user)
        seen = by_department.get(department) if by_department is not None else None
        if not seen:
            return 0
        horizon = ts_ms - self.window_ms
        found = 0
        for patient, t in reversed(seen.items()):
            if t < horizon:  # entries before it were added earlier: in time order, older still
                break
            if t <= ts_ms and patient != patient_id:
                found += 1
                if found >= enough:
                    break
        return found

    def _sweep(self, horizon: int) -> None:
        """Forget what no window from the newest access on reaches back to (users idle for a whole window)."""
        for user in list(self._by_user):
            by_department = self._by_user[user]
            for department in list(by_department):
                kept = {p: t for p, t in by_department[department].items() if t >= horizon}
                if kept:
                    by_department[department] = kept
                else:
                    del by_department[department]
            if not by_department:
                del self._by_user[user]
