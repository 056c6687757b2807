"""The tamper-evident audit log: who did what to which alert, case, exception, incident or rule, and when.

Every entry links to the one before it by SHA-256 (``engine.audit.chain`` has the exact rule), so changing
or removing any entry is caught by :func:`verify`, which names the first broken link. Writers call
:func:`record` (or :func:`record_many`); the store appends conditionally on its tail, so the running
service and a CLI command never fork the chain.

What goes in (``KINDS``): every alert and case revision (the ``@audit`` outbox consumer,
``engine.audit.recorder``), every triage change and exception (``engine.alerts.triage``/``exceptions``),
incident declarations and the reminders sent for them (``engine.incidents``), rule files as loaded
(``engine.audit.rules``), every access report handed out (``engine.reports.accountability``), and each
retention prune of the chain's oldest entries (``engine.audit.retention``). Entries carry ids, rule ids,
hashes and group values as the alert holds them (pseudonymised where the site says so), never event
contents.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from engine.audit.chain import GENESIS, AuditEntry, VerifyResult, verify_rows
from engine.audit.retention import latest_prune
from engine.events import format_timestamp

__all__ = ["AuditEntry", "GENESIS", "KINDS", "VerifyResult", "append_many", "entries", "head", "parse_head",
           "record", "record_many", "verify"]

#: Every kind an entry may have (a typo raises instead of starting a kind nobody lists).
KINDS = ("alert.revision", "case.revision", "triage.acknowledge", "triage.assign", "triage.comment",
         "triage.close", "exception.add", "exception.remove", "incident.declare", "incident.reminder",
         "rule.loaded", "audit.pruned", "report.run")
#: The actor of what the engine does by itself (revisions, rule loads, reminders).
ENGINE_ACTOR = "wardwatch"


def _now() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def _body(kind: str, actor: str, subject: str, detail: Mapping[str, Any], at: str | None) -> dict[str, Any]:
    if kind not in KINDS:
        raise ValueError(f"unknown audit entry kind {kind!r} (known: {', '.join(KINDS)})")
    return {"at": at or _now(), "kind": kind, "actor": actor, "subject": subject, "detail": dict(detail)}


def record(store: Any, kind: str, *, actor: str, subject: str, detail: dict[str, Any],
           at: str | None = None) -> AuditEntry:
    """Append one entry (``at`` defaults to now, UTC) and return it as stored."""
    return record_many(store, [(kind, actor, subject, detail, at)])[0]


def record_many(store: Any, items: Sequence[tuple[str, str, str, Mapping[str, Any], str | None]]
                ) -> list[AuditEntry]:
    """Append (kind, actor, subject, detail, at) entries in order, as one conditional append (one
    transaction on SQLite): the outbox consumer writes a whole delivery batch this way."""
    return [AuditEntry.from_dict(row) for row in append_many(store, items)]


def append_many(store: Any, items: Sequence[tuple[str, str, str, Mapping[str, Any], str | None]]
                ) -> list[dict[str, Any]]:
    """``record_many`` returning the store's rows as they are: the ``@audit`` consumer appends one entry
    per alert revision and reads none of them back (6,720 ``AuditEntry`` copies in a SigmaHQ first run)."""
    if not items:
        return []
    at = _now()  # one clock read per append: the entries of one batch are appended together
    bodies = [_body(kind, actor, subject, detail, when or at) for kind, actor, subject, detail, when in items]
    return store.append_audit(bodies)


def entries(store: Any, *, subject: str | None = None, kinds: Sequence[str] | None = None, after_seq: int = 0,
            limit: int | None = None) -> Iterator[AuditEntry]:
    """Entries in chain order, optionally of one subject and of some kinds only."""
    for row in store.audit_rows(subject=subject, kinds=kinds, after_seq=after_seq, limit=limit):
        yield AuditEntry.from_dict(row)


def head(store: Any) -> AuditEntry | None:
    """The last entry. Its (seq, hash), kept somewhere the engine cannot write, is what makes cutting
    entries off the end of the chain detectable: nothing inside the chain can show that."""
    row = store.audit_tail()
    return None if row is None else AuditEntry.from_dict(row)


def verify(store: Any, expect_head: tuple[int, str] | None = None) -> VerifyResult:
    """Recompute the whole chain and report the first entry that does not hold (see ``chain.verify_rows``).

    ``expect_head``: a (seq, hash) that ``head`` printed earlier and that was kept off the machine. The chain
    must still hold that entry with that hash; this is what shows entries cut off the end (*truncated*) or
    a chain rebuilt from some point on (*rewritten*), which the links alone cannot.

    After a retention prune the walk starts at the last removed entry as the chain's newest ``audit.pruned``
    entry recorded it (``engine.audit.retention``); ``pruned_through`` in the result says where."""
    pruned = latest_prune(store)
    start = (int(pruned["through_seq"]), str(pruned["through_hash"])) if pruned else (0, GENESIS)
    result = verify_rows(store.audit_rows(after_seq=start[0]), find_hash=store.audit_seq_of_hash, start=start)
    result = dataclasses.replace(result, pruned_through=start[0])
    if not result.ok or expect_head is None:
        return result
    seq, digest = expect_head
    if seq <= start[0]:
        return dataclasses.replace(result, ok=False, first_broken=seq, reason=(
            f"cannot confirm the kept head: seq {seq} was removed by retention (entries up to seq {start[0]} "
            "are pruned); keep a newer `audit head`"))
    kept = next(iter(store.audit_rows(after_seq=seq - 1, limit=1)), None)
    if kept is None or int(kept["seq"]) != seq:
        return dataclasses.replace(result, ok=False, first_broken=seq, reason=(
            f"truncated: seq {seq} (the kept head) is gone; the chain ends at seq {start[0] + result.checked}"))
    if kept["hash"] != digest:
        return dataclasses.replace(result, ok=False, first_broken=seq,
                                   reason=f"rewritten: seq {seq} no longer has the kept head's hash")
    return result


def parse_head(text: str) -> tuple[int, str]:
    """``"SEQ HASH"`` (what ``audit head`` prints) or ``"SEQ:HASH"``; ValueError naming what is wrong."""
    parts = text.replace(":", " ").split()
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) < 1:
        raise ValueError(f"{text!r}: expected SEQ HASH as `audit head` prints it")
    digest = parts[1].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r}: the hash must be 64 hex digits")
    return int(parts[0]), digest
