"""The connector contract: the one thing an integrator implements.

A connector turns a log source into normalised events. It is *pulled*: ``read(cursor)`` returns the next
batch of events, the records it could not parse (as dead letters) and the cursor that follows them. It never
writes to a store and never commits its own cursor: the engine stores the batch and the cursor together, so
a crash between the two cannot lose or double anything.

Push sources (syslog) first write what they receive to a durable spool and are then read like a file.

Register a connector under the ``wardwatch.connectors`` entry point group (see ``pyproject.toml``); the
registry below finds built-in and third-party connectors the same way.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Mapping

from engine.events import Event
from engine.store.base import DeadLetter


class ConnectorError(Exception):
    """A connector cannot work at all (bad config, unreadable source). Names the connector and the key."""


class ConnectorConfigError(ConnectorError):
    pass


@dataclass
class Batch:
    """What one ``read`` returns. ``cursor`` covers both ``events`` and ``dead_letters``.

    ``exhausted`` is True when the source had nothing more to give right now (the engine then waits for
    the next poll instead of calling again at once).
    """

    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    cursor: dict[str, Any] | None = None
    exhausted: bool = True


class Connector(abc.ABC):
    """Base class. Subclasses set ``type_name`` and implement ``read``.

    ``name`` is the configured instance name: it is the connector's identity for cursors and for
    deterministic event ids, so renaming an instance makes it re-read its source as new.
    """

    type_name: ClassVar[str] = ""
    #: One-line description shown by ``wardwatch connectors list``.
    summary: ClassVar[str] = ""
    #: The option that ``wardwatch ingest TYPE SOURCE`` fills with SOURCE (a path, a URL, a spool dir).
    source_option: ClassVar[str] = "path"

    def __init__(self, name: str, options: Mapping[str, Any]):
        self.name = name
        self.options = dict(options)

    @abc.abstractmethod
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        """Return up to ``max_events`` events after ``cursor`` (None: from the beginning)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets/files. Called once at shutdown."""

    @property
    def source_identity(self) -> str:
        return f"{self.type_name}:{self.name}"


ENTRY_POINT_GROUP = "wardwatch.connectors"


def available_connectors() -> list[str]:
    """Every connector type installed: built-ins and third-party packages, all through entry points."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def connector_class(type_name: str) -> type[Connector]:
    """Load one connector type (lazily: a broken third-party plug-in only hurts when it is used)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == type_name:
            return ep.load()
    known = ", ".join(available_connectors()) or "none"
    raise ConnectorConfigError(f"unknown connector type {type_name!r} (installed: {known})")
