"""The ASGI application: FastAPI routes over the running service's parts.

``create_app(context)`` is the only wiring: the service builds an :class:`~engine.api.deps.ApiContext`
(its App, metrics, health callable, tokens, hunt jobs) and hands it here; tests do the same over a store of
their own. Routes reach the context through ``request.app.state``, never through globals, so two services
(or tests) in one process stay apart.

The OpenAPI document is served at ``/api/v1/openapi.json`` and checked in as ``docs/openapi.json``
(``python -m engine.api.openapi`` writes it; a test fails when they differ). No Swagger UI: it would load
scripts from a CDN, which a hospital network should not need to reach.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.routing import APIRoute

from engine.api.access_log import AccessLog
from engine.api.deps import ApiContext
from engine.api.errors import COMMON_ERRORS, install_error_handlers
from engine.api.routes import alerts, audit, cases, exceptions, hunts, incidents, reports, rules, status

API_PREFIX = "/api/v1"
RESOURCE_ROUTERS = (alerts, cases, incidents, rules, exceptions, hunts, reports, audit)

DESCRIPTION = """\
The Wardwatch SOC API: alerts and cases with their lifecycle, rules, suppression exceptions, hunts,
access reports, health and metrics. Every request needs `Authorization: Bearer <token>`; the token's role
(viewer < analyst < admin) decides what it may do, and its name is the actor in the audit chain.
Errors are `{"error": code, "message": one line}`. See docs/api.md.
"""


def create_app(context: ApiContext | None) -> FastAPI:
    """The API over ``context`` (None: routes only, for generating the OpenAPI document)."""
    api = FastAPI(title="Wardwatch API", version="1", description=DESCRIPTION,
                  openapi_url=f"{API_PREFIX}/openapi.json", docs_url=None, redoc_url=None)
    api.state.context = context
    install_error_handlers(api)
    api.include_router(status.router)
    templates = [route.path for route in status.router.routes if isinstance(route, APIRoute)]
    for module in RESOURCE_ROUTERS:
        api.include_router(module.router, prefix=API_PREFIX, responses=COMMON_ERRORS)
        templates += [API_PREFIX + route.path for route in module.router.routes if isinstance(route, APIRoute)]
    api.add_middleware(AccessLog, templates=templates)
    return api
