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
from datetime import datetime
from typing import Any, ClassVar, Mapping

import orjson

from connectors.atna_parser import AtnaParseError, parse_atna
from connectors.base import Batch, Connector
from connectors.fhir_mapping import MappingError, auditevent_to_event
from connectors.syslog.rfc5424 import SyslogMessage, SyslogParseError, parse_syslog
from connectors.syslog.listening import ListenerOptions, SpoolListeners
from connectors.syslog.spool import SpoolItem
from engine.events import Event
from engine.identity import record_id
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter


@dataclass
class AtnaSyslogOptions(ListenerOptions):
    """Options of ``atna-syslog`` (docs/connectors/atna-syslog.md): the listener options, a spool required."""

    spool_dir: str = path_option(dataclasses.MISSING)
    max_xml_bytes: int | None = None  # default: max_message_bytes

    def __post_init__(self) -> None:
        if not self.spool_dir:
            raise InvalidOption("spool_dir", "required option is missing")
        if self.max_xml_bytes is not None and self.max_xml_bytes < 1:
            raise InvalidOption("max_xml_bytes", f"must be a positive integer, got {self.max_xml_bytes!r}")
        self.check_listener_options()


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
        self._configure_listeners(opts)

    def close(self) -> None:
        self._close_listeners()

    # --- reading --------------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        return self.read_spool(cursor, max_events, self.record_to_event)

    def record_to_event(self, item: SpoolItem, location: str, received: datetime) -> Event | DeadLetter:
        """One received syslog message -> an event, or a dead letter saying why not.

        Spool damage, listener errors and a parser bug (an exception) are dead-lettered by
        :meth:`SpoolListeners.read_spool`, the same way for every push connector.
        """
        record = item.record

        def dead(reason: str) -> DeadLetter:
            return self.bytes_dead_letter(record.data, location, reason, received)

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
        position = location
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
