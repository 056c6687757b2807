"""A frozen copy of engine/baselines/model.py as of commit 5c38df5 (before the ingest-cost work of P11b).

Why a copy: tests/test_baselines_differential.py checks that the faster step sets exactly the same
``wardwatch.baseline.*`` fields as this one, over random users, orders and batch cuts. Do not edit it
to follow engine changes: it is the oracle."""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from statistics import median
from typing import Iterable


@dataclass
class DayRecord:
    """What one user did on one local day (``day`` is ``YYYY-MM-DD`` in the baseline's time zone)."""

    hours: set[int] = field(default_factory=set)
    #: patient hash -> earliest canonical @timestamp of an access that day
    patients: dict[str, str] = field(default_factory=dict)
    roles: set[str] = field(default_factory=set)
    #: (tolerance, 24-bit mask of the spread hours) memo for summarise; reset when the hours change
    _spread: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    #: sorted first-access times for patients_upto; reset when the patients change
    _firsts: list[str] | None = field(default=None, repr=False, compare=False)

    def merge(self, hours: Iterable[int], patients: dict[str, str], roles: Iterable[str]) -> "DayRecord | None":
        """Merge facts in; return the part that was new (None when nothing changed)."""
        new_hours = {h for h in hours if h not in self.hours}
        new_patients = {p: ts for p, ts in patients.items()
                        if p not in self.patients or ts < self.patients[p]}
        new_roles = {r for r in roles if r not in self.roles}
        if not (new_hours or new_patients or new_roles):
            return None
        if new_hours:
            self.hours |= new_hours
            self._spread = None
        if new_patients:
            self.patients.update(new_patients)
            self._firsts = None
        self.roles |= new_roles
        return DayRecord(new_hours, new_patients, new_roles)

    def patients_upto(self, ts: str) -> int:
        """Distinct patients first opened at or before ``ts`` (canonical timestamps compare as text)."""
        firsts = self._firsts
        if firsts is None:
            firsts = self._firsts = sorted(self.patients.values())
        return bisect_right(firsts, ts)


def near(hours: set[int], hour: int, tolerance: int) -> bool:
    """Was there activity within ``tolerance`` hours of ``hour`` (23 and 0 are neighbours)?"""
    if tolerance <= 0:
        return hour in hours
    return any(((hour + d) % 24) in hours for d in range(-tolerance, tolerance + 1))


def spread(hours: set[int], tolerance: int) -> set[int]:
    """Every hour ``h`` with ``near(hours, h, tolerance)``: the hours widened by the tolerance."""
    if tolerance <= 0:
        return hours
    return {(h + d) % 24 for h in hours for d in range(-tolerance, tolerance + 1)}


class Profile:
    """A summary of user-days in a window: per day class, the active user-days as hour masks.

    ``days[c]`` counts the active user-days of class ``c`` (0 weekday, 1 weekend); ``masks[c]`` holds one
    24-bit mask per such day, bit ``h`` set when there was activity within the tolerance of hour ``h``;
    ``usual`` is the median daily distinct-patient count over all active user-days (None without any).
    Shares are computed on first use and memoised: a profile is asked about a few hours only."""

    __slots__ = ("active_days", "days", "masks", "usual", "_shares")

    def __init__(self, active_days: int, days: tuple[int, int], masks: tuple[list[int], list[int]],
                 usual: float | None):
        self.active_days = active_days
        self.days = days
        self.masks = masks
        self.usual = usual
        self._shares: dict[tuple[int, int], float] = {}

    def share(self, day_class: int, hour: int) -> float:
        share = self._shares.get((day_class, hour))
        if share is None:
            total = self.days[day_class]
            bit = 1 << hour
            hits = sum(1 for mask in self.masks[day_class] if mask & bit)
            share = self._shares[(day_class, hour)] = hits / total if total else 0.0
        return share


def summarise(records: Iterable[tuple[int, DayRecord]], tolerance: int) -> Profile:
    """The profile of (day class, record) pairs; records without activity are ignored."""
    masks: tuple[list[int], list[int]] = ([], [])
    daily: list[int] = []
    for day_class, record in records:
        if not record.hours:
            continue
        memo = record._spread
        if memo is None or memo[0] != tolerance:
            memo = record._spread = (tolerance, sum(1 << h for h in spread(record.hours, tolerance)))
        masks[day_class].append(memo[1])
        daily.append(len(record.patients))
    return Profile(len(daily), (len(masks[0]), len(masks[1])), masks, float(median(daily)) if daily else None)
