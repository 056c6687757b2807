"""``service.http``: what the API listens on, how it is secured, and the check that refuses an open API.

Kept apart from the server so ``engine/config.py`` can validate the section (``wardwatch config check``)
without importing FastAPI or uvicorn, and without opening a file: the tokens file is read at start
(:mod:`engine.api.auth`), like every other secret.

Why the check: the API serves patient data (alerts name patients, reports list every access to a record)
and changes the audit trail. Bound to loopback it is reachable from this host only; beyond loopback it
must be both encrypted (``tls``) and authenticated (tokens), or the start is refused with one line naming
``service.http.host``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from connectors.syslog.server import is_loopback
from engine.config import ConfigError

#: Background hunts the API runs at once by default (``service.http.max_hunt_jobs``): a hunt reads the whole
#: history of its range, so a handful of analysts must not be able to starve the scheduler's own jobs.
DEFAULT_MAX_HUNT_JOBS = 2


@dataclass(frozen=True)
class TlsOptions:
    """``service.http.tls``: the server certificate and key (PEM files), and optionally a CA whose client
    certificates are then required (mutual TLS)."""

    cert: str
    key: str
    client_ca: str | None = None


def has_tokens(http: Mapping[str, Any]) -> bool:
    """Whether any bearer token is configured (the roles file or the single legacy admin token)."""
    return bool(http.get("tokens_file") or http.get("token_file") or http.get("token_env"))


def tls_options(http: Mapping[str, Any], source: str) -> TlsOptions | None:
    """The parsed ``tls`` block (or None), or a ``ConfigError`` naming ``service.http.tls.<key>``."""
    from engine.config import OptionsError
    from engine.plugins import InvalidOption, parse_options

    block = http.get("tls")
    if block is None:
        return None
    try:
        return parse_options(TlsOptions, block)
    except InvalidOption as exc:
        where = f"service.http.tls.{exc.key}" if exc.key else "service.http.tls"
        raise OptionsError(where, exc.message, source) from None


def check_http(http: Mapping[str, Any], source: str) -> None:
    """Refuse an API that would be reachable from the network without TLS and tokens (config load time)."""
    tls = tls_options(http, source)
    limit = http.get("max_hunt_jobs", DEFAULT_MAX_HUNT_JOBS)
    if limit < 1:
        raise ConfigError(source, "service.http.max_hunt_jobs", f"must be at least 1, got {limit}")
    if http.get("port") is None or is_loopback(http.get("host", "")):
        return
    missing = [what for what, ok in (("tls", tls is not None), ("tokens_file", has_tokens(http))) if not ok]
    if missing:
        raise ConfigError(source, "service.http.host",
                          f"{http.get('host') or '0.0.0.0'} is beyond loopback: the API serves patient data, "
                          f"so it needs service.http.{' and service.http.'.join(missing)} there "
                          "(or bind to 127.0.0.1 behind a TLS proxy)")
