"""The console sink: a few lines per case (or one per alert) on stdout, for people watching a terminal.

Best-effort by nature (a terminal cannot deduplicate), so it has no retry state worth keeping.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from engine.alerts.case_model import Case, subject_label
from engine.alerts.pseudonymise import Pseudonymiser
from engine.alerts.sinks.base import Sink, SinkOptions, options_with


def case_lines(case: Case | Mapping[str, Any]) -> list[str]:
    """A case as an analyst reads it first: subject, score, then one line per rule (shared by the console
    sink and ``wardwatch alerts list``). Takes a payload too: the field policy may have dropped a key."""
    data = case.to_dict() if isinstance(case, Case) else case
    revision = data.get("revision", 1)
    update = f" (update {revision})" if revision > 1 else ""
    subject = subject_label(str(data.get("subject_kind")), str(data.get("subject_field", "")),
                            str(data.get("subject", "-")))
    head = (f"CASE [{data.get('level')}] risk {data.get('score', 0):g} | {subject} | "
            f"{data.get('first_trigger')} .. {data.get('last_trigger')} | {len(data.get('alerts') or [])} alert(s), "
            f"{data.get('evidence_total', 0)} events{update}")
    return [head] + [f"  ALERT [{r['level']}] {r['title']} x{r['alerts']}, {r['events']} events"
                     for r in data.get("rules") or []]


def alert_line(alert: dict[str, Any]) -> str:
    """One alert payload as one line."""
    group = ", ".join(f"{k}={v}" for k, v in (alert.get("group") or {}).items()) or "-"
    revision = alert.get("revision", 1)
    update = f" (update {revision})" if revision > 1 else ""
    return (f"ALERT [{alert.get('rule_level')}] {alert.get('rule_title')} | {group} | "
            f"{alert.get('window_start')} .. {alert.get('window_end')} | "
            f"{alert.get('evidence_total', 0)} events{update}")


@dataclass(kw_only=True)
class ConsoleOptions(SinkOptions):
    """``alerts.sinks[]`` options of ``type: console``."""

    deliver: str = "cases"


class ConsoleSink(Sink):
    type_name = "console"
    summary = "a few lines per case or alert on stdout"
    Options: ClassVar[type[SinkOptions]] = ConsoleOptions

    def __init__(self, stream: Any = None, name: str = "console", deliver: str = "cases", *,
                 options: ConsoleOptions | None = None, pseudonymiser: Pseudonymiser | None = None):
        self.stream = stream or sys.stdout
        super().__init__(options or options_with(ConsoleOptions, deliver=deliver), name=name,
                         pseudonymiser=pseudonymiser)

    @classmethod
    def from_options(cls, options: SinkOptions, *, pseudonymiser: Pseudonymiser | None = None) -> "ConsoleSink":
        assert isinstance(options, ConsoleOptions)
        return cls(options=options, pseudonymiser=pseudonymiser)

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.stream.write("\n".join(case_lines(payload)) + "\n")
        self.stream.flush()

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self.stream.write(alert_line(payload) + "\n")
        self.stream.flush()

    def send_notice(self, notice: Any) -> None:
        self.stream.write(f"NOTICE [{notice.get('kind')}] {notice.get('text', '')}\n")
        self.stream.flush()
