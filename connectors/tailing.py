"""Following growing, rotating files line by line: the part every file connector shares.

Why a module of its own: the NDJSON connector and the FHIR file connector (for ``*.ndjson`` exports) must
agree on what "a line was consumed" means, or a crash would lose or double records in one of them.

The position in each file is a small JSON-serialisable dict (kept under the connector's cursor)::

    {"dev": 64768, "ino": 1234, "offset": 5120, "line": 42, "fp": "<blake2b hex>", "fp_len": 256}

* ``offset``/``line``: the byte offset just after the last consumed line and how many lines that is, so a
  dead letter can name ``path:line``.
* ``dev``/``ino``: which file the offset belongs to. A different inode at the same path means the file
  was rotated (renamed away and re-created): the new file is read from 0.
* ``fp``/``fp_len``: a hash of the first ``fp_len`` (<= 256) bytes. A different hash at the same inode
  means the inode was reused for a new file (or rewritten in place): read from 0.
* A file shorter than ``offset`` was truncated (``copytruncate``): read from 0.

Only complete lines (ending in ``\\n``) are consumed; a partial last line waits for its newline (the service
follows files that writers are still appending to). A one-shot run (``wardwatch ingest``, ``run --once``)
calls :meth:`LineFollower.read_to_end` instead: it reads the file as it is now, so a final line without
newline is a complete record (unless the file is still growing while we read). A line
longer than ``max_line_bytes`` is never buffered whole: it is skipped to its newline and reported
(``Line.oversized``) so the caller can dead-letter it; memory stays bounded by the chunk size.

Rotation without loss: while the process runs, files are kept open (a bounded number). When a path's inode
changes and we still hold the old inode open, its remaining complete lines are read first, then the new
file from 0. After a restart the old inode is gone from our view; its unread tail is lost unless the
rotated name also matches the configured path (then it is read as its own file, and deterministic event
ids make any overlap land on existing copies).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import stat as stat_mod
import time
from collections import OrderedDict
from typing import Any, BinaryIO, Iterable, Iterator, NamedTuple, Sequence

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 256
DEFAULT_CHUNK_BYTES = 1 << 20
DEFAULT_MAX_LINE_BYTES = 1 << 20
#: How much of an oversized line is kept for the dead letter (enough to recognise it, not to blow memory).
OVERSIZED_PREFIX_BYTES = 4096


class Line(NamedTuple):
    """One complete line. ``data`` has no trailing ``\\n`` (nor ``\\r``); ``number`` is 1-based.

    ``oversized`` is the full length of a line that exceeded ``max_line_bytes`` (then ``data`` is only its
    first bytes), else 0.
    """

    path: str
    number: int
    data: bytes
    oversized: int = 0


#: ``Line(path, number, data)`` without NamedTuple's Python-level ``__new__`` (one per event, so it counts).
_new_line = tuple.__new__


def discover(pattern: str, suffixes: Sequence[str]) -> list[str]:
    """Resolve a ``path`` option: a file, a directory (recursive, by suffix) or a glob. Sorted, so the read
    order is deterministic; missing paths give an empty list (the source may appear later)."""
    if os.path.isdir(pattern):
        found: list[str] = []
        for root, dirs, files in os.walk(pattern):
            dirs.sort()
            for name in files:
                if name.lower().endswith(tuple(suffixes)):
                    found.append(os.path.join(root, name))
        return sorted(found)
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    return [pattern] if os.path.isfile(pattern) else []


def _fingerprint(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def new_position(st: os.stat_result) -> dict[str, Any]:
    return {"dev": st.st_dev, "ino": st.st_ino, "offset": 0, "line": 0, "fp": "", "fp_len": 0}


class LineFollower:
    """Reads complete lines from many files, resuming from and updating a per-path position dict.

    ``follow`` mutates ``positions`` in place *before* yielding each line, so whenever the caller stops
    pulling, ``positions`` covers exactly the lines it received - that is what makes the cursor exact.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_open_files: int = 32,
        eof_grace_seconds: float | None = None,
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = max(chunk_bytes, 4096)
        self.max_open_files = max_open_files
        #: When set, a final line without ``\\n`` is consumed once the file has not changed for this long
        #: (for writers that never end their last line). None: such a line waits forever, as specified.
        self.eof_grace_seconds = eof_grace_seconds
        self._handles: OrderedDict[tuple[int, int], BinaryIO] = OrderedDict()

    # --- handles ----------------------------------------------------------------------------------
    def _handle(self, path: str, dev: int, ino: int) -> BinaryIO | None:
        """An open handle on exactly inode (dev, ino), or None when the path no longer holds it."""
        key = (dev, ino)
        handle = self._handles.get(key)
        if handle is not None:
            self._handles.move_to_end(key)
            return handle
        try:
            handle = open(path, "rb")  # noqa: SIM115 - kept open on purpose (rotation drain)
        except OSError as exc:
            log.warning("cannot open %s: %s", path, exc.strerror)
            return None
        st = os.fstat(handle.fileno())
        if (st.st_dev, st.st_ino) != key:
            handle.close()
            return None
        self._handles[key] = handle
        while len(self._handles) > self.max_open_files:
            _, old = self._handles.popitem(last=False)
            old.close()
        return handle

    def _forget(self, dev: int, ino: int) -> None:
        handle = self._handles.pop((dev, ino), None)
        if handle is not None:
            handle.close()

    def read_to_end(self) -> None:
        """One-shot mode: consume a final line without ``\\n`` at once (the file is taken as finished)."""
        self.eof_grace_seconds = 0.0

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    # --- following --------------------------------------------------------------------------------
    def follow(self, paths: Iterable[str], positions: dict[str, dict[str, Any]]) -> Iterator[Line]:
        """Yield every complete unread line of ``paths`` (and of files still in ``positions``), in path order.

        Running to completion means "nothing more right now". Positions of files that disappeared are
        dropped once their held-open inode (if any) has been drained, so the cursor stays small.
        """
        for path in sorted(set(paths) | set(positions)):
            yield from self._follow_path(path, positions)

    def _follow_path(self, path: str, positions: dict[str, dict[str, Any]]) -> Iterator[Line]:
        try:
            st: os.stat_result | None = os.stat(path)
            if not stat_mod.S_ISREG(st.st_mode):
                st = None
        except OSError:
            st = None
        pos = positions.get(path)
        if pos is not None and (st is None or (st.st_dev, st.st_ino) != (pos["dev"], pos["ino"])):
            # Rotated or deleted: finish the old inode if we still hold it open, then move on.
            old = self._handles.get((pos["dev"], pos["ino"]))
            if old is not None:
                yield from self._read(old, path, pos, os.fstat(old.fileno()))
                self._forget(pos["dev"], pos["ino"])
            if st is None:
                positions.pop(path, None)
                return
            pos = positions[path] = new_position(st)
        if st is None:
            return
        if pos is None:
            pos = positions[path] = new_position(st)
        if st.st_size < pos["offset"]:
            log.info("%s was truncated; reading it again from the start", path)
            self._forget(pos["dev"], pos["ino"])
            pos = positions[path] = new_position(st)
        if st.st_size == pos["offset"] and pos["fp_len"] >= min(FINGERPRINT_BYTES, st.st_size):
            return  # fast path: nothing new, fingerprint already complete
        handle = self._handle(path, st.st_dev, st.st_ino)
        if handle is None:
            return
        if not self._check_fingerprint(handle, path, pos, st):
            pos = positions[path] = new_position(st)
            self._check_fingerprint(handle, path, pos, st)
        yield from self._read(handle, path, pos, st)

    def _check_fingerprint(self, handle: BinaryIO, path: str, pos: dict[str, Any], st: os.stat_result) -> bool:
        """False when the first bytes changed under the same inode (file replaced): caller restarts at 0.
        Also lengthens a short fingerprint once the file has grown."""
        want = min(FINGERPRINT_BYTES, st.st_size)
        if pos["fp_len"] and pos["offset"]:
            head = os.pread(handle.fileno(), pos["fp_len"], 0)
            if _fingerprint(head) != pos["fp"]:
                log.info("%s was replaced (content changed); reading it from the start", path)
                return False
        if want > pos["fp_len"] or pos["offset"] == 0:
            head = os.pread(handle.fileno(), want, 0)
            pos["fp"], pos["fp_len"] = _fingerprint(head), len(head)
        return True

    def _read(self, handle: BinaryIO, path: str, pos: dict[str, Any], st: os.stat_result) -> Iterator[Line]:
        max_line = self.max_line_bytes
        offset: int = pos["offset"]
        number: int = pos["line"]
        handle.seek(offset)
        pending = b""
        skipping = 0  # >0: inside an oversized line, this many bytes of it seen so far
        skipped_prefix = b""
        while True:
            chunk = handle.read(self.chunk_bytes)
            if not chunk:
                break
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    skipping += len(chunk)
                    continue
                total = skipping + nl
                offset += total + 1
                number += 1
                skipping = 0
                pos["offset"], pos["line"] = offset, number
                yield Line(path, number, skipped_prefix, total)
                chunk = chunk[nl + 1 :]
            buf = pending + chunk if pending else chunk
            lines = buf.split(b"\n")
            pending = lines.pop()
            for data in lines:
                offset += len(data) + 1
                number += 1
                if data[-1:] == b"\r":
                    data = data[:-1]
                pos["offset"], pos["line"] = offset, number
                if len(data) > max_line:
                    yield Line(path, number, data[:OVERSIZED_PREFIX_BYTES], len(data))
                else:
                    yield _new_line(Line, (path, number, data, 0))
            if len(pending) > max_line:
                skipping, skipped_prefix, pending = len(pending), pending[:OVERSIZED_PREFIX_BYTES], b""
        if pending and not skipping and self._grace_over(handle, len(pending), offset):
            # A final line without newline in a file that stopped changing: consume it.
            number += 1
            data = pending[:-1] if pending[-1:] == b"\r" else pending
            pos["offset"], pos["line"] = offset + len(pending), number
            if len(data) > max_line:
                yield Line(path, number, data[:OVERSIZED_PREFIX_BYTES], len(data))
            else:
                yield Line(path, number, data)

    def _grace_over(self, handle: BinaryIO, pending_len: int, offset: int) -> bool:
        if self.eof_grace_seconds is None:
            return False
        st = os.fstat(handle.fileno())
        return st.st_size == offset + pending_len and time.time() - st.st_mtime >= self.eof_grace_seconds
