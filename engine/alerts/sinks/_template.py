"""TEMPLATE: copy this file to start a sink for your own destination. It is not registered.

It keeps payloads in a list (``MemorySink.received``) and shows every rule of the contract
(``docs/connectors/README.md``, section "Sinks") in the fewest lines:

1. Subclass :class:`Sink`; set ``type_name`` (the entry point name), ``summary`` and ``Options``.
2. ``Options`` extends :class:`SinkOptions` (``@dataclass(kw_only=True)``): your keys are checked with the
   common ones (``deliver``, ``name``, ``pseudonymise``, ``drop``, ``evidence_cap``, ``notices``, ``retry``)
   before anything starts; a wrong one is one error naming ``alerts.sinks[N].key``. Secrets are
   ``<key>_file`` / ``<key>_env`` options, never the value (:func:`engine.plugins.looks_like_secret`).
3. ``send_alerts(payloads)`` gets dicts that already went through the field policy: never reach around it
   (never re-read the store) - a dropped field must stay dropped. ``send_cases`` only if you take cases.
4. Fail with :class:`SinkUnavailable` when trying again may work (the revision stays in the outbox and is
   retried with backoff) and :class:`SinkRejected` when it never will (it is dead-lettered). Never log a
   payload: messages and dead-letter reasons must not name patients or staff.
5. A revision can come twice (a crash between send and acknowledge): recognise ``(id, revision)``, or
   hand it to the peer as an idempotency key. ``batch_size = 1`` when each revision is its own request.

Register your copy in *your* package's pyproject::

    [project.entry-points."wardwatch.sinks"]
    my-sink = "my_package.my_sink:MySink"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from engine.alerts.sinks.base import Sink, SinkOptions
from engine.errors import SinkRejected


@dataclass(kw_only=True)
class MemoryOptions(SinkOptions):
    """Declared options. Cross-field checks go in ``__post_init__`` (call ``super().__post_init__()``)."""

    #: refuse revisions once this many are kept (shows SinkRejected -> dead letter)
    limit: int = 10_000


class MemorySink(Sink):
    type_name = "template-memory"
    summary = "keeps payloads in memory (template)"
    Options: ClassVar[type[SinkOptions]] = MemoryOptions

    def __init__(self, options: Any = None, *, name: str | None = None, pseudonymiser: Any = None):
        super().__init__(options, name=name, pseudonymiser=pseudonymiser)  # parses options or names the key
        self.received: list[dict[str, Any]] = []
        self._seen: set[tuple[str, int]] = set()

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        for payload in payloads:
            key = (payload["id"], payload["revision"])
            if key in self._seen:  # redelivered after a crash: already have it
                continue
            if len(self.received) >= self.settings.limit:
                raise SinkRejected(f"limit of {self.settings.limit} revisions reached")
            self.received.append(payload)
            self._seen.add(key)

    def send_notice(self, notice: Mapping[str, Any]) -> None:
        self.received.append({"notice": dict(notice)})
