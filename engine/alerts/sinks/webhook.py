"""The webhook sink: one signed JSON POST per alert / case revision to any HTTP receiver.

Why signed: the receiver (a SOAR, a ticketing bridge) must know the alert came from Wardwatch and was not
altered; ``X-Wardwatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>`` proves both. The body carries
``sent_at`` (also sent as ``X-Wardwatch-Timestamp``, Unix seconds), inside what is signed, so a receiver
can refuse an old body replayed at it. ``Idempotency-Key: <id>:<revision>`` is the same on every retry and
every redelivery after a crash: a receiver that remembers it turns at-least-once into exactly-once.

The body::

    {"type": "alert" | "case" | "notice", "sent_at": "2026-11-03T09:00:00Z", "data": {... the payload ...}}

The secret comes from ``secret_file`` or ``secret_env``, never the YAML (``engine/plugins.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Mapping, Sequence

import orjson

from engine.alerts.sinks.base import SinkOptions
from engine.alerts.sinks.http import HttpSink, HttpSinkOptions, check_url, origin, secret_from
from engine.plugins import InvalidOption, path_option

SIGNATURE_HEADER = "X-Wardwatch-Signature"
TIMESTAMP_HEADER = "X-Wardwatch-Timestamp"


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value; receivers compare it with ``hmac.compare_digest``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(kw_only=True)
class WebhookOptions(HttpSinkOptions):
    """``alerts.sinks[]`` options of ``type: webhook``."""

    url: str
    secret_file: str | None = path_option(None)
    secret_env: str | None = None
    deliver: str = "alerts"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url(self.url)
        if not (self.secret_file or self.secret_env):
            raise InvalidOption("secret_file", "required: secret_file or secret_env (the HMAC key the "
                                               "receiver checks the signature with)")


class WebhookSink(HttpSink):
    type_name = "webhook"
    summary = "signed JSON POST per alert / case revision (HMAC-SHA256, Idempotency-Key)"
    Options: ClassVar[type[SinkOptions]] = WebhookOptions

    def __init__(self, options: Any = None, *, name: str | None = None, pseudonymiser: Any = None,
                 clock: Any = time.time):
        super().__init__(options, name=name, pseudonymiser=pseudonymiser)
        self._secret = secret_from(self.name, "secret", self.settings.secret_file,
                                   self.settings.secret_env).encode("utf-8")
        self._clock = clock

    def default_name(self) -> str:
        return f"webhook:{origin(self.settings.url)}"

    @property
    def url(self) -> str:
        return str(self.settings.url)

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self._send("alert", payload, f"{payload['id']}:{payload['revision']}")

    def send_cases(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            self._send("case", payload, f"{payload['id']}:{payload['revision']}")

    def send_notice(self, notice: Mapping[str, Any]) -> None:
        key = hashlib.blake2b(orjson.dumps(dict(notice), option=orjson.OPT_SORT_KEYS), digest_size=12).hexdigest()
        self._send("notice", notice, f"notice:{key}")

    def _send(self, record: str, data: Mapping[str, Any], idempotency_key: str) -> None:
        now = self._clock()
        sent_at = datetime.fromtimestamp(int(now), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = orjson.dumps({"type": record, "sent_at": sent_at, "data": data})
        self.post(body, {SIGNATURE_HEADER: sign(self._secret, body), TIMESTAMP_HEADER: str(int(now)),
                         "Idempotency-Key": idempotency_key})
