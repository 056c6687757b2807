"""The shared layer of the VPN connectors: syslog files or syslog listeners in, ECS events out.

Why one layer for four vendors: Cisco ASA, FortiGate, GlobalProtect and OpenVPN differ only in the text of
one message. Reading files (tail, rotation, truncation: :mod:`connectors.tailing`), receiving syslog
(TLS/TCP/UDP with a durable spool: :mod:`connectors.syslog`), splitting off the syslog header, resolving
times, assigning ``event.id`` and dead-lettering are the same for all of them, so they live here once and
a vendor module (:mod:`connectors.vpn.contract`) stays a pure ``parse(message, context)`` function.

Two ways in (exactly one per connector instance):

* ``path``: a file, a directory (read recursively: every file) or a glob of syslog files, as ``ndjson``
  reads them. ``event.id`` is ``record_id(line, "line:N")``, so a re-read (restart, rotation seen twice,
  ``wardwatch ingest`` after the service) gives the same ids and the store drops the copies.
* ``listen`` + ``spool_dir``: syslog listeners, exactly like ``atna-syslog`` (TLS by default, every frame
  fsync'd to the spool before it is parsed). ``event.id`` uses the spool position.

Each line or message:

1. ``<PRI>`` present: the header is parsed (RFC 5424, or RFC 3164 incl. Cisco's ``Mmm dd yyyy hh:mm:ss``
   variant). No ``<PRI>`` but an RFC 3164 header (a file written by rsyslog/syslog-ng): parsed the same way.
   Neither (``/var/log/openvpn.log``, an OpenVPN status file): the whole line goes to the parser.
2. The header time is resolved to UTC: an offset in it wins, else the configured ``timezone``. RFC 3164
   times carry no year: for files the file's modification year is used (a log is written up to its mtime),
   for listeners the current year; a time that would then lie more than a day in the future is taken as
   last year's (a December line read in January).
3. The vendor ``parse`` runs; the layer adds ``event.dataset``, ``event.original`` (the raw line),
   ``event.id``, ``@timestamp`` from the header when the parser set none, ``observer.*`` defaults and
   ``log.syslog.*``. ``VpnParseError``, undecodable bytes or no time at all -> a dead letter naming
   ``path:line`` (or ``spool:segment:offset``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from types import ModuleType
from typing import Any, ClassVar, Generator, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.availability import require_source
from connectors.base import Batch, Connector, ConnectorConfigError
from connectors.ndjson import check_file_options, read_lines
from connectors.syslog.rfc5424 import SyslogMessage, SyslogParseError, parse_syslog
from connectors.syslog.listening import ListenerOptions, SpoolListeners
from connectors.syslog.spool import SpoolItem
from connectors.tailing import DEFAULT_MAX_LINE_BYTES, Line, LineFollower, discover
from connectors.vpn.contract import Event, ParseContext, VpnParseError
from engine.events import normalise_timestamp
from engine.identity import record_id
from engine.logs import get_logger
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

log = get_logger("wardwatch.connectors.vpn")

#: every file under a directory ``path`` is a log (``vpn.log``, ``asa.log.1``, ``messages``): no suffix filter
ALL_FILES = ("",)
_UTF8_BOM = b"\xef\xbb\xbf"
_MONTH = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
# "Dec  1 23:00:00" (RFC 3164) and Cisco's "Dec 01 2026 23:00:00" (`logging timestamp`), optional ms.
_TS_3164 = re.compile(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +([0-9]{1,2}) (?:([0-9]{4}) )?"
                      r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?$")
# After <PRI>: Cisco's year-bearing stamp, then "HOST : " or "HOST " (the device id), then the message.
_CISCO_HEADER = re.compile(rb"((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9][0-9] [0-9]{4} "
                           rb"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?) (?:([^\s:%]\S*) )?(?:: )?")
# A line in a file written by a syslog daemon: "Mmm dd hh:mm:ss HOST TAG: ..." (no PRI).
_FILE_3164 = re.compile(rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 0-9][0-9] (?:[0-9]{4} )?"
                        rb"[0-9]{2}:[0-9]{2}:[0-9]{2} ")
_OFFSET = re.compile(r"^([+-])([0-9]{2}):?([0-9]{2})$")


def parse_timezone(text: str) -> tzinfo:
    """``UTC``, an IANA name (``Europe/Berlin``) or a fixed offset (``-05:00``, ``+0530``, ``Z``)."""
    value = (text or "").strip()
    if value.upper() in ("UTC", "Z", "GMT"):
        return timezone.utc
    match = _OFFSET.match(value)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta >= timedelta(hours=24):
            raise ValueError(f"offset {value!r} out of range")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Berlin, or an offset "
                         f"like -05:00)") from None


def header_time(text: str | None, tz: tzinfo, year: int, now: datetime | None = None) -> datetime | None:
    """A syslog header timestamp as an aware UTC datetime; None when absent or unreadable.

    RFC 5424 (ISO 8601) with an offset keeps it; without one, and every RFC 3164 time, is in ``tz``. A
    3164 time without a year takes ``year``, or the year before if that would be over a day ahead of now.
    """
    if not text:
        return None
    match = _TS_3164.match(text)
    if match is None:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(timezone.utc)
    month, day, explicit_year, hh, mm, ss, frac = match.groups()
    micro = int((frac or "0").ljust(6, "0"))

    def build(y: int) -> datetime | None:
        try:
            return datetime(y, _MONTH[month], int(day), int(hh), int(mm), int(ss), micro, tzinfo=tz)
        except ValueError:  # Feb 29 in a non-leap year, hour 25, ...
            return None

    if explicit_year:
        dt = build(int(explicit_year))
    else:
        dt = build(year)
        now = now or datetime.now(timezone.utc)
        if dt is not None and dt.astimezone(timezone.utc) > now + timedelta(days=1):
            dt = build(year - 1) or dt
    return dt.astimezone(timezone.utc) if dt is not None else None


def check_timezone_option(value: str) -> None:
    """Options-time check of a ``timezone`` option (shared with ``winlogbeat``)."""
    try:
        parse_timezone(value)
    except ValueError as exc:
        raise InvalidOption("timezone", str(exc)) from None


def _cisco_header(message: SyslogMessage) -> None:
    """An RFC 3164 message without a header time: take Cisco's year-bearing stamp (and device id) from MSG."""
    if message.timestamp is not None:
        return
    cisco = _CISCO_HEADER.match(message.msg)
    if cisco is not None:
        message.timestamp = cisco.group(1).decode("ascii")
        if cisco.group(2):
            message.hostname = cisco.group(2).decode("utf-8", "replace")
        message.msg = message.msg[cisco.end():]


@dataclass
class VpnOptions(ListenerOptions):
    """Options of the VPN connectors (docs/connectors/README.md). ``path``, or ``listen`` + ``spool_dir``."""

    path: str | None = path_option(None)
    #: the device's time zone for times without an offset: IANA name or fixed offset
    timezone: str = "UTC"
    #: the Sigma taxonomy maps ``product: vpn`` to this dataset
    dataset: str = "vpn.auth"
    #: user.domain for users logged without one (``jdoe`` rather than ``HOSPITAL\\jdoe``)
    default_domain: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    #: unset: a last line without newline waits for its writer; set: consumed once the file is idle that long
    eof_grace_seconds: float | None = None

    def __post_init__(self) -> None:
        check_file_options(self)
        if self.path and self.spool_dir:
            raise InvalidOption("path", "give either path (syslog files) or spool_dir + listen, not both")
        if not self.path and not self.spool_dir:
            raise InvalidOption("path", "required option is missing (or spool_dir + listen for a listener)")
        check_timezone_option(self.timezone)
        self.check_listener_options()


class VpnConnector(SpoolListeners, Connector):
    """Base of ``cisco-asa``, ``fortigate``, ``globalprotect``, ``openvpn``: a subclass names its parser.

    ``parser_module`` is imported when an instance is built (not when the entry point is loaded), so a
    vendor module that is missing or broken fails only its own type, with one config error.
    """

    Options: ClassVar[type] = VpnOptions
    #: dotted name of the vendor module (VENDOR, PRODUCT, parse): see connectors/vpn/contract.py
    parser_module: ClassVar[str] = ""

    def __init__(self, name: str, options: Mapping[str, Any], parser: ModuleType | None = None):
        super().__init__(name, options)
        opts: VpnOptions = self.settings
        self.parser = parser or self._load_parser()
        self.tz = parse_timezone(opts.timezone)
        self.dataset = opts.dataset
        self.path = opts.path
        self.max_line_bytes = opts.max_line_bytes
        self.context_options = {k: v for k, v in dataclasses.asdict(opts).items() if k != "listen"}
        self._follower = LineFollower(max_line_bytes=opts.max_line_bytes, eof_grace_seconds=opts.eof_grace_seconds)
        self._years: dict[str, int] = {}
        self._configure_listeners(opts)

    def _load_parser(self) -> ModuleType:
        try:
            module = importlib.import_module(self.parser_module)
        except ImportError as exc:
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: parser module {self.parser_module!r} "
                                       f"is not available ({exc})") from None
        if not callable(getattr(module, "parse", None)):
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: {self.parser_module} has no parse()")
        return module

    # --- lifecycle (listeners) ------------------------------------------------------------------------
    def start(self) -> None:
        """Listener mode: open a fresh spool segment and start every listener (file mode, or a spool
        drained without listeners: nothing)."""
        if self.listen:
            super().start()

    def read_to_end(self) -> None:
        """One-shot mode: a last line without newline is a complete record (as ``ndjson``)."""
        self._follower.read_to_end()

    def close(self) -> None:
        self._close_listeners()
        self._follower.close()

    # --- reading --------------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        if self.spool is not None:
            return self.read_spool(cursor, max_events, self._spool_outcome)
        return read_lines(cursor, max_events, self._lines, self._line_outcome, self._line_dead)

    def _lines(self, files: dict[str, Any]) -> Generator[Line, None, None]:
        assert self.path is not None
        return self._follower.follow(discover(require_source(self.name, self.path), ALL_FILES), files)

    def _line_dead(self, line: Line, reason: str) -> DeadLetter:
        return self.bytes_dead_letter(line.data, f"{line.path}:{line.number}", reason)

    def _file_year(self, path: str) -> int:
        year = self._years.get(path)
        if year is None:
            try:
                year = datetime.fromtimestamp(os.stat(path).st_mtime, tz=timezone.utc).year
            except OSError:
                year = datetime.now(timezone.utc).year
            self._years[path] = year
        return year

    def _line_outcome(self, line: Line) -> Event | DeadLetter | None:
        location = f"{line.path}:{line.number}"
        data = line.data
        if line.oversized:
            return self.bytes_dead_letter(data, location, f"line longer than max_line_bytes "
                                              f"({line.oversized} > {self.max_line_bytes} bytes)")
        if line.number == 1 and data.startswith(_UTF8_BOM):
            data = data[3:]
        if not data or data.isspace():
            return None
        return self.message_to_event(data, f"line:{line.number}", location, self._file_year(line.path))

    def _spool_outcome(self, item: SpoolItem, location: str, received: datetime) -> Event | DeadLetter | None:
        """One received syslog message (spool damage and listener errors are :meth:`read_spool`'s)."""
        record = item.record
        data = record.data.rstrip(b"\r\n")
        if not data or data.isspace():
            return None
        event = self.message_to_event(data, location, location, received.year, received=received)
        if type(event) is dict and record.peer:
            transport, _, address = record.peer.partition(":")
            event["log.source.address"] = address
            # A vendor's own network.* describe the VPN session (ASA 722022: a DTLS tunnel over UDP); the
            # listener's transport only fills them where the message says nothing about the network.
            event.setdefault("network.transport", "udp" if transport == "udp" else "tcp")
            event.setdefault("network.protocol", "syslog-tls" if transport == "tls" else "syslog")
        return event

    def message_to_event(self, data: bytes, position: str, location: str, year: int,
                         received: datetime | None = None) -> Event | DeadLetter:
        """One line or syslog frame -> an event or a dead letter naming ``location``. Never raises."""
        try:
            return self._to_event(data, position, location, year, received)
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one line, not the source
            log.error("unexpected error parsing a VPN message", connector=self.name, location=location,
                      error=type(exc).__name__)
            # Reasons are logged by the engine: the exception TYPE only, its text may quote the line (PHI).
            return self.bytes_dead_letter(data, location, f"internal error: {type(exc).__name__}", received)

    def _to_event(self, data: bytes, position: str, location: str, year: int,
                  received: datetime | None) -> Event | DeadLetter:
        try:
            original = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self.bytes_dead_letter(data, location, f"invalid UTF-8 at byte {exc.start}", received)
        message = self._header(data)
        if message is not None:
            try:
                text = message.text()
            except UnicodeDecodeError as exc:  # pragma: no cover - the whole line decoded above
                return self.bytes_dead_letter(data, location, f"syslog MSG is not valid UTF-8 (byte {exc.start})", received)
            when = header_time(message.timestamp, self.tz, year)
        else:
            text, when = original, None
        context = ParseContext(timezone=self.tz, header_time=when,
                               hostname=message.hostname if message else None,
                               appname=message.appname if message else None,
                               year=year, options=self.context_options)
        try:
            event = self.parser.parse(text.strip(), context)
        except VpnParseError as exc:
            return self.bytes_dead_letter(data, location, f"{self.type_name}: {exc}", received)
        if type(event) is not dict:
            return self.bytes_dead_letter(data, location, f"{self.type_name}: parser returned {type(event).__name__}",
                              received)
        stamp = event.get("@timestamp")
        if stamp is None:
            stamp = when or received
        if stamp is None:
            return self.bytes_dead_letter(data, location, "no time in the line (no syslog header time, none in the "
                                              "message)", received)
        try:
            event["@timestamp"] = normalise_timestamp(stamp)
        except Exception as exc:  # noqa: BLE001 - ValueError, OverflowError from odd parser output
            return self.bytes_dead_letter(data, location, f"invalid @timestamp from the parser ({exc})", received)
        event["event.dataset"] = self.dataset
        event["event.original"] = original
        event["event.id"] = record_id(data, position)
        vendor, product = getattr(self.parser, "VENDOR", None), getattr(self.parser, "PRODUCT", None)
        if vendor:
            event.setdefault("observer.vendor", vendor)
        if product:
            event.setdefault("observer.product", product)
        if message is not None:
            if message.hostname:
                event.setdefault("observer.hostname", message.hostname)
            self._syslog_fields(event, message)
        return event

    @staticmethod
    def _header(data: bytes) -> SyslogMessage | None:
        """The syslog header, or None when the line has none (the parser then gets the whole line)."""
        if data.startswith(b"<"):
            try:
                message = parse_syslog(data)
            except SyslogParseError:
                return None
            if message.format == "rfc3164":
                _cisco_header(message)
            return message
        if _FILE_3164.match(data):
            try:
                message = parse_syslog(b"<13>" + data)
            except SyslogParseError:  # pragma: no cover - "<13>" is always a valid PRI
                return None
            message.priority = message.facility = message.severity = -1  # the file carried none
            _cisco_header(message)
            return message
        return None

    @staticmethod
    def _syslog_fields(event: Event, message: SyslogMessage) -> None:
        if message.priority >= 0:
            event.setdefault("log.syslog.priority", message.priority)
            event.setdefault("log.syslog.facility.code", message.facility)
            event.setdefault("log.syslog.severity.code", message.severity)
        if message.version is not None:
            event.setdefault("log.syslog.version", str(message.version))
        for key, value in (("hostname", message.hostname), ("appname", message.appname),
                           ("procid", message.procid), ("msgid", message.msgid)):
            if value is not None:
                event.setdefault(f"log.syslog.{key}", value)
