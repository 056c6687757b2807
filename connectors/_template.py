"""TEMPLATE: copy this file to start a connector for your own log source. It is not registered.

It reads a text file of ``key=value`` lines (``ts=2024-05-01T10:00:00Z user=alice action=login``) and
shows every rule of the contract (``docs/connectors/README.md``) in the fewest lines:

1. ``read(cursor, max_events)`` returns a :class:`Batch`: events, dead letters, the cursor *after* both,
   and ``exhausted`` (True: nothing more right now).
2. The cursor is a small JSON-serialisable dict; ``None`` means "from the beginning". Never mutate the
   cursor you are given: it is the committed one.
3. Input that cannot become an event is a :class:`DeadLetter` naming where it was (``path:line``) and why;
   the cursor moves past it.
4. ``event.id`` is what the *source* says the record is, never the connector's name: the source's own
   record id when it has one, else ``record_id(raw record, its position in the stream)``
   (:mod:`engine.identity`), so the same log read twice - by any connector, after a copy - is stored once.
5. Every event has ``@timestamp`` (canonical, via ``normalise_timestamp``), ``event.dataset`` and
   ``event.id``; the fields are documented in ``docs/schema.md``.

Try it: ``python -m connectors._template some.log``. Register your copy in *your* package's pyproject::

    [project.entry-points."wardwatch.connectors"]
    my-source = "my_package.my_connector:MyConnector"

For files that grow and rotate, use :class:`connectors.tailing.LineFollower` instead of the simple offset
below (see ``connectors/ndjson.py``).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from connectors.base import Batch, Connector
from engine.events import Event, normalise_timestamp
from engine.identity import record_id
from engine.plugins import path_option
from engine.store.base import DeadLetter


@dataclass
class KeyValueOptions:
    """Declared options: the config is checked against these (types, defaults) before anything starts.

    Unknown keys and wrong types are refused with the key named; ``path_option`` marks a path that is
    resolved against the config file. Cross-field checks go in ``__post_init__`` (raise ValueError).
    """

    path: str = path_option(dataclasses.MISSING)
    dataset: str = "template.kv"


class KeyValueFileConnector(Connector):
    type_name = "template-kv"  # the entry point name you register
    summary = "key=value lines from one file (template)"
    Options: ClassVar[type] = KeyValueOptions

    def __init__(self, name: str, options: Mapping[str, Any]):
        super().__init__(name, options)  # parses ``options`` into ``self.settings`` or fails naming the key
        self.path = self.settings.path
        self.dataset = self.settings.dataset

    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        offset = int((cursor or {}).get("offset", 0))
        line_no = int((cursor or {}).get("line", 0))
        batch = Batch(exhausted=True)
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a partial last line: leave it for the next read
                offset += len(raw)
                line_no += 1
                record = raw.rstrip(b"\r\n")
                result = self._to_event(record, line_no)
                if isinstance(result, DeadLetter):
                    batch.dead_letters.append(result)
                else:
                    batch.events.append(result)
                if len(batch.events) + len(batch.dead_letters) >= max_events:
                    batch.exhausted = False
                    break
        batch.cursor = {"offset": offset, "line": line_no}
        return batch

    def _to_event(self, record: bytes, line_no: int) -> Event | DeadLetter:
        text = record.decode("utf-8", "backslashreplace")
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        try:
            timestamp = normalise_timestamp(fields["ts"])
        except (KeyError, ValueError) as exc:
            return DeadLetter(source=self.source_identity, reason=f"field 'ts': missing or invalid ({exc})",
                              location=f"{self.path}:{line_no}", raw=text)
        event: Event = {
            "@timestamp": timestamp,
            "event.dataset": self.dataset,
            "event.id": record_id(record, f"line:{line_no}"),
            "event.original": text,
        }
        if "user" in fields:  # leave absent fields out rather than storing None
            event["user.name"] = fields["user"]
        if "action" in fields:
            event["event.action"] = fields["action"]
        return event


if __name__ == "__main__":
    connector = KeyValueFileConnector("demo", {"path": sys.argv[1]})
    result = connector.read(None, 100)
    for event in result.events:
        print(event)
    for dead in result.dead_letters:
        print("DEAD", dead.location, dead.reason)
    print("cursor", result.cursor, "exhausted", result.exhausted)
