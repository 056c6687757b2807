"""Listener mode of a push connector: syslog listeners that write to a durable spool, read back later.

Why one piece: every push source (``atna-syslog``, the VPN connectors, ``winlogbeat``) must take the same
listener options, start, report and stop its listeners the same way - a bind failure as one
``SourceUnavailable`` line naming the connector, the bound addresses for a port configured as 0, and the
spool closed last - and read its spool back the same way (corrupt bytes and listener errors as dead
letters, a cursor, segments deleted only once acknowledged), so the service treats them all alike. Each
connector adds only what one received message becomes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from connectors.base import Batch, ConnectorConfigError
from connectors.ndjson import raw_text
from connectors.syslog.server import ListenerConfig, SyslogServer
from connectors.syslog.spool import KIND_ERROR, CorruptRecord, Spool, SpoolCursor, SpoolItem
from engine.errors import SourceUnavailable
from engine.events import Event, format_timestamp
from engine.logs import get_logger
from engine.plugins import InvalidOption, path_option, secret_refusal
from engine.store.base import DeadLetter

log = get_logger("wardwatch.connectors.syslog.listening")

DEFAULT_MAX_MESSAGE_BYTES = 65536
MAX_DEAD_LETTER_RAW = 65536

#: what a connector's ``parse_record`` makes of one spooled message: None skips a blank one
RecordOutcome = Event | DeadLetter | None


@dataclass
class ListenerOptions:
    """The listener options every push connector's ``Options`` inherits (the names users write in YAML).

    Why a base class: ``engine.plugins.parse_options`` reads ``dataclasses.fields``, which include inherited
    ones, so each connector declares only what is its own and these keep one spelling, one default and one
    check. A connector that *requires* a spool redeclares ``spool_dir`` without a default; one whose
    messages are larger redeclares ``max_message_bytes``. TLS cert/key/CA and the key's ``password_file``
    are per ``listen`` entry (:class:`connectors.syslog.server.ListenerConfig`).
    """

    spool_dir: str | None = path_option(None)
    listen: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    segment_bytes: int = 64 * 1024 * 1024
    fsync: bool = True

    def check_listener_options(self) -> None:
        """Called from the subclass's ``__post_init__`` where its checks reach the listener options."""
        if self.listen and not self.spool_dir:
            raise InvalidOption("spool_dir", "listen needs a spool_dir")
        for key in ("max_message_bytes", "segment_bytes"):
            value = getattr(self, key)
            if value < 1:
                raise InvalidOption(key, f"must be a positive integer, got {value!r}")
        check_listen_entries(self.listen)


def check_listen_entries(entries: Sequence[Mapping[str, Any]]) -> None:
    """Options-time check of ``listen`` (no file is read): a literal TLS key ``password`` is refused."""
    for i, entry in enumerate(entries):
        if "password" in entry:
            raise InvalidOption(f"listen[{i}].password", secret_refusal("password").replace(
                " or password_env (the name of an environment variable)", ""))
        checked = {k: v for k, v in entry.items() if k != "password_file"}
        try:
            ListenerConfig.from_mapping(checked)
        except (TypeError, ValueError) as exc:
            raise InvalidOption(f"listen[{i}]", str(exc)) from None


def with_key_password(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A listen entry with ``password_file`` (the TLS key's passphrase) read into ``password``."""
    entry = dict(entry)
    file = entry.pop("password_file", None)
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                entry["password"] = fh.read().strip()
        except OSError as exc:
            raise ValueError(f"password_file {file}: cannot read ({exc.strerror})") from None
    return entry


class SpoolListeners:
    """Mixed into a ``Connector`` whose ``settings`` has ``max_message_bytes``, ``segment_bytes`` and ``fsync``.

    ``spool`` is None for a connector in file mode; ``listen`` is empty when it only drains a spool.
    """

    type_name: str
    name: str
    settings: Any
    source_identity: str
    spool: Spool | None = None
    server: SyslogServer | None = None
    listen: list[ListenerConfig]

    def _configure_listeners(self, opts: ListenerOptions) -> None:
        """Listener mode when ``spool_dir`` is set (the spool directory is the only thing opened here)."""
        self.listen = []
        if not opts.spool_dir:
            return
        try:
            self.listen = [ListenerConfig.from_mapping(with_key_password(entry)) for entry in opts.listen]
        except (TypeError, ValueError, OSError) as exc:
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: option 'listen': {exc}") from None
        self.spool = Spool(opts.spool_dir, segment_bytes=opts.segment_bytes, fsync=opts.fsync)

    def start(self) -> None:
        """Open a fresh spool segment and start every listener.

        A port in use or a missing certificate file raises :class:`SourceUnavailable` with one line naming
        the connector, the ``listen[i]`` key and the port or path (the service reports it and retries).
        """
        if self.spool is None or self.server is not None:
            return
        self.spool.open_writer()
        server = SyslogServer(self.listen, self.spool.append, max_message_bytes=self.settings.max_message_bytes)
        try:
            server.start()
        except SourceUnavailable as exc:
            raise SourceUnavailable(f"{self.type_name} {self.name!r}: {exc}") from None
        self.server = server

    @property
    def addresses(self) -> list[tuple[str, str, int]]:
        """(protocol, host, port) actually bound - the way to learn a port configured as 0."""
        return list(self.server.addresses) if self.server else []

    def acknowledge(self, cursor: dict[str, Any] | None) -> None:
        """The engine committed ``cursor``: spool segments wholly before it may go (never earlier: a crash
        before the commit must be able to re-read them)."""
        if cursor and self.spool is not None:
            removed = self.spool.acknowledge(SpoolCursor.from_dict(cursor))
            if removed:
                log.debug("spool segments removed", connector=self.name, segments=removed)

    # --- reading --------------------------------------------------------------------------------------
    def read_spool(self, cursor: dict[str, Any] | None, max_events: int,
                   parse_record: Callable[[SpoolItem, str, datetime], RecordOutcome]) -> Batch:
        """Up to ``max_events`` spooled records from ``cursor`` -> events and dead letters, and the new cursor.

        Why here: the spool's own failures (bytes that are no record, a listener-side ``KIND_ERROR``) and a
        parser bug are dead-lettered the same way for every push connector; ``parse_record(item, location,
        received)`` only turns one received message into an event, a dead letter, or None (blank).
        """
        assert self.spool is not None
        try:
            position = SpoolCursor.from_dict(cursor)
        except ValueError as exc:
            raise ConnectorConfigError(f"{self.type_name} {self.name!r}: {exc}") from None
        result = self.spool.read(position, max(1, max_events))
        batch = Batch(cursor=result.cursor.to_dict(), exhausted=result.exhausted)
        for item in result.items:
            outcome = self._item_outcome(item, parse_record)
            if outcome is None:
                continue
            if isinstance(outcome, DeadLetter):
                batch.dead_letters.append(outcome)
            else:
                batch.events.append(outcome)
        return batch

    def _item_outcome(self, item: SpoolItem | CorruptRecord,
                      parse_record: Callable[[SpoolItem, str, datetime], RecordOutcome]) -> RecordOutcome:
        location = f"spool:{item.segment}:{item.offset}"
        if isinstance(item, CorruptRecord):
            return self.bytes_dead_letter(item.raw, location, item.reason)
        record = item.record
        received = datetime.fromtimestamp(record.received_at, tz=timezone.utc)
        if record.kind == KIND_ERROR:
            return self.bytes_dead_letter(record.data, record.peer or location, record.reason, received)
        try:
            return parse_record(item, location, received)
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one record, not the source
            # Reasons are logged by the engine: the exception TYPE only, its text may quote the record (PHI).
            log.error("unexpected error parsing a spooled record", connector=self.name, location=location,
                      error=type(exc).__name__)
            return self.bytes_dead_letter(record.data, location, f"internal error: {type(exc).__name__}",
                                          received)

    def bytes_dead_letter(self, data: bytes, location: str, reason: str,
                          received: datetime | None = None) -> DeadLetter:
        """A dead letter keeping (up to 64 KiB of) the received bytes; undecodable ones stay visible."""
        return DeadLetter(source=self.source_identity, reason=reason, location=location,
                          raw=raw_text(data[:MAX_DEAD_LETTER_RAW]),
                          received_at=format_timestamp(received or datetime.now(timezone.utc)))

    def _close_listeners(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.spool is not None:
            self.spool.close()
