"""The per-user profile: one record per (user, local day), merged like a CRDT, and what is derived from it.

Why per-day records and not a running profile: a running average depends on the order it was fed in. A
record per (user, day) holding *sets* (active local hours, patient hash -> earliest access time, roles
seen) merges by union / minimum, which is commutative, associative and idempotent. So a replayed batch, a
late event or a different run order yields the same records, and every value derived from "the records of
the 28 days before day D" is the same whatever order the events arrived in.

The derivations (documented in docs/enrichment.md, "Per-user baselines"):

* **hour share**: of the user's active days in the window of the same *day class* (weekday / weekend day),
  the fraction with activity within ``tolerance`` hours of this local hour (circular over midnight).
* **usual distinct patients**: the median, over the user's active days in the window, of the number of
  distinct patients opened that day.
* a **role profile** pools the user-days of every user whose record carries the role, the same way.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from statistics import median
from typing import Iterable


_TALLY_FROM = 64  # a profile of more masks than this counts shares over its distinct masks


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

    def merge(self, hours: set[int], patients: dict[str, str], roles: set[str]) -> "DayRecord | None":
        """Merge facts in; return the part that was new (None when nothing changed). The new part may be
        made of the given collections themselves: the caller must not change them while it uses it."""
        if not (self.hours or self.patients or self.roles):  # a fresh record (the common case): all is new
            if not (hours or patients or roles):
                return None
            self.hours, self.patients, self.roles = set(hours), dict(patients), set(roles)
            self._spread = self._firsts = None
            # the new part is all of the record: the given collections themselves (one copy, not two: a
            # record is merged once per user-day and batch, ~600 times a batch)
            return DayRecord(hours, patients, roles)
        new_hours = hours - self.hours  # set operations in C; the given sets are not changed
        known = self.patients
        if known.keys().isdisjoint(patients):  # only patients new to the day (usual in time order): all new
            new_patients = patients
        else:
            new_patients = {p: ts for p, ts in patients.items() if p not in known or ts < known[p]}
        new_roles = roles - self.roles
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

    def firsts(self) -> list[str]:
        """The sorted first-access times: ``bisect_right(firsts, ts)`` is the distinct patients first
        opened at or before ``ts`` (canonical timestamps compare as text). Memoised until patients change."""
        firsts = self._firsts
        if firsts is None:
            firsts = self._firsts = sorted(self.patients.values())
        return firsts

    def patients_upto(self, ts: str) -> int:
        """Distinct patients first opened at or before ``ts``."""
        return bisect_right(self.firsts(), ts)


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

    __slots__ = ("active_days", "days", "masks", "usual", "_shares", "_tallies")

    def __init__(self, active_days: int, days: tuple[int, int], masks: tuple[list[int], list[int]],
                 usual: float | None):
        self.active_days = active_days
        self.days = days
        self.masks = masks
        self.usual = usual
        self._shares: dict[int, tuple[float, float]] = {}
        self._tallies: list[tuple[list[int], list[int]] | None] = [None, None]

    def share(self, day_class: int, hour: int) -> float:
        return self.shares(day_class, hour)[0]

    def shares(self, day_class: int, hour: int) -> tuple[float, float]:
        """(share, share rounded to 3 places): the rounded one is what events carry, and a role profile is
        asked by every user of the role, so both are memoised."""
        key = day_class * 24 + hour
        known = self._shares.get(key)
        if known is None:
            total = self.days[day_class]
            bit = 1 << hour
            masks = self.masks[day_class]
            if len(masks) > _TALLY_FROM:  # a role's pool: thousands of user-days, a few hundred distinct masks
                tally = self._tallies[day_class]
                if tally is None:
                    counted = Counter(masks)
                    tally = self._tallies[day_class] = (list(counted), list(counted.values()))
                # the counts of the distinct masks with ``bit`` set, in C
                hits = sum(compress(tally[1], map(bit.__and__, tally[0])))
            else:  # sum of the masks' ``bit`` values, in C: ``hits << hour``
                hits = sum(map(bit.__and__, masks)) >> hour
            share = hits / total if total else 0.0
            known = self._shares[key] = (share, round(share, 3))
        return known


def hour_mask(record: DayRecord, tolerance: int) -> int:
    """The 24-bit mask of the record's hours widened by ``tolerance`` (memoised on the record)."""
    memo = record._spread
    if memo is None or memo[0] != tolerance:
        memo = record._spread = (tolerance, sum(1 << h for h in spread(record.hours, tolerance)))
    return memo[1]


def summarise(records: Iterable[tuple[int, DayRecord]], tolerance: int) -> Profile:
    """The profile of (day class, record) pairs; records without activity are ignored."""
    masks: tuple[list[int], list[int]] = ([], [])
    daily: list[int] = []
    for day_class, record in records:
        if not record.hours:
            continue
        masks[day_class].append(hour_mask(record, tolerance))
        daily.append(len(record.patients))
    return Profile(len(daily), (len(masks[0]), len(masks[1])), masks, float(median(daily)) if daily else None)


#: one day's contribution to a pooled profile: (hour masks, daily distinct-patient counts) of its records
DayPart = tuple[list[int], list[int]]


def day_part(records: Iterable[DayRecord], tolerance: int) -> DayPart:
    """The active records of one day as a :data:`DayPart`.

    Why parts: a role profile pools thousands of user-days (every physician, 28 days), and the profiles of
    consecutive days share 27 of those days. Cached per (role, day), a profile is a concatenation of parts,
    and only the part of a day whose records changed is rebuilt."""
    masks: list[int] = []
    daily: list[int] = []
    for record in records:
        if record.hours:
            memo = record._spread  # hour_mask, inlined: a role-day pools hundreds of records
            masks.append(memo[1] if memo is not None and memo[0] == tolerance else hour_mask(record, tolerance))
            daily.append(len(record.patients))
    return masks, daily


def combine(parts: Iterable[tuple[int, DayPart]]) -> Profile:
    """The profile of (day class, part) pairs: the same as :func:`summarise` of the parts' records."""
    masks: tuple[list[int], list[int]] = ([], [])
    daily: list[int] = []
    for day_class, (day_masks, day_daily) in parts:
        masks[day_class].extend(day_masks)
        daily.extend(day_daily)
    return Profile(len(daily), (len(masks[0]), len(masks[1])), masks, float(median(daily)) if daily else None)
