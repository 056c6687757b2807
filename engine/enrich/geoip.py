"""GeoIP enrichment: where does a VPN client's address come from, and whose network is it?

Why at ingest: "logins from two countries within an hour" or "a login from a watched country" are plain
Sigma rules once ``source.geo.country_iso_code`` is a field of the event; resolving at ingest also keeps the
answer that was true on the day (a later database update must not rewrite history).

The databases are the user's own MaxMind ``.mmdb`` files (GeoLite2/GeoIP2 City or Country, and ASN), read
with ``maxminddb``; Wardwatch ships none and downloads none. Without a database configured the fields are
simply absent. A field the source already set (some VPN gateways log the client's country) is kept: the
enricher only fills gaps. Private, reserved and unknown addresses give nothing. Field reference:
``docs/enrichment.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from engine.enrich import Enricher
from engine.enrich.lookups import FileBacked, LookupStatus, ReloadingFile
from engine.events import Event
from engine.plugins import InvalidOption, parse_options, path_option

log = logging.getLogger(__name__)

#: Every field this enricher may set (ECS names; location is flattened to lat/lon).
FIELDS = (
    "source.geo.country_iso_code",
    "source.geo.city_name",
    "source.geo.location.lat",
    "source.geo.location.lon",
    "source.as.number",
    "source.as.organization.name",
)


@dataclasses.dataclass
class GeoipOptions:
    """``enrichment.geoip`` (docs/enrichment.md). Paths are resolved against the config file."""

    city_db: str | None = path_option()
    asn_db: str | None = path_option()
    #: the address field to look up; the ECS ``source.*`` group is filled
    ip_field: str = "source.ip"
    #: only events of these datasets (None: every event that has the address field)
    datasets: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.city_db and not self.asn_db:
            raise InvalidOption("city_db", "give city_db, asn_db or both (paths to MaxMind .mmdb files)")


class _Database(FileBacked):
    """One .mmdb file, reopened when it changes on disk (MaxMind updates weekly; geoipupdate replaces it).

    Why it is read into memory (``MODE_MEMORY``, GeoLite2-City about 60 MB) and not mapped: a mapped reader
    reads whatever the file holds now, so a database overwritten in place (``cp``, ``curl -o`` half-way
    through a download) broke every lookup until the next good file, where a new file renamed over the old
    (geoipupdate) did not. In memory, the last good database answers until a new one opens."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._told: Any = None  # the reader whose age the log already told (at its load or since)
        self.file = ReloadingFile(path, self._open, "geoip database", size=lambda _reader: None,
                                  close=lambda reader: reader.close(), describe=_describe)

    def _open(self, path: Path) -> Any:
        """Open the database into memory; warn when it is already past the licence's age (and remember the
        reader as told, so ``status`` does not say it again)."""
        import maxminddb

        reader = maxminddb.open_database(str(path), mode=maxminddb.MODE_MEMORY)
        built = reader.metadata().build_epoch
        if _staleness(built) is not None:
            log.warning("geoip database %s was built on %s, %d days ago: MaxMind publishes one at least weekly, "
                        "and the GeoLite2 licence forbids using a database 30 days after its update came out "
                        "(run geoipupdate)", path, _day(built), _age_days(built))
            self._told = reader
        return reader

    def status(self, name: str) -> LookupStatus:
        """The file's status with the database's build time, and a warning once it is past the licence's age.

        Why here and not only at load: a service loaded with a fresh database runs on for months when the
        geoipupdate job stops, and nothing reloads. ``/health`` and the metrics are asked all along; the log
        says it once per database (the load already did for one that was old when it opened)."""
        status = self.file.status(name)
        reader = self.file.table
        if reader is None:
            return status
        built = reader.metadata().build_epoch
        warning = _staleness(built)
        if warning is not None and self._told is not reader:  # fresh when it opened: not told yet
            self._told = reader
            log.warning("geoip database %s: %s", self.path, warning)
        return dataclasses.replace(status, built_at=float(built), warning=warning)

    def get(self, ip: str) -> Mapping[str, Any] | None:
        reader = self.file.table
        if reader is None:
            return None
        record = reader.get(ip)
        return record if isinstance(record, Mapping) else None


#: a database built longer ago than this is past what MaxMind allows: it publishes GeoLite2 and GeoIP2 at
#: least weekly, and the GeoLite2 licence forbids using a database 30 days after its update came out
STALE_AFTER_DAYS = 35
_clock = time.time  # the tests move it


def _age_days(built: float) -> int:
    return int((_clock() - built) // 86_400)


def _staleness(built: float) -> str | None:
    """The status's warning for a database built at ``built``: None while it is within the limit."""
    age = _age_days(built)
    if age <= STALE_AFTER_DAYS:
        return None
    return (f"built on {_day(built)}, {age} days ago: past the GeoLite2 licence's 30 days after an update came "
            "out (run geoipupdate)")


def _describe(reader: Any) -> str:
    """The "loaded" line's words for a database: its type and build date (``GeoLite2-City, built 2026-12-01``)."""
    meta = reader.metadata()
    return f"{meta.database_type}, built {_day(meta.build_epoch)}"


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d")


class GeoipEnricher(Enricher):
    """Adds ``source.geo.*`` (City/Country database) and ``source.as.*`` (ASN database) from ``source.ip``."""

    name = "geoip"

    def __init__(self, *, city_db: str | None = None, asn_db: str | None = None, ip_field: str = "source.ip",
                 datasets: list[str] | None = None) -> None:
        self.city = _Database(city_db) if city_db else None
        self.asn = _Database(asn_db) if asn_db else None
        self.ip_field = ip_field
        self.prefix = ip_field.rsplit(".", 1)[0] if "." in ip_field else "source"
        self.datasets = set(datasets) if datasets else None

    @classmethod
    def from_config(cls, options: "Mapping[str, Any] | GeoipOptions") -> "GeoipEnricher":
        """Build from ``enrichment.geoip: {city_db: GeoLite2-City.mmdb, asn_db: GeoLite2-ASN.mmdb}``."""
        opts = options if isinstance(options, GeoipOptions) else parse_options(GeoipOptions, options)
        for key in ("city_db", "asn_db"):
            path = getattr(opts, key)
            if path and not os.path.isfile(path):
                raise InvalidOption(key, f"no such file: {path}")
        return cls(city_db=opts.city_db, asn_db=opts.asn_db, ip_field=opts.ip_field, datasets=opts.datasets)

    def refresh(self) -> None:
        for db in (self.city, self.asn):
            if db is not None:
                db.refresh()

    def lookups(self) -> list[LookupStatus]:
        return [db.status(f"geoip.{name}") for name, db in (("city", self.city), ("asn", self.asn)) if db]

    def enrich(self, event: Event) -> Event:
        if self.datasets is not None and event.get("event.dataset") not in self.datasets:
            return event
        ip = event.get(self.ip_field)
        if not isinstance(ip, str) or not ip:
            return event
        try:
            self._enrich(event, ip.strip())
        except (ValueError, TypeError):  # not an address: nothing to add
            pass
        except Exception as exc:  # noqa: BLE001 - an enricher never drops an event
            log.warning("geoip enrichment skipped an event: %s", type(exc).__name__)
        return event

    def _enrich(self, event: Event, ip: str) -> None:
        p = self.prefix
        if self.city is not None:
            rec = self.city.get(ip)
            if rec:
                country = rec.get("country") or rec.get("registered_country") or {}
                _put(event, f"{p}.geo.country_iso_code", country.get("iso_code"))
                _put(event, f"{p}.geo.city_name", (rec.get("city") or {}).get("names", {}).get("en"))
                loc = rec.get("location") or {}
                if isinstance(loc.get("latitude"), (int, float)) and isinstance(loc.get("longitude"), (int, float)):
                    _put(event, f"{p}.geo.location.lat", float(loc["latitude"]))
                    _put(event, f"{p}.geo.location.lon", float(loc["longitude"]))
        if self.asn is not None:
            rec = self.asn.get(ip)
            if rec:
                number = rec.get("autonomous_system_number")
                if isinstance(number, int):
                    _put(event, f"{p}.as.number", number)
                _put(event, f"{p}.as.organization.name", rec.get("autonomous_system_organization"))


def _put(event: Event, key: str, value: Any) -> None:
    """Fill a gap only: a value the source already logged wins over the database's."""
    if value in (None, "") or event.get(key) not in (None, ""):
        return
    event[key] = value
