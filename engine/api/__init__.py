"""The HTTP API (issue 12 §5): FastAPI routes under ``/api/v1`` served by uvicorn inside the service.

Modules, each with one job:

- ``settings``: the ``service.http`` section's checks (no framework import: ``config check`` uses it);
- ``auth``: tokens with roles from ``tokens_file`` (hashes only, constant-time); ``deps``: the route
  dependencies (context, role); ``errors``: engine errors -> one JSON error shape;
- ``app``: the ASGI app factory; ``routes/``: one module per resource; ``hunt_jobs``: background hunts;
- ``server``: uvicorn on a thread; ``access_log``: route templates only, never paths (they name patients);
- ``openapi``: writes ``docs/openapi.json``.

:func:`build_server` is the one place the service wires them.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["build_server"]


def build_server(app: Any, metrics: Any, health: Callable[[], dict[str, Any]]) -> Any:
    """An :class:`~engine.api.server.ApiServer` for the service's App, bound but not started.

    Reads the tokens and the TLS files now, so a bad file or a port in use stops the start with one line
    before any job runs."""
    from engine.api.app import create_app
    from engine.api.auth import load_tokens
    from engine.api.deps import ApiContext
    from engine.api.hunt_jobs import HuntJobs
    from engine.api.routes.hunts import run_job
    from engine.api.server import ApiServer
    from engine.api.settings import tls_options

    config = app.config
    http = config["service"]["http"]
    context = ApiContext(app=app, metrics=metrics, health=health, tokens=load_tokens(http, config), hunts=None)
    context.hunts = HuntJobs(run_job(context), max_running=http["max_hunt_jobs"])
    return ApiServer(create_app(context), http["host"], http["port"], tls=tls_options(http, config.source),
                     source=config.source, resolve_path=config.resolve_path)
