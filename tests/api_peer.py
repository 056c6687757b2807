"""Serving the real API for tests: uvicorn on a free loopback port, over a context the test builds.

A test talks to it with a real ``httpx.Client`` (``client(url, token)``); nothing in between is mocked."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, Iterator

import httpx

from engine.api.app import create_app
from engine.api.auth import TokenBook, token_sha256
from engine.api.deps import ApiContext
from engine.api.hunt_jobs import HuntJobs
from engine.api.routes.hunts import run_job
from engine.api.server import ApiServer
from engine.metrics import Metrics

#: One token per role; the names are the actors the audit chain records.
TOKENS = {"viewer": "viewer-token-1", "analyst": "analyst-token-1", "admin": "admin-token-1"}
NAMES = {"viewer": "vera", "analyst": "ann", "admin": "adam"}


def token_book() -> TokenBook:
    return TokenBook([(NAMES[role], role, token_sha256(token)) for role, token in TOKENS.items()])


@contextmanager
def serving(app: Any = None, *, store: Any = None, tokens: TokenBook | None = None, tls: Any = None,
            max_hunts: int = 2, health: Any = None, metrics: Metrics | None = None,
            runner: Any = None) -> Iterator[tuple[str, ApiServer, ApiContext]]:
    """The API over ``app`` (or a bare ``store``), started on 127.0.0.1:0; yields (base url, server, context)."""
    app = app if app is not None else SimpleNamespace(store=store, ruleset=None, config=None)
    context = ApiContext(app=app, metrics=metrics or Metrics(), health=health or (lambda: {"status": "ok"}),
                         tokens=token_book() if tokens is None else tokens, hunts=None)
    context.hunts = HuntJobs(runner or run_job(context), max_running=max_hunts)
    server = ApiServer(create_app(context), "127.0.0.1", 0, tls=tls)
    server.start()
    try:
        yield server.url, server, context
    finally:
        server.stop()


def client(url: str, role: str | None = None, token: str | None = None, **kwargs: Any) -> httpx.Client:
    """An httpx client for ``url`` presenting ``role``'s token (or ``token``; neither: no header)."""
    secret = token if token is not None else (TOKENS[role] if role else None)
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    return httpx.Client(base_url=url, headers=headers, timeout=10, **kwargs)
