"""The ``evtx`` connector: Windows ``.evtx`` files (exports, archived logs, a drop-in directory), all channels.

Why the ``evtx`` package (pyevtx-rs) and no parser of our own: EVTX is binary XML with templates, string
tables and per-chunk checksums; pyevtx-rs is maintained, fast (Rust) and is what Chainsaw/Hayabusa build on.
This module is only the transport: which files, which records are new, what a broken one becomes. The
record -> event mapping is :mod:`connectors.windows.evtx_records` + :func:`connectors.windows.record.normalise_record`.

**File identity.** An EVTX file is a stream of records; what makes two files "the same" for the cursor is
that they start with the same record, not their name or inode: an export renamed, moved into the drop-in
folder, or copied next to itself must not be ingested again, and a later export of the same log (the same
first record, more records after it) should continue where the first one stopped. So a file's identity is
a hash of the first bytes of its first record (file offset 4608 .. 4864, i.e. the first chunk's first record
header and the start of its binary XML; a file too small to hold one is identified by all its bytes).

**Cursor.** Per identity, a few *tips*: (items consumed in iteration order, hash of the last item). Items
are records, and chunks pyevtx-rs could not parse. Resuming walks the file to the furthest tip whose item
hash matches at that position and continues after it; no tip matches: the file is read from its start
(``event.id`` is Computer + Channel + EventRecordID, so the store drops what it already has). That covers
a rename or a copy (the tip matches at the end: nothing new), a later, longer export of the same log (it
continues), and two different exports that happen to start with the same record, e.g. the same log
filtered by two event ids (each file gets its own tip; nothing is lost). Which file last reached which tip
is also kept (by path, size, mtime, inode), so an unchanged file is not parsed again on the next poll.

**Growing files.** pyevtx-rs yields only complete chunks, so the records of a chunk still being written
appear on a later poll, after the consumed ones. A chunk that fails to parse while its file was modified
within ``settle_seconds`` is not dead-lettered: reading that file stops there and retries next poll. A
file that is settled (or a one-shot run: ``wardwatch ingest``/``parse``) dead-letters the chunk, naming the
file, the item position and the last good record id, and goes on with the next chunk.

**Drop-in directories.** Every poll lists the path again; a new file is read from its start. Unchanged files
(same size, mtime and inode as when last read to the end) are not parsed again.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import hashlib
import logging
import os
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Container, Iterator, Mapping

import orjson
from evtx import PyEvtxParser

from connectors.availability import require_source
from connectors.base import Batch, Connector
from connectors.ndjson import check_file_options
from connectors.windows.evtx_records import EvtxRecordError, record_from_evtx
from connectors.windows.record import normalise_record
from engine.events import DATASET, Event, format_timestamp
from engine.identity import record_id, windows_id, windows_identity
from engine.plugins import InvalidOption, path_option
from engine.store.base import DeadLetter

log = logging.getLogger(__name__)

SUFFIX = ".evtx"
CURSOR_VERSION = 1
#: Where the first chunk's first record starts (file header block 4096 + chunk header 512) and how much of it
#: identifies the file.
FIRST_RECORD_OFFSET = 4096 + 512
IDENTITY_BYTES = 256
#: Identities remembered (oldest forgotten first): bounds the cursor at ~100 bytes per file ever seen.
MAX_STREAMS = 20000
MAX_OPEN_PARSERS = 8
#: Read positions remembered per identity (several files may start with the same record: filtered exports).
MAX_TIPS = 16
MAX_DEAD_LETTER_RAW = 65536


@dataclass
class EvtxOptions:
    """Options of the ``evtx`` connector (docs/connectors/evtx.md)."""

    path: str = path_option(dataclasses.MISSING)
    #: a directory is searched in its subdirectories too
    recursive: bool = True
    #: only these channels (case-insensitive); empty: all
    include_channels: list[str] = dataclasses.field(default_factory=list)
    exclude_channels: list[str] = dataclasses.field(default_factory=list)
    #: ``event.dataset`` for every event; unset: from the channel (``windows.security``, ``windows.sysmon``...)
    dataset: str | None = None
    #: a file modified this recently whose last chunk does not parse is retried instead of dead-lettered
    settle_seconds: float = 10.0
    #: pyevtx-rs worker threads per file (0: one per core)
    parser_threads: int = 1

    def __post_init__(self) -> None:
        check_file_options(self)
        if self.parser_threads < 0:
            raise InvalidOption("parser_threads", "must be an integer >= 0")
        for key in ("include_channels", "exclude_channels"):
            if any(type(c) is not str or not c for c in getattr(self, key)):
                raise InvalidOption(key, "must be a list of channel names")


def file_identity(path: str, size: int) -> str:
    """The identity of an EVTX file's record stream (module docstring): hash of its first record's start."""
    with open(path, "rb") as fh:
        if size >= FIRST_RECORD_OFFSET + IDENTITY_BYTES:
            fh.seek(FIRST_RECORD_OFFSET)
            head, kind = fh.read(IDENTITY_BYTES), b"r"
        else:
            head, kind = fh.read(), b"s"
    return hashlib.blake2b(kind + head, digest_size=12).hexdigest()


def discover(pattern: str, recursive: bool) -> list[str]:
    """A file, a directory (``*.evtx``, sorted, subdirectories when ``recursive``) or a glob."""
    if os.path.isdir(pattern):
        found: list[str] = []
        for root, dirs, files in os.walk(pattern):
            dirs.sort()
            found.extend(os.path.join(root, n) for n in files if n.lower().endswith(SUFFIX))
            if not recursive:
                break
        return sorted(found)
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    return [pattern] if os.path.isfile(pattern) else []


def load_cursor(cursor: Mapping[str, Any] | None) -> dict[str, Any]:
    """A private deep copy (the caller's cursor is the committed one); an unknown shape starts over."""
    if (not cursor or cursor.get("v") != CURSOR_VERSION or not isinstance(cursor.get("streams"), dict)
            or not isinstance(cursor.get("seen"), dict)):
        return {"v": CURSOR_VERSION, "streams": {}, "seen": {}}
    return copy.deepcopy(dict(cursor))


@dataclass
class _OpenParser:
    """A pyevtx-rs iterator kept between ``read`` calls, so a big file is not re-parsed per batch."""

    path: str
    identity: str
    items: Iterator[Any]
    #: items consumed, the hash of the last one and its header record id (for dead-letter locations)
    position: int
    last: str
    last_record: int | None


def _reraise_fatal(exc: BaseException) -> None:
    """pyevtx-rs reports a Rust panic as ``PanicException`` (a BaseException): that is one bad file or
    chunk, like a RuntimeError. Interrupts and exits still stop the process."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        raise exc


def _item_hash(item: Any) -> str:
    """What a tip remembers of an item: its header record id, time and JSON (or the chunk error text)."""
    if isinstance(item, BaseException):
        text = f"error\x00{item}"
    else:
        text = f"{item.get('event_record_id')}\x00{item.get('timestamp')}\x00{item.get('data')}"
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _hash_stops(tips: list[list[Any]]) -> Container[int]:
    """Positions at which ``_read_file`` hashes the record it consumed at once: where a stored tip is, an
    intermediate tip could equal it (tests replace this with "every position", the one-hash-per-record way)."""
    return {t[0] for t in tips}


class EvtxConnector(Connector):
    """Windows ``.evtx`` files: a file, a directory tree (drop-in folder, watched) or a glob; all channels."""

    type_name = "evtx"
    summary = "Windows .evtx files and drop-in directories (pyevtx-rs), all channels"
    Options: ClassVar[type] = EvtxOptions
    reads_in_worker: ClassVar[bool] = True  # state: open pyevtx-rs iterators, re-walked to the cursor's tips

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: EvtxOptions = self.settings
        self.path = opts.path
        self.recursive = opts.recursive
        self.include = frozenset(c.casefold() for c in opts.include_channels)
        self.exclude = frozenset(c.casefold() for c in opts.exclude_channels)
        self.dataset = opts.dataset
        self.settle_seconds = opts.settle_seconds
        self.parser_threads = opts.parser_threads
        self._one_shot = False
        self._ends: Counter[tuple[Any, ...]] = Counter()
        self._open: OrderedDict[str, _OpenParser] = OrderedDict()

    def read_to_end(self) -> None:
        """One-shot mode (``wardwatch ingest``/``parse``, ``run --once``): files are complete as they are,
        so a chunk that does not parse is dead-lettered at once instead of waiting for its writer."""
        self._one_shot = True

    def close(self) -> None:
        self._open.clear()

    # -- reading -------------------------------------------------------------------------------------------

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        state = load_cursor(cursor)
        batch = Batch(cursor=state, exhausted=True)
        if max_events <= 0:
            batch.exhausted = False
            return batch
        paths = discover(require_source(self.name, self.path), self.recursive)
        seen: dict[str, Any] = state["seen"]
        for gone in set(seen) - set(paths):
            del seen[gone]
        budget = max_events
        # where files ended last time (tip -> how many files): a tip another file ends at is not moved on
        self._ends = Counter(tuple(m["tip"]) for m in seen.values() if m.get("tip"))
        for path in paths:
            budget -= self._read_file(path, state, batch, budget)
            if budget <= 0:
                batch.exhausted = False
                break
        streams: dict[str, Any] = state["streams"]
        while len(streams) > MAX_STREAMS:
            del streams[next(iter(streams))]
        return batch

    def _read_file(self, path: str, state: dict[str, Any], batch: Batch, budget: int) -> int:
        """Read new items of one file into ``batch``; returns how many events + dead letters it added."""
        seen, streams = state["seen"], state["streams"]
        mark = seen.get(path)
        try:
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
            # same size, mtime and inode as last time: same content, no need to read its first record again
            identity = mark["id"] if mark and mark.get("stamp") == stamp else file_identity(path, st.st_size)
        except OSError as exc:
            log.warning("evtx connector %r: cannot read %s: %s", self.name, path, exc.strerror or exc)
            return 0
        tips: list[list[Any]] = streams.pop(identity, None) or []
        streams[identity] = tips  # most recently used last (eviction order)
        if (mark and mark.get("stamp") == stamp and mark.get("id") == identity
                and (mark.get("tip") is None or mark["tip"] in tips)):
            return 0  # read to its end (or found unreadable) before, and unchanged since
        settling = not self._one_shot and (time.time() - st.st_mtime) < self.settle_seconds
        parser = self._items(path, identity, tips, batch, settling)
        if parser is None:
            if not settling:
                seen[path] = {"stamp": stamp, "id": identity, "tip": None}
            return 0
        tip = [parser.position, parser.last]
        # The tip this file resumes from is replaced as it moves on, unless another file ends there
        # (a shorter copy): then that file's tip stays, so it is not read again.
        own = tuple(mark["tip"]) if mark and mark.get("tip") else None
        if self._ends.get(tuple(tip), 0) - (own == tuple(tip)) > 0:
            tip = None  # type: ignore[assignment]
        # Records are consumed without hashing each one: only the item a tip ends at is hashed (issue 10:
        # ~0.06 CPU-s of blake2b over 24,661 records' JSON per SigmaHQ run). ``unhashed`` records were
        # consumed since the last ``_advance``, ``record`` is the last of them; ``_settle`` advances by all of
        # them at once, exactly as one ``_advance`` each would: the moving tip keeps its place in ``tips``
        # unless an intermediate (position, digest) could equal another stored tip, so at every position
        # another tip has (``stops``) the record is hashed and advanced on its own.
        stops = _hash_stops(tips)
        unhashed, record, added = 0, None, 0
        try:
            while added < budget:
                try:
                    record = next(parser.items)
                except StopIteration:
                    tip, unhashed = self._settle(tips, tip, parser, unhashed, record), 0
                    self._open.pop(path, None)
                    seen[path] = {"stamp": stamp, "id": identity, "tip": tip if tip and tip[0] else None}
                    return added
                except BaseException as exc:  # noqa: BLE001 - RuntimeError/OSError per bad chunk; a Rust panic too
                    _reraise_fatal(exc)
                    tip, unhashed = self._settle(tips, tip, parser, unhashed, record), 0
                    if settling:
                        self._open.pop(path, None)  # retry from the cursor on the next poll
                        return added
                    batch.dead_letters.append(self._dead_letter(
                        path, f"item {parser.position + 1} (after record {parser.last_record})",
                        f"unreadable chunk: {exc}", ""))
                    tip = self._advance(tips, tip, parser, _item_hash(exc), None)
                    added += 1
                    continue
                unhashed += 1
                if parser.position + unhashed in stops:
                    tip, unhashed = self._settle(tips, tip, parser, unhashed, record), 0
                result = self._to_event(path, record)
                if result is None:
                    continue
                if type(result) is dict:
                    batch.events.append(result)
                else:
                    batch.dead_letters.append(result)  # type: ignore[arg-type]
                added += 1
            return added
        finally:  # every way out (a budget's end, a mapping bug raising) leaves the parser and tips exact
            if unhashed:
                self._settle(tips, tip, parser, unhashed, record)

    @classmethod
    def _settle(cls, tips: list[list[Any]], tip: list[Any] | None, parser: _OpenParser, unhashed: int,
                record: Any) -> list[Any] | None:
        """``unhashed`` consumed records, ``record`` the last: one ``_advance`` for all of them (see above)."""
        if not unhashed:
            return tip
        parser.position += unhashed - 1
        return cls._advance(tips, tip, parser, _item_hash(record), record.get("event_record_id"))

    @staticmethod
    def _advance(tips: list[list[Any]], tip: list[Any] | None, parser: _OpenParser, digest: str,
                 record: int | None) -> list[Any]:
        """Consume one item: the file's tip moves on (replacing the one it resumed from)."""
        parser.position += 1
        parser.last = digest
        parser.last_record = record
        new = [parser.position, digest]
        if tip is not None and tip in tips:
            tips[tips.index(tip)] = new
        else:
            tips.append(new)
            del tips[:-MAX_TIPS]
        return new

    def _items(self, path: str, identity: str, tips: list[list[Any]], batch: Batch,
               settling: bool) -> _OpenParser | None:
        """An iterator positioned after the furthest known tip this file contains (reusing the open one),
        or None when the file cannot be opened (dead-lettered unless still settling)."""
        held = self._open.get(path)
        if held is not None and held.identity == identity and [held.position, held.last] in tips:
            self._open.move_to_end(path)
            return held
        try:
            items = PyEvtxParser(path, self.parser_threads).records_json()
        except BaseException as exc:  # noqa: BLE001 - OSError/RuntimeError: not EVTX, truncated header
            _reraise_fatal(exc)
            if not settling:
                batch.dead_letters.append(self._dead_letter(path, "file header", f"not a readable EVTX file: {exc}", ""))
            return None
        parser = _OpenParser(path, identity, items, 0, "", None)
        want = {n: h for n, h in tips}
        furthest = max(want, default=0)
        if furthest:
            # Walk to the furthest tip this file holds; a tip that does not match means another file with
            # the same first record (a filtered export) or rewritten content: re-open and start earlier.
            matched, position, last, record = 0, 0, None, None
            for pos in range(1, furthest + 1):
                try:
                    item = next(items)
                    digest, record = _item_hash(item), item.get("event_record_id")
                except StopIteration:
                    break
                except BaseException as exc:  # noqa: BLE001 - a bad chunk occupies one position, as when read
                    _reraise_fatal(exc)
                    digest, record = _item_hash(exc), None
                if want.get(pos) == digest:
                    matched, last = pos, (digest, record)
                position = pos
            if matched == position and last is not None:
                parser.position, parser.last, parser.last_record = matched, last[0], last[1]
            elif matched:
                items = PyEvtxParser(path, self.parser_threads).records_json()
                for _ in range(matched):
                    try:
                        next(items)
                    except StopIteration:
                        break
                    except BaseException as exc:  # noqa: BLE001 - positions as above
                        _reraise_fatal(exc)
                parser.items, parser.position, parser.last, parser.last_record = items, matched, last[0], last[1]
            else:
                parser.items = PyEvtxParser(path, self.parser_threads).records_json()
        self._open[path] = parser
        while len(self._open) > MAX_OPEN_PARSERS:
            self._open.popitem(last=False)
        return parser

    def _to_event(self, path: str, record: Mapping[str, Any]) -> Event | DeadLetter | None:
        """One pyevtx-rs record -> an event, a dead letter, or None when its channel is filtered out."""
        rid = record.get("event_record_id")
        data = record.get("data")
        where = f"record {rid}"
        try:
            doc = orjson.loads(data)  # type: ignore[arg-type]
            windows = record_from_evtx(doc, record.get("timestamp"))
        except EvtxRecordError as exc:
            return self._dead_letter(path, where, str(exc), data)
        except orjson.JSONDecodeError as exc:
            return self._dead_letter(path, where, f"pyevtx-rs gave invalid JSON: {exc}", data)
        except Exception as exc:  # noqa: BLE001 - a mapping bug must cost one record, not the source
            return self._dead_letter(path, where, f"internal error: {type(exc).__name__}: {exc}", data)
        channel = windows.channel.casefold()
        if (self.include and channel not in self.include) or channel in self.exclude:
            return None
        event = normalise_record(windows)
        if self.dataset:
            event[DATASET] = self.dataset
        ident = windows_identity(event)
        event["event.id"] = windows_id(*ident) if ident else record_id(data or b"", f"evtx:{rid}")
        return event

    def _dead_letter(self, path: str, where: str, reason: str, raw: Any) -> DeadLetter:
        text = raw if type(raw) is str else ""
        return DeadLetter(
            source=self.source_identity,
            reason=reason,
            location=f"{path}: {where}",
            raw=text[:MAX_DEAD_LETTER_RAW],
            received_at=format_timestamp(datetime.now(timezone.utc)),
        )
