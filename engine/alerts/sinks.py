"""Alert sinks fed from the store's outbox: at-least-once delivery plus idempotent sinks = exactly once.

The evaluator commits alerts to the store; delivery happens afterwards from the store's per-sink outbox. A
crash after writing to a sink but before acknowledging means the revision is handed over again, so each sink
must recognise a revision it already has: the JSONL sink remembers ``(id, revision)`` pairs it wrote (read
back from the file at start), the console sink is best-effort by nature.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import orjson

from engine.alerts.model import Alert
from engine.logs import get_logger
from engine.plugins import path_option
from engine.private_files import open_private, private_dir
from engine.store.base import Store

log = get_logger("wardwatch.sinks")


class Sink(Protocol):
    name: str

    def deliver(self, alerts: Sequence[Alert]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per alert revision, appended and fsync'd; duplicates after a crash are skipped."""

    @dataclasses.dataclass
    class Options:
        """``alerts.sinks[]`` options of ``type: jsonl``."""

        path: str = path_option(dataclasses.MISSING)

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = Path(path)
        self.name = name or f"jsonl:{self.path}"
        private_dir(self.path.parent)  # alerts name patients and staff: 0700/0600 (engine/private_files.py)
        self._seen: set[tuple[str, int]] = set()
        self._recover()

    def _recover(self) -> None:
        """Drop a torn last line (crash mid-write) and learn which revisions are already in the file."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(cut)
            data = data[:cut]
        for line in data.splitlines():
            try:
                record = orjson.loads(line)
                self._seen.add((record["id"], int(record.get("revision", 1))))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue

    def deliver(self, alerts: Sequence[Alert]) -> None:
        fresh = [a for a in alerts if (a.id, a.revision) not in self._seen]
        if not fresh:
            return
        payload = b"".join(orjson.dumps(a.to_dict()) + b"\n" for a in fresh)
        with open_private(self.path, "ab") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        self._seen.update((a.id, a.revision) for a in fresh)

    def close(self) -> None:
        pass


class ConsoleSink:
    """A line per alert on stdout, for people watching the service."""

    @dataclasses.dataclass
    class Options:
        """``alerts.sinks[]`` options of ``type: console`` (none yet)."""

    def __init__(self, stream: Any = None, name: str = "console"):
        import sys

        self.stream = stream or sys.stdout
        self.name = name

    def deliver(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            group = ", ".join(f"{k}={v}" for k, v in alert.group.items()) or "-"
            revision = f" (update {alert.revision})" if alert.revision > 1 else ""
            self.stream.write(
                f"ALERT [{alert.rule_level}] {alert.rule_title} | {group} | "
                f"{alert.window_start} .. {alert.window_end} | {alert.evidence_total} events{revision}\n"
            )
        self.stream.flush()

    def close(self) -> None:
        pass


def build_sinks(specs: Iterable[Mapping[str, Any]], resolve: Any = Path, console: bool = True) -> list[Sink]:
    sinks: list[Sink] = []
    for spec in specs:
        if spec["type"] == "jsonl":
            sinks.append(JsonlSink(resolve(spec["path"])))
        elif spec["type"] == "console" and console:
            sinks.append(ConsoleSink())
        elif spec["type"] not in _BUILTIN_SINKS:
            sinks.append(_plugin_sink(spec, resolve))
    return sinks


def _plugin_sink(spec: Mapping[str, Any], resolve: Any) -> Sink:
    """A third-party sink (``wardwatch.sinks`` entry point): built with its declared options as keywords."""
    from engine.plugins import declared_options, options_dict, parse_options

    cls = sink_class(spec["type"])
    options = {k: v for k, v in spec.items() if k != "type"}
    options_cls = declared_options(cls)
    if options_cls is not None:
        options = options_dict(parse_options(options_cls, options, resolve_path=lambda p: str(resolve(p))))
    return cls(**options)


def deliver_pending(store: Store, sinks: Sequence[Sink], batch: int = 1000) -> int:
    """Hand every undelivered alert revision to every sink; acknowledge only after the sink returned."""
    delivered = 0
    for sink in sinks:
        while True:
            pending = store.pending_deliveries(sink.name, limit=batch)
            if not pending:
                break
            try:
                sink.deliver(pending)
            except OSError as exc:
                log.error("sink delivery failed; will retry", sink=sink.name, error=str(exc))
                break
            store.mark_delivered(sink.name, pending)
            delivered += len(pending)
            if len(pending) < batch:
                break
    return delivered


#: Built-in sinks, used when the installed package metadata predates the ``wardwatch.sinks`` group.
_BUILTIN_SINKS = {"jsonl": JsonlSink, "console": ConsoleSink}


def sink_class(type_name: str) -> type:
    """A sink type from the ``wardwatch.sinks`` entry-point group (built-ins registered in pyproject.toml)."""
    from connectors.base import SINK_ENTRY_POINT_GROUP, ConnectorConfigError, available_plugins, plugin_class

    try:
        return plugin_class(SINK_ENTRY_POINT_GROUP, type_name, "sink")
    except ConnectorConfigError:
        if type_name in _BUILTIN_SINKS:
            return _BUILTIN_SINKS[type_name]
        known = ", ".join(sorted({*_BUILTIN_SINKS, *available_plugins(SINK_ENTRY_POINT_GROUP)}))
        raise LookupError(f"unknown sink type {type_name!r} (installed: {known})") from None
