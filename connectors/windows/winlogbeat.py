"""The ``winlogbeat`` connector: Winlogbeat, Elastic Agent and NXLog JSON, from files or JSON lines over TCP/TLS.

Why one connector for three shippers: each document carries one Windows record, and
:mod:`connectors.windows.winlogbeat_records` tells the flavours apart per document, so a hospital running
Winlogbeat on its domain controllers and NXLog on its imaging workstations points both at one source.

Two ways in (exactly one per connector instance):

* ``path``: NDJSON files (Winlogbeat's ``output.file``, NXLog ``om_file`` with ``to_json()``, an Elastic
  Agent export), a directory of them (``*.ndjson``/``*.jsonl``/``*.json``) or a glob. Following appends,
  rotation and truncation is :class:`connectors.ndjson.NdjsonFileConnector`'s, which this class extends:
  only what one line becomes differs.
* ``listen`` + ``spool_dir``: TCP or TLS listeners taking one JSON document per LF-terminated line (NXLog
  ``om_tcp``/``om_ssl`` with ``to_json()``, Logstash's ``tcp`` output with the ``json_lines`` codec). Every
  chunk is fsync'd to the spool before it is parsed (:mod:`connectors.syslog`), as for ``atna-syslog``.
  Winlogbeat's own ``output.logstash`` speaks the Beats (lumberjack) protocol, not JSON lines: such a
  connection is dead-lettered with a reason saying so (docs/connectors/winlogbeat.md).

``event.id`` is the record's Computer + Channel + EventRecordID (:func:`engine.identity.windows_id`), so the
same record shipped twice (a Winlogbeat registry reset, NXLog and Winlogbeat on one host) is stored once;
a document without a record number falls back to its bytes and position. ``event.original`` is the line.
A line that is not JSON, not an object or not a Windows record is a dead letter naming ``path:line`` (or
``spool:segment:offset``) and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Mapping

from connectors.base import Batch
from connectors.ndjson import NdjsonFileConnector, check_file_options, json_object
from connectors.syslog.listening import ListenerOptions, SpoolListeners
from connectors.syslog.spool import SpoolItem
from connectors.tailing import DEFAULT_MAX_LINE_BYTES, Line
from connectors.vpn.base import check_timezone_option, parse_timezone
from connectors.windows.record import normalise_record
from connectors.windows.winlogbeat_records import WinlogbeatDocumentError, record_from_document
from engine.events import Event
from engine.identity import record_id, windows_id, windows_identity
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

#: A Windows event with its rendered message is a few KiB; PowerShell 4104 script blocks reach ~32 KiB.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
_UTF8_BOM = b"\xef\xbb\xbf"
#: Beats/lumberjack v1/v2 frames begin with a version byte and a frame type: window, compressed, JSON.
_LUMBERJACK = (b"2W", b"2C", b"2J", b"1W", b"1D")


@dataclass
class WinlogbeatOptions(ListenerOptions):
    """Options of ``winlogbeat`` (docs/connectors/winlogbeat.md): ``path``, or ``listen`` + ``spool_dir``."""

    path: str | None = path_option(None)
    #: zone of NXLog's ``EventTime`` (local time without offset); Winlogbeat's ``@timestamp`` is UTC anyway
    timezone: str = "UTC"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    #: unset: a last line without newline waits for its writer; set: consumed once the file is idle that long
    eof_grace_seconds: float | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: read by the NDJSON base class; the dataset of a Windows event comes from its channel
    dataset: ClassVar[str] = "windows"
    timestamp_field: ClassVar[str] = "@timestamp"

    def __post_init__(self) -> None:
        if bool(self.path) == bool(self.spool_dir):
            raise InvalidOption("path", "give path (JSON files) or spool_dir + listen (TCP/TLS listeners), "
                                        "exactly one of them")
        for i, entry in enumerate(self.listen):
            if isinstance(entry, Mapping) and entry.get("protocol") == "udp":
                raise InvalidOption(f"listen[{i}].protocol", "JSON lines need a stream: tls or tcp, not udp")
        check_file_options(self)
        check_timezone_option(self.timezone)
        self.check_listener_options()


class WinlogbeatConnector(SpoolListeners, NdjsonFileConnector):
    """Winlogbeat 7/8, Elastic Agent and NXLog ``im_msvistalog`` JSON -> flat SigmaHQ + ECS Windows events."""

    type_name: ClassVar[str] = "winlogbeat"
    summary: ClassVar[str] = ("Windows events as Winlogbeat / Elastic Agent / NXLog JSON: files, or JSON lines "
                              "over TLS/TCP via a durable spool")
    Options: ClassVar[type] = WinlogbeatOptions

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: WinlogbeatOptions = self.settings
        self.tz = parse_timezone(opts.timezone)
        self._configure_listeners(opts)

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Listener mode: open a fresh spool segment and start the listeners (file mode: nothing)."""
        if self.listen:
            super().start()

    def close(self) -> None:
        self._close_listeners()
        super().close()

    # --- reading --------------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        if self.spool is None:
            return super().read(cursor, max_events)
        return self.read_spool(cursor, max_events, self._spool_outcome)

    def line_to_event(self, line: Line) -> Event | DeadLetter | None:
        """One file line -> an event, a dead letter naming ``path:line``, or None for a blank line."""
        data = line.data
        if line.oversized:
            return self.dead_letter(line, f"line longer than max_line_bytes ({line.oversized} > "
                                          f"{self.max_line_bytes} bytes)")
        if line.number == 1 and data.startswith(_UTF8_BOM):
            data = data[3:]
        if not data or data.isspace():
            return None
        outcome = self.document_to_event(data, f"line:{line.number}")
        return outcome if type(outcome) is dict else self.dead_letter(line, outcome)  # type: ignore[arg-type]

    def _spool_outcome(self, item: SpoolItem, location: str, received: datetime) -> Event | DeadLetter | None:
        """One received JSON line (spool damage, listener errors, a mapping bug: :meth:`read_spool`'s)."""
        record = item.record
        data = record.data.strip()
        if data.startswith(_UTF8_BOM):
            data = data[3:]
        if not data:
            return None
        outcome = self.document_to_event(data, location)
        if type(outcome) is not dict:
            return self.bytes_dead_letter(data, location, outcome, received)  # type: ignore[arg-type]
        if record.peer:
            outcome["log.source.address"] = record.peer.partition(":")[2]  # type: ignore[index]
        return outcome  # type: ignore[return-value]

    def document_to_event(self, data: bytes, position: str) -> Event | str:
        """One JSON line -> the flat event, or the reason it is a dead letter (one line, names the key)."""
        doc = json_object(data)
        if type(doc) is str:
            if doc.startswith("invalid JSON") and data.startswith(_LUMBERJACK):
                return ("the Beats (lumberjack) protocol, not JSON lines: Winlogbeat's output.logstash cannot "
                        "send here; use output.file, or NXLog om_tcp/om_ssl (docs/connectors/winlogbeat.md)")
            return doc
        try:
            record = record_from_document(doc, self.tz)
            event = normalise_record(record)
        except WinlogbeatDocumentError as exc:
            return str(exc)
        event["event.original"] = data.decode("utf-8")
        identity = windows_identity(event) if record.record_id is not None else None
        event["event.id"] = windows_id(*identity) if identity else record_id(data, position)
        return event
