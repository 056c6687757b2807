"""One error shape for the whole API, mapped once from the engine's typed errors.

Every error a client sees is ``{"error": code, "message": one line}`` with the status below, the way the
CLI maps the same tree to one line and an exit code::

    NotFound           404 not_found
    InvalidTransition  409 invalid_transition     (before UsageError: it is one)
    UsageError         400 bad_request
    StoreConflict      409 conflict
    StoreUnavailable   503 store_unavailable
    other WardwatchError 500 error               (its one-line message)
    request validation 422 invalid_request       (names the field)
    anything else      500 internal              (engine.api.access_log: no detail, the log names the class)
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.api.deps import ApiError
from engine.errors import InvalidTransition, NotFound, UsageError, WardwatchError
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 429: "too_many_requests", 501: "not_implemented"}


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="stable code: unauthorized, forbidden, not_found, invalid_transition, ...")
    message: str = Field(description="one line for a person")


#: Documented on every resource route (OpenAPI); the status table is in docs/api.md.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no token, an unknown token, or no tokens configured"},
    403: {"model": ErrorBody, "description": "the token's role is too small"},
    422: {"model": ErrorBody, "description": "the request does not fit the schema"},
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _wardwatch_status(exc: WardwatchError) -> tuple[int, str]:
    from engine.store.base import StoreConflict, StoreUnavailable

    for cls, status, code in ((NotFound, 404, "not_found"), (InvalidTransition, 409, "invalid_transition"),
                              (UsageError, 400, "bad_request"), (StoreConflict, 409, "conflict"),
                              (StoreUnavailable, 503, "store_unavailable")):
        if isinstance(exc, cls):
            return status, code
    return 500, "error"


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = exc.code if isinstance(exc, ApiError) else _HTTP_CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @api.exception_handler(WardwatchError)
    async def engine_error(request: Request, exc: WardwatchError) -> JSONResponse:
        status, code = _wardwatch_status(exc)
        return error_response(status, code, str(exc))
