"""Local-time facts (hour, weekday, after-hours) computed at ingest.

Sigma has no notion of "outside working hours", and event times are UTC. Computing the local hour once, in the
site's time zone, keeps after-hours rules plain Sigma (``wardwatch.time.after_hours: true``) and lets each
site define its own working hours in the config.
"""

from __future__ import annotations

from datetime import time
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from engine.enrich import Enricher
from engine.events import TIMESTAMP, Event, parse_timestamp

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _parse_clock(value: str, key: str) -> time:
    try:
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise ValueError(f"enrichment.working_hours.{key}: expected HH:MM, got {value!r}") from None


class TimeContextEnricher(Enricher):
    name = "time_context"

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

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> "TimeContextEnricher":
        return cls(options["timezone"], options["start"], options["end"], options["days"])

    def enrich(self, event: Event) -> Event:
        try:
            local = parse_timestamp(event[TIMESTAMP]).astimezone(self.zone)
        except (KeyError, ValueError):
            return event
        weekday = WEEKDAYS[local.weekday()]
        clock = local.time()
        working = weekday in self.days and self.start <= clock < self.end
        event["wardwatch.time.local_hour"] = local.hour
        event["wardwatch.time.weekday"] = weekday
        event["wardwatch.time.after_hours"] = not working
        return event
