"""The embedded default store: one SQLite file in WAL mode holding events, cursors, checkpoints, alerts,
the sink outbox and dead letters.

Why SQLite and why this shape:

* **One file, one transaction per step.** A batch of events commits together with its connector cursor, a
  rule's alerts together with its checkpoint and outbox entries. A crash between the two is impossible, so
  a restart neither loses nor duplicates anything (DESIGN.md, "Reliability").
* **The watermark is the commit order** (``events.seq``, an AUTOINCREMENT rowid). SQLite serialises writers,
  so when seq N+1 is visible, N is too: "every event ingested at or before the watermark is visible" holds
  without a safety lag. Wall-clock ``event.ingested`` is stored for analysts, never used for ordering.
* **The store narrows, the engine decides.** ``SearchQuery.prefilter`` is ignored here: SQL's ``=`` is
  case-sensitive where Sigma is not, and the pySigma SQLite backend has known defects (DESIGN.md). The engine
  re-checks every candidate, so narrowing by dataset, time and watermark is all we need to be correct.
* **One connection per thread.** The scheduler reads and writes from several threads; an sqlite3 connection
  must not be shared across threads mid-transaction, and per-thread connections let WAL readers proceed
  while a writer commits.
"""

from __future__ import annotations

import heapq
import math
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import orjson

from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.events import DATASET, EVENT_ID, INGESTED, TIMESTAMP, Event, format_timestamp
from engine.private_files import private_dir, touch_private
from engine.store.base import (
    CursorUpdate,
    DeadLetter,
    PurgeResult,
    RuleCheckpoint,
    SearchQuery,
    Store,
    StoreError,
    StoreUnavailable,
    Watermark,
    WriteResult,
    check_event,
)
from engine.store.sqlite_audit import SqliteAuditMixin
from engine.store.sqlite_overview import SqliteOverviewMixin
from engine.store.sqlite_triage import SqliteTriageMixin
from engine.store.sqlite_schema import (SCHEMA_VERSION, EventIdSchemeError, SchemaVersionError, apply_pragmas,
                                        ensure_schema, event_id_scheme_problem)

__all__ = ["SqliteStore", "SchemaVersionError", "SCHEMA_VERSION", "EventRow", "encode_rows"]

_T = TypeVar("_T")

#: Fields a search always returns, whatever ``fields`` asks for (the engine needs them to order and cite).
ALWAYS_RETURNED = (TIMESTAMP, EVENT_ID, DATASET)

_INSERT_EVENT = "INSERT OR IGNORE INTO events (id, ts, dataset, ingested, doc) VALUES (?, ?, ?, ?, ?)"
_COUNT_EVENTS = "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'event_count'"
_UPSERT_CURSOR = (
    "INSERT INTO cursors (connector_id, value, updated) VALUES (?, ?, ?) "
    "ON CONFLICT (connector_id) DO UPDATE SET value = excluded.value, updated = excluded.updated"
)


def _now() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class SqliteStore(SqliteAuditMixin, SqliteOverviewMixin, SqliteTriageMixin, Store):
    """``Store`` on one SQLite file. Thread-safe: each thread gets its own connection.

    ``page_size`` bounds memory during ``search``: at most that many (seq, ts, id) keys per page, documents
    fetched ``doc_chunk`` at a time.
    """

    kind = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
        cache_kib: int = 65_536,
        page_size: int = 5_000,
        doc_chunk: int = 500,
        refuse_old_ids: bool = True,
    ) -> None:
        self.path = Path(path)
        #: why this store refuses writes (an old-id file opened by a reader, ``refuse_old_ids=False``)
        self.refusal: str | None = None
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_kib = cache_kib
        self.page_size = max(1, int(page_size))
        self.doc_chunk = max(1, min(int(doc_chunk), 30_000))  # stay under SQLITE_MAX_VARIABLE_NUMBER
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        if str(self.path) != ":memory:":
            # PHI: the file is made 0600 before SQLite opens it, and SQLite gives -wal/-shm the main
            # file's mode when it creates them (engine/private_files.py).
            try:
                private_dir(self.path.parent)
                touch_private(self.path)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create the store file: {exc.strerror}") from None
        # open (and create/verify the schema) eagerly so a bad path or a newer file fails at start-up
        try:
            ensure_schema(self._conn(), str(self.path), refuse_old_ids=refuse_old_ids)
            if not refuse_old_ids:
                self.refusal = event_id_scheme_problem(self._conn(), str(self.path))
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.path) from exc
            raise

    # --- connections ------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock up
                # front instead of failing to upgrade a read lock (SQLITE_BUSY that busy_timeout cannot fix).
                # check_same_thread=False only so close() may close every thread's connection.
                conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                       timeout=self._busy_timeout_ms / 1000)
                apply_pragmas(conn, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms,
                              cache_kib=self._cache_kib)
            except sqlite3.Error as exc:
                raise _translate(exc, self.path) from exc
            self._local.conn = conn
            with self._conns_lock:
                self._all_conns.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return fn(self._conn())
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def _transaction(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in one write transaction: all of it commits, or none of it."""
        if self.refusal is not None:  # opened for reading only: every write is refused, as at open
            raise EventIdSchemeError(self.refusal)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        try:
            result = fn(conn)
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the transaction may already be gone (e.g. SQLITE_FULL rolls back by itself)
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, self.path) from exc
            raise

    # --- events -----------------------------------------------------------------------------------
    def write(self, batch: Sequence[Event], cursor: CursorUpdate | None = None) -> WriteResult:
        ingested = _now()
        return self.write_rows(encode_rows(batch, ingested), cursor, ingested)  # encoded before the lock

    def write_rows(self, rows: Sequence[EventRow], cursor: CursorUpdate | None = None,
                   now: str | None = None) -> WriteResult:
        """``write`` of rows already validated and encoded by :func:`encode_rows`, possibly in another
        process (engine/ingest_worker.py): the part of a write that needs the database."""
        cursor_row = _cursor_row(cursor, now or _now()) if cursor is not None else None

        def run(conn: sqlite3.Connection) -> int:
            written = conn.executemany(_INSERT_EVENT, rows).rowcount if rows else 0
            if written:
                conn.execute(_COUNT_EVENTS, (written,))
            if cursor_row is not None:
                self._put_cursor(conn, cursor_row)
            return written

        written = self._transaction(run)
        return WriteResult(written=written, duplicates=len(rows) - written)

    def _put_cursor(self, conn: sqlite3.Connection, row: tuple[str, str, str]) -> None:
        """Separate method so tests can make the second half of a write fail and check the rollback."""
        conn.execute(_UPSERT_CURSOR, row)

    def watermark(self) -> Watermark | None:
        seq = self._read(lambda c: c.execute("SELECT max(seq) FROM events").fetchone()[0])
        return None if seq is None else str(seq)

    def watermark_step(self, after: Watermark | None, upto: Watermark, max_events: int) -> Watermark:
        lo = _parse_watermark(after, "after") or 0
        hi = _parse_watermark(upto, "upto")
        row = self._read(lambda c: c.execute(
            "SELECT seq FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1 OFFSET ?",
            (lo, hi, max(1, max_events) - 1)).fetchone())
        return upto if row is None else str(row[0])

    def search(self, query: SearchQuery) -> Iterator[Event]:
        """Stream events in (@timestamp, event.id) order.

        Validates eagerly (so a bad watermark fails at the call, not at the first ``next``) and then pages
        with keyset pagination: each page is a short statement, so no read transaction stays open while the
        caller works through the results and the same thread may write between two ``next`` calls.
        Events committed after the search started are not returned (the seq range is fixed at the start).
        """
        if isinstance(query.datasets, str) or isinstance(query.fields, str):
            raise TypeError("SearchQuery.datasets and .fields are sequences of names, not a single string")
        after = _parse_watermark(query.ingested_after, "ingested_after")
        upto = _parse_watermark(query.ingested_upto, "ingested_upto")
        datasets = None if query.datasets is None else sorted(set(query.datasets))
        # fields_at_least: whole events, the one decode and no copy (SearchQuery docstring)
        keep = (None if query.fields is None or query.fields_at_least
                else frozenset(query.fields).union(ALWAYS_RETURNED))
        # query.prefilter is deliberately ignored: the engine re-checks every candidate (module docstring)
        return self._search(datasets, query.start, query.end, after, upto, keep)

    def _search(self, datasets: list[str] | None, start: str | None, end: str | None, after: int | None,
                upto: int | None, keep: frozenset[str] | None) -> Iterator[Event]:
        if datasets is not None and not datasets:
            return
        max_seq = self._read(lambda c: c.execute("SELECT max(seq) FROM events").fetchone()[0]) or 0
        lo = after or 0
        hi = max_seq if upto is None else min(upto, max_seq)
        if hi <= lo or (start is not None and end is not None and end <= start):
            return
        if self._choose_seq_plan(datasets, start, end, after, upto, lo, hi):
            keys = self._keys(None, datasets, start, end, lo, hi, by_seq=True)
            yield from self._documents(keys, keep)
            return
        # The time plan walks an index in (ts, id) order, so each page carries its documents: one statement
        # per page instead of a key page plus a ``seq IN (...)`` read per ``doc_chunk`` (issue 10).
        if datasets is not None and len(datasets) > 1 and not set(self.event_datasets()) <= set(datasets):
            # one index-ordered stream per dataset, merged: each stays an index range scan, no sorting
            pages: Iterable[list[tuple[Any, ...]]] = _one_page(heapq.merge(
                *(self._keys(ds, None, start, end, lo, hi, by_seq=False, docs=True) for ds in datasets)))
        else:
            # one dataset, all, or every dataset the store holds: one stream over (ts, id); the dataset
            # filter stays (a dataset first written meanwhile is not returned) but drops no row here
            pages = self._pages(None if datasets is None or len(datasets) > 1 else datasets[0],
                                None if datasets is None or len(datasets) == 1 else datasets,
                                start, end, lo, hi, by_seq=False, docs=True)
        loads = orjson.loads
        for page in pages:  # decoded a page at a time: a comprehension, not a generator step per row
            if keep is None:
                yield from [loads(row[2]) for row in page]
            else:
                yield from [{k: v for k, v in loads(row[2]).items() if k in keep} for row in page]

    def _choose_seq_plan(self, datasets: list[str] | None, start: str | None, end: str | None,
                         after: int | None, upto: int | None, lo: int, hi: int) -> bool:
        """Pick the cheaper way to find the keys.

        The *time plan* walks the (dataset, ts, id) index in order: each row is visited once. The *seq plan*
        reads the rowid range (lo, hi] and sorts it; keyset paging re-reads the range for every page, so it
        costs about n * pages. "Ingested since the last run" is usually a small seq range inside a large
        dataset, and then the seq plan wins by orders of magnitude. We count the time plan's candidates only
        up to the seq plan's cost, so choosing never costs more than the cheaper plan itself.
        """
        if after is None and upto is None:
            return False
        n = hi - lo
        seq_cost = n * math.ceil(n / self.page_size)
        where, params = _time_where(None, datasets, start, end)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM events WHERE {where} LIMIT ?)"
        candidates = self._read(lambda c: c.execute(sql, (*params, seq_cost + 1)).fetchone()[0])
        return candidates > seq_cost

    def _keys(self, dataset: str | None, datasets: list[str] | None, start: str | None, end: str | None,
              lo: int, hi: int, *, by_seq: bool, docs: bool = False) -> Iterator[tuple[Any, ...]]:
        """Yield (ts, id, seq) -- with ``docs``, (ts, id, doc) -- in (ts, id) order (``_pages``, flat)."""
        for page in self._pages(dataset, datasets, start, end, lo, hi, by_seq=by_seq, docs=docs):
            yield from page

    def _pages(self, dataset: str | None, datasets: list[str] | None, start: str | None, end: str | None,
               lo: int, hi: int, *, by_seq: bool, docs: bool = False) -> Iterator[list[tuple[Any, ...]]]:
        """Yield the keyset pages of (ts, id, seq) -- with ``docs``, (ts, id, doc) -- in (ts, id) order.
        Pages carrying documents hold at most ``doc_chunk`` rows (the memory bound of a doc read)."""
        if by_seq:
            source = "events NOT INDEXED"  # rowid range (lo, hi] + sort; see _choose_seq_plan
        else:
            source = "events INDEXED BY " + ("events_dataset_ts" if dataset is not None else "events_ts")
        columns = "ts, id, doc" if docs else "ts, id, seq"
        size = min(self.page_size, self.doc_chunk) if docs else self.page_size
        where, params = _time_where(dataset, datasets, start, end)
        first = f"SELECT {columns} FROM {source} WHERE {where} AND seq > ? AND seq <= ? ORDER BY ts, id LIMIT ?"
        # Later pages start from the last key instead of `start`: the planner then seeks straight to the
        # row value (ts, id) in the index instead of re-walking from `start` (which made paging quadratic).
        where, params = _time_where(dataset, datasets, None, end)
        following = (f"SELECT {columns} FROM {source} WHERE {where} AND seq > ? AND seq <= ? "
                     "AND (ts, id) > (?, ?) ORDER BY ts, id LIMIT ?")
        first_params = _time_where(dataset, datasets, start, end)[1]
        page: list[tuple[Any, ...]] = self._read(
            lambda c: c.execute(first, (*first_params, lo, hi, size)).fetchall())
        while page:
            yield page
            if len(page) < size:
                return
            last_ts, last_id, _ = page[-1]
            page = self._read(lambda c: c.execute(
                following, (*params, lo, hi, last_ts, last_id, size)).fetchall())

    def _documents(self, keys: Iterable[tuple[str, str, int]], keep: frozenset[str] | None) -> Iterator[Event]:
        chunk: list[int] = []
        for _ts, _id, seq in keys:
            chunk.append(seq)
            if len(chunk) >= self.doc_chunk:
                yield from self._fetch_docs(chunk, keep)
                chunk = []
        if chunk:
            yield from self._fetch_docs(chunk, keep)

    def _fetch_docs(self, seqs: list[int], keep: frozenset[str] | None) -> list[Event]:
        sql = f"SELECT seq, doc FROM events WHERE seq IN ({','.join('?' * len(seqs))})"
        by_seq = dict(self._read(lambda c: c.execute(sql, seqs).fetchall()))
        out: list[Event] = []
        for seq in seqs:
            doc = by_seq.get(seq)
            if doc is None:  # retention removed the row mid-search: it is gone, skip it
                continue
            event = orjson.loads(doc)
            if keep is not None:
                event = {k: v for k, v in event.items() if k in keep}
            out.append(event)
        return out

    # --- connector state --------------------------------------------------------------------------
    def get_cursor(self, connector_id: str) -> dict[str, Any] | None:
        row = self._read(lambda c: c.execute(
            "SELECT value FROM cursors WHERE connector_id = ?", (connector_id,)).fetchone())
        return None if row is None else orjson.loads(row[0])

    def dead_letter(self, records: Sequence[DeadLetter], cursor: CursorUpdate | None = None) -> None:
        now = _now()
        rows = [(r.source, r.reason, r.location, r.raw, r.received_at or now) for r in records]
        cursor_row = _cursor_row(cursor, now) if cursor is not None else None

        def run(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany("INSERT INTO dead_letters (source, reason, location, raw, received_at) "
                                 "VALUES (?, ?, ?, ?, ?)", rows)
            if cursor_row is not None:
                self._put_cursor(conn, cursor_row)

        self._transaction(run)

    def list_dead_letters(self, limit: int = 100, *, newest: bool = False) -> list[DeadLetter]:
        """Oldest first (insertion order), or newest first."""
        order = "DESC" if newest else "ASC"
        rows = self._read(lambda c: c.execute(
            f"SELECT source, reason, location, raw, received_at FROM dead_letters ORDER BY seq {order} LIMIT ?",
            (int(limit),)).fetchall())
        return [DeadLetter(*row) for row in rows]

    # --- rule state and alerts --------------------------------------------------------------------
    def get_checkpoint(self, rule_id: str) -> RuleCheckpoint:
        row = self._read(lambda c: c.execute(
            "SELECT watermark, extra FROM checkpoints WHERE rule_id = ?", (rule_id,)).fetchone())
        if row is None:
            return RuleCheckpoint(rule_id=rule_id)
        return RuleCheckpoint(rule_id=rule_id, watermark=row[0], extra=orjson.loads(row[1]))

    def get_checkpoints(self, rule_ids: Sequence[str]) -> dict[str, RuleCheckpoint]:
        found = {rule_id: RuleCheckpoint(rule_id=rule_id) for rule_id in rule_ids}
        rows = self._rows_by_key("SELECT rule_id, watermark, extra FROM checkpoints WHERE rule_id IN ({})",
                                 list(found))
        for rule_id, watermark, extra in rows:
            found[rule_id] = RuleCheckpoint(rule_id=rule_id, watermark=watermark, extra=orjson.loads(extra))
        return found

    def _rows_by_key(self, sql: str, keys: Sequence[str], chunk: int = 500) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (one ``IN ({})`` placeholder) for many keys, ``chunk`` bound parameters a query
        (SQLite caps the number of parameters per statement)."""
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), chunk):
            part = keys[i:i + chunk]
            query = sql.format(", ".join("?" * len(part)))
            rows.extend(self._read(lambda c, q=query, p=part: c.execute(q, p).fetchall()))
        return rows

    def commit_rule_run(self, checkpoint: RuleCheckpoint, alerts: Sequence[Alert]) -> None:
        self.commit_rule_runs([(checkpoint, alerts)])

    def commit_rule_runs(self, runs: Sequence[tuple[RuleCheckpoint, Sequence[Alert]]]) -> None:
        """Several rules' ``commit_rule_run`` in ONE transaction, in order: every alert still lands with its
        own checkpoint (all of them commit, or none), and an evaluation round of the SigmaHQ set pays one
        commit instead of ~2,400 (0.45 s of a 2.8 s evaluate phase, issue 10)."""
        now = _now()
        rows = []
        cp_rows = []
        for checkpoint, alerts in runs:
            for alert in alerts:
                doc = _dumps(alert.to_dict())
                rows.append((alert.id, alert.rule_id, alert.group_key, alert.first_trigger, alert.last_trigger,
                             int(alert.revision), doc))
            cp_rows.append((checkpoint.rule_id, checkpoint.watermark, _dumps(checkpoint.extra), now))

        def run(conn: sqlite3.Connection) -> None:
            if rows:
                conn.executemany(
                    "INSERT INTO alerts (id, rule_id, group_key, first_trigger, last_trigger, revision, doc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET rule_id = excluded.rule_id, "
                    "group_key = excluded.group_key, first_trigger = excluded.first_trigger, "
                    "last_trigger = excluded.last_trigger, revision = excluded.revision, doc = excluded.doc",
                    rows)
                # one outbox entry per (alert, revision); a re-run of the same revision refreshes the content
                # but keeps its place in the queue and does not re-deliver an acknowledged revision
                conn.executemany(
                    "INSERT INTO outbox (alert_id, revision, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT (alert_id, revision) DO UPDATE SET doc = excluded.doc",
                    [(r[0], r[5], r[6]) for r in rows])
            conn.executemany(
                "INSERT INTO checkpoints (rule_id, watermark, extra, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (rule_id) DO UPDATE SET watermark = excluded.watermark, extra = excluded.extra, "
                "updated = excluded.updated", cp_rows)

        self._transaction(run)

    def get_alert(self, alert_id: str) -> Alert | None:
        row = self._read(lambda c: c.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone())
        return None if row is None else Alert.from_dict(orjson.loads(row[0]))

    def count_alerts(self) -> int:
        return int(self._read(lambda c: c.execute("SELECT count(*) FROM alerts").fetchone()[0]))

    def get_alerts(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        rows = self._rows_by_key("SELECT id, doc FROM alerts WHERE id IN ({})", list(dict.fromkeys(alert_ids)))
        return {alert_id: Alert.from_dict(orjson.loads(doc)) for alert_id, doc in rows}

    def latest_alert(self, rule_id: str, group_key: str) -> Alert | None:
        row = self._read(lambda c: c.execute(
            "SELECT doc FROM alerts WHERE rule_id = ? AND group_key = ? ORDER BY last_trigger DESC, id DESC "
            "LIMIT 1", (rule_id, group_key)).fetchone())
        return None if row is None else Alert.from_dict(orjson.loads(row[0]))

    def list_alerts(self, rule_id: str | None = None, limit: int | None = None) -> list[Alert]:
        sql = "SELECT doc FROM alerts"
        params: list[Any] = []
        if rule_id is not None:
            sql += " WHERE rule_id = ?"
            params.append(rule_id)
        sql += " ORDER BY first_trigger, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [Alert.from_dict(orjson.loads(r[0])) for r in rows]

    # --- sink outbox ------------------------------------------------------------------------------
    #: ``pending_deliveries`` takes ``decoded=`` (engine/alerts/sinks/delivery.py SHARED_DECODE_CONSUMERS)
    reuses_decoded_alerts = True

    def pending_deliveries(self, sink: str, limit: int = 1000,
                           decoded: dict[str, Alert] | None = None) -> list[Alert]:
        """Every committed alert revision ``sink`` has not acknowledged, in commit order. A sink seen for the
        first time gets the whole history; sinks deduplicate on (id, revision).

        ``decoded``: stored JSON text -> its decoded alert, filled and reused, so read-only consumers of one
        delivery round share one decode per revision. Keyed by the text itself, not (id, revision): a
        re-run may refresh a revision's stored content, and different text is never taken for the same."""
        rows = self._read(lambda c: c.execute(
            "SELECT o.doc FROM outbox AS o WHERE NOT EXISTS (SELECT 1 FROM deliveries AS d "
            "WHERE d.sink = ? AND d.alert_id = o.alert_id AND d.revision = o.revision) ORDER BY o.seq LIMIT ?",
            (sink, int(limit))).fetchall())
        if decoded is None:
            return [Alert.from_dict(orjson.loads(r[0])) for r in rows]
        out = []
        for (doc,) in rows:
            alert = decoded.get(doc)
            if alert is None:
                alert = decoded[doc] = Alert.from_dict(orjson.loads(doc))
            out.append(alert)
        return out

    def mark_delivered(self, sink: str, alerts: Sequence[Alert]) -> None:
        rows = [(sink, a.id, int(a.revision)) for a in alerts]
        if rows:
            self._transaction(lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO deliveries (sink, alert_id, revision) VALUES (?, ?, ?)", rows))

    # --- cases ------------------------------------------------------------------------------------
    def put_cases(self, cases: Sequence[Case]) -> None:
        rows = [(c.id, c.first_trigger, int(c.revision), _dumps(c.to_dict())) for c in cases]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO cases (id, first_trigger, revision, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO "
                "UPDATE SET first_trigger = excluded.first_trigger, revision = excluded.revision, doc = excluded.doc",
                rows)
            conn.executemany(
                "INSERT INTO case_outbox (case_id, revision, doc) VALUES (?, ?, ?) "
                "ON CONFLICT (case_id, revision) DO UPDATE SET doc = excluded.doc",
                [(r[0], r[2], r[3]) for r in rows])

        if rows:
            self._transaction(run)

    def get_case(self, case_id: str) -> Case | None:
        row = self._read(lambda c: c.execute("SELECT doc FROM cases WHERE id = ?", (case_id,)).fetchone())
        return None if row is None else Case.from_dict(orjson.loads(row[0]))

    def get_cases(self, case_ids: Sequence[str]) -> dict[str, Case]:
        rows = self._rows_by_key("SELECT id, doc FROM cases WHERE id IN ({})", list(dict.fromkeys(case_ids)))
        return {case_id: Case.from_dict(orjson.loads(doc)) for case_id, doc in rows}

    def list_cases(self, limit: int | None = None) -> list[Case]:
        sql, params = "SELECT doc FROM cases ORDER BY first_trigger, id", []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._read(lambda c: c.execute(sql, params).fetchall())
        return [Case.from_dict(orjson.loads(r[0])) for r in rows]

    def pending_case_deliveries(self, sink: str, limit: int = 1000) -> list[Case]:
        rows = self._read(lambda c: c.execute(
            "SELECT o.doc FROM case_outbox AS o WHERE NOT EXISTS (SELECT 1 FROM case_deliveries AS d "
            "WHERE d.sink = ? AND d.case_id = o.case_id AND d.revision = o.revision) ORDER BY o.seq LIMIT ?",
            (sink, int(limit))).fetchall())
        return [Case.from_dict(orjson.loads(r[0])) for r in rows]

    def mark_cases_delivered(self, sink: str, cases: Sequence[Case]) -> None:
        rows = [(sink, c.id, int(c.revision)) for c in cases]
        if rows:
            self._transaction(lambda conn: conn.executemany(
                "INSERT OR IGNORE INTO case_deliveries (sink, case_id, revision) VALUES (?, ?, ?)", rows))

    # --- retention --------------------------------------------------------------------------------
    def event_datasets(self) -> list[str]:
        # a skip-scan over the (dataset, ts, id) index: one probe per distinct dataset, not a table scan
        rows = self._read(lambda c: c.execute(
            "SELECT DISTINCT dataset FROM events INDEXED BY events_dataset_ts ORDER BY dataset").fetchall())
        return [r[0] for r in rows]

    def oldest_unevaluated(self, after: Watermark | None) -> str | None:
        lo = _parse_watermark(after, "after") or 0
        # a rowid range: only the rows a rule has not evaluated yet are visited
        return self._read(lambda c: c.execute(
            "SELECT min(ts) FROM events NOT INDEXED WHERE seq > ?", (lo,)).fetchone()[0])

    def purge_events(self, dataset: str, before: str, *, dry_run: bool = False,
                     batch_size: int = 5000) -> PurgeResult:
        """One transaction per ``batch_size`` rows: the write lock is held for one batch at a time, so
        ingest and rule runs interleave with a long purge instead of waiting for all of it."""
        where = "dataset = ? AND ts < ?"
        return self._purge("events INDEXED BY events_dataset_ts", "seq", where, (dataset, before), dry_run,
                           batch_size, count_events=True)

    def purge_alerts(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        result = self._purge("alerts", "id", "last_trigger < ?", (before,), dry_run, batch_size, alerts=True)
        if not dry_run:
            self._purge_cases(before, batch_size)
        return result

    def _purge_cases(self, before: str, batch_size: int) -> int:
        """Cases go with their alerts: a case's ``last_trigger`` is its newest member's, so a case older than
        the cut-off has no member left (they name the same staff and patients)."""
        deleted = 0

        def one_batch(conn: sqlite3.Connection) -> int:
            keys = [r[0] for r in conn.execute(
                "SELECT id FROM cases WHERE json_extract(doc, '$.last_trigger') < ? LIMIT ?",
                (before, max(1, int(batch_size)))).fetchall()]
            if keys:
                marks = ",".join("?" * len(keys))
                conn.execute(f"DELETE FROM case_outbox WHERE case_id IN ({marks})", keys)
                conn.execute(f"DELETE FROM case_deliveries WHERE case_id IN ({marks})", keys)
                conn.execute(f"DELETE FROM cases WHERE id IN ({marks})", keys)
            return len(keys)

        while True:
            n = self._transaction(one_batch)
            deleted += n
            if n < max(1, int(batch_size)):
                return deleted

    def purge_dead_letters(self, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
        return self._purge("dead_letters", "seq", "received_at < ?", (before,), dry_run, batch_size)

    def _purge(self, source: str, key: str, where: str, params: tuple[Any, ...], dry_run: bool, batch_size: int,
               *, count_events: bool = False, alerts: bool = False) -> PurgeResult:
        table = source.split()[0]
        if dry_run:
            n = self._read(lambda c: c.execute(f"SELECT count(*) FROM {source} WHERE {where}", params).fetchone()[0])
            return PurgeResult(deleted=n)
        batch = max(1, int(batch_size))
        result = PurgeResult()

        def one_batch(conn: sqlite3.Connection) -> int:
            keys = [r[0] for r in conn.execute(
                f"SELECT {key} FROM {source} WHERE {where} LIMIT ?", (*params, batch)).fetchall()]
            if not keys:
                return 0
            marks = ",".join("?" * len(keys))
            if alerts:
                conn.execute(f"DELETE FROM outbox WHERE alert_id IN ({marks})", keys)
                conn.execute(f"DELETE FROM deliveries WHERE alert_id IN ({marks})", keys)
            deleted = conn.execute(f"DELETE FROM {table} WHERE {key} IN ({marks})", keys).rowcount
            if count_events:
                conn.execute(_COUNT_EVENTS, (-deleted,))
            return deleted

        while True:
            deleted = self._transaction(one_batch)
            if not deleted:
                return result
            result.deleted += deleted
            result.transactions += 1
            if deleted < batch:
                return result

    def reclaim_space(self) -> str:
        """``PRAGMA incremental_vacuum`` on files created with auto_vacuum=INCREMENTAL (every file since
        retention exists). Older files keep their size and reuse the freed pages for new rows."""
        mode, free = self._read(lambda c: (c.execute("PRAGMA auto_vacuum").fetchone()[0],
                                           c.execute("PRAGMA freelist_count").fetchone()[0]))
        if int(mode) != 2:
            return (f"{free} free pages kept for reuse (file created before auto_vacuum=INCREMENTAL; a one-time "
                    "VACUUM with the service stopped converts it, see docs/sqlite.md)")
        # executescript steps the pragma to completion; execute() would step once and free a single page
        self._read(lambda c: c.executescript("PRAGMA incremental_vacuum"))
        return f"{free} free pages returned to the file system"

    # --- lifecycle --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Cheap: two index look-ups, no table scan. The event count is kept in ``meta`` by ``write`` in the
        same transaction as the rows (``count(*)`` would walk a whole index, and ``max(seq)`` over-counts
        because an ignored duplicate still consumes an AUTOINCREMENT number)."""
        try:
            count, seq, version = self._read(lambda c: c.execute(
                "SELECT (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'event_count'), "
                "(SELECT max(seq) FROM events), "
                "(SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'schema_version')").fetchone())
        except StoreError as exc:
            return {"store": self.kind, "ok": False, "path": str(self.path), "error": str(exc)}
        return {"store": self.kind, "ok": True, "path": str(self.path), "events": count or 0,
                "watermark": None if seq is None else str(seq), "schema_version": version}

    def close(self) -> None:
        """Close every thread's connection. The last close checkpoints the WAL into the main file."""
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
            self._closed = True
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()


# --- helpers ----------------------------------------------------------------------------------------
#: One ``events`` row before its insert: (id, ts, dataset, ingested, doc).
EventRow = tuple[str, str, str, str, bytes]


def encode_rows(batch: Iterable[Event], ingested: str) -> list[EventRow]:
    """Validate (``check_event``) and encode a batch, ``event.ingested`` set to ``ingested``.

    Split from the insert because it is pure and is about half of a write's CPU (orjson of ~2 KB
    documents): the ingest worker process runs it while the main process inserts the previous batch."""
    return [_event_row(event, ingested) for event in batch]


def _event_row(event: Event, ingested: str) -> EventRow:
    """Validate one event (``check_event``) and encode its row.

    The dict copy stays: splicing ``event.ingested`` into the encoded bytes instead was measured slower
    (two more copies of a ~2 KB bytes object per event cost more than copying a 26-key dict)."""
    ts, eid, dataset = check_event(event)
    doc = dict(event)  # the caller's dict is left as it was
    doc[INGESTED] = ingested
    return (eid, ts, dataset, ingested, orjson.dumps(doc))


def _cursor_row(cursor: CursorUpdate, now: str) -> tuple[str, str, str]:
    return (cursor.connector_id, _dumps(cursor.value), now)


def _one_page(rows: Iterable[tuple[Any, ...]], size: int = 500) -> Iterator[list[tuple[Any, ...]]]:
    """Rows in lists of ``size`` (a merged stream, decoded like the pages of one)."""
    page: list[tuple[Any, ...]] = []
    for row in rows:
        page.append(row)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _parse_watermark(value: Watermark | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a SQLite watermark (a decimal commit sequence number)") from None


def _time_where(dataset: str | None, datasets: list[str] | None, start: str | None,
                end: str | None) -> tuple[str, list[Any]]:
    clauses = ["1"]
    params: list[Any] = []
    if dataset is not None:
        clauses.append("dataset = ?")
        params.append(dataset)
    elif datasets is not None:
        clauses.append(f"dataset IN ({','.join('?' * len(datasets))})")
        params.extend(datasets)
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("ts < ?")
        params.append(end)
    return " AND ".join(clauses), params


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    """Busy/locked means "try again later" (StoreUnavailable: callers back off, nothing is dropped)."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return StoreUnavailable(f"{path}: {exc}")
    return StoreError(f"{path}: {exc}")
