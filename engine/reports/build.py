"""Collect an access report from the store: the subject's accesses (engine.search), who made them (the event's
own fields, else the staff roster of ``enrichment.privacy``), and the alerts they are evidence of.

Why the rows come from the events and not from the alerts: the report must list *every* access, the
ordinary ones first of all (a patient asks "who looked at my record"), and an alert holds only the accesses
a rule found suspicious (and at most ``alerts.evidence_cap`` of them).

Memory: the events stream page by page; the report holds one row per access of one subject in the range
(that is the report), and the alerts of the range, whose evidence ids are the link to the rows.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from engine.errors import UsageError
from engine.events import format_timestamp
from engine.reports.model import AccessRow, AlertRef, Report
from engine.search import CompiledQuery, compile_detection, search_events, sigma_literal

PATIENT_FIELDS = ("ehr.patient.id", "ehr.patient.ids")
USER_FIELDS = ("user.name", "user.id")
ROW_FIELDS = ("user.name", "user.id", "user.full_name", "ehr.user.department", "ehr.patient.id",
              "ehr.patient.ids", "event.action", "ehr.action", "ehr.resource.type", "ehr.purpose_of_use",
              "ehr.break_the_glass", "event.outcome", "source.ip")


def _check_id(value: str, what: str) -> str:
    text = value.strip()
    if not text or len(text) > 256 or any(ch in text for ch in "\r\n\t"):
        raise UsageError(f"{what} ID: {value!r} is not an identifier (one line, 1-256 characters)")
    return text


def _any_of(fields: Iterable[str], value: str) -> CompiledQuery:
    detection: dict[str, Any] = {f"by{i}": {field: sigma_literal(value)} for i, field in enumerate(fields)}
    detection["condition"] = "1 of by*"
    return compile_detection(detection)


def _prefilter(store: Any, fields: Iterable[str], value: str) -> Any:
    """On Elasticsearch, the subject's id as terms on its (lower-case normalised) keyword fields: the cluster
    returns only the subject's events. SQLite ignores prefilters; the compiled query decides either way."""
    if getattr(store, "kind", "") != "elasticsearch":
        return None
    return {"bool": {"should": [{"term": {f: value}} for f in fields], "minimum_should_match": 1}}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _roster(app: Any) -> Any:
    """The staff roster the privacy enrichment uses (``enrichment.privacy.roster_csv`` or the directory)."""
    for step in getattr(app.enrichment, "enrichers", ()):
        roster = getattr(step, "roster", None)
        if roster is not None:
            return roster
    return None


def _who(event: Mapping[str, Any], roster: Any) -> tuple[str, str]:
    """(name, department): the event's own (FHIR ``who.display``, the enrichment's department), else the
    roster's. The roster keeps family names only, so a name the event lacks stays the login."""
    name = _text(event.get("user.full_name"))
    department = _text(event.get("ehr.user.department"))
    if roster is not None and not (name and department):
        for key in (event.get("user.id"), event.get("user.name")):
            member = roster.member(key) if isinstance(key, str) else None
            if member is not None:
                department = department or (member.department or "")
                name = name or (member.family_name.title() if member.family_name else "")
                break
    return name, department


def _alert_index(store: Any, start: str | None, end: str | None) -> list[Any]:
    """Alerts whose window (the span of their evidence) overlaps the range: their evidence ids link them to
    accesses. Not the trigger times: a correlation triggers at its 51st access, its evidence starts earlier."""
    return [a for a in store.list_alerts()
            if (start is None or a.window_end >= start) and (end is None or a.window_start < end)]


def _ref(alert: Any) -> AlertRef:
    return AlertRef(alert.id, alert.rule_title, alert.rule_level, alert.status, alert.first_trigger,
                    alert.last_trigger)


def _report(app: Any, kind: str, subject: str, fields: tuple[str, ...], start: str | None, end: str | None,
            keep: Any) -> Report:
    store = app.store
    roster = _roster(app)
    query = _any_of(fields, subject)
    events = search_events(store, query, start, end, fields=ROW_FIELDS, prefilter=_prefilter(store, fields, subject))
    alerts = _alert_index(store, start, end)
    wanted: dict[str, AlertRef] = {}
    evidence: dict[str, list[Any]] = {}
    for alert in alerts:
        for eid in alert.evidence:
            evidence.setdefault(eid, []).append(alert)
    rows: list[AccessRow] = []
    for event in events:
        if not keep(event):
            continue
        eid = event["event.id"]
        refs = tuple(_ref(a) for a in evidence.get(eid, ()))
        for ref in refs:
            wanted[ref.id] = ref
        name, department = _who(event, roster)
        rows.append(AccessRow(
            at=event["@timestamp"], user=_text(event.get("user.name")), user_id=_text(event.get("user.id")),
            name=name, department=department, patient=_text(event.get("ehr.patient.id")),
            action=_text(event.get("event.action") or event.get("ehr.action")),
            resource=_text(event.get("ehr.resource.type")), purpose=_text(event.get("ehr.purpose_of_use")),
            break_the_glass=event.get("ehr.break_the_glass") is True, outcome=_text(event.get("event.outcome")),
            source_ip=_text(event.get("source.ip")), event_id=eid, alerts=refs))
    folded = subject.casefold()
    for alert in alerts:  # alerts about the subject whose (capped) evidence lists none of these rows
        if alert.id not in wanted and any(isinstance(v, str) and v.casefold() == folded for v in alert.group.values()):
            wanted[alert.id] = _ref(alert)
    generated = format_timestamp(datetime.now(timezone.utc))
    return Report(kind, subject, start, end, generated, rows,
                  sorted(wanted.values(), key=lambda r: (r.first_trigger, r.id)))


def patient_report(app: Any, patient_id: str, start: str | None, end: str | None) -> Report:
    """Every access to ``patient_id``'s record (``ehr.patient.id``, or one of ``ehr.patient.ids``)."""
    subject = _check_id(patient_id, "patient")
    return _report(app, "patient", subject, PATIENT_FIELDS, start, end, lambda event: True)


def user_report(app: Any, user_id: str, start: str | None, end: str | None) -> Report:
    """Every patient-record access by ``user_id`` (its login ``user.name`` or its ``user.id``)."""
    subject = _check_id(user_id, "user")
    return _report(app, "user", subject, USER_FIELDS, start, end,
                   lambda event: bool(event.get("ehr.patient.id") or event.get("ehr.patient.ids")))
