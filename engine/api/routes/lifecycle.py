"""The triage actions alerts and cases share: show, ack, assign, comment, close (engine.alerts.triage), and
declaring an incident (engine.incidents).

Each action is the CLI's ``alerts ack|assign|comment|close``: the same functions, the same transitions
(a closed alert is final: 409), the same audit entries, with the token's name as the actor. An id may be a
unique prefix of at least 6 characters; an id that names the other kind (a case id under ``/alerts``) is
404, so a client cannot act on a case believing it is an alert.
"""

# No ``from __future__ import annotations``: FastAPI reads the local ``SubjectId`` alias at definition time.
from typing import Annotated, Any, Callable, Literal

from datetime import datetime, timezone

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from engine.api.auth import Principal
from engine.api.deps import context, require
from engine.errors import NotFound


class AssignBody(BaseModel):
    assignee: str = Field(min_length=1, description="who works on it from now on")


class CommentBody(BaseModel):
    text: str = Field(min_length=1)


class CloseBody(BaseModel):
    reason: str = Field(description="true_positive, benign, false_positive or duplicate")
    comment: str | None = None
    suppress_for: str | None = Field(None, description="alerts only: also add an exception for this rule and "
                                                       "the alert's user for this long (like 30d)")
    justification: str | None = Field(None, description="why the exception is safe (required with suppress_for)")
    field: str | None = Field(None, description="the group field the exception keys on (default: the user field)")


class IncidentBody(BaseModel):
    regimes: list[Literal["gdpr", "nis2"]] = Field(["gdpr", "nis2"], min_length=1,
                                                    description="whose clocks start: GDPR Art. 33, NIS2 Art. 23")


def _subject_id(request: Request, kind: str, ref: str) -> str:
    from engine.alerts.triage import resolve

    subject = resolve(context(request).app.store, ref)
    if subject.kind != kind:
        raise NotFound(f"no {kind} with id {ref!r} (it is a {subject.kind}: /api/v1/{subject.kind}s/{subject.id})")
    return subject.id


def _state(state: Any, exception: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = state.to_dict()
    out["exception"] = exception.to_dict() if exception is not None else None
    return out


def add_lifecycle_routes(router: APIRouter, kind: str) -> None:
    """``GET /{id}`` and ``POST /{id}/ack|assign|comment|close`` for ``kind`` ("alert" or "case")."""
    SubjectId = Annotated[str, Path(alias=f"{kind}_id", description=f"{kind} id or a unique prefix (>= 6)")]
    where = f"/{{{kind}_id}}"

    def act(request: Request, ref: str, do: Callable[[Any, str], Any]) -> dict[str, Any]:
        result = do(context(request).app.store, _subject_id(request, kind, ref))
        return _state(*result) if isinstance(result, tuple) else _state(result)

    @router.get(where, summary=f"One {kind}: record, triage state, comments, audit history, deadlines")
    def show(request: Request, ref: SubjectId, _: Principal = require("viewer")) -> dict[str, Any]:
        from engine.alerts.triage import describe

        return describe(context(request).app.store, _subject_id(request, kind, ref))

    @router.post(f"{where}/ack", summary=f"Acknowledge a {kind} (new -> acknowledged)")
    def ack(request: Request, ref: SubjectId, principal: Principal = require("analyst")) -> dict[str, Any]:
        from engine.alerts.triage import acknowledge

        return act(request, ref, lambda store, sid: acknowledge(store, sid, actor=principal.name))

    @router.post(f"{where}/assign", summary=f"Assign a {kind}")
    def assign(body: AssignBody, request: Request, ref: SubjectId,
               principal: Principal = require("analyst")) -> dict[str, Any]:
        from engine.alerts import triage

        return act(request, ref, lambda store, sid: triage.assign(store, sid, body.assignee, actor=principal.name))

    @router.post(f"{where}/comment", summary=f"Comment on a {kind}")
    def comment(body: CommentBody, request: Request, ref: SubjectId,
                principal: Principal = require("analyst")) -> dict[str, Any]:
        from engine.alerts import triage

        return act(request, ref, lambda store, sid: triage.comment(store, sid, body.text, actor=principal.name))

    @router.post(f"{where}/close", summary=f"Close a {kind} with a reason" +
                 (" (optionally suppressing its rule for its user)" if kind == "alert" else ""))
    def close(body: CloseBody, request: Request, ref: SubjectId,
              principal: Principal = require("analyst")) -> dict[str, Any]:
        from engine.alerts import triage

        suppress = triage.suppression_seconds(body.suppress_for, body.justification, body.field,
                                              names=("suppress_for", "justification", "field"))
        return act(request, ref, lambda store, sid: triage.close(
            store, sid, body.reason, actor=principal.name, comment=body.comment, suppress_for=suppress,
            justification=body.justification, field=body.field))

    @router.post(f"{where}/incident", summary=f"Declare a {kind} an incident: starts the reporting clocks")
    def incident(request: Request, ref: SubjectId, body: IncidentBody | None = None,
                 principal: Principal = require("analyst")) -> dict[str, Any]:
        from engine.incidents import declare, incident_deadlines, incidents

        store = context(request).app.store
        subject_id = _subject_id(request, kind, ref)
        before = incidents(store, subject_id)
        regimes = tuple(dict.fromkeys((body or IncidentBody()).regimes))
        made = declare(store, subject_id, actor=principal.name, regimes=regimes)
        return {"subject": made.subject, "record": made.record, "declared_at": made.declared_at,
                "actor": made.actor, "regimes": list(made.regimes), "new": not before,
                "deadlines": [d.to_dict() for d in incident_deadlines(made, datetime.now(timezone.utc))]}
