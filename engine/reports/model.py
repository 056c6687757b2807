"""What an access report holds: one row per access, plus the alerts about the report's subject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AlertRef:
    """An alert an access took part in (its evidence lists the access's event id)."""

    id: str
    title: str
    level: str
    status: str
    first_trigger: str
    last_trigger: str


@dataclass(frozen=True)
class AccessRow:
    """One access: who (login, name, department), when, what, why, and the alerts it is evidence of."""

    at: str
    user: str
    user_id: str
    name: str
    department: str
    patient: str
    action: str
    resource: str
    purpose: str
    break_the_glass: bool
    outcome: str
    source_ip: str
    event_id: str
    alerts: tuple[AlertRef, ...] = ()


@dataclass
class Report:
    """``kind`` "patient" (every access to ``subject``'s record) or "user" (every access by ``subject``)."""

    kind: str
    subject: str
    start: str | None
    end: str | None
    generated: str
    rows: list[AccessRow] = field(default_factory=list)
    #: every alert one of the rows took part in, or whose group names the subject
    alerts: list[AlertRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
