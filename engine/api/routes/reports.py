"""``/api/v1/reports``: the per-patient access report (GDPR Art. 15, NEN 7513) and the per-user report.

POST, not GET: the patient or user id goes in the body, so it never appears in a URL that proxies, browser
histories or access logs keep. Analyst role: the report lists every access to one person's record, and each
report served is recorded in the audit chain under the token's name (``report.run``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.api.auth import Principal
from engine.api.deps import context, optional_module, require

router = APIRouter(prefix="/reports", tags=["reports"])

_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}
_RESPONSES = {200: {"description": "the report", "content": {m.split(";")[0]: {} for m in _MEDIA.values()}}}


class ReportBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(min_length=1, description="the patient id (ehr.patient.id) or user id")
    start: str | None = Field(None, alias="from", description="from (inclusive): ISO, or a duration like 30d")
    end: str | None = Field(None, alias="to", description="to (exclusive); default: now")
    format: Literal["json", "csv", "html"] = "json"


def _render(report: Any, fmt: str) -> Response:
    reports = optional_module("engine.reports", "access reports")
    if fmt == "csv":
        body: str | bytes = reports.render_csv(report)
    elif fmt == "html":
        body = reports.render_html(report)
    else:
        plain = report.to_dict() if hasattr(report, "to_dict") else dataclasses.asdict(report)
        body = orjson.dumps(plain, default=str)
    return Response(body, media_type=_MEDIA[fmt])


def _report(request: Request, body: ReportBody, which: str, principal: Principal) -> Response:
    reports = optional_module("engine.reports", "access reports")
    bounds = optional_module("engine.time_bounds", "access reports")
    start, end = bounds.parse_range(body.start, body.end)
    make = reports.patient_report if which == "patient" else reports.user_report
    app = context(request).app
    report = make(app, body.id, start, end)
    reports.record_report(app.store, report, actor=principal.name, output=body.format)  # before it leaves
    return _render(report, body.format)


@router.post("/patient", summary="Every access to one patient's record, with who, when, why, and alerts",
             response_class=Response, responses=_RESPONSES)
def patient_report(body: ReportBody, request: Request, who: Principal = require("analyst")) -> Response:
    return _report(request, body, "patient", who)


@router.post("/user", summary="Every record one user accessed, with the alerts it took part in",
             response_class=Response, responses=_RESPONSES)
def user_report(body: ReportBody, request: Request, who: Principal = require("analyst")) -> Response:
    return _report(request, body, "user", who)
