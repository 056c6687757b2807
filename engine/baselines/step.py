"""The baseline step of ingest: learn from a batch, then flag its events against the days before.

This is an enrichment step that reads store-held history, so it does not fit the per-event ``Enricher``
interface: it runs once per batch, after the enrichment chain (it needs ``ehr.user.role`` /
``ehr.user.department`` from the privacy enricher) and before the store write, and it returns *fact events*
the ingest loop writes in the same ``store.write`` call as the batch. Data still flows one way: the store is
read only for facts of earlier batches (``engine.baselines.facts``), never for events, and nothing already
stored is changed.

Order of work inside a batch: first every event of the batch is merged into the day records, then every
event is flagged. So where an event sits in its batch, and how a stream is cut into batches, does not change
any flag. A flag depends only on (a) the user's and role's records of the ``window_days`` local days
strictly before the event's day and (b) for the distinct-patient count, the patients the user first opened
that day at or before the event's time. Field reference and formulas: docs/enrichment.md.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from itertools import compress, count, islice, repeat
from operator import add, getitem, is_, is_not, itemgetter, le, not_
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping, NamedTuple
from zoneinfo import ZoneInfo

from engine.baselines.facts import fact_event, patient_hash, read_facts
from engine.baselines.model import (DayPart, DayRecord, Profile, combine, day_part, hour_mask, lanes,
                                    unusual_hours)
from engine.events import CANONICAL_TIMESTAMP, DATASET, TIMESTAMP, Event, format_timestamp
from engine.plugins import InvalidOption, parse_options
from engine.store.base import Store

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PREFIX = "wardwatch.baseline."
#: Every field this step may set (docs/enrichment.md documents each).
FIELDS = tuple(PREFIX + name for name in (
    "unusual_hour", "hour_share", "profile", "active_days", "role_hour_share", "role_unusual_hour",
    "distinct_patients_today",
    "usual_distinct_patients", "distinct_patients_ratio", "distinct_patients_role_ratio"))
#: The fields the shipped rules read; without ``explain`` only these are stored (the others explain them).
RULE_FIELDS = tuple(PREFIX + name for name in (
    "unusual_hour", "active_days", "profile", "distinct_patients_today", "distinct_patients_ratio",
    "distinct_patients_role_ratio"))
_CACHE_MAX = 4096
_CACHED_DAYS = 2  # profiles and bases are kept for the newest day and this many before it (see _evict)
_HASHES_MAX = 200_000
_HOUR = itemgetter(slice(0, 13))  # "YYYY-MM-DDTHH" of a canonical timestamp
_NOT_UNIFORM = None  # an hour-prefix cache value: the UTC hour spans two local hours (a :30 or :45 zone)
_SLOT_DAY, _SLOT_HOUR = itemgetter(0), itemgetter(1)


@dataclass
class BaselineOptions:
    """``enrichment.baselines`` (docs/enrichment.md, "Per-user baselines")."""

    timezone: str = "UTC"
    window_days: int = 28
    min_active_days: int = 5
    min_role_days: int = 10
    #: a day class (weekday / weekend) is judged only when the window holds at least this many days of it
    #: with any stored activity (anyone's): week one's first Saturday has no weekend history to compare with
    min_observed_days: int = 2
    unusual_share: float = 0.1
    hour_tolerance: int = 1
    weekend_days: list[str] = dataclasses.field(default_factory=lambda: ["sat", "sun"])
    user_fields: list[str] = dataclasses.field(default_factory=lambda: ["user.name", "user.id"])
    patient_field: str = "ehr.patient.id"
    role_fields: list[str] = dataclasses.field(default_factory=lambda: ["ehr.user.role", "ehr.user.department"])
    datasets: list[str] = dataclasses.field(default_factory=lambda: ["ehr.audit"])
    #: also store the explanation fields (hour_share, role_hour_share, role_unusual_hour, profile,
    #: usual_distinct_patients); off, events carry only what the rules read (RULE_FIELDS)
    explain: bool = False

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise InvalidOption("timezone", f"unknown time zone {self.timezone!r}") from None
        for key, low, high in (("window_days", 1, 366), ("min_active_days", 1, 366), ("min_role_days", 1, 10**6),
                               ("min_observed_days", 0, 366),
                               ("hour_tolerance", 0, 11)):
            value = getattr(self, key)
            if not low <= value <= high:
                raise InvalidOption(key, f"expected {low}..{high}, got {value}")
        if not 0.0 <= self.unusual_share <= 1.0:
            raise InvalidOption("unusual_share", f"expected a share between 0 and 1, got {self.unusual_share}")
        unknown = [d for d in self.weekend_days if d not in WEEKDAYS]
        if unknown:
            raise InvalidOption("weekend_days", f"unknown day(s) {unknown}; use {list(WEEKDAYS)}")
        if not self.user_fields:
            raise InvalidOption("user_fields", "name at least one field")


class _Slot(NamedTuple):
    """Where one event falls: local day, hour and day class (a tuple: hashed in C, it keys hot dicts)."""

    day: date
    hour: int
    day_class: int


class _Basis(NamedTuple):
    """The hour-independent part of the flags of one (user, peer group, local day); see ``_basis``."""

    fields: dict[str, Any]
    profile: Profile | None  #: the profile the user is judged by (theirs or their role's); None: no history
    peers: Profile | None  #: the role's profile when it is a second voice next to the user's own
    day_class: int
    judged: bool  #: the day class has enough observed days for an hour verdict
    usual: float | None  #: divisor of distinct_patients_ratio
    role_usual: float | None  #: divisor of distinct_patients_role_ratio (None: no usable role profile)
    #: local hour -> the flags shared by the basis's events of that hour (``_verdicts``), filled on first use
    verdicts: list[dict[str, Any] | None]


class Baselines:
    """Per-user and per-role profiles over the store's fact events; one instance per engine process."""

    name = "baselines"

    def __init__(self, options: BaselineOptions):
        self.options = options
        self.zone = ZoneInfo(options.timezone)
        self._weekend = frozenset(WEEKDAYS.index(d) for d in options.weekend_days)
        self._datasets = frozenset(options.datasets)
        self._minutes: dict[str, _Slot] = {}
        self._hours: dict[str, _Slot | None] = {}
        self._shared: dict[tuple[int, str, bool], dict[str, Any]] = {}  # see _shared_fields
        self._hashes: dict[str | int, str] = {}
        self._windows: dict[date, list[tuple[date, int]]] = {}
        self._ratios: dict[float, list[float]] = {}
        self._rows: dict[tuple[float | None, float | None], list[dict[str, Any]]] = {}  # see _counts
        self._user_fields = tuple(options.user_fields)
        self._role_fields = tuple(options.role_fields)
        self.reset()

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | BaselineOptions) -> "Baselines":
        if not isinstance(options, BaselineOptions):
            options = parse_options(BaselineOptions, dict(options))
        return cls(options)

    def reset(self) -> None:
        """Forget everything held in memory; the next batch reloads from the store (after a failed write,
        whose facts never reached the store, or when handed a different store)."""
        self.records: dict[tuple[str, date], DayRecord] = {}
        self._by_day: dict[date, set[str]] = {}
        self._by_role_day: dict[tuple[str, date], set[str]] = {}  # (role, day) -> users whose record has it
        self._role_parts: dict[tuple[str, date], DayPart] = {}  # (role, day) -> its records' part, see day_part
        self._loaded: set[date] = set()
        self._trimmed: set[date] = set()  # days whose records' firsts memos _evict dropped
        #: local day -> user (or peer group) -> its profile; by day, so that evicting a day and invalidating
        #: the days after a changed one touch those days only
        self._user_profiles: dict[date, dict[str, Profile]] = {}
        self._role_profiles: dict[date, dict[str, Profile]] = {}
        #: user -> (day, profile, its entries: days, day classes, masks, daily counts), see _user_summary
        self._summaries: dict[str, tuple[date, Profile, tuple[list[date], list[int], list[int], list[int]]]] = {}
        self._latest: date | None = None  # no profile of a day after this one is cached (see _invalidate)
        self._store: Store | None = None
        self._newest: date | None = None
        self._observed_days: dict[date, tuple[int, int]] = {}  # memo of _observed; see _forget_after
        #: local day -> (user, peer group) -> its _Basis, kept across batches: it rests only on profiles and
        #: observed counts of the days before it, so it is dropped with them (``_forget_after``, ``_evict``)
        self._bases: dict[date, dict[tuple[str, str], _Basis]] = {}

    # --- time ------------------------------------------------------------------------------------
    def _slot(self, ts: str) -> _Slot:
        """The local slot of a canonical timestamp, cached per UTC minute (offsets are whole minutes)."""
        key = ts[:16]
        slot = self._minutes.get(key)
        if slot is None:
            local = datetime.fromisoformat(key + ":00+00:00").astimezone(self.zone)
            slot = _Slot(local.date(), local.hour, 1 if local.weekday() in self._weekend else 0)
            if len(self._minutes) >= _CACHE_MAX:
                self._minutes.clear()
            self._minutes[key] = slot
        return slot

    def _day_start(self, day: date) -> str:
        return format_timestamp(datetime.combine(day, time(0), tzinfo=self.zone).astimezone(timezone.utc))

    # --- the batch -------------------------------------------------------------------------------
    def apply(self, events: list[Event], store: Store) -> list[Event]:
        """Merge ``events`` into the profiles, flag them in place, and return the fact events to write
        with them (in the same ``store.write`` call).

        Why it is written as column operations (``map`` over parallel lists, ``dict.update`` applied by
        ``deque(map(...))``): the step's work per event must stay a small fraction of a whole plain ingest
        (issue 11: within 10 %), and a Python loop body per event alone costs that much. So the per-event
        work runs in C; Python loops run once per *basis* of the batch (user, local day, peer group: every
        flag but the distinct-patient count is the same for all its events of one local hour) and per
        user-day, and what they compute is kept across batches (``_bases``)."""
        if store is not self._store:
            self.reset()
            self._store = store
        columns = self._columns(events)
        if columns is None:
            return []
        evs, users, tss, roles, phs, slot_of = columns
        hours = list(map(_SLOT_HOUR, slot_of))
        keys = list(zip(users, map(_SLOT_DAY, slot_of), roles))
        # each distinct (user, day, peer group) gets an id, the position of its first event (one setdefault
        # per event, in C); lists indexed by id (n long, filled at the ids) hold what the per-event passes
        # below need: first its user-day's group (hours, patient hash -> first time, roles)
        index: dict[tuple[str, date, str], int] = {}
        ids = list(map(index.setdefault, keys, count()))  # type: ignore[arg-type]
        grouped: dict[tuple[str, date], tuple[set[int], dict[str, str], set[str]]] = {}
        groups: list[Any] = [None] * len(ids)
        group_hours: list[Any] = [None] * len(ids)
        group_patients: list[Any] = [None] * len(ids)
        for (user, day, role), i in index.items():
            group = grouped.get((user, day))
            if group is None:
                group = grouped[(user, day)] = (set(), {}, set())
            if role:
                group[2].add(role)
            groups[i], group_hours[i], group_patients[i] = group, group[0], group[1]
        deque(map(set.add, map(group_hours.__getitem__, ids), hours), 0)
        # earliest time per (user-day, patient): setdefault in time order keeps the first, in C
        if None in phs:
            keep = list(map(is_not, phs, repeat(None)))
            p_ids, p_hashes, p_tss = list(compress(ids, keep)), list(compress(phs, keep)), list(compress(tss, keep))
        else:
            p_ids, p_hashes, p_tss = ids, phs, tss
        if not all(map(le, p_tss, islice(p_tss, 1, None))):  # not in time order: visit it sorted
            order = sorted(range(len(p_tss)), key=p_tss.__getitem__)
            p_ids = [p_ids[i] for i in order]
            p_hashes = [p_hashes[i] for i in order]
            p_tss = [p_tss[i] for i in order]
        deque(map(dict.setdefault, map(group_patients.__getitem__, p_ids), p_hashes, p_tss), 0)
        self._load(store, {day for _user, day in grouped})
        learnt: dict[date, dict[str, DayRecord]] = {}
        for (user, day), (group_hours, patients, group_roles) in grouped.items():
            new = self._learn(user, day, group_hours, patients, group_roles)
            if new is not None:
                learnt.setdefault(day, {})[user] = new
        facts = [fact_event(day.isoformat(), self._day_start(day), new) for day, new in sorted(learnt.items())]
        self._flag(evs, index, groups, ids, hours, tss)
        self._evict()
        return facts

    def _flag(self, evs: list[Event], index: dict[tuple[str, date, str], int],
              groups: list[Any], ids: list[int], hours: list[int], tss: list[str]) -> None:
        """Set the flags: per basis id its verdict per local hour, first-access times and count rows, then
        per event in C (two ``dict.update`` and one bisect per event)."""
        records, bases, explain = self.records, self._bases, self.options.explain
        if len(self._ratios) >= _CACHE_MAX:
            self._ratios.clear()
        if len(self._rows) >= _CACHE_MAX:
            self._rows.clear()
        n = len(ids)
        verdicts_of: list[Any] = [None] * n  # indexed by id, as groups
        firsts_of: list[Any] = [None] * n
        rows_of: list[Any] = [None] * n
        for (user, day, role), i in index.items():
            group = groups[i]
            firsts = records[(user, day)].firsts()
            day_bases = bases.get(day)
            if day_bases is None:
                day_bases = bases[day] = {}
            basis = day_bases.get((user, role))
            if basis is None:
                basis = day_bases[(user, role)] = self._basis(user, role, day)
            # explain: the user-day's hours in this batch (those of this basis among them) filled in; else
            # the basis has all 24 (``_basis``)
            verdicts_of[i] = self._verdicts(basis, group[0]) if explain else basis.verdicts
            firsts_of[i] = firsts
            rows_of[i] = self._counts(basis.usual, basis.role_usual, len(firsts))
        deque(map(dict.update, evs, map(getitem, map(verdicts_of.__getitem__, ids), hours)), 0)
        todays = map(bisect_right, map(firsts_of.__getitem__, ids), tss)
        deque(map(dict.update, evs, map(getitem, map(rows_of.__getitem__, ids), todays)), 0)

    def _counts(self, usual: float | None, role_usual: float | None, most: int) -> list[dict[str, Any]]:
        """Rows indexed by today's distinct-patient count ``k`` (``0..most`` at least): the count fields
        of an event, ``distinct_patients_today`` and the two ratios (left out when their divisor is None).
        Shared by every basis with the same divisors, and grown in place."""
        rows = self._rows.get((usual, role_usual))
        if rows is None:
            rows = self._rows[(usual, role_usual)] = []
        if len(rows) <= most:
            mine = self._table(usual, most) if usual is not None else None
            peers = self._table(role_usual, most) if role_usual is not None else None
            for k in range(len(rows), most + 1):
                row: dict[str, Any] = {PREFIX + "distinct_patients_today": k}
                if mine is not None:
                    row[PREFIX + "distinct_patients_ratio"] = mine[k]
                if peers is not None:
                    row[PREFIX + "distinct_patients_role_ratio"] = peers[k]
                rows.append(row)
        return rows

    def _table(self, divisor: float, most: int) -> list[float]:
        """``[round(k / divisor, 3) for k in 0..most]`` (at least), memoised per divisor and grown in place."""
        table = self._ratios.get(divisor)
        if table is None:
            table = self._ratios[divisor] = []
        if len(table) <= most:
            table.extend(round(k / divisor, 3) for k in range(len(table), most + 1))
        return table

    # --- the batch as columns --------------------------------------------------------------------
    def _columns(self, events: list[Event]) -> tuple[Any, ...] | None:
        """The batch's events this step reads, as parallel lists (events, users, timestamps, peer groups,
        patient hashes or None, local slots); None: nothing to do.

        The common batch (one dataset, every event with a string user, a 24-character timestamp, string
        roles present on all events or on none, string patients) is cut into columns in C; any other batch
        goes event by event (``_columns_slowly``), with the same result."""
        n = len(events)
        if not n:
            return None
        first = events[0]
        present = [f for f in self._role_fields if f in first]
        absent = [f for f in self._role_fields if f not in first]
        try:  # one pass over the events (each is touched once: they are cold in the CPU cache), then columns
            rows = list(map(itemgetter(DATASET, self._user_fields[0], TIMESTAMP, *present), events))
        except KeyError:  # a field missing on some event
            return self._columns_slowly(events)
        columns = list(zip(*rows))
        users, tss = list(columns[1]), list(columns[2])
        # an access without a patient (a login, a search) has no patient field at all: None, as the slow path
        patients = list(map(dict.get, events, repeat(self.options.patient_field)))
        try:
            clean = (set(columns[0]) <= self._datasets and set(map(type, users)) == {str} and "" not in users
                     and set(map(type, tss)) == {str} and set(map(len, tss)) == {24}
                     and set(map(type, patients)) <= {str, type(None)})
        except TypeError:  # an unhashable dataset value
            clean = False
        roles: list[str] | None = None
        for values in columns[3:] if clean else ():
            if set(map(type, values)) != {str} or "" in values:
                clean = False
                break
            roles = list(values) if roles is None else list(map(add, map(add, roles, repeat(" / ")), values))
        # a role field the first event lacks is on a later one (even as None: the slow path tells)
        if clean and any(any(map(dict.__contains__, events, repeat(f))) for f in absent):
            clean = False
        if not clean:
            return self._columns_slowly(events)
        prefixes = list(map(_HOUR, tss))
        found = self._hour_slots(dict.fromkeys(prefixes))
        if found is None:  # a bad timestamp or a UTC hour spanning two local hours: event by event
            return self._columns_slowly(events)
        return (events, users, tss, roles if roles is not None else [""] * n, self._hash_all(patients),
                list(map(found.__getitem__, prefixes)))

    def _hash_all(self, values: list[Any]) -> list[str | None]:
        """The patient hash of every value (None for absent or empty), through the cache."""
        hashes = self._hashes
        found = list(map(hashes.get, values))
        if None in found:
            missing = set(compress(values, map(is_, found, repeat(None))))
            missing.discard(None)
            missing.discard("")
            if missing:
                if len(hashes) + len(missing) > _HASHES_MAX:
                    hashes.clear()
                new = {value: patient_hash(str(value)) for value in missing}
                hashes.update(new)
                # fill in the gaps from the small dict of new hashes, not a second pass over the big cache
                found = list(map(new.get, values, found))
        return found

    def _hour_slots(self, prefixes: Iterable[str]) -> dict[str, _Slot] | None:
        """UTC hour prefix -> local slot, when every UTC hour of the batch is one local hour (zones with
        whole-hour offsets); None otherwise, or when a prefix is not a timestamp's."""
        cache, out = self._hours, {}
        for prefix in prefixes:
            slot = cache.get(prefix, False)
            if slot is False:
                slot = None
                if CANONICAL_TIMESTAMP.match(prefix + ":00:00.000Z"):
                    first, last = self._slot(prefix + ":00"), self._slot(prefix + ":59")
                    slot = first if first == last else _NOT_UNIFORM
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[prefix] = slot
            if slot is None:
                return None
            out[prefix] = slot
        return out

    def _columns_slowly(self, events: list[Event]) -> tuple[Any, ...] | None:
        """``_columns`` one event at a time: mixed datasets, missing users or roles, odd values."""
        evs: list[Event] = []
        users: list[str] = []
        tss: list[str] = []
        roles: list[str] = []
        patients: list[Any] = []
        slot_of: list[_Slot] = []
        slots: dict[str, _Slot] = {}
        datasets, user_fields, role_fields = self._datasets, self._user_fields, self._role_fields
        patient_field = self.options.patient_field
        for event in events:
            if event.get(DATASET) not in datasets:
                continue
            user = None
            for f in user_fields:
                v = event.get(f)
                if type(v) is str and v:
                    user = v
                    break
            if user is None:
                continue
            ts = event.get(TIMESTAMP)
            if type(ts) is not str:
                continue
            key = ts[:16]
            slot = slots.get(key)
            if slot is None:
                slot = self._minutes.get(key)
                if slot is None:
                    if not CANONICAL_TIMESTAMP.match(ts):
                        continue
                    slot = self._slot(ts)
                slots[key] = slot
            role = ""  # the peer group: every present role field (role / department), so ED night doctors
            for f in role_fields:  # are compared with ED doctors, not with the day wards' physicians
                v = event.get(f)
                if type(v) is str and v:
                    role = v if not role else role + " / " + v
            value = event.get(patient_field)
            if value is None or value == "" or not isinstance(value, (str, int)):
                value = None  # absent, empty or not an id (patient 0, an int, still counts)
            evs.append(event)
            users.append(user)
            tss.append(ts)
            roles.append(role)
            patients.append(value)
            slot_of.append(slot)
        if not evs:
            return None
        return evs, users, tss, roles, self._hash_all(patients), slot_of

    def _learn(self, user: str, day: date, hours: set[int], patients: dict[str, str],
               roles: set[str]) -> DayRecord | None:
        """Merge facts into the user's record of ``day``; return what was new (None: nothing)."""
        record = self.records.get((user, day))
        if record is None:
            record = self.records[(user, day)] = DayRecord()
            users = self._by_day.setdefault(day, set())
            if not users:  # a day has its first data: the observed counts of the days after it change
                self._forget_after(day, day + timedelta(days=self.options.window_days))
            users.add(user)
        new = record.merge(hours, patients, roles)
        if new is not None:
            for role in new.roles:
                self._by_role_day.setdefault((role, day), set()).add(user)
            for role in record.roles:  # the user's part of every role-day it is in changed
                self._role_parts.pop((role, day), None)
            self._invalidate(user, day, record.roles)
        return new

    def _basis(self, user: str, role: str, day: date) -> "_Basis":
        """What the flags of (user, peer group, local day) rest on, whatever the hour.

        ``unusual_hour`` needs both voices when both can speak: the user's own history (``min_active_days``)
        says the hour is rare *and* their role's pooled history says so too. Why both: a rotating nurse's
        first night of the month is new to her but ordinary for nurses; a billing clerk at 02:00 is new to
        both. A new user is judged by the role alone, never by the hospital clock; a day class the window has
        not observed yet (``min_observed_days``) is not judged at all."""
        o = self.options
        day_class = 1 if day.weekday() in self._weekend else 0
        mine = self._profile(user, day, None)
        theirs = self._profile(role, day, role) if role else None
        if theirs is not None and theirs.active_days < o.min_role_days:
            theirs = None
        fields: dict[str, Any] = {PREFIX + "active_days": mine.active_days}
        role_usual = max(theirs.usual or 0.0, 1.0) if theirs is not None else None
        basis = mine if mine.active_days >= o.min_active_days else theirs
        if basis is None:  # no history for the user nor their role: "could not tell" stays absent
            return _Basis(fields, None, None, day_class, False, None, role_usual, [fields] * 24)
        usual = basis.usual or 0.0
        fields[PREFIX + "profile"] = "user" if basis is mine else "role"
        if o.explain:
            fields[PREFIX + "usual_distinct_patients"] = usual
        judged = self._observed(day)[day_class] >= o.min_observed_days
        peers = None if basis is theirs else theirs
        b = _Basis(fields, basis, peers, day_class, judged, max(usual, 1.0), role_usual,
                   [None] * 24 if judged else [fields] * 24)  # not judged: no verdict, whatever the hour
        if judged and not o.explain:
            # every hour's verdict at once (two dicts shared by all; unusual to the user, and to the peer group
            # when it is a second voice): a basis is judged in one pass, not per hour of every batch
            shared = (self._shared_fields(b, False), self._shared_fields(b, True))
            b.verdicts[:] = map(shared.__getitem__, unusual_hours(basis, peers, day_class, o.unusual_share))
        return b

    def _verdicts(self, b: "_Basis", hours: Iterable[int]) -> list[dict[str, Any] | None]:
        """With ``explain``: ``b.verdicts`` with every hour of ``hours`` filled in, the flags shared by every
        event of (user, peer group, local day, hour) with the shares that explain them (one dict per basis
        and hour, so filled on first use); the count fields and ratios are ``_counts'``. Without ``explain``
        ``_basis`` fills all 24 hours at once."""
        verdicts = b.verdicts
        for hour in hours:
            if verdicts[hour] is None:  # judged (an unjudged basis has b.fields at every hour)
                verdicts[hour] = self._explained(b, hour)
        return verdicts

    def _shared_fields(self, b: "_Basis", unusual: bool) -> dict[str, Any]:
        """The rules' fields of a judged basis with this verdict: one dict per (active days, profile, verdict)
        shared by every event that has them."""
        key = (b.fields[PREFIX + "active_days"], b.fields[PREFIX + "profile"], unusual)
        fields = self._shared.get(key)
        if fields is None:
            fields = self._shared[key] = {**b.fields, PREFIX + "unusual_hour": unusual}
        return fields

    def _explained(self, b: "_Basis", hour: int) -> dict[str, Any]:
        """With ``explain``: the flags shared by every event of a judged basis's hour, with the shares that
        explain the verdict (one dict per basis and hour); the count fields and ratios are ``_counts``'."""
        cut = self.options.unusual_share
        share, rounded = b.profile.shares(b.day_class, hour)  # type: ignore[union-attr]
        unusual = share < cut
        fields = dict(b.fields)
        fields[PREFIX + "hour_share"] = rounded
        if b.role_usual is not None:  # a peer profile that can speak: the basis itself or a second voice
            role_share, rounded = (share, rounded) if b.peers is None else b.peers.shares(b.day_class, hour)
            fields[PREFIX + "role_hour_share"] = rounded
            fields[PREFIX + "role_unusual_hour"] = role_share < cut
            unusual = unusual and role_share < cut
        fields[PREFIX + "unusual_hour"] = unusual
        return fields

    def _observed(self, day: date) -> tuple[int, int]:
        """(weekdays, weekend days) of the window before ``day`` on which anyone was active (held records)."""
        known = self._observed_days.get(day)
        if known is None:
            counts = [0, 0]
            by_day = self._by_day
            for d, day_class in self._window(day):
                if by_day.get(d):
                    counts[day_class] += 1
            known = self._observed_days[day] = (counts[0], counts[1])
        return known

    # --- profiles --------------------------------------------------------------------------------
    def _window(self, day: date) -> list[tuple[date, int]]:
        """(day, day class) of the window before ``day``, newest first (memoised: every profile asks)."""
        window = self._windows.get(day)
        if window is None:
            if len(self._windows) >= _CACHE_MAX:
                self._windows.clear()
            days = [day - timedelta(days=k) for k in range(1, self.options.window_days + 1)]
            window = self._windows[day] = [(d, 1 if d.weekday() in self._weekend else 0) for d in days]
        return window

    def _profile(self, key: str, day: date, role: str | None) -> Profile:
        """The user's (``role`` None) or the role's profile for ``day``: the window's days before it."""
        by_day = self._user_profiles if role is None else self._role_profiles
        cache = by_day.get(day)
        if cache is None:
            cache = by_day[day] = {}
        profile = cache.get(key)
        if profile is None:
            window, tolerance = self._window(day), self.options.hour_tolerance
            if role is None:
                profile = self._user_summary(key, day, window, tolerance)
            else:
                parts, pieces = self._role_parts, []
                for d, day_class in window:
                    part = parts.get((key, d))
                    if part is None:  # sums and a median: the order of users does not matter
                        part = parts[(key, d)] = day_part(map(self.records.__getitem__, zip(
                            self._by_role_day.get((key, d), ()), repeat(d))), tolerance)
                    pieces.append((day_class, part))
                profile = combine(pieces)
            cache[key] = profile
            if self._latest is None or day > self._latest:
                self._latest = day
        return profile

    def _user_summary(self, user: str, day: date, window: list[tuple[date, int]], tolerance: int) -> Profile:
        """``summarise`` of the user's records in ``window`` (the days before ``day``): one per user-day, a
        hot path.

        Why incremental: the user's previous summary (``_summaries``) covers most of this window, and while it
        is kept no record of its window changed since it was built (``_invalidate`` drops it), so its entries
        of the days both windows share are still the records' entries; only the days in between are read.
        Hour counts are lane sums (``model.lane_sum``) and daily counts a median: the order of entries does not
        matter."""
        last = self._summaries.get(user)
        if last is not None and last[0] < day and (day - last[0]).days <= len(window):
            fresh = (day - last[0]).days  # the window's newest ``fresh`` days are not in the last one's
            old_days, old_classes, old_lanes, old_daily = last[2]
            keep = len(old_days) - sum(map(window[-1][0].__gt__, old_days))  # old entries are newest first
        else:
            fresh, keep = len(window), 0
            old_days, old_classes, old_lanes, old_daily = [], [], [], []
        records = self.records
        e_days: list[date] = []
        e_classes: list[int] = []
        e_lanes: list[int] = []
        e_daily: list[int] = []
        for d, day_class in islice(window, fresh):
            record = records.get((user, d))
            if record is None or not record.hours:
                continue
            memo = record._spread
            e_days.append(d)
            e_classes.append(day_class)
            e_lanes.append(lanes(memo[1] if memo is not None and memo[0] == tolerance else hour_mask(record, tolerance)))
            e_daily.append(len(record.patients))
        if keep:
            e_days += old_days[:keep]
            e_classes += old_classes[:keep]
            e_lanes += old_lanes[:keep]
            e_daily += old_daily[:keep]
        n = len(e_daily)
        usual = None
        weekend = sum(e_classes)
        if n:  # statistics.median of ints, as a float
            daily = sorted(e_daily)
            half = n // 2
            usual = float(daily[half]) if n % 2 else (daily[half - 1] + daily[half]) / 2
        profile = Profile(n, (n - weekend, weekend), None, usual,
                          (sum(compress(e_lanes, map(not_, e_classes))), sum(compress(e_lanes, e_classes))))
        self._summaries[user] = (day, profile, (e_days, e_classes, e_lanes, e_daily))
        return profile

    def _invalidate(self, user: str, day: date, roles: Iterable[str]) -> None:
        """A record of ``day`` changed: cached profiles of the following window days are stale. Usually
        the change is to today, and only today's profile is cached: nothing to do."""
        if self._latest is None or day >= self._latest:  # no profile of a later day is cached
            return
        last = day + timedelta(days=self.options.window_days)
        summary = self._summaries.get(user)
        if summary is not None and day < summary[0] <= last:  # its window holds the changed day
            del self._summaries[user]
        stale = False
        for by_day, keys in ((self._user_profiles, (user,)), (self._role_profiles, roles)):
            for d, cache in by_day.items():
                if day < d <= last:
                    for key in keys:
                        if cache.pop(key, None) is not None:
                            stale = True
        if stale:
            self._forget_after(day, last)

    def _forget_after(self, day: date, last: date) -> None:
        """Drop the observed counts and the bases of the days ``day < d <= last``: their windows hold ``day``,
        whose records changed. In a time-ordered stream the changed day is the newest: nothing to drop."""
        for memo in (self._observed_days, self._bases):
            if memo and max(memo) > day:
                for d in [d for d in memo if day < d <= last]:
                    del memo[d]

    # --- the store -------------------------------------------------------------------------------
    def _load(self, store: Store, days: set[date]) -> None:
        """Read the facts of every day the batch's profiles need (its days and the windows before them)
        that this process has not read yet, in one range search."""
        needed = {d - timedelta(days=k) for d in days for k in range(self.options.window_days + 1)}
        missing = needed - self._loaded
        if not missing:
            return
        first, last = min(missing), max(missing)
        store.watermark()  # Elasticsearch: refresh, so facts written before a restart are visible
        for user, day_text, facts in read_facts(store, self._day_start(first), self._day_start(last + timedelta(1))):
            day = date.fromisoformat(day_text)
            if day in self._loaded:
                continue  # already held (and possibly newer) in memory
            self._learn(user, day, facts.hours, facts.patients, facts.roles)
        day = first
        while day <= last:
            self._loaded.add(day)
            day += timedelta(days=1)
        self._newest = max(days) if self._newest is None else max(self._newest, max(days))

    def _evict(self) -> None:
        """Drop days no longer needed by the newest day's window (a late event reloads them)."""
        if self._newest is None:
            return
        horizon = self._newest - timedelta(days=self.options.window_days + 2)
        # profiles and bases of the days before the last two: only a late event asks for them again (and
        # gets them rebuilt from the records); kept, they were most of the step's objects the cyclic GC
        # walks (~150,000 at 600 staff). Always together: a basis rests on that day's cached profiles, and
        # _invalidate drops a stale basis only when it finds a cached profile to pop.
        recent = self._newest - timedelta(days=_CACHED_DAYS)
        for by_day in (self._bases, self._user_profiles, self._role_profiles):
            if len(by_day) > _CACHED_DAYS + 1:
                for d in [d for d in by_day if d < recent]:
                    del by_day[d]
        # the same for the records' sorted first-access times (DayRecord.firsts): only today's events ask
        for d in [d for d in self._by_day if d < recent and d not in self._trimmed]:
            self._trimmed.add(d)
            for user in self._by_day[d]:
                self.records[(user, d)]._firsts = None
        old = [d for d in self._loaded if d < horizon]
        for d in old:
            self._loaded.discard(d)
            self._trimmed.discard(d)
            for user in self._by_day.pop(d, ()):
                record = self.records.pop((user, d), None)
                for role in record.roles if record is not None else ():
                    self._by_role_day.pop((role, d), None)
        if old:
            self._observed_days.clear()
            for by_day in (self._bases, self._user_profiles, self._role_profiles):
                for d in [d for d in by_day if d < horizon]:
                    del by_day[d]
            self._role_parts = {k: v for k, v in self._role_parts.items() if k[1] >= horizon}
