"""The ``@audit`` outbox consumer: one ``alert.revision`` / ``case.revision`` entry per revision, exactly once.

Why an outbox consumer (like the case builder, ``engine.alerts.cases``): the outbox already hands every
revision to every consumer at least once and survives restarts; placed first, before ``@cases`` and every
sink, the chain holds each revision before anyone was told about it. It sees suppressed revisions too
(``engine.alerts.exceptions.UNFILTERED_CONSUMERS``): the chain records what happened, not what was sent.

At least once becomes exactly once here: a crash after the append but before the outbox acknowledgement
hands the same batch over again, so revisions already in the chain (same subject, same revision) are
skipped. The check is one indexed query per batch.

What an entry holds: ids, the revision, the rule, the group values as the alert holds them (pseudonymised
where the site says so) and the SHA-256 of the revision's stored content, so a later copy of the alert can
be proven to be (or not to be) what was stored at that revision, without the chain holding its evidence.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import Any, Sequence

import orjson

from engine import audit
from engine.alerts.cases import CASE_BUILDER
from engine.alerts.model import Alert

#: The outbox consumer name (no configured sink can be named with an ``@``).
AUDIT_RECORDER = "@audit"
#: Overlaid on a revision when it is read (triage state), not part of what the evaluator stored.
_OVERLAY = ("status", "assignee")


#: An alert's ``to_dict`` keys without the overlay: its body is read straight off the fields.
_ALERT_BODY = tuple(name for name in Alert.__dataclass_fields__ if name not in _OVERLAY)
_alert_body = attrgetter(*_ALERT_BODY)


def content_sha256(obj: Any) -> str:
    """SHA-256 of the revision's canonical JSON, without the triage overlay.

    An ``Alert``'s body is taken from its fields without ``to_dict``'s copies (the same keys and values,
    so the same bytes: orjson encodes the lists and dicts in place); anything else goes through its
    ``to_dict`` (a case adds ``record``)."""
    if type(obj) is Alert:
        body = dict(zip(_ALERT_BODY, _alert_body(obj)))
    else:
        body = {k: v for k, v in obj.to_dict().items() if k not in _OVERLAY}
    # the bytes of ``canonical_json(body).encode()``, without the str round trip (~1 KB per alert revision)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def alert_detail(alert: Any) -> dict[str, Any]:
    return {"revision": alert.revision, "rule_id": alert.rule_id, "level": alert.rule_level,
            "group": dict(alert.group), "first_trigger": alert.first_trigger, "last_trigger": alert.last_trigger,
            "events": alert.evidence_total, "sha256": content_sha256(alert)}


def case_detail(case: Any) -> dict[str, Any]:
    return {"revision": case.revision, "subject_field": case.subject_field or case.subject_kind,
            "subject": case.subject, "level": case.level, "alerts": list(case.alerts),
            "sha256": content_sha256(case)}


class AuditRecorder:
    """Looks like a sink to ``deliver_pending`` (name ``@audit``). ``wants`` picks the outbox streams."""

    name = AUDIT_RECORDER

    def __init__(self, store: Any, wants: frozenset[str] = frozenset({"alerts", "cases"})):
        self.store = store
        self.wants = wants

    def deliver(self, alerts: Sequence[Any]) -> None:
        self._record("alert.revision", alerts, alert_detail)

    def deliver_cases(self, cases: Sequence[Any]) -> None:
        self._record("case.revision", cases, case_detail)

    def _record(self, kind: str, items: Sequence[Any], detail: Any) -> None:
        ids = list(dict.fromkeys(item.id for item in items))
        seen = {(r["subject"], r["detail"].get("revision"))
                for r in self.store.audit_rows(subjects=ids, kinds=[kind])} if ids else set()
        fresh = []
        for item in items:
            if (item.id, item.revision) not in seen:
                seen.add((item.id, item.revision))
                fresh.append((kind, audit.ENGINE_ACTOR, item.id, detail(item), None))
        audit.append_many(self.store, fresh)  # the stored entries are not needed back

    def close(self) -> None:
        pass


def with_audit_recorder(store: Any, sinks: list[Any]) -> list[Any]:
    """``sinks`` with the recorder first. With the case builder on, the recorder is two consumers of the one
    ``@audit`` name (alert and case outboxes are separate streams): the alert half before ``@cases``, the
    case half right after it, so the case revisions a round builds are recorded in that same round."""
    at = next((i for i, s in enumerate(sinks) if getattr(s, "name", "") == CASE_BUILDER), None)
    if at is None:
        return [AuditRecorder(store), *sinks]
    return [AuditRecorder(store, frozenset({"alerts"})), *sinks[:at + 1],
            AuditRecorder(store, frozenset({"cases"})), *sinks[at + 1:]]
