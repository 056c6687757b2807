"""The last lines of ``wardwatch run --once``: what to type next, with ids from this very run.

Why: the demo's table shows what was found; a new user's next question is "and now?". Naming a real alert
id and a real patient id from the run makes the next two commands copy-and-paste, not a trip to the docs.
The patient comes from the evidence of the run's most severe EHR alerts (read back from the store, with
only the patient field): it is printed to the user's own terminal, never logged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Sequence

from engine.alerts.cases import LEVELS
from engine.events import format_timestamp, parse_timestamp
from engine.store.base import SearchQuery

#: Where an EHR event names the patient whose record was accessed.
PATIENT_FIELD = "ehr.patient.id"
#: How many of the most severe alerts are searched for a patient (bounded: the hint must stay instant).
_SEARCHED = 10


def _ranked(alerts: Sequence[Any]) -> list[Any]:
    return sorted(alerts, key=lambda a: (-LEVELS.index(a.rule_level) if a.rule_level in LEVELS else 1,
                                         a.first_trigger, a.id))


def a_patient(store: Any, alerts: Sequence[Any]) -> str | None:
    """A patient id from the evidence of one of the most severe alerts, or None."""
    for alert in alerts[:_SEARCHED]:
        evidence = set(alert.evidence)
        if not evidence:
            continue
        end = format_timestamp(parse_timestamp(alert.window_end) + timedelta(milliseconds=1))
        for event in store.search(SearchQuery(start=alert.window_start, end=end, fields=[PATIENT_FIELD])):
            if event.get("event.id") in evidence and event.get(PATIENT_FIELD):
                return str(event[PATIENT_FIELD])
    return None


def next_steps(store: Any, alerts: Sequence[Any]) -> list[str]:
    """Two hint lines naming an alert id and a patient id from ``alerts``; none when the run found nothing."""
    if not alerts:
        return []
    ranked = _ranked(alerts)
    steps = [(f"wardwatch alerts show {ranked[0].id[:12]}", "the most severe alert: why, evidence, history")]
    patient = a_patient(store, ranked)
    if patient is not None:
        steps.append((f"wardwatch report patient {patient}", "every access to that patient's record: who, when, why"))
    width = max(len(command) for command, _ in steps)
    return ["next:", *(f"  {command.ljust(width)}   # {why}" for command, why in steps)]
