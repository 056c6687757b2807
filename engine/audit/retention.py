"""Retention for the audit chain: drop its oldest entries without making the rest unverifiable.

Why the chain needs its own rule: an entry names staff, alert and case ids and, on patient cases, the
patient id, so GDPR's storage limitation applies to it like to alerts (``retention.audit``). But a chain
cut at the front looks exactly like a chain someone removed entries from. So a prune first *appends* an
``audit.pruned`` entry that records the seq and hash of the last entry it is about to delete, and only
then deletes the entries up to it. That record is covered by the hashes of everything after it, so:

- ``verify`` starts at the recorded (seq, hash) instead of the genesis, and still checks every entry kept;
- entries removed beyond what a prune recorded are a gap, as before;
- removing the ``audit.pruned`` entry itself is a gap too;
- a prune interrupted between the record and the last delete batch leaves entries the record already
  covers; ``verify`` skips them and the next pass deletes them.

Only a prefix of entries that are *all* older than the cut-off is pruned: one entry with a later ``at``
(a clock step back) stops the prune there, so no entry is deleted before it has been kept for the period.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.store.base import PurgeResult

#: The kind of the entry a prune appends (in ``engine.audit.KINDS``).
PRUNED = "audit.pruned"


def latest_prune(store: Any) -> Mapping[str, Any] | None:
    """The detail of the newest ``audit.pruned`` entry (``through_seq``, ``through_hash``), or None.

    Prunes are rare (one per retention pass that removed something), so reading them all is cheap."""
    last = None
    for row in store.audit_rows(kinds=[PRUNED]):
        last = row
    return None if last is None else last["detail"]


def prune_audit(store: Any, before: str, *, dry_run: bool = False, batch_size: int = 5000) -> PurgeResult:
    """Remove the chain's entries older than ``before`` (a canonical timestamp) as described above."""
    from engine import audit

    done = latest_prune(store)
    done_through = int(done["through_seq"]) if done else 0
    through = store.audit_prunable_through(before)
    if dry_run:
        return PurgeResult(deleted=store.audit_count_through(max(through, done_through)))
    if through > done_through:
        last = next(iter(store.audit_rows(after_seq=through - 1, limit=1)), None)
        if last is None or int(last["seq"]) != through:
            through = done_through  # the entry vanished under us: record nothing we cannot name
        else:
            audit.record(store, PRUNED, actor=audit.ENGINE_ACTOR, subject="audit",
                         detail={"through_seq": through, "through_hash": last["hash"], "before": before})
    if not max(through, done_through):
        return PurgeResult()
    return store.delete_audit_through(max(through, done_through), batch_size=batch_size)
