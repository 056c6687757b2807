"""Triage state, triage marks and suppression exceptions on the SQLite store (``engine/alerts/triage.py`` and
``engine/alerts/exceptions.py`` decide what they mean; this mixin only keeps them).

Why tables of their own, apart from ``alerts``: the evaluator rewrites an alert row whenever a new revision
is committed (``commit_rule_runs``), so anything an analyst set on the row would be reset. Triage lives here,
keyed by the alert or case id, and is overlaid on the alert when it is read.

Why the tables are created on first use rather than in ``sqlite_schema.ensure_schema``: they are purely
additive (``CREATE TABLE IF NOT EXISTS``), so an existing file gains them the first time an analyst triages,
an old Wardwatch ignores them, and the evaluator's hot paths never see them.

Concurrency: a triage record carries ``version``; ``put_triage_record`` writes only if the stored version is
still the one the caller read (SQLite serialises writers, so the check and the write are one transaction).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Sequence

import orjson

from engine.store.base import StoreConflict
from engine.store.sqlite_schema import _statements

TRIAGE_DDL = """
CREATE TABLE IF NOT EXISTS triage (
    subject_id TEXT PRIMARY KEY,        -- an alert id or a case id
    kind       TEXT NOT NULL,           -- "alert" | "case"
    version    INTEGER NOT NULL,        -- optimistic concurrency: +1 per write
    doc        TEXT NOT NULL            -- TriageState JSON
);
-- facts about one revision of a subject that the delivery path records: "suppressed" (value: the exception
-- id), "notified" (value: the assignee told about this revision)
CREATE TABLE IF NOT EXISTS triage_marks (
    subject_id TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    mark       TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (subject_id, revision, mark)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppression_exceptions (
    id      TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    until   TEXT NOT NULL,
    doc     TEXT NOT NULL               -- SuppressionException JSON
);
"""


class SqliteTriageMixin:
    """Adds triage records, triage marks and exception records to ``SqliteStore`` (same methods as
    ``engine.store.es_triage.EsTriageMixin``; the shared contract is tested over both stores)."""

    _triage_ready: bool = False

    def _triage_schema(self) -> None:
        if self._triage_ready:
            return
        conn = self._conn()  # type: ignore[attr-defined]
        try:
            for statement in _statements(TRIAGE_DDL):
                conn.execute(statement)  # autocommit: each CREATE ... IF NOT EXISTS is atomic on its own
        except sqlite3.Error as exc:
            from engine.store.sqlite import _translate

            raise _translate(exc, self.path) from exc  # type: ignore[attr-defined]
        self._triage_ready = True

    # --- triage records -------------------------------------------------------------------------------
    def get_triage_record(self, subject_id: str) -> dict[str, Any] | None:
        """The stored triage record (with its ``version``), or None for a subject never triaged."""
        return self.get_triage_records([subject_id]).get(subject_id)

    def get_triage_records(self, subject_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Records by subject id: of ``subject_ids``, or every record (None)."""
        self._triage_schema()
        if subject_ids is None:
            rows = self._read(lambda c: c.execute("SELECT version, doc FROM triage").fetchall())  # type: ignore[attr-defined]
        else:
            rows = []
            ids = list(subject_ids)
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                rows += self._read(lambda c: c.execute(  # type: ignore[attr-defined]
                    f"SELECT version, doc FROM triage WHERE subject_id IN ({','.join('?' * len(part))})",
                    part).fetchall())
        return _records_by_subject(rows)

    def open_assigned_triage_records(self) -> dict[str, dict[str, Any]]:
        """Records with an assignee that are not closed (who may hear about a new revision), by subject id."""
        self._triage_schema()
        rows = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            "SELECT version, doc FROM triage WHERE json_extract(doc, '$.assignee') IS NOT NULL "
            "AND json_extract(doc, '$.status') != 'closed'").fetchall())
        return _records_by_subject(rows)

    def put_triage_record(self, record: dict[str, Any], expected_version: int) -> int:
        """Write ``record`` if the stored version is still ``expected_version`` (0: none stored yet);
        returns the new version, or raises ``StoreConflict`` (someone else changed it: re-read and retry)."""
        self._triage_schema()
        doc = orjson.dumps({k: v for k, v in record.items() if k != "version"}).decode()
        new = expected_version + 1

        def run(conn: sqlite3.Connection) -> int:
            if expected_version == 0:
                done = conn.execute("INSERT OR IGNORE INTO triage (subject_id, kind, version, doc) VALUES (?, ?, ?, ?)",
                                    (record["subject_id"], record["kind"], new, doc)).rowcount
            else:
                done = conn.execute("UPDATE triage SET version = ?, doc = ? WHERE subject_id = ? AND version = ?",
                                    (new, doc, record["subject_id"], expected_version)).rowcount
            if done != 1:
                raise StoreConflict(f"triage state of {record['subject_id']} changed concurrently")
            return new

        return self._transaction(run)  # type: ignore[attr-defined]

    # --- id prefixes (``alerts ack 3f2a9c01``) ------------------------------------------------------------
    def records_with_id_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[Any]:
        """Up to ``limit`` alerts (``kind="alert"``) or cases whose id starts with ``prefix``: a range scan of
        the primary key, not a listing of every record."""
        from engine.alerts.case_model import Case
        from engine.alerts.model import Alert

        table, build = ("alerts", Alert.from_dict) if kind == "alert" else ("cases", Case.from_dict)
        rows = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            f"SELECT doc FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (prefix, prefix + "\U0010ffff", int(limit))).fetchall())
        return [build(orjson.loads(r[0])) for r in rows]

    # --- marks ----------------------------------------------------------------------------------------
    def put_triage_marks(self, mark: str, rows: Sequence[tuple[str, int, str]]) -> None:
        """Record ``mark`` for (subject id, revision, value) rows; a row already marked keeps its value."""
        if not rows:
            return
        self._triage_schema()
        data = [(sid, int(rev), mark, value) for sid, rev, value in rows]
        self._transaction(lambda conn: conn.executemany(  # type: ignore[attr-defined]
            "INSERT OR IGNORE INTO triage_marks (subject_id, revision, mark, value) VALUES (?, ?, ?, ?)", data))

    def get_triage_marks(self, mark: str, subject_ids: Sequence[str] | None = None) -> dict[str, dict[int, str]]:
        """{subject id: {revision: value}} for ``mark`` (of ``subject_ids``, or of every subject)."""
        self._triage_schema()
        if subject_ids is None:
            rows = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
                "SELECT subject_id, revision, value FROM triage_marks WHERE mark = ?", (mark,)).fetchall())
        else:
            rows, ids = [], list(subject_ids)
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                rows += self._read(lambda c: c.execute(  # type: ignore[attr-defined]
                    "SELECT subject_id, revision, value FROM triage_marks WHERE mark = ? AND subject_id IN "
                    f"({','.join('?' * len(part))})", [mark, *part]).fetchall())
        out: dict[str, dict[int, str]] = {}
        for sid, rev, value in rows:
            out.setdefault(sid, {})[int(rev)] = value
        return out

    # --- exceptions -----------------------------------------------------------------------------------
    def put_exception_record(self, record: dict[str, Any]) -> None:
        self._triage_schema()
        self._transaction(lambda conn: conn.execute(  # type: ignore[attr-defined]
            "INSERT INTO suppression_exceptions (id, rule_id, until, doc) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO "
            "UPDATE SET rule_id = excluded.rule_id, until = excluded.until, doc = excluded.doc",
            (record["id"], record["rule_id"], record["until"], orjson.dumps(record).decode())))

    def list_exception_records(self) -> list[dict[str, Any]]:
        """Every exception record, ordered by creation time (then id)."""
        self._triage_schema()
        rows = self._read(lambda c: c.execute("SELECT doc FROM suppression_exceptions").fetchall())  # type: ignore[attr-defined]
        return sorted((orjson.loads(r[0]) for r in rows), key=lambda r: (r["created"], r["id"]))

    def delete_exception_record(self, exception_id: str) -> bool:
        """Delete one exception; False when there was none with that id."""
        self._triage_schema()
        return bool(self._transaction(lambda conn: conn.execute(  # type: ignore[attr-defined]
            "DELETE FROM suppression_exceptions WHERE id = ?", (exception_id,)).rowcount))


def _records_by_subject(rows: Any) -> dict[str, dict[str, Any]]:
    """(version, doc) rows as records by subject id, each carrying the version a conditional write needs."""
    out = {}
    for version, doc in rows:
        record = orjson.loads(doc)
        record["version"] = version
        out[record["subject_id"]] = record
    return out
