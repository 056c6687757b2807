"""``/api/v1/cases``: the cases (alerts about one subject in one period), highest risk first, and the same
lifecycle as alerts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from engine.api.auth import Principal
from engine.api.deps import context, require
from engine.api.routes.alerts import DEFAULT_LIMIT, listing_filter
from engine.api.routes.lifecycle import add_lifecycle_routes

router = APIRouter(prefix="/cases", tags=["cases"])


@router.get("", summary="Cases, filtered, highest risk first")
def list_cases(request: Request, status: str | None = Query(None, description="new, acknowledged or closed"),
               level: str | None = None, since: str | None = None, until: str | None = None,
               rule: str | None = Query(None, description="a member alert's rule id, name, title or file"),
               user: str | None = None, patient: str | None = None,
               limit: int = Query(DEFAULT_LIMIT, ge=1, le=100_000),
               _: Principal = require("viewer")) -> dict[str, Any]:
    from engine.alerts.triage import find_cases

    ctx = context(request)
    cases = find_cases(ctx.app.store, listing_filter(status, level, since, until, rule, user, patient, None),
                       ctx.app.ruleset)
    cases.sort(key=lambda c: (-c.score, c.first_trigger, c.id))
    cases = cases[:limit]
    return {"count": len(cases), "cases": [c.to_dict() for c in cases]}


add_lifecycle_routes(router, "case")
