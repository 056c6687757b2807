"""What the HTTP sinks (webhook, slack, teams) share: options, the transport rule, one POST, one verdict.

Why one module: the three differ only in the body they send. Which answers are worth retrying, that
alerts never cross a network in clear text, and that an error message never carries the URL's path (a
Slack or Teams webhook URL *is* its credential) must be the same for all of them.

* ``https://`` is required unless the host is loopback: an alert names staff and patients.
* 2xx: delivered. 408, 425, 429 and 5xx, timeouts, refused connections: :class:`SinkUnavailable`
  (retried with backoff, at least the answer's ``Retry-After``, capped at ``retry.max_backoff``). Any other answer, redirects included (a signed POST is not re-sent elsewhere):
  :class:`SinkRejected` (dead-lettered).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import httpx
import orjson

from connectors.fhir_auth import insecure_url
from connectors.fhir_rest import retry_after_seconds
from engine.alerts.sinks.base import Sink, SinkConfigError, SinkOptions
from engine.config import read_secret
from engine.errors import SinkRejected, SinkUnavailable
from engine.plugins import InvalidOption, duration_option, path_option

#: Answers worth another try: timeout, too early, rate limited.
RETRY_STATUSES = frozenset({408, 425, 429})
_SHORT_TOKEN = re.compile(r"^[\w .:-]{1,80}$")


@dataclass(kw_only=True)
class HttpSinkOptions(SinkOptions):
    """Options every HTTP sink has. ``evidence_cap`` defaults to 10: a chat message is not an evidence list
    (``evidence_total`` still says how many events there were; the store has them all)."""

    evidence_cap: int | None = 10
    timeout: float = duration_option(10.0)
    #: false only for a test peer: a sink that does not check the certificate sends PHI to whoever answers
    tls_verify: bool = True
    #: a CA bundle for a peer signed by the hospital's own CA
    ca_file: str | None = path_option(None)


def check_url(url: str, key: str = "url") -> None:
    """Refuse a URL that is not http(s), or plain http:// to a host beyond loopback."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidOption(key, f"expected an https:// URL, got {origin(url) or 'no host'}")
    if insecure_url(url):
        raise InvalidOption(key, f"{origin(url)} is plain http:// beyond loopback: use https:// "
                                 "(alerts name staff and patients)")


def origin(url: str) -> str:
    """``scheme://host:port`` only: what a log line or a dead letter may say about a peer."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}" if parts.netloc else ""


def secret_from(sink: str, key: str, file: str | None, env: str | None) -> str:
    """A secret given as ``<key>_file`` or ``<key>_env``; a missing one fails the sink's start, naming it."""
    value = read_secret(None, file, env, key=f"{sink}.{key}_file")
    if not value:
        how = f"environment variable {env} is not set" if env else f"give {key}_file or {key}_env"
        raise SinkConfigError(f"sink {sink}: {key}: {how}")
    return value


class HttpSink(Sink):
    """Base of the HTTP sinks: one POST per revision (``batch_size`` 1, so a failure names one revision)."""

    batch_size = 1

    def __init__(self, options: Any = None, *, name: str | None = None, pseudonymiser: Any = None):
        super().__init__(options, name=name, pseudonymiser=pseudonymiser)
        if self.settings.ca_file and not os.path.isfile(self.settings.ca_file):
            raise SinkConfigError(f"sink {self.name}: ca_file: cannot read {self.settings.ca_file}")
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def client(self) -> httpx.Client:
        if self._client is None:
            verify: Any = self.settings.tls_verify
            if self.settings.ca_file and verify:
                verify = ssl.create_default_context(cafile=self.settings.ca_file)
            self._client = httpx.Client(timeout=self.settings.timeout, verify=verify, follow_redirects=False,
                                        headers={"User-Agent": "wardwatch"})
        return self._client

    def post(self, body: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """POST ``body`` (JSON) and raise the verdict on anything but 2xx. Messages name only the origin."""
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        url = self.url
        try:
            response = self.client().post(url, content=data, headers={"Content-Type": "application/json",
                                                                        **(headers or {})})
        except httpx.TimeoutException:
            raise SinkUnavailable(f"timed out after {self.settings.timeout:g}s: {origin(url)}") from None
        except httpx.TransportError as exc:
            raise SinkUnavailable(f"cannot reach {origin(url)}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        text = response.text.strip()
        detail = f" ({text})" if _SHORT_TOKEN.match(text) else ""  # Slack's "invalid_blocks", not a page
        reason = f"HTTP {status} from {origin(url)}{detail}"
        if status in RETRY_STATUSES or status >= 500:
            unavailable = SinkUnavailable(reason)
            # the peer says when to come back (Slack's and Teams' rate limits do): the backoff honours it
            unavailable.retry_after = retry_after_seconds(response.headers.get("Retry-After"))  # type: ignore[attr-defined]
            raise unavailable
        raise SinkRejected(reason)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass(kw_only=True)
class SecretUrlOptions(HttpSinkOptions):
    """A chat webhook URL carries its own credential: it is read from a file or the environment only."""

    url_file: str | None = path_option(None)
    url_env: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.url is not None:
            raise InvalidOption("url", "this webhook URL is a credential (anyone holding it can post): "
                                       "use url_file or url_env")
        if not (self.url_file or self.url_env):
            raise InvalidOption("url_file", "required: url_file (a file only the service can read) or url_env")


class SecretUrlSink(HttpSink):
    """An HTTP sink whose URL is a secret (Slack, Teams): read once at start, checked like any URL."""

    def __init__(self, options: Any = None, *, name: str | None = None, pseudonymiser: Any = None):
        super().__init__(options, name=name, pseudonymiser=pseudonymiser)
        url = secret_from(self.name, "url", self.settings.url_file, self.settings.url_env)
        try:
            check_url(url, "url_file" if self.settings.url_file else "url_env")
        except InvalidOption as exc:
            raise SinkConfigError(f"sink {self.name}: {exc}") from None
        self._url = url

    @property
    def url(self) -> str:
        return self._url
