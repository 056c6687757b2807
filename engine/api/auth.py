"""Who may call the API: bearer tokens with roles, checked in constant time.

The tokens file (``service.http.tokens_file``, YAML or JSON) lists ``{name, role, token_sha256}``: only
the SHA-256 of each token is stored, so the file (in backups, in a config repository) does not give the
API away. ``name`` is the actor the audit chain records for every change made with that token.

Roles are ordered: ``viewer`` < ``analyst`` < ``admin``; a route asks for the least role that may call it
and every higher role may too (viewer reads; analyst triages, hunts and runs reports; admin removes
exceptions and verifies the audit chain).

The single token of earlier versions (``token_file`` / ``token_env``) still works: it is an ``admin``
token named ``admin``.

Why hashes compared against every entry: ``hmac.compare_digest`` over all entries (no early exit) keeps
the time an attacker can measure independent of which entry, if any, is close.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from engine.config import ConfigError

ROLES = ("viewer", "analyst", "admin")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name (the audit actor) and its role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    digest: bytes  # sha256 of the token


def token_sha256(token: str) -> str:
    """The hex digest a tokens file stores for ``token`` (``printf %s TOKEN | sha256sum`` gives the same)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenBook:
    """The configured tokens. Empty means no token is configured: status endpoints are open (as before
    roles existed) and every ``/api/v1`` resource answers 401 naming the key to set."""

    def __init__(self, entries: Sequence[tuple[str, str, str]] = ()):
        self._entries = [_Entry(Principal(name, role), bytes.fromhex(digest)) for name, role, digest in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer <token>`` header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = hashlib.sha256(token.strip().encode("utf-8")).digest()
        found = None
        for entry in self._entries:  # no early exit: the time does not tell which entry matched
            if hmac.compare_digest(presented, entry.digest):
                found = entry.principal
        return found


def load_tokens(http: Mapping[str, Any], config: Any) -> TokenBook:
    """Read ``tokens_file`` and the legacy ``token_file``/``token_env`` into a :class:`TokenBook`.

    Called once at service start: a file that is missing, unreadable or malformed stops the start with one
    line naming the key (and the entry); changing tokens needs a restart."""
    source = config.source
    entries: list[tuple[str, str, str]] = []
    if http.get("tokens_file"):
        entries += _read_tokens_file(config.resolve_path(http["tokens_file"]), source)
    legacy = _legacy_token(http, config)
    if legacy is not None:
        if any(name == "admin" for name, _, _ in entries):
            raise ConfigError(source, "service.http.tokens_file", "names a token 'admin', which is the name of "
                              "the token_file/token_env token: rename one of them")
        entries.append(("admin", "admin", token_sha256(legacy)))
    return TokenBook(entries)


def _read_tokens_file(path: Path, source: str) -> list[tuple[str, str, str]]:
    key = "service.http.tokens_file"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except OSError as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(source, key, f"{path}" + (f" line {mark.line + 1}" if mark else "")
                          + ": not YAML or JSON") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(source, key, f"{path}: expected a non-empty list of {{name, role, token_sha256}}")
    entries, names = [], set()
    for i, item in enumerate(data):
        where = f"{path}: entry {i + 1}"
        if not isinstance(item, dict) or set(item) != {"name", "role", "token_sha256"}:
            raise ConfigError(source, key, f"{where}: needs exactly the keys name, role, token_sha256")
        name, role, digest = (str(item["name"]).strip(), item["role"], str(item["token_sha256"]).strip().lower())
        if not name:
            raise ConfigError(source, key, f"{where}: name is empty")
        if role not in ROLES:
            raise ConfigError(source, key, f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        if not _HEX64.fullmatch(digest):
            raise ConfigError(source, key, f"{where}: token_sha256 must be 64 hex digits (the SHA-256 of the "
                                           "token, not the token)")
        if name in names:
            raise ConfigError(source, key, f"{where}: name {name!r} appears twice (it is the audit actor)")
        names.add(name)
        entries.append((name, role, digest))
    return entries


def _legacy_token(http: Mapping[str, Any], config: Any) -> str | None:
    """The single token of ``token_file`` or ``token_env`` (never the YAML), or None."""
    source = config.source
    if http.get("token_file"):
        path = config.resolve_path(http["token_file"])
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(source, "service.http.token_file", f"cannot read {path}: {exc.strerror}") from None
        if not token:
            raise ConfigError(source, "service.http.token_file", f"{path} is empty")
        return token
    if http.get("token_env"):
        token = os.environ.get(http["token_env"], "").strip()
        if not token:
            raise ConfigError(source, "service.http.token_env",
                              f"environment variable {http['token_env']} is not set or empty")
        return token
    return None
