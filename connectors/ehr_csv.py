"""EHR access-log exports (CSV/TSV) dropped into a directory, read as they land.

Hospitals get their EHR access logs (Epic ``ACCESS_LOG``, Cerner P2Sentinel exports, ...) as delimited text
files that an export job writes into a folder, often *while we are reading*. So this connector:

* reads only complete lines (terminated by ``\\n``); a half-written last line is left for the next poll;
* keeps, per file, an identity (device + inode + a hash of the header line), the byte offset and the line
  number reached, so a restart resumes exactly and a file replaced under the same name is read from the start;
* streams (seek to the offset, read in chunks): memory is bounded by ``max_events``, not by the file size;
* maps columns to flat event fields through the site's configuration, because column sets differ per site;
* dead-letters a bad row with its file, line number and the column at fault, and carries on with the rest.

``event.id`` is a hash of the connector identity, the file name and the raw row bytes: re-reading a file
(after a crash, or a cursor lost) lands on the same ids, so the store keeps one copy.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import fnmatch
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.availability import require_source
from connectors.base import Batch, Connector, ConnectorConfigError
from engine.events import Event, format_timestamp, parse_timestamp
from engine.identity import record_id
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

DATASET = "ehr.audit"
_CANDIDATE_DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "tsv": "\t", "semicolon": ";", "pipe": "|", "\\t": "\t"}
_CHUNK = 1 << 20
#: A single row larger than this is not a log row; it is dead-lettered instead of exhausting memory.
_DEFAULT_MAX_ROW_BYTES = 1 << 20


class RowError(ValueError):
    """One row could not become an event; ``column`` names the column at fault (or None for the row)."""

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message)
        self.column = column


@dataclass(frozen=True)
class _Record:
    raw: bytes  # the row's bytes without the line terminator
    line: int  # 1-based physical line number the row starts on
    end_offset: int  # byte offset just after the row's terminator
    end_line: int  # physical lines consumed up to and including this row
    oversized: bool = False


class TimestampParser:
    """Parses the site's timestamp column into canonical UTC text.

    Exports write local wall-clock time without an offset, so a configured IANA time zone is applied to naive
    values (``fold=0`` on the repeated hour when clocks go back; documented). Identical timestamp strings
    repeat a lot in access logs (many rows per second), so results are cached.
    """

    def __init__(self, formats: list[str] | None, tz: ZoneInfo):
        self.formats = formats or []
        self.tz = tz
        self.parse = lru_cache(maxsize=65536)(self._parse)

    def _parse(self, text: str) -> str:
        value = text.strip()
        if not value:
            raise ValueError("empty timestamp")
        dt: datetime | None = None
        for fmt in self.formats:
            try:
                dt = datetime.strptime(value, fmt)
                break
            except ValueError:
                continue
        if dt is None:
            if self.formats:
                raise ValueError(f"{value!r} matches none of the formats {self.formats}")
            try:
                dt = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
            except ValueError:
                raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return format_timestamp(parse_timestamp(dt))


@dataclass
class EhrCsvOptions:
    """Options of ``ehr-csv`` (docs/connectors/ehr-csv.md). Cross-field checks in ``__post_init__``."""

    path: str = path_option(dataclasses.MISSING)
    columns: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)
    pattern: str = "*.csv"
    value_maps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    value_maps_ignore_case: bool = True
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    required: list[str] = dataclasses.field(default_factory=lambda: ["@timestamp"])
    delimiter: str | None = "auto"
    quotechar: str = '"'
    encoding: str = "utf-8-sig"
    fieldnames: list[str] | None = None
    timestamp_format: str | list[str] | None = None
    timezone: str = "UTC"
    keep_original: bool = True
    max_row_bytes: int = _DEFAULT_MAX_ROW_BYTES
    complete_after_idle_seconds: float | None = 60.0

    def __post_init__(self) -> None:
        if not self.path:
            raise InvalidOption("path", "required option is missing (a directory or file)")
        if not self.columns:
            raise InvalidOption("columns", "required option is missing (column -> field)")
        if "@timestamp" not in [t for ts in self.columns.values() for t in ([ts] if isinstance(ts, str) else ts)]:
            raise InvalidOption("columns", "must map one column to '@timestamp'")
        delimiter = _DELIMITER_NAMES.get(str(self.delimiter).lower(), self.delimiter)
        if self.delimiter not in (None, "", "auto") and len(str(delimiter)) != 1:
            raise InvalidOption("delimiter", f"must be one character or 'auto', got {self.delimiter!r}")
        encoding = self.encoding.lower().replace("_", "-")
        try:
            codecs.lookup("utf-8" if encoding in ("utf-8-sig", "utf8-sig") else encoding)
        except LookupError:
            raise InvalidOption("encoding", f"unknown encoding {self.encoding!r}") from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidOption("timezone", f"unknown time zone {self.timezone!r}") from None
        if self.max_row_bytes < 1:
            raise InvalidOption("max_row_bytes", "must be a positive integer")


class EhrCsvConnector(Connector):
    """Tail a directory of CSV/TSV EHR access-log exports. See ``docs/connectors/ehr-csv.md``."""

    type_name: ClassVar[str] = "ehr-csv"
    summary: ClassVar[str] = "EHR access-log CSV/TSV exports from a directory (Epic access log and similar)"

    Options: ClassVar[type] = EhrCsvOptions

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: EhrCsvOptions = self.settings
        self.path = Path(opts.path)
        self.pattern: str = opts.pattern
        self.columns: dict[str, list[str]] = {
            str(col): [target] if isinstance(target, str) else list(target) for col, target in opts.columns.items()
        }
        self.value_maps: dict[str, Mapping[str, Any]] = dict(opts.value_maps)
        self.value_maps_casefold: bool = opts.value_maps_ignore_case
        if self.value_maps_casefold:
            self.value_maps = {
                key: {str(raw).casefold(): mapped for raw, mapped in table.items()}
                for key, table in self.value_maps.items()
            }
        self.constants: dict[str, Any] = dict(opts.constants)
        self.required: list[str] = list(opts.required)
        self.delimiter = self._delimiter_option(opts.delimiter)
        self.quotechar: str = opts.quotechar
        encoding = opts.encoding.lower().replace("_", "-")
        # The BOM only ever sits at offset 0 (in the header), rows are decoded with the plain codec.
        self.strip_bom = encoding in ("utf-8-sig", "utf8-sig", "utf-8")
        self.encoding = "utf-8" if encoding in ("utf-8-sig", "utf8-sig") else encoding
        self.fieldnames: list[str] | None = list(opts.fieldnames) if opts.fieldnames else None
        formats = [opts.timestamp_format] if isinstance(opts.timestamp_format, str) else opts.timestamp_format
        self.timestamps = TimestampParser(list(formats) if formats else None, ZoneInfo(opts.timezone))
        self.keep_original: bool = opts.keep_original
        self.max_row_bytes: int = opts.max_row_bytes
        #: seconds a file must stay unchanged before an unterminated last line counts as complete
        #: (exports that end without a final newline); None: never.
        self.complete_after_idle: float | None = opts.complete_after_idle_seconds
        self._clock: Callable[[], float] = time.time
        self._plans: dict[tuple[str, ...], Any] = {}
        self._required_columns = [
            (f, next((c for c, ts in self.columns.items() if f in ts), None)) for f in self.required
        ]

    @staticmethod
    def _delimiter_option(value: Any) -> str | None:
        if value in (None, "", "auto"):
            return None
        text = _DELIMITER_NAMES.get(str(value).lower(), str(value))
        if len(text) != 1:
            raise ConnectorConfigError(f"ehr-csv: delimiter must be one character or 'auto', got {value!r}")
        return text

    # --- directory scanning -------------------------------------------------------------------
    def _files(self) -> list[Path]:
        """Files to read, oldest first (exports land in order), name as the tie-break."""
        require_source(self.name, str(self.path))  # a typo'd or unreadable path is an error, not silence
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ConnectorConfigError(f"ehr-csv {self.name!r}: {self.path} is neither a file nor a directory")
        found = []
        with os.scandir(self.path) as it:
            for entry in it:
                if entry.is_file() and fnmatch.fnmatch(entry.name, self.pattern) and not entry.name.startswith("."):
                    found.append((entry.stat().st_mtime_ns, entry.name, Path(entry.path)))
        found.sort()
        return [p for _, _, p in found]

    @staticmethod
    def _identity(path: Path, st: os.stat_result) -> str:
        """Device + inode + hash of the first line: survives appends, changes when the file is replaced."""
        with path.open("rb") as fh:
            head = fh.readline(4096)
        return f"{st.st_dev}:{st.st_ino}:{hashlib.blake2b(head, digest_size=8).hexdigest()}"

    def read_to_end(self) -> None:
        """One-shot mode (``wardwatch ingest``, ``run --once``): an export's last row without newline is
        complete now, not after ``complete_after_idle_seconds``. The service never calls this: there, it waits."""
        self.complete_after_idle = 0.0

    # --- the contract -------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in ((cursor or {}).get("files") or {}).items()}
        batch = Batch(cursor=None, exhausted=True)
        budget = max(1, max_events)
        seen_names: set[str] = set()
        for path in self._files():
            seen_names.add(path.name)
            try:
                st = path.stat()
                identity = self._identity(path, st)
            except OSError:
                continue  # vanished between listing and opening: next poll
            entry = state.get(path.name)
            if entry is None or entry.get("identity") != identity or st.st_size < entry.get("offset", 0):
                entry = {"identity": identity, "offset": 0, "line": 0}
            if st.st_size <= entry["offset"] or entry.get("skip"):
                state[path.name] = entry
                continue
            used, more = self._read_file(path, st, entry, budget, batch)
            state[path.name] = entry
            budget -= used
            if budget <= 0 or more:
                batch.exhausted = False
                break
        # Forget files that are gone, so the cursor does not grow forever with rotated exports.
        if batch.exhausted:
            state = {k: v for k, v in state.items() if k in seen_names}
        batch.cursor = {"files": state}
        return batch

    def _read_file(
        self, path: Path, st: os.stat_result, entry: dict[str, Any], budget: int, batch: Batch
    ) -> tuple[int, bool]:
        """Read rows of one file from ``entry``'s offset into ``batch``; return (rows used, more pending)."""
        with path.open("rb") as fh:
            header_line = fh.readline(self.max_row_bytes)
            if self.fieldnames is None and not header_line.endswith(b"\n"):
                return 0, False  # not even the header is complete yet
            header, delimiter = self._header(header_line)
            if entry["offset"] == 0 and self.fieldnames is None:
                entry["offset"], entry["line"] = len(header_line), 1
                missing = self._missing_required(header)
                unmapped = [c for c in self.columns if c not in set(header)]
                if unmapped and not missing:
                    # Rows are still read (an export may drop an optional column), but the operator hears it
                    # once per file instead of finding the field silently empty.
                    batch.dead_letters.append(DeadLetter(
                        source=self.source_identity, location=f"{path.name}:1",
                        reason=f"columns.{unmapped[0]}: column {unmapped[0]!r} is not in the header of "
                               f"{path.name} (mapped but absent: {unmapped}); rows are read without it",
                        raw=header_line.decode(self.encoding, "replace")[:4000]))
                if missing:
                    # Every row would fail: say it once, for the header, and leave the file alone.
                    entry["skip"] = f"header lacks column(s) {missing} mapped to required fields"
                    batch.dead_letters.append(
                        DeadLetter(
                            source=self.source_identity,
                            reason=f"{entry['skip']}; header is {header}",
                            location=f"{path.name}:1",
                            raw=header_line.decode(self.encoding, "replace")[:4000],
                        )
                    )
                    return 0, False
            fh.seek(entry["offset"])
            idle = self.complete_after_idle is not None and (self._clock() - st.st_mtime) >= self.complete_after_idle
            feeder = _RowFeeder(
                self._records(
                    fh, entry["offset"], entry["line"], delimiter=delimiter, eof=st.st_size, take_tail=idle
                ),
                self.encoding,
            )
            reader = csv.reader(feeder, delimiter=delimiter, quotechar=self.quotechar, strict=True)
            used = 0
            make_event = self._event
            name = path.name
            while used < budget:
                try:
                    row = next(reader)
                except StopIteration:
                    return used, False
                except (csv.Error, UnicodeDecodeError, _OversizedRow) as exc:
                    rec = feeder.current
                    if rec is None:
                        return used, False
                    self._dead(batch, path, rec, f"unparseable row: {exc}", None)
                    entry["offset"], entry["line"] = rec.end_offset, rec.end_line
                    used += 1
                    # the reader may be wedged mid-record; a fresh one starts at the next record
                    reader = csv.reader(feeder, delimiter=delimiter, quotechar=self.quotechar, strict=True)
                    continue
                rec = feeder.current
                entry["offset"], entry["line"] = rec.end_offset, rec.end_line  # type: ignore[union-attr]
                used += 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                try:
                    batch.events.append(make_event(name, header, row, rec.raw, rec.line))  # type: ignore[union-attr]
                except RowError as exc:
                    self._dead(batch, path, rec, str(exc), exc.column)  # type: ignore[arg-type]
            return used, True

    def _missing_required(self, header: list[str]) -> list[str]:
        present = set(header)
        missing = []
        for field in self.required:
            cols = [c for c, ts in self.columns.items() if field in ts]
            if cols and not any(c in present for c in cols):
                missing.extend(cols)
        return missing

    def _header(self, line: bytes) -> tuple[list[str], str]:
        if self.strip_bom and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        text = line.decode(self.encoding, "replace").rstrip("\r\n")
        delimiter = self.delimiter or max(_CANDIDATE_DELIMITERS, key=text.count)
        if self.fieldnames is not None:
            return list(self.fieldnames), delimiter
        header = next(csv.reader([text], delimiter=delimiter, quotechar=self.quotechar), [])
        return [h.strip() for h in header], delimiter

    def _records(self, fh: Any, offset: int, line: int, *, delimiter: str, eof: int, take_tail: bool) -> Iterator[_Record]:
        """Yield complete CSV records from ``offset`` up to ``eof`` (the size seen at stat time).

        A record is one or more physical lines (a quoted field may hold newlines). Only bytes before ``eof``
        are considered, so a writer racing us cannot hand us a torn line; an unterminated last line is kept
        for the next poll unless ``take_tail`` (the file has been idle long enough to be finished).
        """
        quote = self.quotechar.encode(self.encoding)
        delim = delimiter.encode(self.encoding)
        pending = b""
        pending_lines = 0
        remaining = eof - offset
        buf = b""
        while remaining > 0:
            chunk = fh.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            buf = buf + chunk if buf else chunk
            start = 0
            find = buf.find
            while True:
                nl = find(b"\n", start)
                if nl < 0:
                    break
                piece = buf[start : nl + 1]
                start = nl + 1
                if pending:
                    piece = pending + piece
                pending_lines += 1
                # Fast path: no quote, or an even count of them -> the record ends here.
                if quote in piece and piece.count(quote) % 2 and _ends_in_quotes(piece, delim, quote):
                    if len(piece) <= self.max_row_bytes:
                        pending = piece
                        continue
                offset += len(piece)
                first = line + 1
                line += pending_lines
                pending, pending_lines = b"", 0
                yield _Record(piece.rstrip(b"\r\n"), first, offset, line, len(piece) > self.max_row_bytes)
            buf = buf[start:]
            if len(pending) + len(buf) > 2 * self.max_row_bytes:
                # Megabytes without a record end: not a log row. Dead-letter the head and go on from here
                # (the next line break resynchronises); memory stays bounded.
                head = (pending + buf)[:4000]
                offset += len(pending) + len(buf)
                first = line + 1
                line += pending_lines
                pending, pending_lines, buf = b"", 0, b""
                yield _Record(head, first, offset, line, True)
        tail = pending + buf
        if take_tail and tail.strip() and not _ends_in_quotes(tail, delim, quote):
            offset += len(tail)
            first = line + 1
            line += pending_lines + 1
            yield _Record(tail.rstrip(b"\r\n"), first, offset, line, False)

    def _plan(self, header: list[str]) -> list[tuple[int, str, list[tuple[str, Mapping[str, Any] | None]]]]:
        """Per header (cached): (row index, column, [(target field, value map)]) for each mapped column."""
        key = tuple(header)
        plan = self._plans.get(key)
        if plan is None:
            index = {name: i for i, name in enumerate(header)}
            plan = [
                (index[col], col, [(t, self.value_maps.get(t) or self.value_maps.get(col)) for t in targets])
                for col, targets in self.columns.items()
                if col in index
            ]
            self._plans[key] = plan
        return plan

    def _event(self, file_name: str, header: list[str], row: list[str], raw: bytes, line: int) -> Event:
        if len(row) != len(header):
            raise RowError(f"row has {len(row)} fields, header has {len(header)}", None)
        event: Event = {}
        fold = self.value_maps_casefold
        for i, column, targets in self._plan(header):
            value = row[i].strip()
            for target, table in targets:
                if target == "@timestamp":
                    try:
                        event["@timestamp"] = self.timestamps.parse(value)
                    except ValueError as exc:
                        raise RowError(f"column {column}: {exc}", column) from None
                    continue
                mapped: Any = value
                if table is not None:
                    mapped = table.get(value.casefold() if fold else value, value)
                if mapped != "":
                    event[target] = mapped
        for field, column in self._required_columns:
            if event.get(field) in (None, ""):
                raise RowError(f"required field {field} is empty (column {column})", column)
        if self.constants:
            for key, value in self.constants.items():
                event.setdefault(key, value)
        event["event.dataset"] = DATASET
        event["event.kind"] = "event"
        # the row's bytes + its line number, never the file name: a copied or renamed export keeps its ids
        event["event.id"] = record_id(raw, f"line:{line}")
        event["log.file.path"] = file_name
        if self.keep_original:
            event["event.original"] = raw.decode(self.encoding, "replace")
        return event

    def _dead(self, batch: Batch, path: Path, rec: _Record, reason: str, column: str | None) -> None:
        location = f"{path.name}:{rec.line}" + (f" column {column}" if column else "")
        batch.dead_letters.append(
            DeadLetter(
                source=self.source_identity,
                reason=reason,
                location=location,
                raw=rec.raw.decode(self.encoding, "replace")[:4000],
            )
        )


class _OversizedRow(ValueError):
    pass


def _ends_in_quotes(record: bytes, delim: bytes, quote: bytes) -> bool:
    """True if ``record`` ends inside a quoted field (so the record continues on the next line).

    Only called for lines with an odd number of quote characters: a quote opens a quoted field only at the
    start of a field, so a stray quote inside an unquoted value (``5"7``) does not swallow the next rows.
    """
    q, d = quote[0], delim[0]
    in_quotes = False
    field_start = True
    i, n = 0, len(record)
    while i < n:
        c = record[i]
        if in_quotes:
            if c == q:
                if i + 1 < n and record[i + 1] == q:
                    i += 1
                else:
                    in_quotes = False
        elif c == q and field_start:
            in_quotes = True
            field_start = False
        else:
            field_start = c == d or c == 10
        i += 1
    return in_quotes


class _RowFeeder:
    """Feeds decoded records to ``csv.reader`` one at a time and remembers which record is current.

    Each record is complete, so the reader consumes exactly one record per row it returns; that keeps byte
    offsets and line numbers in step with the rows.
    """

    def __init__(self, records: Iterator[_Record], encoding: str):
        self.records = records
        self.encoding = encoding
        self.current: _Record | None = None

    def __iter__(self) -> "_RowFeeder":
        return self

    def __next__(self) -> str:
        rec = next(self.records)
        self.current = rec
        if rec.oversized:
            raise _OversizedRow("row longer than max_row_bytes")
        return rec.raw.decode(self.encoding)
