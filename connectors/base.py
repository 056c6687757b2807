"""The connector contract: the one thing an integrator implements.

A connector turns a log source into normalised events. It is *pulled*: ``read(cursor)`` returns the next
batch of events, the records it could not parse (as dead letters) and the cursor that follows them. It never
writes to a store and never commits its own cursor: the engine stores the batch and the cursor together, so
a crash between the two cannot lose or double anything.

Push sources (syslog) first write what they receive to a durable spool and are then read like a file.

Register a connector under the ``wardwatch.connectors`` entry point group (see ``pyproject.toml``); the
registry below finds built-in and third-party connectors (and, with another group, sinks) the same way.

A connector declares its options as an ``Options`` dataclass (see :mod:`engine.plugins`): the config is
checked against it before anything is built, and ``Connector.__init__`` parses the mapping it is given into
``self.settings``, so a typo or a wrong type is one error naming the option.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Mapping

from engine import errors
from engine.events import Event
from engine.plugins import InvalidOption, declared_options, parse_options
from engine.store.base import DeadLetter


class ConnectorError(errors.ConnectorError):
    """A connector cannot work at all (bad config, unreadable source). Names the connector and the key."""


class ConnectorConfigError(ConnectorError):
    exit_code = errors.EXIT_USAGE  # the config is wrong: fix it, retrying will not help


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
    #: Set when the source could not be reached on this read (e.g. a server that does not answer): the
    #: reason, naming the connector. The engine reports it on /health and fails one-shot runs with it.
    unavailable: str | None = None


class Connector(abc.ABC):
    """Base class. Subclasses set ``type_name`` and implement ``read``.

    ``name`` is the configured instance name: it is the connector's identity for cursors (renaming an
    instance makes it re-read its source). It is never part of ``event.id``: ids come from the source
    (:mod:`engine.identity`), so that re-read - or a second connector on the same log - stores nothing new.
    """

    type_name: ClassVar[str] = ""
    #: One-line description shown by ``wardwatch connectors list``.
    summary: ClassVar[str] = ""
    #: The option that ``wardwatch ingest TYPE SOURCE`` fills with SOURCE (a path, a URL, a spool dir).
    source_option: ClassVar[str] = "path"
    #: The declared options (a dataclass; see :mod:`engine.plugins`). None: the connector checks its own.
    Options: ClassVar[type | None] = None
    #: True when ``read`` depends only on the cursor and the source (no state that must survive the call, no
    #: ``acknowledge``): ingest may then run it in a forked worker process (engine/ingest_worker.py). Not
    #: inherited: each class that says so sets it itself, since a subclass may add such state.
    reads_in_worker: ClassVar[bool] = False

    def __init__(self, name: str, options: Mapping[str, Any]):
        self.name = name
        self.options = dict(options)
        options_cls = declared_options(type(self))
        if options_cls is not None:
            try:
                self.settings: Any = parse_options(options_cls, self.options)
            except InvalidOption as exc:
                raise ConnectorConfigError(f"connector {name!r}: {exc}") from None

    @abc.abstractmethod
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        """Return up to ``max_events`` events after ``cursor`` (None: from the beginning)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets/files. Called once at shutdown."""

    @property
    def source_identity(self) -> str:
        """Which connector instance a dead letter came from (``type:name``). Not an event-id input."""
        return f"{self.type_name}:{self.name}"


ENTRY_POINT_GROUP = "wardwatch.connectors"
SINK_ENTRY_POINT_GROUP = "wardwatch.sinks"


def available_plugins(group: str) -> list[str]:
    """Every plug-in installed in an entry-point group: built-ins and third-party packages alike."""
    return sorted({ep.name for ep in entry_points(group=group)})


def plugin_class(group: str, type_name: str, what: str = "plug-in") -> type:
    """Load one plug-in (lazily: a broken third-party plug-in only hurts when it is used)."""
    for ep in entry_points(group=group):
        if ep.name == type_name:
            return ep.load()
    known = ", ".join(available_plugins(group)) or "none"
    raise ConnectorConfigError(f"unknown {what} type {type_name!r} (installed: {known})")


def available_connectors() -> list[str]:
    """Every connector type installed: built-ins and third-party packages, all through entry points."""
    return available_plugins(ENTRY_POINT_GROUP)


def connector_class(type_name: str) -> type[Connector]:
    """Load one connector type."""
    return plugin_class(ENTRY_POINT_GROUP, type_name, "connector")
