"""``/api/v1/hunts``: start a hunt over stored history (analyst) and follow it (engine.api.hunt_jobs).

A hunt runs the configured rules, or the ones a ``rule`` reference names (id, name, title or file name,
as ``alerts list --rule`` reads it), between ``from`` and ``to``. Rules are never read from a path the
client sends: the API only runs what the service has loaded.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from engine.api.auth import Principal
from engine.api.deps import ApiContext, ApiError, context, optional_module, require
from engine.api.hunt_jobs import HuntJob, HuntsBusy
from engine.errors import NotFound, UsageError

router = APIRouter(prefix="/hunts", tags=["hunts"])


class HuntBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    rule: str | None = Field(None, description="a loaded rule's id, name, title or file; default: every rule")
    start: str | None = Field(None, alias="from", description="event time from (inclusive): ISO, or a duration like 7d")
    end: str | None = Field(None, alias="to", description="event time to (exclusive); default: no bound")
    write_alerts: bool = Field(False, description="also store the alerts (deterministic ids: never duplicated)")


def ruleset_for(ctx: ApiContext, ref: str | None) -> Any:
    """The service's ruleset, or the files of the loaded rules ``ref`` names, loaded on their own."""
    if ref is None:
        return ctx.app.ruleset
    from engine.alerts.triage import rule_matches_ref
    from engine.cli import _load_rules_from

    ruleset = ctx.app.ruleset
    paths = sorted({str(item.path) for item in [*ruleset.rules.values(), *ruleset.correlations.values()]
                    if rule_matches_ref(item, ref)})
    if not paths:
        raise NotFound(f"no loaded rule is named {ref!r} (GET /api/v1/rules lists them)")
    chosen = _load_rules_from(paths, ctx.app.config)
    if chosen.errors:
        raise UsageError(f"rule {ref!r} does not load on its own ({len(chosen.errors)} error(s)); "
                         "a correlation needs its rules' files: hunt without 'rule'")
    return chosen


def run_job(ctx: ApiContext) -> Any:
    """The runner :class:`HuntJobs` calls on its thread."""

    def run(job: HuntJob, progress: Any) -> dict[str, Any]:
        hunt = optional_module("engine.hunt", "hunting")
        spec = job.request
        return dict(hunt.run_hunt(ctx.app, ruleset_for(ctx, spec["rule"]), spec["from"], spec["to"],
                                  write_alerts=spec["write_alerts"], progress=progress))

    return run


@router.post("", status_code=202, summary="Start a hunt; answers at once with the job to poll")
def start_hunt(body: HuntBody, request: Request, principal: Principal = require("analyst")) -> dict[str, Any]:
    ctx = context(request)
    optional_module("engine.hunt", "hunting")
    bounds = optional_module("engine.time_bounds", "hunting")
    start, end = bounds.parse_range(body.start, body.end)
    ruleset_for(ctx, body.rule)  # an unknown rule is a 404 now, not a failed job later
    spec = {"rule": body.rule, "from": start, "to": end, "write_alerts": body.write_alerts}
    try:
        job = ctx.hunts.submit(principal.name, spec)
    except HuntsBusy as exc:
        raise ApiError(429, "too_many_requests", str(exc), {"Retry-After": "10"}) from None
    return job.to_dict()


@router.get("", summary="The hunts this service has run since it started (newest first, without results)")
def list_hunts(request: Request, _: Principal = require("viewer")) -> dict[str, Any]:
    jobs = [{**j.to_dict(), "result": None} for j in context(request).hunts.all()]
    return {"count": len(jobs), "hunts": jobs}


@router.get("/{hunt_id}", summary="A hunt's progress, and its result once done")
def get_hunt(hunt_id: str, request: Request, _: Principal = require("viewer")) -> dict[str, Any]:
    job = context(request).hunts.get(hunt_id)
    if job is None:
        raise NotFound(f"no hunt with id {hunt_id!r} (hunts are kept in memory until the service restarts)")
    return job.to_dict()
