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
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from engine.baselines.facts import fact_event, patient_hash, read_facts
from engine.baselines.model import DayRecord, Profile, summarise
from engine.events import CANONICAL_TIMESTAMP, DATASET, TIMESTAMP, Event, format_timestamp
from engine.plugins import InvalidOption, parse_options
from engine.store.base import Store

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PREFIX = "wardwatch.baseline."
#: Every field this step may set (docs/enrichment.md documents each).
FIELDS = tuple(PREFIX + name for name in (
    "unusual_hour", "hour_share", "profile", "active_days", "distinct_patients_today",
    "usual_distinct_patients", "distinct_patients_ratio", "distinct_patients_role_ratio"))
_CACHE_MAX = 4096


@dataclass
class BaselineOptions:
    """``enrichment.baselines`` (docs/enrichment.md, "Per-user baselines")."""

    timezone: str = "UTC"
    window_days: int = 28
    min_active_days: int = 5
    min_role_days: int = 10
    unusual_share: float = 0.1
    hour_tolerance: int = 1
    weekend_days: list[str] = dataclasses.field(default_factory=lambda: ["sat", "sun"])
    user_fields: list[str] = dataclasses.field(default_factory=lambda: ["user.name", "user.id"])
    patient_field: str = "ehr.patient.id"
    role_fields: list[str] = dataclasses.field(default_factory=lambda: ["ehr.user.role", "ehr.user.department"])
    datasets: list[str] = dataclasses.field(default_factory=lambda: ["ehr.audit"])

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise InvalidOption("timezone", f"unknown time zone {self.timezone!r}") from None
        for key, low, high in (("window_days", 1, 366), ("min_active_days", 1, 366), ("min_role_days", 1, 10**6),
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


@dataclass(frozen=True)
class _Slot:
    """Where one event falls: local day, hour and day class, and the UTC start of that local day."""

    day: date
    hour: int
    day_class: int


class Baselines:
    """Per-user and per-role profiles over the store's fact events; one instance per engine process."""

    name = "baselines"

    def __init__(self, options: BaselineOptions):
        self.options = options
        self.zone = ZoneInfo(options.timezone)
        self._weekend = frozenset(WEEKDAYS.index(d) for d in options.weekend_days)
        self._datasets = frozenset(options.datasets)
        self._minutes: dict[str, _Slot] = {}
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
        self._loaded: set[date] = set()
        self._user_profiles: dict[tuple[str, date], Profile] = {}
        self._role_profiles: dict[tuple[str, date], Profile] = {}
        self._store: Store | None = None
        self._newest: date | None = None

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
        with them (in the same ``store.write`` call)."""
        if store is not self._store:
            self.reset()
            self._store = store
        seen: list[tuple[Event, str, _Slot, str]] = []
        grouped: dict[tuple[str, date], tuple[set[int], dict[str, str], set[str]]] = {}
        for event in events:
            picked = self._pick(event)
            if picked is None:
                continue
            user, ts, slot, patient, role = picked
            seen.append((event, user, slot, role))
            hours, patients, roles = grouped.setdefault((user, slot.day), (set(), {}, set()))
            hours.add(slot.hour)
            if patient is not None and (patient not in patients or ts < patients[patient]):
                patients[patient] = ts
            if role:
                roles.add(role)
        if not seen:
            return []
        self._load(store, {day for _user, day in grouped})
        facts = []
        for (user, day), (hours, patients, roles) in sorted(grouped.items()):
            record = self.records.get((user, day))
            if record is None:
                record = self.records[(user, day)] = DayRecord()
                self._by_day.setdefault(day, set()).add(user)
            new = record.merge(hours, patients, roles)
            if new is not None:
                self._invalidate(user, day, record.roles)
                facts.append(fact_event(user, day.isoformat(), self._day_start(day), new))
        for event, user, slot, role in seen:
            self._flag(event, user, event[TIMESTAMP], slot, role)
        self._evict()
        return facts

    def _pick(self, event: Event) -> tuple[str, str, _Slot, str | None, str] | None:
        if event.get(DATASET) not in self._datasets:
            return None
        ts = event.get(TIMESTAMP)
        if type(ts) is not str or not CANONICAL_TIMESTAMP.match(ts):
            return None
        user = next((v for f in self.options.user_fields if isinstance(v := event.get(f), str) and v), None)
        if user is None:
            return None
        value = event.get(self.options.patient_field)
        patient = patient_hash(str(value)) if isinstance(value, (str, int)) and str(value) else None
        role = next((v for f in self.options.role_fields if isinstance(v := event.get(f), str) and v), "")
        return user, ts, self._slot(ts), patient, role

    def _flag(self, event: Event, user: str, ts: str, slot: _Slot, role: str) -> None:
        o = self.options
        mine = self._profile(user, slot.day, None)
        theirs = self._profile(role, slot.day, role) if role else None
        if theirs is not None and theirs.active_days < o.min_role_days:
            theirs = None
        today = self.records[(user, slot.day)].patients_upto(ts)
        event[PREFIX + "active_days"] = mine.active_days
        event[PREFIX + "distinct_patients_today"] = today
        basis = mine if mine.active_days >= o.min_active_days else theirs
        if basis is None:
            return  # no history for the user nor their role: "could not tell" stays absent
        share = basis.share(slot.day_class, slot.hour)
        event[PREFIX + "profile"] = "user" if basis is mine else "role"
        event[PREFIX + "hour_share"] = round(share, 3)
        event[PREFIX + "unusual_hour"] = share < o.unusual_share
        usual = basis.usual or 0.0
        event[PREFIX + "usual_distinct_patients"] = usual
        event[PREFIX + "distinct_patients_ratio"] = round(today / max(usual, 1.0), 3)
        if theirs is not None:
            event[PREFIX + "distinct_patients_role_ratio"] = round(today / max(theirs.usual or 0.0, 1.0), 3)

    # --- profiles --------------------------------------------------------------------------------
    def _window(self, day: date) -> Iterable[date]:
        return (day - timedelta(days=k) for k in range(1, self.options.window_days + 1))

    def _profile(self, key: str, day: date, role: str | None) -> Profile:
        """The user's (``role`` None) or the role's profile for ``day``: the window's days before it."""
        cache = self._user_profiles if role is None else self._role_profiles
        profile = cache.get((key, day))
        if profile is None:
            pairs: list[tuple[int, DayRecord]] = []
            for d in self._window(day):
                day_class = 1 if d.weekday() in self._weekend else 0
                if role is None:
                    record = self.records.get((key, d))
                    if record is not None:
                        pairs.append((day_class, record))
                else:
                    for user in sorted(self._by_day.get(d, ())):
                        record = self.records[(user, d)]
                        if role in record.roles:
                            pairs.append((day_class, record))
            profile = cache[(key, day)] = summarise(pairs, self.options.hour_tolerance)
        return profile

    def _invalidate(self, user: str, day: date, roles: Iterable[str]) -> None:
        """A record of ``day`` changed: the profiles of the following window days are stale."""
        later = [day + timedelta(days=k) for k in range(1, self.options.window_days + 1)]
        for d in later:
            self._user_profiles.pop((user, d), None)
        for role in roles:
            for d in later:
                self._role_profiles.pop((role, d), None)

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
            record = self.records.get((user, day))
            if record is None:
                record = self.records[(user, day)] = DayRecord()
                self._by_day.setdefault(day, set()).add(user)
            record.merge(facts.hours, facts.patients, facts.roles)
            self._invalidate(user, day, record.roles)
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
        old = [d for d in self._loaded if d < horizon]
        for d in old:
            self._loaded.discard(d)
            for user in self._by_day.pop(d, ()):
                self.records.pop((user, d), None)
        if old:
            self._user_profiles = {k: v for k, v in self._user_profiles.items() if k[1] >= horizon}
            self._role_profiles = {k: v for k, v in self._role_profiles.items() if k[1] >= horizon}
