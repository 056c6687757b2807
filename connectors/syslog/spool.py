"""A durable, append-only spool: what a push source has accepted survives ``kill -9`` and power loss.

Why a spool: syslog senders do not wait for us. Whatever a listener reads from a socket is written here and
``fsync``'d before it counts as accepted; the engine then *pulls* from the spool like from a file, with a
cursor it commits together with the events (see ``connectors/base.py``). A crash between receive and commit
therefore loses nothing and, because event ids are deterministic, doubles nothing.

Layout: ``<dir>/<20-digit sequence>.spool`` segment files. A writer never appends to a segment it did not
create: after a restart it opens a fresh segment, so an old segment's end is final and a torn tail there is
known to be garbage rather than a write still in flight.

Record on disk::

    MAGIC (4) | length (u32 BE) | crc32(length bytes + body) (u32 BE) | body (length bytes)
    body = kind (u8) | received_at (f64 BE, epoch s) | peer_len (u16) | peer | reason_len (u16) | reason | data

A torn write (incomplete record at the end of a final segment) or a CRC mismatch is reported as
:class:`CorruptRecord` and skipped; the reader resynchronises on the next ``MAGIC``. ``MAGIC`` starts with
0xFF, a byte that never occurs in UTF-8, so false matches inside text payloads are rare and, if they occur,
caught by the CRC.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine.private_files import create_private_fd, private_dir

MAGIC = b"\xffWS\x01"
_HEADER = struct.Struct(">4sII")
_BODY_HEAD = struct.Struct(">Bd")
_U16 = struct.Struct(">H")
HEADER_SIZE = _HEADER.size
#: A length above this is corruption, not a record (records hold one syslog message, <= a few MiB).
MAX_RECORD_BYTES = 16 * 1024 * 1024
SUFFIX = ".spool"

KIND_MESSAGE = 1
KIND_ERROR = 2  # a framing error seen by a listener, kept so read() can dead-letter it durably

_READ_CHUNK = 1 << 20
TORN = "torn spool record (incomplete write before a crash); skipped"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One accepted unit: a syslog message (``KIND_MESSAGE``) or a listener-side error (``KIND_ERROR``)."""

    data: bytes
    peer: str = ""
    received_at: float = 0.0
    kind: int = KIND_MESSAGE
    reason: str = ""

    def encode(self) -> bytes:
        peer = self.peer.encode("utf-8", "replace")[:65535]
        reason = self.reason.encode("utf-8", "replace")[:65535]
        body = b"".join((
            _BODY_HEAD.pack(self.kind, self.received_at or time.time()),
            _U16.pack(len(peer)), peer, _U16.pack(len(reason)), reason, self.data,
        ))
        length = struct.pack(">I", len(body))
        return MAGIC + length + struct.pack(">I", zlib.crc32(length + body)) + body

    @classmethod
    def decode(cls, body: bytes) -> "SpoolRecord":
        kind, received_at = _BODY_HEAD.unpack_from(body, 0)
        pos = _BODY_HEAD.size
        (plen,) = _U16.unpack_from(body, pos)
        peer = body[pos + 2 : pos + 2 + plen].decode("utf-8", "replace")
        pos += 2 + plen
        (rlen,) = _U16.unpack_from(body, pos)
        reason = body[pos + 2 : pos + 2 + rlen].decode("utf-8", "replace")
        pos += 2 + rlen
        return cls(data=body[pos:], peer=peer, received_at=received_at, kind=kind, reason=reason)


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """A record read back, with where it lives (for dead-letter locations)."""

    record: SpoolRecord
    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class CorruptRecord:
    """Bytes that are not a valid record (torn write, bit rot). Skipped; reported once."""

    reason: str
    segment: int
    offset: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class SpoolCursor:
    segment: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"segment": self.segment, "offset": self.offset}

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> "SpoolCursor":
        if not value:
            return cls()
        try:
            return cls(int(value["segment"]), int(value["offset"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"not a spool cursor: {value!r}") from None


@dataclass(slots=True)
class SpoolRead:
    items: list[SpoolItem | CorruptRecord]
    cursor: SpoolCursor
    exhausted: bool


class Spool:
    """Writer and reader over one spool directory.

    One writer per directory (``open_writer``); any number of readers, in this or another process. A
    reader in the writer's process sees only what is fsync'd (``committed``); a reader elsewhere treats an
    incomplete record at the end of the newest segment as "still being written" and waits for it.
    """

    def __init__(self, directory: str | os.PathLike[str], *, segment_bytes: int = 64 * 1024 * 1024,
                 fsync: bool = True):
        self.directory = Path(directory)
        private_dir(self.directory)  # spooled messages carry PHI: 0700 dir, 0600 segments
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._active: int | None = None
        self._committed = 0  # bytes of the active segment that are durable
        self.records_written = 0

    # --- segments -------------------------------------------------------------------------------------
    def segments(self) -> list[int]:
        found = []
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(SUFFIX) and name[: -len(SUFFIX)].isdigit():
                found.append(int(name[: -len(SUFFIX)]))
        return sorted(found)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}{SUFFIX}"

    # --- writing --------------------------------------------------------------------------------------
    def open_writer(self) -> None:
        with self._lock:
            if self._fd is None:
                existing = self.segments()
                self._open_segment((existing[-1] + 1) if existing else 1)

    def _open_segment(self, segment: int) -> None:
        fd = create_private_fd(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        self._fd, self._active, self._committed = fd, segment, 0
        if self.fsync:
            # Make the new directory entry durable too, or a crash could lose the whole file.
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def append(self, records: Sequence[SpoolRecord]) -> None:
        """Write records and fsync them (one fsync per call: callers pass what one recv() produced)."""
        if not records:
            return
        blob = b"".join(r.encode() for r in records)
        with self._lock:
            if self._fd is None:
                raise RuntimeError("spool writer is not open")
            if self._committed and self._committed + len(blob) > self.segment_bytes:
                self._rotate()
            view = memoryview(blob)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.fsync:
                os.fdatasync(self._fd)
            self._committed += len(blob)
            self.records_written += len(records)

    def _rotate(self) -> None:
        assert self._fd is not None and self._active is not None
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._open_segment(self._active + 1)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self.fsync:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                self._active = None

    # --- reading --------------------------------------------------------------------------------------
    def _visible_size(self, segment: int) -> int:
        with self._lock:
            if segment == self._active:
                return self._committed
        try:
            return os.stat(self._path(segment)).st_size
        except FileNotFoundError:
            return 0

    def read(self, cursor: SpoolCursor | None, max_items: int) -> SpoolRead:
        """Up to ``max_items`` records (and corrupt spans) after ``cursor``, plus the cursor after them."""
        cursor = cursor or SpoolCursor()
        items: list[SpoolItem | CorruptRecord] = []
        segments = [s for s in self.segments() if s >= cursor.segment]
        if not segments:
            return SpoolRead(items, cursor, True)
        if segments[0] != cursor.segment:
            cursor = SpoolCursor(segments[0], 0)
        for index, segment in enumerate(segments):
            if segment != cursor.segment:
                cursor = SpoolCursor(segment, 0)
            final = index + 1 < len(segments)
            offset, done = self._read_segment(segment, cursor.offset, final, max_items - len(items), items)
            cursor = SpoolCursor(segment, offset)
            if not done:
                # Stopped early: either the batch is full or a record is still being written.
                return SpoolRead(items, cursor, len(items) < max_items)
            if not final:
                return SpoolRead(items, cursor, True)
            if len(items) >= max_items:
                # Segment finished exactly at the limit: point past it so acknowledge() can drop it.
                return SpoolRead(items, SpoolCursor(segments[index + 1], 0), False)
        return SpoolRead(items, cursor, True)

    def _read_segment(self, segment: int, offset: int, final: bool, room: int,
                      items: list[SpoolItem | CorruptRecord]) -> tuple[int, bool]:
        """Append items from one segment. Returns (offset reached, True if the segment's data ran out).

        ``final`` says a newer segment exists, so nothing will ever be appended here again: an incomplete
        record at the end is a torn write and is skipped. In the newest segment it may be a write in
        flight (another process), so the reader stops in front of it and tries again later.
        """
        limit = self._visible_size(segment)
        if offset >= limit:
            return offset, True
        try:
            handle = open(self._path(segment), "rb")
        except FileNotFoundError:
            return offset, True
        with handle:
            win = _Window(handle, offset, limit)
            while room > 0:
                start = win.offset
                if not win.ensure(HEADER_SIZE):
                    if win.available == 0:
                        return start, True
                    if not final:
                        return start, False
                    raw = win.skip_to_magic()
                    items.append(CorruptRecord(TORN, segment, start, raw))
                    room -= 1
                    continue
                magic, length, crc = _HEADER.unpack_from(win.buf, win.pos)
                if magic != MAGIC or length > MAX_RECORD_BYTES:
                    raw = win.skip_to_magic()
                    items.append(CorruptRecord("bytes in the spool that are not a record (bad magic or length)",
                                               segment, start, raw))
                    room -= 1
                    continue
                if not win.ensure(HEADER_SIZE + length):
                    if not final:
                        return start, False
                    raw = win.skip_to_magic()
                    items.append(CorruptRecord(TORN, segment, start, raw))
                    room -= 1
                    continue
                p = win.pos
                body = win.buf[p + HEADER_SIZE : p + HEADER_SIZE + length]
                record: SpoolRecord | None = None
                if zlib.crc32(win.buf[p + 4 : p + 8] + body) == crc:
                    try:
                        record = SpoolRecord.decode(body)
                    except (struct.error, ValueError):
                        record = None
                if record is None:
                    raw = win.skip_to_magic()
                    items.append(CorruptRecord("spool record failed its CRC check (corrupt)", segment, start, raw))
                else:
                    win.pos += HEADER_SIZE + length
                    items.append(SpoolItem(record, segment, start))
                room -= 1
            return win.offset, not win.ensure(1)

    # --- housekeeping ---------------------------------------------------------------------------------
    def acknowledge(self, cursor: SpoolCursor) -> list[int]:
        """Delete segments wholly before ``cursor`` (the engine has committed past them)."""
        removed = []
        with self._lock:
            active = self._active
        for segment in self.segments():
            if segment >= cursor.segment or segment == active:
                break
            try:
                os.unlink(self._path(segment))
                removed.append(segment)
            except FileNotFoundError:
                pass
        return removed


class _Window:
    """A sliding read buffer over [offset, limit) of one segment file (memory bounded by one record)."""

    def __init__(self, handle: Any, offset: int, limit: int):
        self.handle = handle
        self.buf = b""
        self.pos = 0
        self.base = offset  # file offset of buf[0]
        self.limit = limit
        handle.seek(offset)

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def available(self) -> int:
        return self.limit - self.offset

    def ensure(self, n: int) -> bool:
        """Have at least ``n`` bytes buffered from ``pos``, reading ahead; False if the data ends first."""
        while len(self.buf) - self.pos < n:
            file_end = self.base + len(self.buf)
            if file_end >= self.limit:
                return False
            want = min(self.limit - file_end, max(_READ_CHUNK, n - (len(self.buf) - self.pos)))
            data = self.handle.read(want)
            if not data:
                self.limit = file_end
                return False
            self.buf = self.buf[self.pos :] + data
            self.base += self.pos
            self.pos = 0
        return True

    def skip_to_magic(self) -> bytes:
        """Advance to the next MAGIC after the current position (or the end); return the skipped bytes."""
        skipped = bytearray()
        search_from = self.pos + 1
        while True:
            idx = self.buf.find(MAGIC, search_from)
            if idx != -1:
                skipped += self.buf[self.pos : idx][: 65536 - len(skipped)]
                self.pos = idx
                return bytes(skipped)
            # keep the last len(MAGIC)-1 bytes: a MAGIC may straddle the chunk boundary
            keep_from = max(self.pos + 1, len(self.buf) - (len(MAGIC) - 1))
            if len(skipped) < 65536:
                skipped += self.buf[self.pos : keep_from][: 65536 - len(skipped)]
            self.pos = keep_from
            search_from = self.pos
            if not self.ensure(len(self.buf) - self.pos + 1):
                skipped += self.buf[self.pos :][: max(0, 65536 - len(skipped))]
                self.pos = len(self.buf)
                return bytes(skipped)


def iter_records(items: Iterable[SpoolItem | CorruptRecord]) -> Iterable[SpoolItem]:
    return (item for item in items if isinstance(item, SpoolItem))
