"""The case record: every alert about one subject (a user, a patient) within one period, with a risk score.

Kept apart from the code that *builds* cases (engine/alerts/cases.py) for the same reason as the alert model:
stores persist it without knowing how it is made, and the store contract can name it without an import cycle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


#: ``Case.subject_kind`` (and ``subject_field``) of a case about no user or patient: its rule's group, the
#: group as canonical JSON in ``subject`` ("-" for a rule without group-by)
GROUP_SUBJECT = "group"


def subject_label(kind: str, field_name: str, subject: str) -> str:
    """How a case's subject reads to an analyst: ``user user.name=jdoe``, or ``group source.ip=203.0.113.250``
    for a group case (``subject_value``)."""
    if kind == GROUP_SUBJECT:
        return f"{GROUP_SUBJECT} {subject_value(kind, subject)}"
    return f"{kind} {field_name}={subject}"


def subject_value(kind: str, subject: str) -> str:
    """A case's subject value as it reads: a group case's group as its fields (``n=2, source.ip=...``, or
    "(the whole rule)" for a rule without group-by), not as the JSON it is stored and hashed as."""
    if kind != GROUP_SUBJECT:
        return subject
    if subject == "-":
        return "(the whole rule)"
    try:
        group = json.loads(subject)
    except ValueError:
        return subject
    if not isinstance(group, dict) or not group:
        return subject
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                     for k, v in group.items())


def case_id(subject_kind: str, subject: str, period_start: str) -> str:
    """Subject field + subject value + period start (ISO): a re-run, a restart or a late alert of the same
    period lands on the same case, whatever order its alerts arrived in."""
    digest = hashlib.blake2b(digest_size=16)
    for part in ("case", subject_kind, subject, period_start):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class Case:
    """One case. Its content is a pure function of its member alerts (at their latest revisions) and the
    case settings, so it is identical however runs were cut; ``revision`` grows when that content changes."""

    id: str
    subject_kind: str  # the field the case is about, e.g. "user.name", "ehr.patient.id"; "group" = no subject
    subject: str
    period_start: str
    period_end: str
    first_trigger: str
    last_trigger: str
    level: str  # the highest member rule level
    score: float
    #: why the score is what it is: [{signal, detail, points}], summing to ``score``
    score_parts: list[dict[str, Any]] = field(default_factory=list)
    #: one sentence per rule (and per extra signal) an analyst reads first
    reasons: list[str] = field(default_factory=list)
    #: [{id, title, level, alerts, events}] per member rule, highest level first
    rules: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)  # member alert ids, sorted
    evidence: list[str] = field(default_factory=list)  # event ids of the member alerts (their evidence lists)
    evidence_total: int = 0
    #: the field that named the subject in the earliest member alert (``user.name``, ``wardwatch.identity``…)
    subject_field: str = ""
    status: str = "new"
    revision: int = 1
    #: who works on it (triage state, overlaid by readers and on delivery; never set by the case builder)
    assignee: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _FIELDS}
        data["score_parts"] = [dict(p) for p in self.score_parts]
        data["reasons"] = list(self.reasons)
        data["rules"] = [dict(r) for r in self.rules]
        data["alerts"] = list(self.alerts)
        data["evidence"] = list(self.evidence)
        data["record"] = "case"  # tells a case line from an alert line in a mixed feed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Case":
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})


_FIELDS = tuple(Case.__dataclass_fields__)
_FIELD_SET = frozenset(_FIELDS)
