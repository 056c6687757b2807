"""The API's access log: method, route *template*, status and duration, never the path or query.

Why templates: paths and queries name patients and staff (``/api/v1/alerts?patient=P950``), and access logs
travel to far more places than the store. uvicorn's own access log is off; this middleware writes one
structlog line per request instead, and it is also the last resort for an exception no handler mapped:
the client gets a JSON 500 and the log names the exception's class only (its message may quote data).
"""

from __future__ import annotations

import re
import time
from typing import Any, Awaitable, Callable

import orjson

from engine.logs import get_logger

log = get_logger("wardwatch.api")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_POLLED = frozenset({"/health", "/metrics", "/api/v1/health", "/api/v1/metrics"})
_INTERNAL = orjson.dumps({"error": "internal", "message": "internal error (the service log names the class)"})


class AccessLog:
    """ASGI middleware: one ``api request`` log line per HTTP request, PHI-free."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], templates: list[str]):
        self.app, self.templates = app, route_templates(templates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.monotonic(), [0]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # noqa: BLE001 - the last resort: answer, and log the class only
            log.error("API request failed", route=_route(scope, self.templates), error=type(exc).__name__)
            if status[0] == 0:
                status[0] = 500
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": _INTERNAL})
        route = _route(scope, self.templates)
        # monitoring polls /health and /metrics every few seconds: those lines only at debug
        emit = log.debug if route in _POLLED and status[0] < 400 else log.info
        emit("api request", method=scope["method"], route=route, status=status[0],
             ms=round((time.monotonic() - started) * 1000, 1))


def route_templates(paths: list[str]) -> list[tuple[re.Pattern[str], str]]:
    """(regex, template) for each route template, as Starlette compiles them."""
    from starlette.routing import compile_path

    return [(compile_path(path)[0], path) for path in sorted(set(paths))]


def _route(scope: Scope, templates: list[tuple[re.Pattern[str], str]]) -> str:
    """The template matching the request path (``/api/v1/alerts/{alert_id}``), or ``unmatched``.

    Matched here from the templates the app declared rather than read from the routing internals (where
    FastAPI keeps the matched route changes between versions)."""
    path = scope.get("path", "")
    for regex, template in templates:
        if regex.match(path):
            return template
    return "unmatched"
