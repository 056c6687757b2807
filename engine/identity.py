"""How an event's ``event.id`` is derived: from what the *source* says the record is, never from the
connector's name (``docs/schema.md``, "Event identity").

Why: the store drops a second copy of an id, so the id decides what "the same record" means. With the
connector's name in it, the same log read by two connectors (or by the service and then ``wardwatch
ingest``) was stored twice and a harmless file became a brute-force alert.

Three rules, most specific first:

* **FHIR AuditEvent with an id**: the server that assigned the id (its base URL; none for files) + the id.
* **Windows record**: ``Computer`` + ``Channel`` + ``EventRecordID`` (or Winlogbeat's ``winlog.*`` names).
* **Any other record**: its raw bytes + its *position in its stream* (line number in its file, spool
  position of a syslog message). The position tells apart byte-identical records that are genuinely
  distinct (two identical failed logins in the same second), and it is the same however the stream is
  re-read: a copy, a rename, a rotation, a resume from a cursor, a second connector.

``SCHEME`` is recorded in each store; a store written under scheme 1 (connector-named ids) is refused.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from engine.events import make_event_id

#: The id scheme stores record (``event_id_scheme``): 1 = connector name + raw record, 2 = this module.
SCHEME = 2

#: (computer, channel, record id) field names: evtx/Sigma flat names, then Winlogbeat's ECS names.
_WINDOWS_FIELDS = (("Computer", "Channel", "EventRecordID"),
                   ("winlog.computer_name", "winlog.channel", "winlog.record_id"))


def record_id(raw: bytes | str, position: str) -> str:
    """The id of a record known only by its bytes: ``position`` is where it sits in its stream
    (``"line:12"``, ``"spool:3:4096"``), never a path or a connector name."""
    return make_event_id(f"record@{position}", raw, cached=False)


def windows_id(computer: str, channel: str, record: Any, second: str = "") -> str:
    """Windows numbers records per channel per computer; names compare case-insensitively there.

    ``second`` is the record's time to the second (``2026-11-01T23:05:40``): a machine rebuilt under the
    same name numbers its records from 1 again, and without the time its new records would be dropped as
    copies of the old ones. Seconds, not milliseconds: NXLog logs no fractions, and the same record must
    keep one id whether it arrived as EVTX, Winlogbeat or NXLog JSON."""
    return make_event_id("windows", f"{computer.casefold()}\x00{channel.casefold()}\x00{record}\x00{second}")


def windows_identity(event: Mapping[str, Any]) -> tuple[str, str, Any, str] | None:
    """(computer, channel, record id, time to the second) when the event carries the first three, else None.

    The time is read from the normalised ``@timestamp`` (UTC); an event without one gets ``""``."""
    ts = event.get("@timestamp")
    second = ts[:19] if isinstance(ts, str) else ""
    for computer_key, channel_key, record_key in _WINDOWS_FIELDS:
        computer, channel, record = event.get(computer_key), event.get(channel_key), event.get(record_key)
        if (isinstance(computer, str) and computer and isinstance(channel, str) and channel
                and type(record) in (int, str) and str(record)):
            return computer, channel, record, second
    return None


def normalise_server(url: str) -> str:
    """A FHIR base URL as an identity: scheme and host lower-cased, no trailing slash, no query."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def fhir_id(server: str, resource_type: str, resource_id: str) -> str:
    """A FHIR resource id is assigned by its server: ``server`` is that server's base URL, or ``""``
    when the record came from a file (an export names no server)."""
    return make_event_id(f"fhir:{normalise_server(server)}", f"{resource_type}/{resource_id}")
