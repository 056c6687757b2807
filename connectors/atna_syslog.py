"""``atna-syslog``: IHE ATNA audit messages received over syslog (RFC 5424 over TLS/TCP/UDP).

Lifecycle (the engine's view):

* ``AtnaSyslogConnector(name, options)`` validates options and opens nothing but the spool directory.
* ``start()`` (push connectors, once): opens a new spool segment for writing and starts the listeners in
  background threads. Every frame a listener receives is fsync'd to the spool before anything else happens.
* ``read(cursor, max_events)`` reads the spool like a file - it works without ``start()`` too, which is how
  a restarted process drains what a crashed one had accepted. Parsing happens here, so a payload bug
  becomes a dead letter, never a lost message. The cursor is ``{"segment": int, "offset": int}``.
* ``acknowledge(cursor)``: the engine calls it *after* it committed ``cursor`` with the events; spool
  segments wholly before the cursor are deleted then (never earlier: a crash before the commit must be able
  to re-read them).
* ``close()`` stops the listeners and closes the spool.

The syslog layer (``connectors.syslog``) knows nothing about ATNA; this module joins it to the ATNA parser
(:mod:`connectors.atna_parser`) and the FHIR AuditEvent mapping (:mod:`connectors.fhir_mapping`).
See ``docs/connectors/atna-syslog.md`` for options, durability semantics and the field table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping

import orjson

from connectors.atna_parser import AtnaParseError, parse_atna
from connectors.base import Batch, Connector, ConnectorConfigError
from connectors.fhir_mapping import MappingError, auditevent_to_event
from connectors.syslog.rfc5424 import SyslogMessage, SyslogParseError, parse_syslog
from connectors.syslog.listening import SpoolListeners, check_listen_entries
from connectors.syslog.spool import KIND_ERROR, CorruptRecord, SpoolCursor, SpoolItem
from engine.events import Event, format_timestamp
from engine.identity import record_id
from engine.logs import get_logger
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

log = get_logger("wardwatch.connectors.atna_syslog")

MAX_DEAD_LETTER_RAW = 65536
DEFAULT_MAX_MESSAGE_BYTES = 65536


def _dead_raw(data: bytes) -> str:
    return data[:MAX_DEAD_LETTER_RAW].decode("utf-8", "replace")


@dataclass
class AtnaSyslogOptions:
    """Options of ``atna-syslog`` (docs/connectors/atna-syslog.md); ``listen`` entries are checked too."""

    spool_dir: str = path_option(dataclasses.MISSING)
    listen: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_xml_bytes: int | None = None  # default: max_message_bytes
    segment_bytes: int = 64 * 1024 * 1024
    fsync: bool = True

    def __post_init__(self) -> None:
        if not self.spool_dir:
            raise InvalidOption("spool_dir", "required option is missing")
        for key in ("max_message_bytes", "max_xml_bytes", "segment_bytes"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise InvalidOption(key, f"must be a positive integer, got {value!r}")
        check_listen_entries(self.listen)


class AtnaSyslogConnector(SpoolListeners, Connector):
    type_name: ClassVar[str] = "atna-syslog"
    summary: ClassVar[str] = "IHE ATNA / FHIR AuditEvent over syslog (TLS, TCP, UDP), via a durable spool"
    source_option: ClassVar[str] = "spool_dir"

    Options: ClassVar[type] = AtnaSyslogOptions

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: AtnaSyslogOptions = self.settings
        self.max_message_bytes = opts.max_message_bytes
        self.max_xml_bytes = opts.max_xml_bytes or self.max_message_bytes
        self._configure_listeners(opts.listen, opts.spool_dir)

    def close(self) -> None:
        self._close_listeners()

    def acknowledge(self, cursor: dict[str, Any] | None) -> None:
        """The engine committed ``cursor``: spool segments wholly before it may go."""
        if cursor:
            removed = self.spool.acknowledge(SpoolCursor.from_dict(cursor))
            if removed:
                log.debug("spool segments removed", connector=self.name, segments=removed)

    # --- reading --------------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        try:
            position = SpoolCursor.from_dict(cursor)
        except ValueError as exc:
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: {exc}") from None
        result = self.spool.read(position, max(1, max_events))
        batch = Batch(cursor=result.cursor.to_dict(), exhausted=result.exhausted)
        for item in result.items:
            if isinstance(item, CorruptRecord):
                batch.dead_letters.append(DeadLetter(self.source_identity, item.reason,
                                                     f"spool:{item.segment}:{item.offset}", _dead_raw(item.raw)))
                continue
            outcome = self.record_to_event(item)
            if isinstance(outcome, DeadLetter):
                batch.dead_letters.append(outcome)
            else:
                batch.events.append(outcome)
        return batch

    def record_to_event(self, item: SpoolItem) -> Event | DeadLetter:
        """One spooled record -> an event, or a dead letter saying why not. Never raises."""
        record = item.record
        location = f"spool:{item.segment}:{item.offset}"

        def dead(reason: str, where: str = location) -> DeadLetter:
            received = format_timestamp(datetime.fromtimestamp(record.received_at, tz=timezone.utc))
            return DeadLetter(self.source_identity, reason, where, _dead_raw(record.data), received)

        if record.kind == KIND_ERROR:
            return dead(record.reason, record.peer or location)
        try:
            message = parse_syslog(record.data)
        except SyslogParseError as exc:
            return dead(f"invalid syslog message: {exc}")
        try:
            text = message.text()
        except UnicodeDecodeError as exc:
            return dead(f"syslog MSG is not valid UTF-8 (byte {exc.start})")
        payload = text.strip().lstrip("\ufeff")
        raw = payload.encode("utf-8")
        # A syslog message's place in the spool tells identical messages apart and is the same on a re-drain
        # (`wardwatch ingest atna-syslog SPOOL` after the service): see engine.identity.
        position = f"spool:{item.segment}:{item.offset}"
        try:
            if payload.startswith("<"):
                event = parse_atna(raw, max_bytes=self.max_xml_bytes)
                event["event.id"] = record_id(raw, position)
            elif payload.startswith("{"):
                try:
                    resource = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    return dead(f"payload is not valid JSON: {exc}")
                event = auditevent_to_event(resource, raw=raw, position=position)
            else:
                return dead("payload is neither ATNA XML nor FHIR AuditEvent JSON")
        except AtnaParseError as exc:
            return dead(f"ATNA: {exc}")
        except MappingError as exc:
            return dead(f"FHIR AuditEvent: {exc}")
        except Exception as exc:  # noqa: BLE001 - one odd record must not stop the source
            log.error("unexpected error parsing spooled record", connector=self.name, location=location,
                      error=type(exc).__name__)
            return dead(f"internal error while parsing: {type(exc).__name__}")
        self._syslog_fields(event, message, record.peer)
        return event

    @staticmethod
    def _syslog_fields(event: Event, message: SyslogMessage, peer: str) -> None:
        event["log.syslog.priority"] = message.priority
        event["log.syslog.facility.code"] = message.facility
        event["log.syslog.severity.code"] = message.severity
        if message.version is not None:
            event["log.syslog.version"] = str(message.version)
        for key, value in (("hostname", message.hostname), ("appname", message.appname),
                           ("procid", message.procid), ("msgid", message.msgid)):
            if value is not None:
                event[f"log.syslog.{key}"] = value
        if peer:
            # "tls:10.1.2.3:51514" -> transport and address of the sending device (or relay).
            transport, _, address = peer.partition(":")
            event["log.source.address"] = address
            event["network.transport"] = "udp" if transport == "udp" else "tcp"
            event["network.protocol"] = "syslog-tls" if transport == "tls" else "syslog"
