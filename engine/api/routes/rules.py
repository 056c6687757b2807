"""``/api/v1/rules``: the rules overview of ``wardwatch rules list`` (engine.rules_overview) and one rule's
status: last run, checkpoint lag, alerts in the last 24 h, whether its logsource has data."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request

from engine.api.auth import Principal
from engine.api.deps import context, optional_module, require
from engine.errors import NotFound

router = APIRouter(prefix="/rules", tags=["rules"])


def _overview(request: Request) -> list[dict[str, Any]]:
    module = optional_module("engine.rules_overview", "the rules overview")
    return list(module.rules_overview(context(request).app, datetime.now(timezone.utc)))


@router.get("", summary="Every loaded rule with its status and coverage")
def list_rules(request: Request, _: Principal = require("viewer")) -> dict[str, Any]:
    rules = _overview(request)
    return {"count": len(rules), "rules": rules}


@router.get("/{rule_id}", summary="One rule's status")
def rule_status(rule_id: str, request: Request, _: Principal = require("viewer")) -> dict[str, Any]:
    for entry in _overview(request):
        if entry.get("id") == rule_id:
            return entry
    raise NotFound(f"no loaded rule with id {rule_id!r} (GET /api/v1/rules lists them)")
