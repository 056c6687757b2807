"""The facts a SIEM payload (CEF, LEEF) says about one alert or case revision, read once from its dict.

Why one module: CEF and LEEF name the same things differently (``suser`` vs ``usrName``, severity 0-10 vs
1-10), but *which* payload field is the user, the source address or the patient must be decided once, so
the two formats can never disagree about the same alert. The payload is the sink's dict after the field
policy (pseudonymised or dropped fields stay as the policy left them: nothing here reads around it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from engine.events import parse_timestamp

#: Wardwatch (Sigma) levels -> CEF severity 0-10 (ArcSight: 0-3 low, 4-6 medium, 7-8 high, 9-10 very high).
SEVERITY_0_10 = {"informational": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
#: Group fields that name the acting user / source address / patient, most specific first.
USER_FIELDS = ("user.name", "user.id", "wardwatch.identity")
SOURCE_FIELDS = ("source.ip", "client.ip")
PATIENT_FIELDS = ("ehr.patient.id", "patient.id")


@dataclass(frozen=True)
class Facts:
    """One revision as a SIEM sees it. Text fields are ``None`` when the payload does not carry them."""

    record: str  # "alert" | "case"
    id: str
    revision: int
    signature: str  # CEF Device Event Class ID / LEEF EventID: the rule id, or "case"
    name: str
    level: str
    severity: int  # 0-10
    time_ms: int | None  # the last trigger, epoch milliseconds
    start_ms: int | None
    end_ms: int | None
    user: str | None
    source_ip: str | None
    patient: str | None
    evidence_total: int
    status: str | None
    assignee: str | None
    rule_id: str | None


def facts(payload: Mapping[str, Any]) -> Facts:
    """The :class:`Facts` of an alert dict (``Alert.to_dict``) or a case dict (``record: case``)."""
    if payload.get("record") == "case":
        return _case_facts(payload)
    group = payload.get("group") or {}
    level = str(payload.get("rule_level", ""))
    return Facts(
        record="alert", id=str(payload["id"]), revision=int(payload.get("revision", 1)),
        signature=str(payload.get("rule_id", "")), name=str(payload.get("rule_title", "")), level=level,
        severity=SEVERITY_0_10.get(level, 5), time_ms=_ms(payload.get("last_trigger")),
        start_ms=_ms(payload.get("window_start")), end_ms=_ms(payload.get("window_end")),
        user=_first(group, USER_FIELDS), source_ip=_first(group, SOURCE_FIELDS),
        patient=_first(group, PATIENT_FIELDS), evidence_total=int(payload.get("evidence_total", 0)),
        status=_text(payload.get("status")), assignee=_text(payload.get("assignee")),
        rule_id=_text(payload.get("rule_id")),
    )


def _case_facts(payload: Mapping[str, Any]) -> Facts:
    kind, subject = str(payload.get("subject_kind", "")), _text(payload.get("subject"))
    level = str(payload.get("level", ""))
    reasons = payload.get("reasons") or []
    name = str(reasons[0]) if reasons else f"case about {kind}"
    return Facts(
        record="case", id=str(payload["id"]), revision=int(payload.get("revision", 1)), signature="case",
        name=name, level=level, severity=SEVERITY_0_10.get(level, 5), time_ms=_ms(payload.get("last_trigger")),
        start_ms=_ms(payload.get("period_start")), end_ms=_ms(payload.get("period_end")),
        user=subject if kind in USER_FIELDS else None, source_ip=subject if kind in SOURCE_FIELDS else None,
        patient=subject if kind in PATIENT_FIELDS else None,
        evidence_total=int(payload.get("evidence_total", 0)), status=_text(payload.get("status")),
        assignee=_text(payload.get("assignee")), rule_id=None,
    )


def _first(group: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = group.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _ms(value: Any) -> int | None:
    if not value:
        return None
    try:
        return int(parse_timestamp(value).timestamp() * 1000)
    except ValueError:
        return None
