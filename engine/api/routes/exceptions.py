"""``/api/v1/exceptions``: the suppression exceptions made from triage; removing one is an admin action
(it makes a rule speak again for someone, and the audit chain records who did it)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from engine.api.auth import Principal
from engine.api.deps import context, require

router = APIRouter(prefix="/exceptions", tags=["exceptions"])


@router.get("", summary="Exceptions in force (all=true: expired ones too)")
def list_exceptions(request: Request, all: bool = Query(False, description="include expired exceptions"),
                    _: Principal = require("viewer")) -> dict[str, Any]:
    from engine.alerts.exceptions import list_exceptions as listed

    found = listed(context(request).app.store, include_expired=all)
    return {"count": len(found), "exceptions": [e.to_dict() for e in found]}


@router.delete("/{exception_id}", summary="Remove an exception (it stops applying at once)")
def remove_exception(exception_id: str, request: Request, principal: Principal = require("admin")) -> dict[str, Any]:
    from engine.alerts.exceptions import remove_exception as remove

    return remove(context(request).app.store, exception_id, actor=principal.name).to_dict()
