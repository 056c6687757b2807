"""Authentication and TLS for FHIR servers: bearer tokens, OAuth2 client credentials, mutual TLS.

Why its own module: the REST connector and the FHIR Patient lookup talk to the same kind of server with the
same secrets, and secret handling must be right in one place:

* secrets come from an environment variable or a file (mounted by the orchestrator), never from the YAML;
* a token file is re-read on 401, so a sidecar that rotates the token needs no restart;
* nothing here logs or ``repr``s a secret (``repr`` shows ``<redacted>``);
* TLS verification is always on unless explicitly disabled; ``ca_file`` adds a private CA (hospital PKI);
* a credential (bearer token, client secret, basic-auth password) is never sent over plain ``http://`` to
  another host unless the source says ``allow_insecure_http: true``. Loopback (``127.0.0.0/8``, ``::1``,
  ``localhost``) is allowed: the traffic never leaves the machine (a local proxy or sidecar). The check runs
  when the config is read and again before every request, so a paging link cannot downgrade it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping
from urllib.parse import urlsplit

import httpx

from engine.errors import OptionsError

log = logging.getLogger(__name__)


class AuthError(Exception):
    """Credentials are missing or were refused by the token endpoint (message never contains the secret)."""


class InsecureTransportError(AuthError):
    """A credential would go over plain HTTP to a host beyond loopback."""


AuthKind = Literal["none", "bearer", "client_credentials", "oauth2", "oauth2_client_credentials"]


@dataclass(kw_only=True)
class AuthOptions:
    """The auth and TLS options a FHIR source declares (connector ``fhir-auditevent``)."""

    auth: AuthKind = "none"
    token_env: str | None = None
    token_file: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    scope: str | None = None
    ca_certs: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    tls_verify: bool = True
    #: send credentials over http:// to a non-loopback host anyway (never do this across a network)
    allow_insecure_http: bool = False


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_url(url: str) -> bool:
    """True when ``url`` is plain http to a host that is not loopback (credentials would cross a network)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname)


def check_credentials_transport(url: str, *, what: str, allow_insecure_http: bool,
                                flag: str = "allow_insecure_http") -> None:
    """Refuse to send a credential to ``url`` (option ``what``) over plaintext HTTP beyond loopback.

    ``flag`` is the option that allows it anyway, named in the message."""
    if not allow_insecure_http and insecure_url(url):
        raise InsecureTransportError(
            f"{_origin(url)} is plain http:// beyond loopback and credentials are configured: use https://, "
            f"or set {flag}: true for this source if the network path is protected otherwise")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def read_secret_option(env_name: str | None, file: str | None) -> str | None:
    """A secret from a file (preferred: not visible in /proc/*/environ) or an environment variable."""
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError as exc:
            raise AuthError(f"cannot read secret file {file}: {exc.strerror}") from None
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise AuthError(f"environment variable {env_name} is not set")
        return value
    return None


def build_ssl_context(
    *, ca_file: str | None = None, client_cert: str | None = None, client_key: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A TLS context: system CAs plus ``ca_file``; client certificate for mutual TLS when given."""
    # ssl's own FileNotFoundError names no file: say which option points where.
    for option, path in (("ca_file", ca_file), ("client_cert", client_cert), ("client_key", client_key)):
        if path and not os.path.isfile(path):
            raise OptionsError(option, f"{path}: no such file (or not readable)")
    if verify:
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    else:
        log.warning("TLS certificate verification is DISABLED for a FHIR connection")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, keyfile=client_key or None)
    return ctx


class Auth:
    """No authentication (or mTLS only, which lives in the TLS context)."""

    def headers(self) -> dict[str, str]:
        return {}

    def on_unauthorized(self) -> bool:
        """The server said 401: get fresh credentials. True if retrying the request makes sense."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"


class BearerAuth(Auth):
    """A static bearer token from an env var or a file; the file is re-read on 401 (rotation)."""

    def __init__(self, *, env_name: str | None = None, file: str | None = None):
        if not env_name and not file:
            raise AuthError("bearer auth needs token_env or token_file")
        self.env_name, self.file = env_name, file
        self._token = read_secret_option(env_name, file)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def on_unauthorized(self) -> bool:
        old = self._token
        try:
            self._token = read_secret_option(self.env_name, self.file)
        except AuthError:
            return False
        return self._token != old


class ClientCredentialsAuth(Auth):
    """OAuth2 client credentials (RFC 6749 4.4), as SMART Backend Services with a shared secret use it.

    The token is cached until ``expires_in`` minus a skew, refreshed before expiry, and refreshed once more
    when the resource server answers 401 (revoked early, clock skew).
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        client: httpx.Client | None = None,
        skew_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        allow_insecure_http: bool = False,
    ):
        self.token_url, self.client_id, self._secret, self.scope = token_url, client_id, client_secret, scope
        self.allow_insecure_http = allow_insecure_http
        self.client = client or httpx.Client(timeout=10.0)
        self.skew, self.clock = skew_seconds, clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    def _fetch(self) -> None:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        check_credentials_transport(self.token_url, what="token_url", allow_insecure_http=self.allow_insecure_http)
        try:
            resp = self.client.post(self.token_url, data=data, auth=(self.client_id, self._secret),
                                    headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AuthError(f"token endpoint {self.token_url} unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise AuthError(f"token endpoint {self.token_url} answered {resp.status_code}")
        try:
            body = resp.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise AuthError(f"token endpoint {self.token_url} returned no access_token") from None
        expires_in = float(body.get("expires_in") or 300)
        self.fetches += 1
        self._token = str(token)
        self._expires_at = self.clock() + max(0.0, expires_in - self.skew)

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at:
                self._fetch()
            return {"Authorization": f"Bearer {self._token}"}

    def on_unauthorized(self) -> bool:
        with self._lock:
            self._token = None
        return True


def auth_from_options(options: Mapping[str, Any], client: httpx.Client | None = None) -> Auth:
    """``auth: none | bearer | client_credentials`` plus its keys (see docs/connectors/fhir-auditevent.md)."""
    kind = str(options.get("auth", "none")).lower()
    if kind in ("none", ""):
        return Auth()
    if kind == "bearer":
        return BearerAuth(env_name=options.get("token_env"), file=options.get("token_file"))
    if kind in ("client_credentials", "oauth2", "oauth2_client_credentials"):
        for key in ("token_url", "client_id"):
            if not options.get(key):
                raise AuthError(f"client_credentials auth needs option {key!r}")
        secret = read_secret_option(options.get("client_secret_env"), options.get("client_secret_file"))
        if not secret:
            raise AuthError("client_credentials auth needs client_secret_env or client_secret_file")
        allow = bool(options.get("allow_insecure_http", False))
        check_credentials_transport(options["token_url"], what="token_url", allow_insecure_http=allow)
        return ClientCredentialsAuth(
            token_url=options["token_url"], client_id=options["client_id"], client_secret=secret,
            scope=options.get("scope"), client=client, allow_insecure_http=allow,
        )
    raise AuthError(f"unknown auth {kind!r} (none, bearer, client_credentials; mTLS: client_cert/client_key)")
