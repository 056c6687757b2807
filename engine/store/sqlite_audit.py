"""The audit chain on the SQLite store (``engine/audit`` decides what an entry is and how it links; this
mixin keeps the rows and makes every append conditional on the tail).

Why BEGIN IMMEDIATE around read-tail + insert: the running service and a CLI command (``alerts ack``) may
append at the same moment. SQLite lets one writer hold the reserved lock, so reading the tail and inserting
after it happen with no other append in between; two writers can never both link to the same tail (a fork).
``seq`` is the primary key as well, so even a writer that bypassed this path could not insert a second seq N.

The table is created on first use (``CREATE TABLE IF NOT EXISTS``), like the triage tables: an existing file
gains it without a migration and the evaluator's hot paths never touch it.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterator, Mapping, Sequence

import orjson

from engine.audit.chain import link
from engine.store.base import PurgeResult
from engine.store.sqlite_schema import _statements

AUDIT_DDL = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq       INTEGER PRIMARY KEY,  -- 1, 2, 3, ... (no AUTOINCREMENT: the chain, not SQLite, numbers it)
    at        TEXT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL,        -- JSON
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_subject ON audit_log (subject, seq);
CREATE INDEX IF NOT EXISTS audit_log_kind ON audit_log (kind, seq);
"""

_COLUMNS = "seq, at, kind, actor, subject, detail, prev_hash, hash"
#: Rows read per query while iterating (bounded memory on a long chain).
_PAGE = 1000


def _row(values: Sequence[Any]) -> dict[str, Any]:
    seq, at, kind, actor, subject, detail, prev_hash, digest = values
    return {"seq": seq, "at": at, "kind": kind, "actor": actor, "subject": subject,
            "detail": orjson.loads(detail), "prev_hash": prev_hash, "hash": digest}


class SqliteAuditMixin:
    """Adds the audit chain to ``SqliteStore`` (same methods as ``engine.store.es_audit.EsAuditMixin``)."""

    _audit_ready: bool = False

    def _audit_schema(self) -> None:
        if self._audit_ready:
            return
        conn = self._conn()  # type: ignore[attr-defined]
        try:
            for statement in _statements(AUDIT_DDL):
                conn.execute(statement)
        except sqlite3.Error as exc:
            from engine.store.sqlite import _translate

            raise _translate(exc, self.path) from exc  # type: ignore[attr-defined]
        self._audit_ready = True

    def append_audit(self, bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append one entry per body (at, kind, actor, subject, detail) after the current tail, all in one
        transaction; returns the stored rows (seq, prev_hash and hash filled in)."""
        self._audit_schema()

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            tail = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (tail[0], tail[1]) if tail else (0, None)
            rows = []
            for body in bodies:
                row = link(seq, prev, body)
                rows.append(row)
                seq, prev = row["seq"], row["hash"]
            conn.executemany(f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             [(r["seq"], r["at"], r["kind"], r["actor"], r["subject"],
                               orjson.dumps(r["detail"]).decode(), r["prev_hash"], r["hash"]) for r in rows])
            return rows

        return self._transaction(run)  # type: ignore[attr-defined]

    def audit_rows(self, *, subject: str | None = None, kinds: Sequence[str] | None = None, after_seq: int = 0,
                   limit: int | None = None, subjects: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Stored rows in seq order, filtered by subject (or any of ``subjects``) and kinds, paged by seq."""
        self._audit_schema()
        if subjects is not None and len(subjects) > 500:  # SQLite caps bound parameters per statement
            subjects = list(subjects)
            rows = [r for i in range(0, len(subjects), 500)
                    for r in self.audit_rows(kinds=kinds, after_seq=after_seq, subjects=subjects[i:i + 500])]
            yield from sorted(rows, key=lambda r: r["seq"])[:limit]
            return
        where, params = ["seq > ?"], []
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if subjects is not None:
            subjects = list(subjects)
            if not subjects:
                return
            where.append(f"subject IN ({','.join('?' * len(subjects))})")
            params.extend(subjects)
        if kinds is not None:
            kinds = list(kinds)
            if not kinds:
                return
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        left, last = limit, after_seq
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            rows = self._read(lambda c, a=last, n=page: c.execute(sql, [a, *params, n]).fetchall())  # type: ignore[attr-defined]
            for values in rows:
                yield _row(values)
            if len(rows) < page:
                return
            last = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def audit_tail(self) -> dict[str, Any] | None:
        """The last entry (the chain's head), or None while the chain is empty."""
        self._audit_schema()
        values = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone())
        return None if values is None else _row(values)

    def audit_seq_of_hash(self, digest: str) -> int | None:
        """The seq of the entry whose hash is ``digest`` (verify's "reordered" diagnosis; rare, so a scan)."""
        self._audit_schema()
        row = self._read(lambda c: c.execute("SELECT seq FROM audit_log WHERE hash = ? LIMIT 1",  # type: ignore[attr-defined]
                                             (digest,)).fetchone())
        return None if row is None else int(row[0])

    # --- retention (engine.audit.retention decides what may go; these only count and delete) ---------

    def audit_prunable_through(self, before: str) -> int:
        """The largest seq N such that every entry up to N is older than ``before`` (0: none is)."""
        self._audit_schema()

        def read(c: sqlite3.Connection) -> int:
            first_kept = c.execute("SELECT min(seq) FROM audit_log WHERE at >= ?", (before,)).fetchone()[0]
            if first_kept is not None:
                return int(first_kept) - 1
            tail = c.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
            return int(tail or 0)

        return self._read(read)  # type: ignore[attr-defined]

    def audit_count_through(self, seq: int) -> int:
        """How many entries with seq <= ``seq`` are still stored (a dry run's count)."""
        self._audit_schema()
        return int(self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            "SELECT count(*) FROM audit_log WHERE seq <= ?", (seq,)).fetchone()[0]))

    def delete_audit_through(self, seq: int, *, batch_size: int = 5000) -> PurgeResult:
        """Delete the entries with seq <= ``seq``, oldest first, ``batch_size`` per transaction."""
        self._audit_schema()
        result, batch = PurgeResult(), max(1, int(batch_size))

        def one_batch(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE seq <= ? "
                                "ORDER BY seq LIMIT ?)", (seq, batch)).rowcount

        while True:
            n = self._transaction(one_batch)  # type: ignore[attr-defined]
            if n:
                result.deleted += n
                result.transactions += 1
            if n < batch:
                return result
