"""``--from`` / ``--to`` for the commands that look back over stored history (hunt, events search, reports).

Why one parser: an analyst types the same bounds into ``hunt``, ``events search`` and ``report``, and must
get the same reading everywhere. A bound is an ISO 8601 time (``2026-11-02``, ``2026-11-02T09:00:00Z``,
an offset; naive means UTC) or a duration back from now (``24h``, ``7d``, ``90m``). Bounds are event time
(``@timestamp``): ``--from`` inclusive, ``--to`` exclusive, as :class:`engine.store.base.SearchQuery` has it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from engine.errors import UsageError
from engine.events import format_timestamp, parse_timestamp

_AGO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*\Z")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_bound(value: str | None, option: str, now: datetime | None = None) -> str | None:
    """The canonical timestamp ``value`` means, or None for no bound; a UsageError naming ``option``."""
    if value is None or value == "":
        return None
    now = now or datetime.now(timezone.utc)
    ago = _AGO.match(value)
    try:
        if ago:
            return format_timestamp(now - timedelta(seconds=float(ago.group(1)) * _UNIT_SECONDS[ago.group(2)]))
        return format_timestamp(parse_timestamp(value))
    except (ValueError, OverflowError):  # not a time, or a duration reaching before year 1
        raise UsageError(f"{option}: not a time: {value!r} (use ISO 8601 like 2026-11-02T09:00:00Z, "
                         "or a duration back from now like 24h or 7d)") from None


def parse_range(start: str | None, end: str | None, now: datetime | None = None) -> tuple[str | None, str | None]:
    """(start, end) from ``--from``/``--to``; an empty range (start at or after end) is a usage error."""
    lo, hi = parse_bound(start, "--from", now), parse_bound(end, "--to", now)
    if lo is not None and hi is not None and lo >= hi:
        raise UsageError(f"--from {lo} is not before --to {hi}: the range is empty")
    return lo, hi
