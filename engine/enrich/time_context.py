"""Local-time facts (hour, weekday, after-hours) computed at ingest.

Sigma has no notion of "outside working hours", and event times are UTC. Computing the local hour once, in the
site's time zone, keeps after-hours rules plain Sigma (``wardwatch.time.after_hours: true``) and lets each
site define its own working hours in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from engine.enrich import Enricher
from engine.events import CANONICAL_TIMESTAMP, TIMESTAMP, Event, parse_timestamp
from engine.plugins import InvalidOption, parse_options

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CACHE_MAX = 4096
_MINUTE_END = timedelta(seconds=59, microseconds=999999)


def _parse_clock(value: str, key: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise ValueError(f"enrichment.working_hours.{key}: expected HH:MM, got {value!r}") from None


@dataclass
class WorkingHoursOptions:
    """``enrichment.working_hours``: the site's zone and working hours (checked when the config loads)."""

    timezone: str = "Europe/Berlin"
    #: str, but an int is let through to be told apart: YAML 1.1 reads an unquoted 07:00 as 420 (sexagesimal)
    start: str | int = "07:00"
    end: str | int = "19:00"
    days: list[str] = field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])

    def __post_init__(self) -> None:
        for key in ("start", "end"):
            value = getattr(self, key)
            if isinstance(value, int):
                clock = f"{value // 60:02d}:{value % 60:02d}"
                raise InvalidOption(key, f'write the time in quotes ("{clock}"): unquoted, YAML reads {clock} as '
                                         f"the number {value}")
        try:
            TimeContextEnricher(self.timezone, self.start, self.end, self.days)
        except ValueError as exc:  # "enrichment.working_hours.<key>: ..." -> the key and the message
            key, _, message = str(exc).partition(": ")
            raise InvalidOption(key.rsplit(".", 1)[-1], message) from None


class TimeContextEnricher(Enricher):
    name = "time_context"
    #: a function of the event and the configuration (its only state is a cache): the ingest worker may
    #: run a copy of it (engine/ingest_worker.py)
    runs_in_worker = True

    def __init__(self, timezone: str, start: str, end: str, days: Sequence[str]):
        try:
            self.zone = ZoneInfo(timezone)
        except Exception:  # ZoneInfoNotFoundError or ValueError for odd names
            raise ValueError(f"enrichment.working_hours.timezone: unknown time zone {timezone!r}") from None
        self.start = _parse_clock(start, "start")
        self.end = _parse_clock(end, "end")
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown:
            raise ValueError(f"enrichment.working_hours.days: unknown day(s) {unknown}; use {list(WEEKDAYS)}")
        self.days = frozenset(days)
        # Facts per UTC minute ("YYYY-MM-DDTHH:MM" of a canonical @timestamp): events arrive roughly in time
        # order, so almost every event hits; parsing and zone conversion per event was most of this step.
        self._minutes: dict[str, tuple[int, str, bool]] = {}

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> "TimeContextEnricher":
        opts = parse_options(WorkingHoursOptions, options)
        return cls(opts.timezone, str(opts.start), str(opts.end), opts.days)

    def _facts(self, local: datetime) -> tuple[int, str, bool]:
        weekday = WEEKDAYS[local.weekday()]
        clock = local.time()
        working = weekday in self.days and self.start <= clock < self.end
        return local.hour, weekday, not working

    def _minute_facts(self, value: str, key: str) -> tuple[int, str, bool] | None:
        """The facts of a whole UTC minute, when they are the same for every instant in it: the zone's offset
        is whole minutes and does not change within the minute (true of every modern zone; not of some
        historical local mean times). ``start``/``end`` have minute resolution, so then only the local
        minute matters. None when not cacheable (or the minute is at the edge of the datetime range)."""
        try:
            first = datetime.fromisoformat(key + ":00+00:00")
            last = first + _MINUTE_END
            offset = first.astimezone(self.zone).utcoffset()
            if offset is None or offset % timedelta(minutes=1):
                return None
            if last.astimezone(self.zone).utcoffset() != offset:
                return None
            return self._facts(first.astimezone(self.zone))
        except (ValueError, OverflowError):
            return None

    def enrich(self, event: Event) -> Event:
        value = event.get(TIMESTAMP)
        if type(value) is str and len(value) == 24 and CANONICAL_TIMESTAMP.match(value) and value[17] < "6":
            key = value[:16]
            facts = self._minutes.get(key)
            if facts is None:
                facts = self._slow(event, value)
                if facts is None:
                    return event
                if self._minute_facts(value, key) == facts:
                    if len(self._minutes) >= _CACHE_MAX:
                        self._minutes.clear()
                    self._minutes[key] = facts
        else:
            facts = self._slow(event, value)
            if facts is None:
                return event
        event["wardwatch.time.local_hour"], event["wardwatch.time.weekday"], \
            event["wardwatch.time.after_hours"] = facts
        return event

    def _slow(self, event: Event, value: Any) -> tuple[int, str, bool] | None:
        try:
            local = parse_timestamp(event[TIMESTAMP]).astimezone(self.zone)
        except (KeyError, ValueError):
            return None
        return self._facts(local)
