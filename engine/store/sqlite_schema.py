"""Schema of the embedded SQLite store: one file holds events and every piece of state that must commit with them.

Kept apart from the store class so the benchmark's bare-``executemany`` baseline can build exactly the same
tables (a fair ratio needs the same indexes and pragmas) and so a migration touches one place.

Why one file: a connector cursor must commit in the same transaction as the events it covers, and a rule
checkpoint in the same transaction as its alerts and outbox entries. Separate files would need two-phase
commit; one SQLite file gives it for free.
"""

from __future__ import annotations

import sqlite3

from engine.store.base import StoreError

#: Bump when the DDL changes; add a step to ``_MIGRATIONS`` that brings version N-1 to N.
#: Version 2: events are unique on (ts, id) instead of id. Version-1 files stay as they are and keep working
#: (their extra UNIQUE on id only costs insert speed), so no migration step is needed.
SCHEMA_VERSION = 2


class SchemaVersionError(StoreError):
    """The file was written by a newer Wardwatch: refuse it rather than misread or damage it."""


EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS events (
    -- commit order; AUTOINCREMENT so a seq is never reused (a watermark must not point at a later event)
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL,             -- event.id, deterministic: a re-read is ignored, not copied
    ts       TEXT NOT NULL,             -- @timestamp, canonical ISO (sorts lexically == chronologically)
    dataset  TEXT NOT NULL,             -- event.dataset
    ingested TEXT NOT NULL,             -- event.ingested (wall clock, informational; seq is the watermark)
    doc      BLOB NOT NULL              -- orjson of the flat event, event.ingested included
);
-- search: per-dataset (ts, id) order; covering for the key scan (seq is the rowid, so it is in the index too)
CREATE INDEX IF NOT EXISTS events_dataset_ts ON events (dataset, ts, id);
-- search without a dataset filter, and idempotency. Unique on (ts, id), not on id alone: event.id is a hash
-- of the raw record, which holds the event's time, so a re-read always repeats both. Event times arrive
-- roughly in order, so this index is appended to; a UNIQUE on the random-looking id alone made every insert
-- touch a random page (measured, 1M rows of ~2.5 KB: 55k rows/s with it, 102k/s with this one).
CREATE UNIQUE INDEX IF NOT EXISTS events_ts ON events (ts, id);
"""

STATE_DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    connector_id TEXT PRIMARY KEY,
    value        TEXT NOT NULL,         -- JSON
    updated      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    location    TEXT NOT NULL,
    raw         TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    rule_id   TEXT PRIMARY KEY,
    watermark TEXT,                     -- NULL: never run
    extra     TEXT NOT NULL,            -- JSON
    updated   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id            TEXT PRIMARY KEY,
    rule_id       TEXT NOT NULL,
    group_key     TEXT NOT NULL,
    first_trigger TEXT NOT NULL,
    last_trigger  TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    doc           TEXT NOT NULL         -- Alert.to_dict() JSON
);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (rule_id, group_key, last_trigger);
CREATE INDEX IF NOT EXISTS alerts_first ON alerts (first_trigger, id);
CREATE INDEX IF NOT EXISTS alerts_rule_first ON alerts (rule_id, first_trigger, id);
-- every alert revision ever committed, in commit order; sinks read what they have not acknowledged
CREATE TABLE IF NOT EXISTS outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    doc      TEXT NOT NULL,             -- the alert as it was at this revision
    UNIQUE (alert_id, revision)
);
CREATE TABLE IF NOT EXISTS deliveries (
    sink     TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (sink, alert_id, revision)
) WITHOUT ROWID;
"""

#: Added after schema version 2 without a version bump: purely additive (IF NOT EXISTS), created on open
#: when missing, so older files gain them and older Wardwatch versions ignore them.
CASES_DDL = """
-- cases (engine/alerts/cases.py): the latest revision of each, and every revision in commit order for sinks
CREATE TABLE IF NOT EXISTS cases (
    id            TEXT PRIMARY KEY,
    first_trigger TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    doc           TEXT NOT NULL         -- Case.to_dict() JSON
);
CREATE INDEX IF NOT EXISTS cases_first ON cases (first_trigger, id);
CREATE TABLE IF NOT EXISTS case_outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id  TEXT NOT NULL,
    revision INTEGER NOT NULL,
    doc      TEXT NOT NULL,
    UNIQUE (case_id, revision)
);
CREATE TABLE IF NOT EXISTS case_deliveries (
    sink     TEXT NOT NULL,
    case_id  TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (sink, case_id, revision)
) WITHOUT ROWID;
"""


def apply_pragmas(conn: sqlite3.Connection, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000,
                  cache_kib: int = 65_536) -> None:
    """Per-connection settings. WAL lets readers run during a write; synchronous=NORMAL in WAL loses at most
    the last transactions on power loss (never corrupts), which the connectors' cursors then re-read.

    The cache is raised from SQLite's 2 MiB default because ``event.id`` is a hash: inserts into its UNIQUE
    index land on random pages, and with a tiny cache each batch re-reads them from the OS.
    """
    sync = synchronous.upper()
    if sync not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # 16 KiB pages for a new file (a no-op on an existing one; must precede WAL): events are ~1.5-2.5 KiB
    # rows, and bigger pages cut B-tree splits and overflow pages (measured 37k -> 59k rows/s on 100k
    # FHIR-sized rows, bare executemany, same schema).
    conn.execute("PRAGMA page_size = 16384")
    # Retention deletes old events; INCREMENTAL lets `PRAGMA incremental_vacuum` hand the freed pages back to
    # the OS. Only takes effect on a new (empty) file; an existing file stays as it was (auto_vacuum NONE)
    # and reuses freed pages for new rows instead (docs/sqlite.md, "Retention": a one-time VACUUM converts it).
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"could not switch the SQLite file to WAL (journal_mode is {mode!r})")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
    conn.execute("PRAGMA temp_store = FILE")  # sorts spill to disk, not to RAM: memory stays bounded
    # Checkpoint the WAL every ~40 MiB instead of SQLite's ~4 MiB: each checkpoint fsyncs, and with ~1.5 KiB
    # events the default checkpointed every ~2,700 events (measured: 22-27k -> 29-41k events/s at 300k).
    conn.execute("PRAGMA wal_autocheckpoint = 10000")


def read_version(conn: sqlite3.Connection) -> int | None:
    """The file's schema version, or None for a fresh (empty) file."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None


def ensure_schema(conn: sqlite3.Connection, path: str, *, refuse_old_ids: bool = True) -> int:
    """Create the schema on first open, refuse a newer one. Runs under BEGIN IMMEDIATE so two processes
    opening a fresh file at once cannot both create it half-way. ``refuse_old_ids=False`` (a reader: it
    cannot mix id schemes) skips the event-id scheme check; the caller runs ``event_id_scheme_problem``."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: schema version {version} is newer than this Wardwatch supports ({SCHEMA_VERSION}); "
                "upgrade Wardwatch or point it at another file (the file was left untouched)"
            )
        if version is None:
            # executescript would COMMIT on its own; run statement by statement inside our transaction
            for statement in _statements(STATE_DDL + EVENTS_DDL):
                conn.execute(statement)
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            # kept by write() in the same transaction: health() must be cheap, and max(seq) is not a count
            # (an ignored duplicate still consumes an AUTOINCREMENT number)
            conn.execute("INSERT INTO meta (key, value) VALUES ('event_count', '0')")
            version = SCHEMA_VERSION
        # (future) while version < SCHEMA_VERSION: run _MIGRATIONS[version] and bump
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'case_deliveries'").fetchone() is None:
            for statement in _statements(CASES_DDL):
                conn.execute(statement)
        if refuse_old_ids:
            check_event_id_scheme(conn, path)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


class EventIdSchemeError(StoreError):
    """The file holds events whose ids were made with the connector's name (before ``engine.identity``):
    mixing the two schemes would store every re-read record a second time."""


def event_id_scheme_problem(conn: sqlite3.Connection, path: str) -> str | None:
    """Why writing to this file must be refused (its events predate ``event_id_scheme``), or None."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'event_id_scheme'").fetchone()
    if row is not None:
        return None
    count = conn.execute("SELECT value FROM meta WHERE key = 'event_count'").fetchone()
    if (count is not None and int(count[0]) > 0) or conn.execute("SELECT 1 FROM events LIMIT 1").fetchone():
        return (f"{path}: events were written with connector-named ids (scheme 1); "
                "delete the store and ingest again (see docs/sqlite.md)")
    return None


def check_event_id_scheme(conn: sqlite3.Connection, path: str) -> None:
    """Record ``event_id_scheme`` in a file without events; refuse a file whose events predate it."""
    from engine.identity import SCHEME

    if conn.execute("SELECT 1 FROM meta WHERE key = 'event_id_scheme'").fetchone() is not None:
        return
    problem = event_id_scheme_problem(conn, path)
    if problem is not None:
        raise EventIdSchemeError(problem)
    conn.execute("INSERT INTO meta (key, value) VALUES ('event_id_scheme', ?)", (str(SCHEME),))


def _statements(script: str) -> list[str]:
    """Split our own DDL (no semicolons inside strings) into statements, dropping comments."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
