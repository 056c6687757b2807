"""Connector health: can each source be read right now, and if not, why - shared by the service and CLI.

Why it is persisted: ``wardwatch status`` runs as a separate process from the service, so it cannot see the
service's memory. Each connector's health is stored as a small state record next to the cursors (key
``HEALTH_PREFIX + name``, written with ``Store.write([], CursorUpdate(...))``), only when it *changes*
(ok <-> failing, or a new reason), so a healthy poll costs no write.

Why reasons are scrubbed: ``/health`` is read by load balancers and dashboards, and the store it is written
to is read by ``status``. A reason never carries an absolute path (it is cut to its last component) nor a
URL query string (which can carry a patient id); the connector name and the kind of failure remain.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from engine.store.base import CursorUpdate, Store

HEALTH_PREFIX = "wardwatch.health:"

# An absolute POSIX path not preceded by a word character, ':' or '/' (so URLs keep their host and path).
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"/,;()]+/)*([^\s'\"/,;()]*)")
_QUERY = re.compile(r"\?[^\s'\"]*")


def scrub(text: str) -> str:
    """``/srv/logs/vpn.ndjson`` -> ``.../vpn.ndjson``; ``?patient=P1`` -> ``?...``: safe for /health."""
    text = _QUERY.sub("?...", text)
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}" if m.group(1) else "...", text)


def scrub_report(value: Any) -> Any:
    """``scrub`` applied to every string in a JSON-like report (store health carries the SQLite path)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_report(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_report(v) for v in value]
    return value


def public_reason(exc: BaseException) -> str:
    """One scrubbed line: the exception's message, prefixed by its type unless it is one of ours."""
    from engine.errors import WardwatchError

    message = str(exc) or type(exc).__name__
    text = message if isinstance(exc, WardwatchError) else f"{type(exc).__name__}: {message}"
    return scrub(text.splitlines()[0] if text else text)


@dataclass
class ConnectorHealth:
    """``ok`` with ``reason`` None, or failing with a scrubbed reason; ``since``: when this state began."""

    ok: bool
    reason: str | None
    since: str
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HealthBook:
    """The current health of each connector, kept in memory and mirrored to the store on every change."""

    def __init__(self, store: Store):
        self.store = store
        self.entries: dict[str, ConnectorHealth] = {}

    def ok(self, connector: str) -> ConnectorHealth:
        return self._record(connector, True, None)

    def failed(self, connector: str, exc: BaseException) -> ConnectorHealth:
        return self._record(connector, False, public_reason(exc))

    def _record(self, connector: str, ok: bool, reason: str | None) -> ConnectorHealth:
        previous = self.entries.get(connector)
        if previous is not None and previous.ok == ok and previous.reason == reason:
            previous.failures += 0 if ok else 1
            return previous
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry = self.entries[connector] = ConnectorHealth(ok, reason, now, 0 if ok else 1)
        self._persist(connector, entry, first=previous is None)
        return entry

    def _persist(self, connector: str, entry: ConnectorHealth, *, first: bool) -> None:
        """Best effort: a store that is down is reported by the store's own health, not hidden by this."""
        try:
            if first and entry.ok and self.store.get_cursor(HEALTH_PREFIX + connector) is None:
                return  # nothing was ever wrong: keep stores of healthy deployments free of health records
            self.store.write([], CursorUpdate(HEALTH_PREFIX + connector, entry.to_dict()))
        except Exception:  # noqa: BLE001 - health must never turn into a second failure
            pass


def stored_health(store: Store, connectors: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the service (or the last one-shot run) recorded per connector; ``ok`` when nothing was."""
    out: dict[str, dict[str, Any]] = {}
    for name in connectors:
        record = store.get_cursor(HEALTH_PREFIX + name)
        out[name] = dict(record) if record else {"ok": True, "reason": None}
    return out
