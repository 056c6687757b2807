"""Newline-delimited JSON files (``*.ndjson``, ``*.jsonl``, ``*.json``): the generic file source.

Any tool that can write one JSON object per line (Filebeat/Logstash file outputs, ``jq -c``, an EHR's
audit export, our own test fixtures) feeds Wardwatch through this connector. Each line becomes one event:

* nested objects are flattened to dotted keys (``{"user": {"name": "a"}}`` -> ``"user.name"``);
* ``@timestamp`` is taken from ``timestamp_field`` and rewritten in the canonical form;
* ``event.dataset`` is kept when the line has one, else the ``dataset`` option is used;
* ``event.original`` is the raw line (unless the line already carries one);
* ``event.id`` is kept when present; else a Windows record's Computer + Channel + EventRecordID; else the
  raw line + its line number (:mod:`engine.identity`) - so a re-read (crash, rotation, a copy, another
  connector name, the CLI after the service) produces the same ids and the store drops the copies.

Lines that cannot become events (invalid JSON or UTF-8, not an object, longer than ``max_line_bytes``,
missing or invalid timestamp) become dead letters naming ``path:line`` and the field; the cursor moves past
them so one bad line never blocks a source. File following (appends, partial lines, rotation, truncation)
is in :mod:`connectors.tailing`.

Options: ``path`` (file, directory - read recursively - or glob), ``dataset`` (default ``"ndjson"``),
``timestamp_field`` (default ``"@timestamp"``), ``max_line_bytes`` (default 1 MiB), ``eof_grace_seconds``
(default unset: a last line without newline waits; set: consume it once the file is idle that long).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, ClassVar, Generator, Mapping

import orjson

from connectors.availability import require_source
from connectors.base import Batch, Connector
from connectors.tailing import DEFAULT_MAX_LINE_BYTES, Line, LineFollower, discover
from engine.events import Event, flatten, format_timestamp, normalise_timestamp
from engine.identity import record_id, windows_id, windows_identity
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

SUFFIXES = (".ndjson", ".jsonl", ".json")
CURSOR_VERSION = 1
_UTF8_BOM = b"\xef\xbb\xbf"


def now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


@dataclass
class NdjsonOptions:
    """Options of the ``ndjson`` connector (docs/connectors/ndjson.md)."""

    path: str = path_option(dataclasses.MISSING)
    dataset: str = "ndjson"
    timestamp_field: str = "@timestamp"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    #: unset: a last line without newline waits for its writer; set: consumed once the file is idle that long
    eof_grace_seconds: float | None = None

    def __post_init__(self) -> None:
        check_file_options(self)


def check_file_options(opts: Any) -> None:
    """Cross-field checks shared by the file connectors: non-empty strings, positive sizes."""
    for key in ("path", "dataset", "timestamp_field"):
        if getattr(opts, key, "x") == "":
            raise InvalidOption(key, "must be a non-empty string")
    for key in ("max_line_bytes", "max_file_bytes"):
        if getattr(opts, key, 1) <= 0:
            raise InvalidOption(key, "must be a positive integer")
    for key in ("eof_grace_seconds", "settle_seconds"):
        value = getattr(opts, key, None)
        if value is not None and value < 0:
            raise InvalidOption(key, "must be a number >= 0")


def raw_text(data: bytes) -> str:
    """Text for a dead letter: never fails, keeps undecodable bytes visible as ``\\xNN``."""
    return data.decode("utf-8", "backslashreplace")


def json_object(data: bytes) -> dict[str, Any] | str:
    """One JSON line -> its object, or the dead-letter reason (names the byte or column, never a value)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return f"invalid UTF-8 at byte {uexc.start}"
        return f"invalid JSON: {exc}"
    if type(doc) is not dict:
        return f"not a JSON object (got {type(doc).__name__})"
    return doc


def load_cursor(cursor: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private deep copy: the caller's cursor is the committed one and must not change under it."""
    if not cursor or cursor.get("v") != CURSOR_VERSION or not isinstance(cursor.get("files"), dict):
        return {"v": CURSOR_VERSION, "files": {}}
    return copy.deepcopy(dict(cursor))


def read_lines(cursor: Mapping[str, Any] | None, max_events: int,
               follow: Callable[[dict[str, Any]], Generator[Line, None, None]],
               to_outcome: Callable[[Line], Event | DeadLetter | None],
               dead_letter: Callable[[Line, str], DeadLetter]) -> Batch:
    """The file connectors' read loop: up to ``max_events`` lines from the cursor -> events and dead letters.

    Why one loop: ``ndjson``, ``winlogbeat``'s file mode and the VPN connectors differ only in what one line
    becomes (``to_outcome``: an event, a dead letter, or None for a blank line that counts for nothing).
    ``follow(files)`` opens the lines from the cursor's per-file positions (it may raise SourceUnavailable).
    """
    state = load_cursor(cursor)
    batch = Batch(cursor=state, exhausted=True)
    if max_events <= 0:
        batch.exhausted = False
        return batch
    events, dead = batch.events, batch.dead_letters
    taken = 0
    lines = follow(state["files"])
    for line in lines:
        try:
            result = to_outcome(line)
        except Exception as exc:  # noqa: BLE001 - a parser bug must cost one line, not the source
            # Reasons are logged by the engine: the exception TYPE only, its text may quote the line (PHI).
            result = dead_letter(line, f"internal error: {type(exc).__name__}")
        if result is None:
            continue
        if type(result) is dict:
            events.append(result)
        else:
            dead.append(result)  # type: ignore[arg-type]
        taken += 1
        if taken >= max_events:
            batch.exhausted = False
            break
    lines.close()
    return batch


class NdjsonFileConnector(Connector):
    """One JSON object per line, from a file, a directory tree or a glob; follows appends and rotation."""

    type_name = "ndjson"
    summary = "Newline-delimited JSON files (follows appends, rotation, truncation)"
    Options: ClassVar[type] = NdjsonOptions
    reads_in_worker: ClassVar[bool] = True  # state: file handles, rebuilt from the cursor

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: NdjsonOptions = self.settings
        self.path: str = opts.path
        self.dataset: str = opts.dataset
        self.timestamp_field: str = opts.timestamp_field
        self.max_line_bytes = opts.max_line_bytes
        self._follower = LineFollower(max_line_bytes=self.max_line_bytes, eof_grace_seconds=opts.eof_grace_seconds)

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        return read_lines(cursor, max_events, self._lines, self.line_to_event, self.dead_letter)

    def _lines(self, files: dict[str, Any]) -> Generator[Line, None, None]:
        return self._follower.follow(discover(require_source(self.name, self.path), SUFFIXES), files)

    def dead_letter(self, line: Line, reason: str) -> DeadLetter:
        return DeadLetter(
            source=self.source_identity,
            reason=reason,
            location=f"{line.path}:{line.number}",
            raw=raw_text(line.data),
            received_at=now_text(),
        )

    def line_to_event(self, line: Line) -> Event | DeadLetter | None:
        """One line -> an event, a dead letter, or None for a blank line (skipped, but counted)."""
        data = line.data
        if line.oversized:
            return self.dead_letter(
                line, f"line longer than max_line_bytes ({line.oversized} > {self.max_line_bytes} bytes)"
            )
        if line.number == 1 and data.startswith(_UTF8_BOM):
            data = data[3:]
        if not data or data.isspace():
            return None
        doc = json_object(data)
        if type(doc) is str:
            return self.dead_letter(line, doc)
        event = flatten(doc)  # type: ignore[arg-type]
        ts_field = self.timestamp_field
        if ts_field not in event or event[ts_field] is None:
            return self.dead_letter(line, f"field {ts_field!r}: missing timestamp")
        try:
            event["@timestamp"] = normalise_timestamp(event[ts_field])
        except Exception as exc:  # noqa: BLE001 - ValueError, OverflowError, OSError from odd values
            return self.dead_letter(line, f"field {ts_field!r}: invalid timestamp ({exc})")
        dataset = event.get("event.dataset")
        if dataset is None:
            event["event.dataset"] = self.dataset
        elif type(dataset) is not str or not dataset:
            return self.dead_letter(line, "field 'event.dataset': must be a non-empty string")
        if "event.original" not in event:
            event["event.original"] = data.decode("utf-8")
        event_id = event.get("event.id")
        if event_id is None:
            windows = windows_identity(event)
            event["event.id"] = windows_id(*windows) if windows else record_id(data, f"line:{line.number}")
        elif type(event_id) is not str or not event_id:
            if type(event_id) is int:
                event["event.id"] = str(event_id)
            else:
                return self.dead_letter(line, "field 'event.id': must be a non-empty string")
        return event

    def read_to_end(self) -> None:
        """One-shot mode (``wardwatch ingest``, ``run --once``): files are read as they are now, so a last
        line without newline is a complete record. The service never calls this: there, it waits."""
        self._follower.read_to_end()

    def close(self) -> None:
        self._follower.close()
