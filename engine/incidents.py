"""Incidents and their legal clocks: declaring an alert or case an incident starts the reporting deadlines.

Why the declaration lives in the audit chain (an ``incident.declare`` entry) and nowhere else: its time is
the start of every legal clock, so it must be as hard to move quietly as the rest of the record. The first
declaration of a subject counts; declaring it again changes nothing.

The regimes and milestones (``REGIMES``), all counted from the declaration time, in UTC:

* GDPR Art. 33(1): notify the supervisory authority without undue delay and "where feasible, not later than
  72 hours after having become aware of it": ``gdpr/authority_notification`` = declared + 72 h.
* NIS2 Art. 23(4): (a) an early warning within 24 hours of becoming aware: ``nis2/early_warning``;
  (b) an incident notification within 72 hours: ``nis2/notification``; (d) a final report "not later than
  one month after the submission of the incident notification": ``nis2/final_report``.

"One month", exactly: the same day of the next calendar month at the same time of day, or the last day of
that month when it is shorter (31 January -> 28/29 February; 30 November -> 30 December). The law counts it
from when the notification was *submitted*, which Wardwatch does not know; it counts from the declaration,
the earliest the notification can have gone out, so the clock never shows more time than is really left.

``remaining_seconds`` is negative once a milestone is overdue. Reminders: :func:`send_reminders` (a service
job) tells every sink with ``notices: true`` and a ``remind_before`` lead time, once per (subject, milestone,
lead time); each reminder sent is itself an ``incident.reminder`` entry, which is how a restart knows.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from engine import audit
from engine.errors import UsageError
from engine.events import format_timestamp, parse_timestamp

#: One month, as a rule (see the module docstring).
MONTH = "1 calendar month"
#: regime -> ((milestone, offset from the declaration: a timedelta, or MONTH), ...), in due order.
REGIMES: dict[str, tuple[tuple[str, timedelta | str], ...]] = {
    "gdpr": (("authority_notification", timedelta(hours=72)),),
    "nis2": (("early_warning", timedelta(hours=24)), ("notification", timedelta(hours=72)),
             ("final_report", MONTH)),
}


@dataclass(frozen=True)
class Incident:
    """A declared incident, as its ``incident.declare`` entry holds it (``declared_at`` starts the clocks)."""

    subject: str
    record: str  # "alert" | "case"
    declared_at: str
    actor: str
    regimes: tuple[str, ...]


@dataclass(frozen=True)
class Deadline:
    """One milestone of one incident; ``remaining_seconds`` is negative once it is overdue."""

    subject: str
    regime: str
    milestone: str
    due: str
    remaining_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "regime": self.regime, "milestone": self.milestone, "due": self.due,
                "remaining_seconds": self.remaining_seconds}


def add_month(when: datetime) -> datetime:
    """The same day and time one calendar month later, clamped to that month's last day."""
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def due_at(declared: datetime, offset: timedelta | str) -> datetime:
    return add_month(declared) if offset == MONTH else declared + offset  # type: ignore[operator]


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return parse_timestamp(value)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def incidents(store: Any, subject: str | None = None) -> list[Incident]:
    """Declared incidents in declaration order (the first declaration of each subject)."""
    found: dict[str, Incident] = {}
    for entry in audit.entries(store, subject=subject, kinds=["incident.declare"]):
        if entry.subject not in found:
            found[entry.subject] = Incident(entry.subject, entry.detail.get("record", ""), entry.at, entry.actor,
                                            tuple(entry.detail.get("regimes", ())))
    return list(found.values())


def declare(store: Any, subject_id: str, *, actor: str, regimes: Sequence[str] = ("gdpr", "nis2"),
            at: str | None = None) -> Incident:
    """Declare the alert or case ``subject_id`` (an id or a unique prefix) an incident; returns the incident,
    the existing one if it was declared before. Raises ``NotFound`` / ``UsageError``."""
    from engine.alerts.triage import resolve

    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        raise UsageError(f"unknown regime {', '.join(unknown) or '(none given)'} (known: {', '.join(REGIMES)})")
    subject = resolve(store, subject_id)
    at = format_timestamp(parse_timestamp(at)) if at is not None else None  # the canonical UTC text
    existing = incidents(store, subject.id)
    if existing:
        return existing[0]
    entry = audit.record(store, "incident.declare", actor=actor, subject=subject.id,
                         detail={"record": subject.kind, "regimes": list(dict.fromkeys(regimes))}, at=at)
    return Incident(entry.subject, subject.kind, entry.at, entry.actor, tuple(entry.detail["regimes"]))


def incident_deadlines(incident: Incident, now: datetime | str) -> list[Deadline]:
    now_dt, declared = _utc(now), parse_timestamp(incident.declared_at)
    out = []
    for regime in incident.regimes:
        for milestone, offset in REGIMES.get(regime, ()):
            due = due_at(declared, offset)
            out.append(Deadline(incident.subject, regime, milestone, format_timestamp(due),
                                round((due - now_dt).total_seconds(), 3)))
    return out


def deadlines(store: Any, now: datetime | str, subject: str | None = None) -> list[Deadline]:
    """Every milestone of every declared incident (of ``subject`` only, if given), soonest first."""
    found = [d for inc in incidents(store, subject) for d in incident_deadlines(inc, now)]
    return sorted(found, key=lambda d: (d.due, d.subject, d.regime, d.milestone))


# --- reminders ------------------------------------------------------------------------------------------
def _lead_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def left_text(seconds: float) -> str:
    """``2d 03h left`` / ``5h 12m overdue``: what an analyst reads at a glance (rounded down)."""
    span = abs(int(seconds))
    days, rest = divmod(span, 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{days}d {hours:02d}h" if days else f"{hours}h {rest // 60:02d}m"
    return f"{text} {'left' if seconds >= 0 else 'overdue'}"


def reminder_notice(deadline: Deadline, lead_seconds: float) -> dict[str, Any]:
    """The notice a sink gets (S1's notice shape). Ids and times only: no record contents."""
    return {"kind": "deadline_reminder", "subject": deadline.subject, "to": None,
            "text": f"incident {deadline.subject[:12]}: {deadline.regime} {deadline.milestone.replace('_', ' ')}, "
                    f"{left_text(deadline.remaining_seconds)} (due {deadline.due})",
            "regime": deadline.regime, "milestone": deadline.milestone, "due": deadline.due,
            "remaining_seconds": deadline.remaining_seconds, "lead": _lead_text(lead_seconds)}


def send_reminders(store: Any, sinks: Sequence[Any], now: datetime | str,
                   send: Callable[[Sequence[Any], dict[str, Any]], int] | None = None) -> int:
    """For every milestone due within a sink's ``remind_before`` lead time, hand one notice to the sinks
    with that lead time, once per (subject, regime, milestone, lead) ever; returns the notices sent.

    Several lead times passed at once (the service was down, or the incident was declared late: a 24 h and a
    4 h reminder for a milestone 3 h away) give one notice, for the shortest of them, to every sink that has
    any of them; all of them count as sent. A reminder is marked sent (an ``incident.reminder`` entry) only
    when at least one sink took it, so a sink that was down gets it on the next run."""
    if send is None:
        from engine.alerts.sinks import send_notice as send
    leads: dict[int, list[Any]] = {}
    for sink in sinks:
        settings = getattr(sink, "settings", None)
        if getattr(settings, "notices", False):
            for lead in getattr(settings, "remind_before_seconds", ()):
                leads.setdefault(int(round(lead)), []).append(sink)
    if not leads:
        return 0
    sent = {(e.subject, e.detail.get("regime"), e.detail.get("milestone"), lead)
            for e in audit.entries(store, kinds=["incident.reminder"]) for lead in e.detail.get("leads", ())}
    count = 0
    for deadline in deadlines(store, now):
        due = sorted(lead for lead in leads if deadline.remaining_seconds <= lead
                     and (deadline.subject, deadline.regime, deadline.milestone, lead) not in sent)
        if not due:
            continue
        targets = list({id(s): s for lead in due for s in leads[lead]}.values())
        if send(targets, reminder_notice(deadline, due[0])) == 0:
            continue
        audit.record(store, "incident.reminder", actor=audit.ENGINE_ACTOR, subject=deadline.subject,
                     detail={"regime": deadline.regime, "milestone": deadline.milestone, "due": deadline.due,
                             "leads": due, "sinks": [getattr(s, "name", "") for s in targets]})
        sent.update((deadline.subject, deadline.regime, deadline.milestone, lead) for lead in due)
        count += 1
    return count


def service_round(store: Any, sinks: Sequence[Any], metrics: Any, now: datetime | str | None = None) -> int:
    """The service's incident job: refresh the ``wardwatch_incident_deadline_seconds`` gauges, then send
    the reminders that are due (returns how many). The gauges are as fresh as the job's interval."""
    now = now or datetime.now(timezone.utc)
    for deadline in deadlines(store, now):
        metrics.set("wardwatch_incident_deadline_seconds", deadline.remaining_seconds, subject=deadline.subject,
                    regime=deadline.regime, milestone=deadline.milestone)
    return send_reminders(store, sinks, now)
