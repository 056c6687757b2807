"""Alert sinks as plug-ins: the contract (:mod:`.base`), outbox delivery (:mod:`.delivery`), the built-ins.

The evaluator commits alerts to the store; delivery happens afterwards from the store's per-sink outbox
(at-least-once), and each sink recognises a revision it already has (exactly-once where the peer can).
Cases (engine/alerts/cases.py) travel the same way through their own outbox; the case builder is the first
consumer of the alert outbox, so cases are stored before any sink asks for them.

Sinks are found like connectors: the ``wardwatch.sinks`` entry-point group (built-ins are registered in
pyproject.toml); ``_template.py`` is the starting point for a new one. This module is the registry:
``sink_class`` finds a type, ``build_sinks`` builds ``alerts.sinks[]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.alerts.pseudonymise import Pseudonymiser
from engine.alerts.sinks.base import (
    DELIVER_CHOICES, FieldPolicy, RetryPolicy, Sink, SinkConfigError, SinkOptions, SinkRejected, SinkUnavailable,
    deliver_choice,
)
from engine.alerts.sinks.console import ConsoleSink, alert_line, case_lines
from engine.alerts.sinks.delivery import deliver_pending, send_notice
from engine.alerts.sinks.jsonl import JsonlSink

#: Built-in sinks, used when the installed package metadata predates the ``wardwatch.sinks`` group.
_BUILTIN_SINKS: dict[str, type] = {"jsonl": JsonlSink, "console": ConsoleSink}


def _builtin(type_name: str) -> type | None:
    """Built-ins that import an HTTP client load only when named (``make run`` never pays for them)."""
    if type_name in _BUILTIN_SINKS:
        return _BUILTIN_SINKS[type_name]
    lazy = {"webhook": ("engine.alerts.sinks.webhook", "WebhookSink"),
            "slack": ("engine.alerts.sinks.slack", "SlackSink"),
            "teams": ("engine.alerts.sinks.teams", "TeamsSink")}
    if type_name in lazy:
        import importlib

        module, attr = lazy[type_name]
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
    return None


def sink_class(type_name: str) -> type:
    """A sink type from the ``wardwatch.sinks`` entry-point group (built-ins registered in pyproject.toml)."""
    from connectors.base import SINK_ENTRY_POINT_GROUP, ConnectorConfigError, available_plugins, plugin_class

    try:
        return plugin_class(SINK_ENTRY_POINT_GROUP, type_name, "sink")
    except ConnectorConfigError:
        builtin = _builtin(type_name)
        if builtin is not None:
            return builtin
        known = ", ".join(sorted({*_BUILTIN_SINKS, *available_plugins(SINK_ENTRY_POINT_GROUP)}))
        raise LookupError(f"unknown sink type {type_name!r} (installed: {known})") from None


def build_sinks(specs: Iterable[Mapping[str, Any]], resolve: Any = Path, console: bool = True,
                pseudonymiser: Pseudonymiser | None = None) -> list[Any]:
    """``alerts.sinks[]`` -> sinks. ``console: False`` leaves console sinks out (``run --once`` prints its
    own table). ``pseudonymiser``: the site's (``alerts.pseudonymise``), used by each sink's field policy."""
    from engine.plugins import declared_options, options_dict, parse_options

    sinks: list[Any] = []
    for i, spec in enumerate(specs):
        if spec["type"] == "console" and not console:
            continue
        cls = sink_class(spec["type"])
        options = {k: v for k, v in spec.items() if k != "type"}
        options_cls = declared_options(cls)
        parsed = (parse_options(options_cls, options, resolve_path=lambda p: str(resolve(p)))
                  if options_cls is not None else None)
        if isinstance(cls, type) and issubclass(cls, Sink):
            sink: Any = cls.from_options(parsed, pseudonymiser=pseudonymiser)
        else:  # a third-party sink without the base class: built with its declared options as keywords
            sink = cls(**(options_dict(parsed) if parsed is not None else options))
        if any(getattr(s, "name", None) == getattr(sink, "name", None) for s in sinks):
            raise SinkConfigError(f"alerts.sinks[{i}].name: another sink is already named {sink.name!r}; "
                                  "give each sink its own name (it names the sink's outbox)")
        sinks.append(sink)
    return sinks


__all__ = [
    "DELIVER_CHOICES", "ConsoleSink", "FieldPolicy", "JsonlSink", "RetryPolicy", "Sink", "SinkConfigError",
    "SinkOptions", "SinkRejected", "SinkUnavailable", "alert_line", "build_sinks", "case_lines",
    "deliver_choice", "deliver_pending", "send_notice", "sink_class",
]
