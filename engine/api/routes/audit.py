"""``/api/v1/audit``: the tamper-evident audit chain (engine.audit): read entries, verify the chain. Admin
only: the chain is the who/when/what history of every analyst, and verifying it reads all of it."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Query, Request

from engine.api.auth import Principal
from engine.api.deps import context, optional_module, require

router = APIRouter(prefix="/audit", tags=["audit"])


def _plain(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)  # type: ignore[arg-type]
    return dict(value.to_dict())


@router.get("/verify", summary="Check the hash chain; names the first broken link")
def verify(request: Request, _: Principal = require("admin")) -> dict[str, Any]:
    audit = optional_module("engine.audit", "the audit chain")
    return _plain(audit.verify(context(request).app.store))


@router.get("/entries", summary="Audit entries in chain order")
def entries(request: Request, subject: str | None = Query(None, description="only entries about this id"),
            after_seq: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=10_000),
            _: Principal = require("admin")) -> dict[str, Any]:
    audit = optional_module("engine.audit", "the audit chain")
    found = [_plain(e) for e in audit.entries(context(request).app.store, subject=subject, after_seq=after_seq,
                                              limit=limit)]
    return {"count": len(found), "entries": found}
