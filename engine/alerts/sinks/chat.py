"""What a chat message (Slack, Teams) says about one alert, case or notice: a title, facts, a text.

Why one module: the Slack and Teams sinks must show the same things about the same revision, each in
its own card format; deciding *what* to show once keeps them from drifting apart. The payload is the
sink's dict after the field policy, so a dropped or pseudonymised field stays dropped or pseudonymised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.alerts.case_model import subject_value


@dataclass
class Message:
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""
    footer: str = ""


def message(record: str, payload: Mapping[str, Any]) -> Message:
    """``record``: "alert", "case" or "notice"."""
    if record == "case":
        return _case(payload)
    if record == "notice":
        return Message(title=f"Wardwatch {str(payload.get('kind', 'notice')).replace('_', ' ')}",
                       facts=[(k, str(payload[k])) for k in ("subject", "to", "due") if payload.get(k)],
                       text=str(payload.get("text", "")))
    return _alert(payload)


def _alert(p: Mapping[str, Any]) -> Message:
    level = str(p.get("rule_level", "")).upper()
    facts = [("Level", level), ("Rule", str(p.get("rule_id", "")))]
    facts += [(str(k), str(v)) for k, v in (p.get("group") or {}).items()]
    facts.append(("Window", f"{p.get('window_start', '')} .. {p.get('window_end', '')}"))
    if "evidence_total" in p:
        facts.append(("Events", str(p["evidence_total"])))
    for key, label in (("status", "Status"), ("assignee", "Assignee")):
        if p.get(key):
            facts.append((label, str(p[key])))
    return Message(title=f"[{level}] {p.get('rule_title', 'Wardwatch alert')}", facts=facts,
                   text=str(p.get("rule_description", "")), footer=_footer("alert", p))


def _case(p: Mapping[str, Any]) -> Message:
    level = str(p.get("level", "")).upper()
    facts = [("Level", level), ("Risk", f"{p.get('score', 0):g}")]
    if "subject" in p:
        facts.append((str(p.get("subject_field") or p.get("subject_kind") or "Subject"),
                      subject_value(str(p.get("subject_kind", "")), str(p["subject"]))))
    facts += [("Period", f"{p.get('first_trigger', '')} .. {p.get('last_trigger', '')}"),
              ("Alerts", str(len(p.get("alerts") or []))), ("Events", str(p.get("evidence_total", 0)))]
    for key, label in (("status", "Status"), ("assignee", "Assignee")):
        if p.get(key):
            facts.append((label, str(p[key])))
    reasons = "\n".join(f"- {r}" for r in p.get("reasons") or [])
    return Message(title=f"[{level}] Wardwatch case: {p.get('subject_kind', 'group')}", facts=facts, text=reasons,
                   footer=_footer("case", p))


def _footer(record: str, p: Mapping[str, Any]) -> str:
    return f"Wardwatch {record} {p.get('id', '')} revision {p.get('revision', 1)}"


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters (the chat APIs refuse longer fields)."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
