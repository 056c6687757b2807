"""``/api/v1/incidents``: the reporting deadlines of every declared incident (GDPR Art. 33, NIS2 Art. 23),
soonest first, as ``wardwatch alerts deadlines`` lists them. Declaring one is an action on the alert or
case (``POST /api/v1/alerts/{id}/incident``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Query, Request

from engine.api.auth import Principal
from engine.api.deps import context, require

router = APIRouter(prefix="/incidents", tags=["incidents"])


@router.get("/deadlines", summary="Every declared incident's deadlines, soonest first (negative: overdue)")
def deadlines(request: Request, subject: str | None = Query(None, description="one alert or case id only"),
              _: Principal = require("viewer")) -> dict[str, Any]:
    from engine.incidents import deadlines as due

    found = [d.to_dict() for d in due(context(request).app.store, datetime.now(timezone.utc), subject=subject)]
    return {"count": len(found), "deadlines": found}
