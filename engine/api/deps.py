"""What every route depends on: the service context, the caller's role, and the API's error shape.

Routes never see a token: they ask ``Depends(require("analyst"))`` and get a :class:`Principal` whose name
is the actor for the audit chain. A missing or unknown token is 401, a known token with too small a role
403; both carry the JSON error body every error has (``{"error": code, "message": one line}``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.api.auth import Principal, TokenBook


@dataclass
class ApiContext:
    """The running service's parts the API reads and acts on (built once, in ``Service.start``)."""

    app: Any  # engine.app.App: config, store, ruleset, evaluator
    metrics: Any  # engine.metrics.Metrics
    health: Callable[[], dict[str, Any]]
    tokens: TokenBook
    hunts: Any  # engine.api.hunt_jobs.HuntJobs


class ApiError(HTTPException):
    """An error with a stable machine-readable ``code`` next to the one-line ``message``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code


def context(request: Request) -> ApiContext:
    return request.app.state.context  # type: ignore[no-any-return]


_bearer = HTTPBearer(auto_error=False, description="a token from service.http.tokens_file")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wardwatch"'}


def _caller(request: Request, open_without_tokens: bool) -> Principal | None:
    tokens = context(request).tokens
    if not tokens:
        if open_without_tokens:
            return None
        raise ApiError(401, "unauthorized", "no API tokens are configured: set service.http.tokens_file",
                       _CHALLENGE)
    principal = tokens.authenticate(request.headers.get("authorization"))
    if principal is None:
        given = "authorization" in request.headers
        raise ApiError(401, "unauthorized", "the bearer token is not valid" if given else
                       "missing Authorization: Bearer <token>", _CHALLENGE)
    return principal


def require(role: str) -> Any:
    """A dependency admitting callers whose role is at least ``role`` (viewer < analyst < admin)."""

    def dependency(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Principal:
        principal = _caller(request, open_without_tokens=False)
        assert principal is not None
        if not principal.may(role):
            raise ApiError(403, "forbidden", f"token {principal.name!r} has role {principal.role}; "
                                             f"this needs {role} or higher")
        return principal

    return Depends(dependency)


def status_access(request: Request, _: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    """Health and metrics: open when no token is configured (monitoring as before roles), else any role."""
    _caller(request, open_without_tokens=True)


def optional_module(name: str, feature: str) -> ModuleType:
    """``engine.<name>`` for a feature built alongside the API, or 501 naming what is missing."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ApiError(501, "not_implemented", f"{feature} is not available in this build ({name} is missing)") \
            from None
