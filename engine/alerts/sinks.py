"""Alert sinks fed from the store's outbox: at-least-once delivery plus idempotent sinks = exactly once.

The evaluator commits alerts to the store; delivery happens afterwards from the store's per-sink outbox. A
crash after writing to a sink but before acknowledging means the revision is handed over again, so each sink
must recognise a revision it already has: the JSONL sink remembers ``(id, revision)`` pairs it wrote (read
back from the file at start), the console sink is best-effort by nature.

Cases (engine/alerts/cases.py) travel the same way through their own outbox: a case update is one delivery
of ``(case id, revision)``. Each sink says what it wants (``deliver: cases | alerts | both``); the case
builder itself is the first consumer of the alert outbox, so cases are stored before any sink asks for them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

import orjson

from engine.alerts.case_model import Case
from engine.alerts.model import Alert
from engine.logs import get_logger
from engine.plugins import path_option
from engine.private_files import open_private, private_dir
from engine.store.base import Store

log = get_logger("wardwatch.sinks")


#: What a sink can be handed: ``deliver`` option values.
DELIVER_CHOICES = {"cases": frozenset({"cases"}), "alerts": frozenset({"alerts"}),
                   "both": frozenset({"cases", "alerts"})}


def deliver_choice(value: str, where: str = "deliver") -> frozenset[str]:
    try:
        return DELIVER_CHOICES[value]
    except KeyError:
        raise ValueError(f"{where}: expected one of cases, alerts, both (not {value!r})") from None


def _check_deliver(value: str) -> None:
    from engine.plugins import InvalidOption

    if value not in DELIVER_CHOICES:
        raise InvalidOption("deliver", f"expected one of cases, alerts, both (not {value!r})")


class Sink(Protocol):
    """A sink. Optional: ``wants`` (default ``{"alerts"}``) and ``deliver_cases(cases)`` for case updates."""

    name: str

    def deliver(self, alerts: Sequence[Alert]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per alert revision in ``path`` and one per case revision in ``cases_path``, appended
    and fsync'd; duplicates after a crash are skipped.

    Two files, not one mixed feed: tools that parse the alert file keep working, and the case file is what
    an analyst's ticketing reads. ``deliver: both`` (the default) writes both.
    """

    @dataclasses.dataclass
    class Options:
        """``alerts.sinks[]`` options of ``type: jsonl``."""

        path: str = path_option(dataclasses.MISSING)
        #: case revisions; default: next to ``path``, ``alerts.jsonl`` -> ``alerts.cases.jsonl``
        cases_path: str | None = path_option(None)
        deliver: str = "both"

        def __post_init__(self) -> None:
            _check_deliver(self.deliver)

    def __init__(self, path: str | Path, name: str | None = None, cases_path: str | Path | None = None,
                 deliver: str = "both"):
        self.path = Path(path)
        self.cases_path = Path(cases_path) if cases_path else self.path.with_name(
            self.path.name[: -len(".jsonl")] + ".cases.jsonl" if self.path.name.endswith(".jsonl")
            else self.path.name + ".cases")
        self.name = name or f"jsonl:{self.path}"
        self.wants = deliver_choice(deliver, "alerts.sinks[].deliver")
        private_dir(self.path.parent)  # alerts name patients and staff: 0700/0600 (engine/private_files.py)
        private_dir(self.cases_path.parent)
        self._seen: set[tuple[str, int]] = _recover(self.path)
        self._seen_cases: set[tuple[str, int]] = _recover(self.cases_path)

    def deliver(self, alerts: Sequence[Alert]) -> None:
        _append(self.path, alerts, self._seen)

    def deliver_cases(self, cases: Sequence[Case]) -> None:
        _append(self.cases_path, cases, self._seen_cases)

    def close(self) -> None:
        pass


def _recover(path: Path) -> set[tuple[str, int]]:
    """Drop a torn last line (crash mid-write) and learn which revisions are already in the file."""
    seen: set[tuple[str, int]] = set()
    if not path.exists():
        return seen
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
            seen.add((record["id"], int(record.get("revision", 1))))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return seen


def _append(path: Path, records: Sequence[Alert | Case], seen: set[tuple[str, int]]) -> None:
    fresh = [r for r in records if (r.id, r.revision) not in seen]
    if not fresh:
        return
    payload = b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in fresh)
    with open_private(path, "ab") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    seen.update((r.id, r.revision) for r in fresh)


def case_lines(case: Case) -> list[str]:
    """A case as an analyst reads it first: subject, score, then one line per rule (shared by the console
    sink and ``wardwatch alerts list``)."""
    revision = f" (update {case.revision})" if case.revision > 1 else ""
    head = (f"CASE [{case.level}] risk {case.score:g} | {case.subject_kind} {case.subject_field}={case.subject} | "
            f"{case.first_trigger} .. {case.last_trigger} | {len(case.alerts)} alert(s), "
            f"{case.evidence_total} events{revision}")
    return [head] + [f"  ALERT [{r['level']}] {r['title']} x{r['alerts']}, {r['events']} events"
                     for r in case.rules]


class ConsoleSink:
    """A few lines per case (or one per alert with ``deliver: alerts``) on stdout, for people watching."""

    @dataclasses.dataclass
    class Options:
        """``alerts.sinks[]`` options of ``type: console``."""

        deliver: str = "cases"

        def __post_init__(self) -> None:
            _check_deliver(self.deliver)

    def __init__(self, stream: Any = None, name: str = "console", deliver: str = "cases"):
        import sys

        self.stream = stream or sys.stdout
        self.name = name
        self.wants = deliver_choice(deliver, "alerts.sinks[].deliver")

    def deliver_cases(self, cases: Sequence[Case]) -> None:
        for case in cases:
            self.stream.write("\n".join(case_lines(case)) + "\n")
        self.stream.flush()

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
            cases_path = resolve(spec["cases_path"]) if spec.get("cases_path") else None
            sinks.append(JsonlSink(resolve(spec["path"]), cases_path=cases_path, deliver=spec.get("deliver", "both")))
        elif spec["type"] == "console" and console:
            sinks.append(ConsoleSink(deliver=spec.get("deliver", "cases")))
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
    """Hand every undelivered alert (and case) revision to every sink; acknowledge only after the sink
    returned. Without a case builder among the sinks (``alerts.cases.enabled: false``) every sink gets
    alerts, whatever it asked for: nothing would ever fill the case outbox."""
    cases_on = any(getattr(s, "name", "") == "@cases" for s in sinks)
    delivered = 0
    for sink in sinks:
        wants = getattr(sink, "wants", frozenset({"alerts"})) if cases_on else frozenset({"alerts"})
        if not hasattr(sink, "deliver_cases"):
            wants = frozenset({"alerts"})
        if "alerts" in wants:
            delivered += _drain(sink.name, lambda: store.pending_deliveries(sink.name, limit=batch), sink.deliver,
                                lambda done: store.mark_delivered(sink.name, done), batch)
        if "cases" in wants:
            delivered += _drain(sink.name, lambda: store.pending_case_deliveries(sink.name, limit=batch),
                                sink.deliver_cases,  # type: ignore[attr-defined]
                                lambda done: store.mark_cases_delivered(sink.name, done), batch)
    return delivered


def _drain(name: str, fetch: Any, hand: Any, acknowledge: Any, batch: int) -> int:
    """Fetch, hand over, acknowledge, until the outbox has nothing more for this sink; a failing sink keeps
    its revisions for the next round (at-least-once; the sinks deduplicate)."""
    delivered = 0
    while True:
        pending = fetch()
        if not pending:
            break
        try:
            hand(pending)
        except OSError as exc:
            log.error("sink delivery failed; will retry", sink=name, error=str(exc))
            break
        acknowledge(pending)
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
