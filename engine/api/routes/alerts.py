"""``/api/v1/alerts``: list with the filters of ``wardwatch alerts list --alerts``, show, and the lifecycle.

Filters come as query parameters and may name a user or a patient: the access log records the route
template only (engine.api.access_log), never the query.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from engine.api.auth import Principal
from engine.api.deps import context, require
from engine.api.routes.lifecycle import add_lifecycle_routes

router = APIRouter(prefix="/alerts", tags=["alerts"])

#: Without ``limit`` a list answers at most this many (a SigmaHQ backlog holds thousands of alerts).
DEFAULT_LIMIT = 500


def listing_filter(status: str | None, level: str | None, since: str | None, until: str | None,
                   rule: str | None, user: str | None, patient: str | None, limit: int | None) -> Any:
    """The ``AlertFilter`` the CLI builds from the same options (times: ISO or a duration back from now)."""
    from engine.alerts.triage import AlertFilter
    from engine.commands.triage import time_arg

    return AlertFilter(status=status, level=level, since=time_arg(since, "since"), until=time_arg(until, "until"),
                       rule=rule, user=user, patient=patient, limit=limit)


@router.get("", summary="Alerts, filtered (every filter given must hold), oldest first")
def list_alerts(request: Request, status: str | None = Query(None, description="new, acknowledged, closed or suppressed"),
                level: str | None = None,
                since: str | None = Query(None, description="last trigger from (ISO, or a duration like 24h)"),
                until: str | None = Query(None, description="last trigger before (ISO, or a duration)"),
                rule: str | None = Query(None, description="rule id, name, title or file"),
                user: str | None = None, patient: str | None = None,
                limit: int = Query(DEFAULT_LIMIT, ge=1, le=100_000),
                _: Principal = require("viewer")) -> dict[str, Any]:
    from engine.alerts.triage import find_alerts

    ctx = context(request)
    flt = listing_filter(status, level, since, until, rule, user, patient, limit)
    alerts = find_alerts(ctx.app.store, flt, ctx.app.ruleset)
    return {"count": len(alerts), "alerts": [a.to_dict() for a in alerts]}


add_lifecycle_routes(router, "alert")
