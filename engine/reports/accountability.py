"""Every access report produced is an entry in the audit chain (kind ``report.run``).

Why: a report discloses who opened a patient's record, or every record one employee opened. That is itself
an access to personal data, and NEN 7513 / ISO 27789 ask that such access be logged with who, whose and
when. So the engine records the report *before* handing it out, on the command line and over the API alike;
if the chain cannot be written (the store is down), no report leaves. The entry names the subject's id, the
range and how many rows went out, never a row itself.
"""

from __future__ import annotations

from typing import Any

from engine.reports.model import Report

KIND = "report.run"


def record_report(store: Any, report: Report, *, actor: str, output: str) -> None:
    """Append the ``report.run`` entry for ``report`` (``output``: csv, html or json) by ``actor``."""
    from engine import audit

    audit.record(store, KIND, actor=actor, subject=report.subject,
                 detail={"report": report.kind, "from": report.start, "to": report.end,
                         "rows": len(report.rows), "alerts": len(report.alerts), "format": output})
