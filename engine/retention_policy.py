"""The ``retention:`` config section: how long each kind of stored data may be kept (GDPR storage limitation).

Shape (every value a whole number of days ``400d`` or hours ``36h``, or ``null`` = keep forever)::

    retention:
      events:               # per event.dataset; `default` covers every dataset not listed
        default: null
        ehr.audit: 400d
        vpn.auth: 180d
      alerts: 730d          # by the alert's last trigger
      dead_letters: 30d     # by the time the record was dead-lettered
      spool: 7d             # syslog spool segments not yet ingested, by last write
      audit: 2190d          # audit chain entries, by when they were appended (the chain stays verifiable)
      batch_size: 5000      # rows per delete transaction (SQLite) / docs per delete-by-query (Elasticsearch)

Kept apart from ``engine.config`` (which only calls ``parse_retention`` to validate) so the retention pass and
its tests use the very same parsed policy. Bare numbers are refused: "400" could mean seconds or days, and a
retention off by a factor of 86,400 either deletes evidence or keeps patient data for centuries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

_RETENTION = re.compile(r"^([1-9][0-9]{0,5})(d|h)$")
_KEYS = ("events", "alerts", "dead_letters", "spool", "audit", "batch_size")

DEFAULT_SECTION: dict[str, Any] = {
    "events": {"default": None},
    "alerts": None,
    "dead_letters": None,
    "spool": None,
    "audit": None,
    "batch_size": 5000,
}


class RetentionConfigError(ValueError):
    """A bad value; ``key`` is the dotted path below ``retention`` (e.g. ``events.ehr.audit``)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def parse_retention_duration(value: Any, key: str) -> int | None:
    """Seconds of a retention period (``400d``, ``36h``), or None for ``null`` (keep forever)."""
    if value is None:
        return None
    match = _RETENTION.match(value) if isinstance(value, str) else None
    if not match:
        raise RetentionConfigError(key, f"expected a whole number of days or hours like 400d or 36h, or null "
                                        f"(keep forever), got {value!r}")
    return int(match.group(1)) * (86400 if match.group(2) == "d" else 3600)


@dataclass(frozen=True)
class RetentionPolicy:
    """Parsed ``retention:``; every period in seconds, None = keep forever."""

    events: Mapping[str, int | None] = field(default_factory=dict)  # dataset -> seconds, without "default"
    events_default: int | None = None
    alerts: int | None = None
    dead_letters: int | None = None
    spool: int | None = None
    audit: int | None = None
    batch_size: int = 5000

    def for_dataset(self, dataset: str) -> int | None:
        return self.events.get(dataset, self.events_default)

    @property
    def enabled(self) -> bool:
        return any(v is not None for v in (self.events_default, self.alerts, self.dead_letters, self.spool,
                                           self.audit, *self.events.values()))


def parse_retention(section: Any) -> RetentionPolicy:
    """Validate and parse the section (already merged with ``DEFAULT_SECTION``); RetentionConfigError names
    the key at fault."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise RetentionConfigError("retention", f"expected a mapping, got {type(section).__name__}")
    for key in section:
        if key not in _KEYS:
            raise RetentionConfigError(str(key), f"unknown key (known here: {', '.join(sorted(_KEYS))})")
    events = section.get("events", {"default": None})
    if events is None:
        events = {}
    if not isinstance(events, Mapping):
        raise RetentionConfigError("events", "expected a mapping of dataset -> duration (and default)")
    per_dataset: dict[str, int | None] = {}
    default: int | None = None
    for dataset, value in events.items():
        if not isinstance(dataset, str) or not dataset:
            raise RetentionConfigError(f"events.{dataset}", "a dataset name must be a non-empty string")
        seconds = parse_retention_duration(value, f"events.{dataset}")
        if dataset == "default":
            default = seconds
        else:
            per_dataset[dataset] = seconds
    batch = section.get("batch_size", 5000)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 100_000:
        raise RetentionConfigError("batch_size", f"expected a whole number from 1 to 100000, got {batch!r}")
    return RetentionPolicy(
        events=per_dataset,
        events_default=default,
        alerts=parse_retention_duration(section.get("alerts"), "alerts"),
        dead_letters=parse_retention_duration(section.get("dead_letters"), "dead_letters"),
        spool=parse_retention_duration(section.get("spool"), "spool"),
        audit=parse_retention_duration(section.get("audit"), "audit"),
        batch_size=batch,
    )
