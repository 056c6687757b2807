"""Keyed pseudonymisation of patient identifiers in alerts (GDPR Art. 4(5)).

Alerts travel further than the event store (tickets, chat, e-mail). Where configured, the identifiers named
in ``alerts.pseudonymise.fields`` are replaced by ``HMAC-SHA256(key, value)``: the same patient always gets
the same pseudonym (so analysts can still correlate alerts), and only someone holding the key can check
which patient it is. Without a key nothing is pseudonymised; configuring fields without a key is an error.

The key must be at least 32 bytes (HMAC-SHA256's output size, RFC 2104 section 3): patient identifiers are
short and guessable, so a short key makes the pseudonyms reversible by trying keys.
Generate one with ``openssl rand -base64 48``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping, Sequence

PREFIX = "pseud:"
MIN_KEY_BYTES = 32


class Pseudonymiser:
    def __init__(self, key: bytes | None, fields: Sequence[str]):
        if fields and not key:
            raise ValueError(
                "alerts.pseudonymise.fields is set but no key was found "
                "(set the environment variable named in alerts.pseudonymise.key_env, or key_file)"
            )
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise ValueError(
                f"the pseudonymisation key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                "(generate one with: openssl rand -base64 48)"
            )
        self.key = key
        self.fields = frozenset(fields)

    @classmethod
    def disabled(cls) -> "Pseudonymiser":
        return cls(None, ())

    def pseudonym(self, value: Any) -> str:
        assert self.key is not None
        digest = hmac.new(self.key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return PREFIX + digest[:32]

    def apply(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if not self.fields:
            return dict(values)
        return {
            name: (self.pseudonym(value) if name in self.fields and value is not None else value)
            for name, value in values.items()
        }
