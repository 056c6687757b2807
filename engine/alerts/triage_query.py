"""Finding and showing alerts and cases with their triage state: ``alerts list`` filters and ``alerts show``.

Apart from ``engine.alerts.triage`` (which changes the state) because reading has its own concerns: what a
user or patient filter matches (group values first, then the listed evidence events, read from the store),
and what one view of a subject gathers (audit history, suppressed revisions, incident deadlines).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.alerts.triage import STATUSES, SUPPRESSED, _parse, _state_of, now_iso, overlay, resolve
from engine.errors import UsageError
from engine.events import format_timestamp
from engine.store.base import SearchQuery

#: Group or evidence fields that name the user (``alerts list --user``) and the patient (``--patient``).
USER_FIELDS = ("user.name", "user.id", "wardwatch.identity", "TargetUserName", "SubjectUserName")
PATIENT_FIELDS = ("ehr.patient.id", "ehr.patient.ids")


@dataclass
class AlertFilter:
    """``alerts list`` filters; every one given must hold. ``since``/``until`` bound the last trigger
    (``since`` inclusive, ``until`` exclusive, ISO UTC). ``status`` is a lifecycle state or ``suppressed``."""

    status: str | None = None
    level: str | None = None
    since: str | None = None
    until: str | None = None
    rule: str | None = None
    user: str | None = None
    patient: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in (*STATUSES, SUPPRESSED):
            raise UsageError(f"--status {self.status!r}: one of {', '.join((*STATUSES, SUPPRESSED))}")


def rule_matches_ref(item: Any, ref: str) -> bool:
    """A rule or correlation named by ``ref``: its id, name, title, or its file's name (with or without .yml)."""
    from pathlib import Path

    file = Path(item.path).name
    return ref in (item.id, item.name, item.title, file, Path(file).stem)


def rule_ids_for(ref: str, ruleset: Any = None) -> set[str]:
    """The rule ids ``--rule REF`` means: the configured rules whose id, name, title or file is REF, plus
    REF itself (an alert of a rule since removed is still found by its id)."""
    ids = {ref}
    if ruleset is not None:
        ids |= {item.id for item in [*ruleset.rules.values(), *ruleset.correlations.values()]
                if rule_matches_ref(item, ref)}
    return ids


def find_alerts(store: Any, flt: AlertFilter, ruleset: Any = None) -> list[Alert]:
    """Alerts that pass ``flt``, ordered by (first_trigger, id), with status and assignee from triage."""
    alerts = store.list_alerts()
    if flt.rule is not None:
        ids = rule_ids_for(flt.rule, ruleset)
        alerts = [a for a in alerts if a.rule_id in ids or a.rule_title == flt.rule]
    alerts = [a for a in alerts if _in_range(a.last_trigger, flt) and (flt.level is None or a.rule_level == flt.level)]
    alerts = overlay(store, alerts)  # type: ignore[assignment]
    if flt.status == SUPPRESSED:
        marks = store.get_triage_marks("suppressed", [a.id for a in alerts]) if alerts else {}
        alerts = [a for a in alerts if a.revision in marks.get(a.id, {})]
    elif flt.status is not None:
        alerts = [a for a in alerts if a.status == flt.status]
    if flt.user is not None:
        alerts = [a for a in alerts if names(store, a, USER_FIELDS, flt.user)]
    if flt.patient is not None:
        alerts = [a for a in alerts if names(store, a, PATIENT_FIELDS, flt.patient)]
    return alerts[: flt.limit] if flt.limit is not None else alerts


def _in_range(ts: str, flt: AlertFilter) -> bool:
    return (flt.since is None or ts >= flt.since) and (flt.until is None or ts < flt.until)


def names(store: Any, alert: Alert, fields: Sequence[str], value: str) -> bool:
    """Whether ``alert`` is about ``value`` in one of ``fields``: its group values first; an alert whose
    group has none of those fields is checked against its listed evidence events (read from the store)."""
    wanted = value.casefold()
    grouped = [alert.group[f] for f in fields if f in alert.group]
    if grouped:
        return any(_has(v, wanted) for v in grouped)
    if not alert.evidence:
        return False
    evidence = set(alert.evidence)
    end = format_timestamp(_parse(alert.window_end) + timedelta(milliseconds=1))
    query = SearchQuery(start=alert.window_start, end=end, fields=list(fields))
    return any(event["event.id"] in evidence and any(_has(event.get(f), wanted) for f in fields)
               for event in store.search(query))


def _has(value: Any, wanted: str) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has(v, wanted) for v in value)
    return value is not None and str(value).casefold() == wanted


def find_cases(store: Any, flt: AlertFilter, ruleset: Any = None) -> list[Case]:
    """Cases that pass ``flt`` (``rule``: a member rule; ``level``: the case level; ``since``/``until``: its
    last trigger; ``user``/``patient``: its subject, else a member alert about them), with triage overlaid."""
    cases = store.list_cases()
    if flt.rule is not None:
        ids = rule_ids_for(flt.rule, ruleset)
        cases = [c for c in cases if any(r["id"] in ids or r.get("title") == flt.rule for r in c.rules)]
    cases = [c for c in cases if _in_range(c.last_trigger, flt) and (flt.level is None or c.level == flt.level)]
    cases = overlay(store, cases)  # type: ignore[assignment]
    if flt.status is not None:
        cases = [c for c in cases if c.status == flt.status]
    for value, fields in ((flt.user, USER_FIELDS), (flt.patient, PATIENT_FIELDS)):
        if value is not None:
            cases = [c for c in cases if _case_names(store, c, fields, value)]
    return cases[: flt.limit] if flt.limit is not None else cases


def _case_names(store: Any, case: Case, fields: Sequence[str], value: str) -> bool:
    if case.subject_field in fields:
        return _has(case.subject, value.casefold())
    members = (store.get_alert(aid) for aid in case.alerts)
    return any(a is not None and names(store, a, fields, value) for a in members)


def describe(store: Any, ref: str, now: str | None = None) -> dict[str, Any]:
    """Everything ``alerts show`` prints about an alert or case: the record (triage overlaid), its triage
    state and comments, the audit history, suppressed revisions, exceptions made from it and, where
    ``engine.incidents`` exists, its incident deadlines."""
    from engine import audit

    subject = resolve(store, ref)
    state = _state_of(store, subject)[0]
    [record] = overlay(store, [subject.record])
    view: dict[str, Any] = {"kind": subject.kind, subject.kind: record.to_dict(), "triage": state.to_dict()}
    if subject.kind == "alert":
        view["rule"] = {"id": record.rule_id, "title": record.rule_title, "level": record.rule_level,  # type: ignore[union-attr]
                        "tags": list(record.rule_tags), "description": record.rule_description}  # type: ignore[union-attr]
        marks = store.get_triage_marks("suppressed", [subject.id]).get(subject.id, {})
        view["suppressed_revisions"] = {str(rev): exc for rev, exc in sorted(marks.items())}
        from engine.alerts.hold import hold_state

        view["hold"] = hold_state(store, subject.id)
    else:
        members = [a for a in (store.get_alert(aid) for aid in record.alerts) if a is not None]  # type: ignore[union-attr]
        view["alert_records"] = [a.to_dict() for a in overlay(store, members)]
    view["history"] = [_entry_dict(e) for e in audit.entries(store, subject=subject.id)]
    view["deadlines"] = _deadlines(store, subject.id, now or now_iso())
    return view


def _entry_dict(entry: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(entry):
        return dataclasses.asdict(entry)  # type: ignore[arg-type]
    return {name: getattr(entry, name) for name in ("seq", "at", "kind", "actor", "subject", "detail")}


def _deadlines(store: Any, subject_id: str, now: str) -> list[dict[str, Any]]:
    """The subject's incident deadlines (engine.incidents, where that module is installed)."""
    try:
        from engine import incidents
    except ImportError:
        return []
    found = incidents.deadlines(store, now, subject=subject_id)
    return [dataclasses.asdict(d) if dataclasses.is_dataclass(d) else dict(d) for d in found]  # type: ignore[arg-type]
