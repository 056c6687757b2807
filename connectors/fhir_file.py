"""FHIR AuditEvent files: single resources, Bundles, and NDJSON (bulk export) - R4 and R5.

Why a file connector for FHIR at all: many EHRs and FHIR servers export their audit trail (``$export``
bulk data, nightly dumps, an interface engine writing one resource per line) rather than expose a
queryable ``AuditEvent`` endpoint to the SIEM. All three shapes map through
:func:`connectors.fhir_mapping.auditevent_to_event`, so rules see the same fields as from the REST source.

* ``*.ndjson`` / ``*.jsonl``: one resource per line, streamed and followed (appends, rotation,
  truncation) with the same :class:`connectors.tailing.LineFollower` as the NDJSON connector. A line
  holding a Bundle is expanded too. Dead letters name ``path:line`` (``path:line#entry[i]``).
* ``*.json``: one resource or one Bundle per file. Non-AuditEvent entries are skipped. The file is read
  once it has not changed for ``settle_seconds`` (a half-written file is not a bad file), and again from
  the start when it changes (stable event ids make the re-read land on existing copies). Dead letters name
  ``path`` or ``path#entry[i]``.

Options: ``path`` (file, directory - recursive - or glob), ``max_line_bytes`` (1 MiB),
``max_file_bytes`` (256 MiB, for ``*.json``), ``settle_seconds`` (2), ``eof_grace_seconds`` (unset).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping

import orjson

from connectors.availability import require_source
from connectors.base import Batch, Connector
from connectors.fhir_mapping import MappingError, auditevent_to_event
from connectors.ndjson import check_file_options, now_text, raw_text
from connectors.tailing import DEFAULT_MAX_LINE_BYTES, Line, LineFollower, discover
from engine.events import Event
from engine.plugins import path_option
from engine.store.base import DeadLetter

LINE_SUFFIXES = (".ndjson", ".jsonl")
DOC_SUFFIXES = (".json",)
CURSOR_VERSION = 1
DEFAULT_MAX_FILE_BYTES = 256 << 20
_UTF8_BOM = b"\xef\xbb\xbf"

Outcome = Event | DeadLetter


@dataclass
class FhirFileOptions:
    """Options of ``fhir-auditevent-file`` (docs/connectors/fhir-auditevent-file.md)."""

    path: str = path_option(dataclasses.MISSING)
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    settle_seconds: float = 2.0
    eof_grace_seconds: float | None = None

    def __post_init__(self) -> None:
        check_file_options(self)


class FhirAuditEventFileConnector(Connector):
    """AuditEvent resources from files: single JSON, Bundles, NDJSON (followed like a log)."""

    type_name = "fhir-auditevent-file"
    summary = "FHIR R4/R5 AuditEvent files: JSON resources, Bundles, NDJSON bulk exports"

    Options: ClassVar[type] = FhirFileOptions
    reads_in_worker: ClassVar[bool] = True  # state: file handles and a parse cache, rebuilt from the cursor

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)
        opts: FhirFileOptions = self.settings
        self.path: str = opts.path
        self.max_line_bytes = opts.max_line_bytes
        self.max_file_bytes = opts.max_file_bytes
        self.settle_seconds = opts.settle_seconds
        self._follower = LineFollower(max_line_bytes=self.max_line_bytes, eof_grace_seconds=opts.eof_grace_seconds)
        # One parsed document kept between reads, so a big Bundle read in many batches is parsed once.
        self._doc_cache: tuple[str, tuple[int, ...], Any] | None = None

    # --- helpers -------------------------------------------------------------------------------------
    def _dead(self, location: str, reason: str, raw: bytes | str) -> DeadLetter:
        return DeadLetter(
            source=self.source_identity,
            reason=reason,
            location=location,
            raw=raw if isinstance(raw, str) else raw_text(raw),
            received_at=now_text(),
        )

    def _map(self, resource: Any, location: str, raw: bytes, position: str = "doc") -> Outcome:
        """``position``: where the resource sits in its file, for resources without an id (never the path,
        so a copied or renamed export keeps its ids)."""
        try:
            return auditevent_to_event(resource, raw=raw, position=position)
        except Exception as exc:  # noqa: BLE001 - a mapping bug must cost one record, not the source
            return self._map_failed(exc, location, raw)

    def _map_failed(self, exc: Exception, location: str, raw: bytes) -> DeadLetter:
        if isinstance(exc, MappingError):
            return self._dead(location, f"field {exc.field!r}: {exc.message}", raw)
        return self._dead(location, f"internal error: {type(exc).__name__}: {exc}", raw)

    def _bundle_entries(self, bundle: Mapping[str, Any], location: str, start: int = 0, position: str = "doc"
                        ) -> Iterator[tuple[int, Outcome | None]]:
        """(index, outcome) per entry from ``start``; outcome None for entries that are skipped."""
        entries = bundle.get("entry")
        if entries is None:
            return
        if not isinstance(entries, list):
            yield 0, self._dead(location, "field 'entry': not a list", orjson.dumps(bundle))
            return
        for index in range(start, len(entries)):
            entry = entries[index]
            resource = entry.get("resource") if isinstance(entry, dict) else None
            where = f"{location}#entry[{index}]"
            if not isinstance(resource, dict):
                yield index, (None if isinstance(entry, dict) else
                              self._dead(where, "field 'entry': not an object", orjson.dumps(entry)))
                continue
            if resource.get("resourceType") != "AuditEvent":
                yield index, None
                continue
            yield index, self._map(resource, where, orjson.dumps(resource), f"{position}#entry[{index}]")

    # --- NDJSON ----------------------------------------------------------------------------------------
    def _line_outcomes(self, line: Line) -> list[Outcome]:
        """The outcomes of one line: usually one event; none for a blank line; one per entry of a Bundle.

        Hot path (one call per event): the ``path:line`` location is only built when something needs it,
        and a blank line is recognised only after it failed to parse (it always does)."""
        data = line.data
        if line.oversized:
            reason = f"line longer than max_line_bytes ({line.oversized} > {self.max_line_bytes} bytes)"
            return [self._dead(f"{line.path}:{line.number}", reason, data)]
        if line.number == 1 and data.startswith(_UTF8_BOM):
            data = data[3:]
        try:
            resource = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if not data or data.isspace():
                return []
            location = f"{line.path}:{line.number}"
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as uexc:
                return [self._dead(location, f"invalid UTF-8 at byte {uexc.start}", data)]
            return [self._dead(location, f"invalid JSON: {exc}", data)]
        if type(resource) is dict and resource.get("resourceType") == "Bundle":
            location = f"{line.path}:{line.number}"
            return [o for _, o in self._bundle_entries(resource, location, position=f"line:{line.number}")
                    if o is not None]
        try:
            return [auditevent_to_event(resource, raw=data, position=f"line:{line.number}")]
        except Exception as exc:  # noqa: BLE001 - a mapping bug must cost one record, not the source
            return [self._map_failed(exc, f"{line.path}:{line.number}", data)]

    # --- whole JSON documents -------------------------------------------------------------------------
    def _load_doc(self, path: str, sig: tuple[int, ...]) -> tuple[Any, bytes] | DeadLetter:
        if self._doc_cache and self._doc_cache[0] == path and self._doc_cache[1] == sig:
            return self._doc_cache[2]
        try:
            with open(path, "rb") as handle:
                data = handle.read(self.max_file_bytes + 1)
        except OSError as exc:
            return self._dead(path, f"cannot read file: {exc.strerror}", b"")
        if data.startswith(_UTF8_BOM):
            data = data[3:]
        try:
            result: tuple[Any, bytes] | DeadLetter = (orjson.loads(data), data.strip())
        except orjson.JSONDecodeError as exc:
            result = self._dead(path, f"invalid JSON: {exc}", data[:4096])
        self._doc_cache = (path, sig, result)
        return result

    def _doc_outcomes(self, path: str, pos: dict[str, Any]) -> Iterator[Outcome]:
        """Outcomes of one ``*.json`` file from ``pos["next"]``; updates ``pos`` before each yield."""
        sig = (pos["dev"], pos["ino"], pos["size"], pos["mtime_ns"])
        if pos["size"] > self.max_file_bytes:
            pos["done"] = True
            yield self._dead(path, f"file larger than max_file_bytes ({pos['size']} > {self.max_file_bytes})",
                             b"")
            return
        loaded = self._load_doc(path, sig)
        if isinstance(loaded, DeadLetter):
            pos["done"] = True
            yield loaded
            return
        doc, raw = loaded
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            for index, outcome in self._bundle_entries(doc, path, pos["next"]):
                pos["next"] = index + 1
                if outcome is not None:
                    yield outcome
            pos["done"] = True
            return
        pos["done"] = True
        yield self._map(doc, path, raw)

    # --- the contract ---------------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        state = self._load_cursor(cursor)
        batch = Batch(cursor=state, exhausted=True)
        if max_events <= 0:
            batch.exhausted = False
            return batch
        paths = discover(require_source(self.name, self.path), LINE_SUFFIXES + DOC_SUFFIXES)
        taken = 0
        events, dead_letters = batch.events, batch.dead_letters

        def take(outcome: Outcome) -> None:
            nonlocal taken
            if isinstance(outcome, DeadLetter):
                dead_letters.append(outcome)
            else:
                events.append(outcome)
            taken += 1

        line_paths = [p for p in paths if p.lower().endswith(LINE_SUFFIXES)]
        lines = self._follower.follow(line_paths, state["lines"])
        line_outcomes = self._line_outcomes
        for line in lines:
            for outcome in line_outcomes(line):  # a Bundle line is never split across batches
                if type(outcome) is dict:  # an event (the hot path); else a DeadLetter
                    events.append(outcome)
                else:
                    dead_letters.append(outcome)  # type: ignore[arg-type]
                taken += 1
            if taken >= max_events:
                lines.close()
                batch.exhausted = False
                return batch
        lines.close()

        docs: dict[str, dict[str, Any]] = state["docs"]
        doc_paths = [p for p in paths if p.lower().endswith(DOC_SUFFIXES)]
        for gone in set(docs) - set(doc_paths):
            del docs[gone]
        now = time.time()
        for path in doc_paths:
            try:
                st = os.stat(path)
            except OSError:
                docs.pop(path, None)
                continue
            sig = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            pos = docs.get(path)
            if pos is None or any(pos.get(k) != v for k, v in sig.items()):
                if now - st.st_mtime < self.settle_seconds:
                    continue  # still being written: wait rather than dead-letter half a file
                pos = docs[path] = {**sig, "next": 0, "done": False}
            if pos["done"]:
                continue
            outcomes = self._doc_outcomes(path, pos)
            for outcome in outcomes:
                take(outcome)
                if taken >= max_events:
                    outcomes.close()
                    batch.exhausted = False
                    return batch
        return batch

    @staticmethod
    def _load_cursor(cursor: Mapping[str, Any] | None) -> dict[str, Any]:
        if (not cursor or cursor.get("v") != CURSOR_VERSION or not isinstance(cursor.get("lines"), dict)
                or not isinstance(cursor.get("docs"), dict)):
            return {"v": CURSOR_VERSION, "lines": {}, "docs": {}}
        return copy.deepcopy(dict(cursor))

    def read_to_end(self) -> None:
        """One-shot mode (``wardwatch ingest``, ``run --once``): files are read as they are now, so a last
        line without newline is a complete record. The service never calls this: there, it waits."""
        self._follower.read_to_end()
        self.settle_seconds = 0.0  # and a *.json export written a moment ago is read, not skipped

    def close(self) -> None:
        self._follower.close()
        self._doc_cache = None
