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
        firsts = self._firsts
        if known.keys().isdisjoint(patients):  # only patients new to the day (usual in time order): all new
            new_patients = patients
            if firsts is not None and patients:  # no old time changes: the sorted times only grow
                added = sorted(patients.values())
                # all at or after the last known: sorted(every time) is the old list then these (a sort of
                # the whole day's patients per batch saved); otherwise firsts() sorts again
                firsts = firsts + added if not firsts or added[0] >= firsts[-1] else None
        else:
            new_patients = {p: ts for p, ts in patients.items() if p not in known or ts < known[p]}
            firsts = None
        new_roles = roles - self.roles
        if not (new_hours or new_patients or new_roles):
            return None
        if new_hours:
            self.hours |= new_hours
            self._spread = None
        if new_patients:
            self.patients.update(new_patients)
            self._firsts = firsts
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


#: bits per hour in a lane sum (see :func:`lane_sum`): a class of up to 2**32 - 1 user-days
_LANE = 32
_LANE_MASK = (1 << _LANE) - 1
_LANES: dict[int, int] = {}  # 24-bit hour mask -> its lanes (memo; a site has a few hundred distinct masks)
_LANES_MAX = 1 << 16


def lanes(mask: int) -> int:
    """``mask`` with bit ``h`` moved to bit ``32 * h``: summing the lanes of many masks counts, for every
    hour at once, the masks that have it (each hour's count in its own 32-bit lane, no carry between)."""
    known = _LANES.get(mask)
    if known is None:
        known = 0
        bit, h = mask, 0
        while bit:
            if bit & 1:
                known |= 1 << (_LANE * h)
            bit >>= 1
            h += 1
        if len(_LANES) >= _LANES_MAX:
            _LANES.clear()
        _LANES[mask] = known
    return known


def lane_sum(masks: Iterable[int]) -> int:
    """The sum of the masks' :func:`lanes`: per hour ``h``, ``lane_sum >> 32h & 0xffffffff`` masks have it.

    Why: a share is "masks with the hour / masks"; counted per hour that is a pass over the masks for every
    hour asked (a role's pool holds thousands). One C-level ``sum`` counts all 24 hours, and sums add: a
    profile's counts are the sum of its days' counts."""
    masks = list(masks)
    try:
        return sum(map(_LANES.__getitem__, masks))
    except KeyError:
        return sum(map(lanes, masks))


class Profile:
    """A summary of user-days in a window: per day class, the active user-days as hour counts.

    ``days[c]`` counts the active user-days of class ``c`` (0 weekday, 1 weekend); ``counts[c]`` is the
    :func:`lane_sum` of their 24-bit hour masks (bit ``h`` set when there was activity within the tolerance
    of hour ``h``), computed from ``masks[c]`` when not given; ``usual`` is the median daily distinct-patient
    count over all active user-days (None without any). Shares are computed on first use and memoised."""

    __slots__ = ("active_days", "days", "masks", "usual", "counts", "_shares", "_rare")

    def __init__(self, active_days: int, days: tuple[int, int], masks: tuple[list[int], list[int]] | None,
                 usual: float | None, counts: tuple[int, int] | None = None):
        self.active_days = active_days
        self.days = days
        self.masks = masks
        self.usual = usual
        if counts is None:
            assert masks is not None, "a profile needs its masks or their lane sums"
            counts = (lane_sum(masks[0]), lane_sum(masks[1]))
        self.counts = counts
        self._shares: dict[int, tuple[float, float]] | None = None  # created on first use: fewer GC objects
        self._rare: tuple[float, int | None, int | None] | None = None  # (cut, at_least per day class)

    def share(self, day_class: int, hour: int) -> float:
        return self.shares(day_class, hour)[0]

    def _share(self, day_class: int, hour: int) -> float:
        total = self.days[day_class]
        hits = self.counts[day_class] >> (_LANE * hour) & _LANE_MASK
        return hits / total if total else 0.0

    def shares(self, day_class: int, hour: int) -> tuple[float, float]:
        """(share, share rounded to 3 places): the rounded one is what events carry, and a role profile is
        asked by every user of the role, so both are memoised."""
        memo = self._shares
        if memo is None:
            memo = self._shares = {}
        key = day_class * 24 + hour
        known = memo.get(key)
        if known is None:
            share = self._share(day_class, hour)
            known = memo[key] = (share, round(share, 3))
        return known

    def at_least(self, day_class: int, cut: float) -> int:
        """The lanes (``lane_sum`` layout) with their top bit set for the hours whose share is *not* below
        ``cut``, every hour in one addition (see :func:`unusual_hours`); memoised per day class."""
        memo = self._rare
        if memo is None or memo[0] != cut:
            memo = self._rare = (cut, None, None)
        known = memo[1 + day_class]
        if known is None:
            # share = hits / total < cut  <=>  hits < t: true division is monotone in hits
            t = _threshold(self.days[day_class], cut)
            # lane h holds 2**31 - t + hits: its top bit is set exactly when hits >= t (hits < 2**31, no carry)
            known = (self.counts[day_class] + (_TOP - t) * _REPEAT) & (_REPEAT << (_LANE - 1))
            memo = self._rare = (cut, known, memo[2]) if day_class == 0 else (cut, memo[1], known)
        return known

    def rare(self, day_class: int, cut: float) -> int:
        """The 24-bit mask of the hours whose share is below ``cut`` (``share(day_class, h) < cut``)."""
        flags = unusual_hours(self, None, day_class, cut)
        return sum(flag << hour for hour, flag in enumerate(flags))


_TOP = 1 << (_LANE - 1)
_REPEAT = sum(1 << (_LANE * hour) for hour in range(24))  # 1 in every hour's lane
_UNUSUAL = bytes(0 if b & 0x80 else 1 for b in range(256))  # a lane's top byte -> 1 when its top bit is clear
_THRESHOLDS: dict[tuple[int, float], int] = {}


def _threshold(total: int, cut: float) -> int:
    """The least ``hits`` with ``(hits / total if total else 0.0) >= cut`` (``total + 1`` if none): the share
    formula's own division, searched (it is monotone in ``hits``), so the verdict is bit for bit the same."""
    key = (total, cut)
    t = _THRESHOLDS.get(key)
    if t is None:
        if not total:
            t = 0 if 0.0 >= cut else 1
        else:
            low, high = 0, total + 1  # the answer is in [low, high]
            while low < high:
                mid = (low + high) // 2
                if mid / total >= cut:
                    high = mid
                else:
                    low = mid + 1
            t = low
        if len(_THRESHOLDS) >= 4096:
            _THRESHOLDS.clear()
        _THRESHOLDS[key] = t
    return t


def unusual_hours(profile: Profile, peers: Profile | None, day_class: int, cut: float) -> bytes:
    """24 bytes, byte ``h`` 1 when hour ``h`` is unusual: its share in ``profile`` is below ``cut`` and, when
    ``peers`` (a second voice) is given, its share there too; else 0.

    Why bytes: a basis's 24 verdicts come from two big-int additions and one ``translate`` (in C), not from a
    share per hour; the bytes index the two shared flag dicts directly (``map(shared.__getitem__, ...)``)."""
    common = profile.at_least(day_class, cut)
    if peers is not None:
        common |= peers.at_least(day_class, cut)  # usual to either voice: not unusual
    return common.to_bytes(_LANE * 3, "little")[3::4].translate(_UNUSUAL)


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


#: one day's contribution to a pooled profile: (weekday-or-weekend hour masks' lane sum, daily distinct-patient
#: counts) of its records
DayPart = tuple[int, list[int]]


def day_part(records: Iterable[DayRecord], tolerance: int) -> DayPart:
    """The active records of one day as a :data:`DayPart`.

    Why parts: a role profile pools thousands of user-days (every physician, 28 days), and the profiles of
    consecutive days share 27 of those days. Cached per (role, day), a profile is a sum of parts (lane sums
    add), and only the part of a day whose records changed is rebuilt."""
    masks: list[int] = []
    daily: list[int] = []
    for record in records:
        if record.hours:
            memo = record._spread  # hour_mask, inlined: a role-day pools hundreds of records
            masks.append(memo[1] if memo is not None and memo[0] == tolerance else hour_mask(record, tolerance))
            daily.append(len(record.patients))
    return lane_sum(masks), daily


def combine(parts: Iterable[tuple[int, DayPart]]) -> Profile:
    """The profile of (day class, part) pairs: the same as :func:`summarise` of the parts' records."""
    counts = [0, 0]
    days = [0, 0]
    daily: list[int] = []
    for day_class, (day_counts, day_daily) in parts:
        counts[day_class] += day_counts
        days[day_class] += len(day_daily)
        daily.extend(day_daily)
    return Profile(len(daily), (days[0], days[1]), None, float(median(daily)) if daily else None,
                   (counts[0], counts[1]))
