"""``wardwatch``: the command line. Every command is documented in README.md.

Exit codes: 0 success, 1 the job failed (e.g. a store error during ``run --once``), 2 bad usage, bad config or
invalid rules. Errors are one readable line on stderr, never a stack trace for an expected failure.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import orjson

from engine.config import ConfigError, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """An expected failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --- helpers ---------------------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> Any:
    return load_config(args.config)


def _setup_logging(config: Any, args: argparse.Namespace) -> None:
    from engine.logs import configure_logging

    level = "debug" if getattr(args, "verbose", False) else config["logging"]["level"]
    configure_logging(level, config["logging"]["format"])


def _is_tty() -> bool:
    return sys.stdout.isatty()


def _alerts_table(alerts: Sequence[Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("level", "rule", "group", "window (UTC)", "metric", "events"):
        table.add_column(column, overflow="fold", no_wrap=column in ("rule", "window (UTC)"))
    for alert in alerts:
        group = ", ".join(f"{k}={v}" for k, v in alert.group.items()) or "-"
        metric = ""
        if alert.metric:
            metric = f"{alert.metric.get('name')}={alert.metric.get('value')}"
        table.add_row(
            alert.rule_level,
            alert.rule_title,
            group,
            _window(alert.window_start, alert.window_end),
            metric,
            str(alert.evidence_total),
        )
    Console(width=None if _is_tty() else 200).print(table)


def _window(start: str, end: str) -> str:
    """Compact: '2026-11-02 13:00:34 - 13:47:23' (the end's date only when it differs)."""
    same_day = start[:10] == end[:10]
    return f"{start[:10]} {start[11:19]} - {end[11:19] if same_day else end[:10] + ' ' + end[11:19]}"


def _print_rule_errors(errors: Sequence[Any]) -> None:
    for error in errors:
        print(f"error: {error}", file=sys.stderr)


# --- commands --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from engine.app import build_app

    config = _config(args)
    _setup_logging(config, args)
    app = build_app(config, console=not args.once)
    if app.ruleset.errors:
        _print_rule_errors(app.ruleset.errors)
        app.close()
        raise CliError(f"{len(app.ruleset.errors)} rule(s) failed to load; fix them or remove them")
    if args.once:
        return _run_once(app)
    from engine.scheduler import Service

    service = Service(app)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: service.request_stop())
    service.start()
    service.wait()
    service.stop()
    return EXIT_OK


def _run_once(app: Any) -> int:
    from engine.evaluation import iter_alerts, run_all
    from engine.ingest import ingest_connector
    from engine.sinks import deliver_pending
    from engine.logs import get_logger

    log = get_logger("wardwatch.run")
    try:
        for entry, connector in app.connectors():
            with _progress(entry["name"]) as on_batch:
                stats = ingest_connector(app.store, connector, app.enrichment,
                                         app.config["scheduler"]["batch_size"], on_batch=on_batch)
            connector.close()
            log.info("ingested", connector=entry["name"], events=stats.events, duplicates=stats.duplicates,
                     dead_letters=stats.dead_letters, events_per_s=round(stats.rate))
        results = run_all(app.evaluator, app.jobs)
        deliver_pending(app.store, app.sinks)
        alerts = sorted(iter_alerts(results), key=lambda a: (a.first_trigger, a.rule_title))
        _alerts_table(alerts, f"{len(alerts)} new or updated alert(s) in this run")
        total = len(app.store.list_alerts())
        print(f"{total} alert(s) in the store; `wardwatch alerts list` shows them all.")
    finally:
        app.close()
    return EXIT_OK


class _progress:
    """A rich progress line on a TTY; nothing otherwise (logs stay machine-readable)."""

    def __init__(self, name: str):
        self.name = name
        self.progress: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                                 transient=True)
        self.progress.start()
        task = self.progress.add_task(f"ingesting {self.name}")

        def on_batch(stats: Any) -> None:
            self.progress.update(task, description=f"ingesting {self.name}: {stats.events:,} events")

        return on_batch

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def cmd_ingest(args: argparse.Namespace) -> int:
    from connectors.base import connector_class
    from engine.app import build_enrichment, open_configured_store
    from engine.ingest import ingest_connector

    config = _config(args)
    _setup_logging(config, args)
    options: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--option expects key=value, got {item!r}")
        import yaml

        options[key] = yaml.safe_load(value)
    cls = connector_class(args.type)
    source = args.source if "://" in args.source else str(Path(args.source).resolve())
    options.setdefault(cls.source_option, source)
    name = args.name or f"cli-{args.type}"
    connector = cls(name, options)
    store = open_configured_store(config)
    try:
        with _progress(name) as on_batch:
            stats = ingest_connector(store, connector, build_enrichment(config),
                                     config["scheduler"]["batch_size"], on_batch=on_batch)
    finally:
        connector.close()
        store.close()
    print(f"{name}: {stats.events} events read, {stats.written} stored, {stats.duplicates} duplicates, "
          f"{stats.dead_letters} dead letters ({stats.rate:,.0f} events/s)")
    return EXIT_OK


def _load_rules_from(paths: Sequence[str], config: Any) -> Any:
    from engine.sigma import load_rules

    return load_rules(list(paths), placeholders=config["rules"]["placeholders"])


def cmd_rules_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    paths = args.paths or [str(config.resolve_path(p)) for p in config["rules"]["paths"]]
    ruleset = _load_rules_from(paths, config)
    _print_rule_errors(ruleset.errors)
    print(f"{len(ruleset.rules)} rule(s), {len(ruleset.correlations)} correlation(s) valid; "
          f"{len(ruleset.errors)} error(s)")
    return EXIT_USAGE if ruleset.errors else EXIT_OK


def _read_events(path: str, dataset: str | None) -> list[dict[str, Any]]:
    from engine.events import DATASET, EVENT_ID, TIMESTAMP, flatten, normalise_timestamp

    events = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CliError(f"{path}:{number}: invalid JSON: {exc}") from None
            if not isinstance(document, dict):
                raise CliError(f"{path}:{number}: expected a JSON object")
            event = flatten(document)
            event.setdefault(EVENT_ID, str(number))
            if dataset and not event.get(DATASET):
                event[DATASET] = dataset
            try:
                event[TIMESTAMP] = normalise_timestamp(event.get(TIMESTAMP, 0))
            except ValueError as exc:
                raise CliError(f"{path}:{number}: @timestamp: {exc}") from None
            if not event.get(DATASET):
                raise CliError(f"{path}:{number}: event.dataset: missing (or pass --dataset)")
            events.append(event)
    return events


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Evaluate rules on sample events with the same engine the service uses, on a throw-away store."""
    from engine.evaluation import Evaluator, build_jobs, iter_alerts, run_all
    from engine.store import open_store

    config = _config(args)
    ruleset = _load_rules_from([args.rule], config)
    if ruleset.errors:
        _print_rule_errors(ruleset.errors)
        raise CliError(f"{len(ruleset.errors)} rule(s) failed to load")
    events = _read_events(args.events, args.dataset)
    with tempfile.TemporaryDirectory(prefix="wardwatch-test-") as tmp:
        store = open_store("sqlite", path=Path(tmp) / "test.db")
        try:
            store.write(events)
            evaluator = Evaluator(store, evidence_cap=10**9, candidates=ruleset.candidates)
            alerts = list(iter_alerts(run_all(evaluator, build_jobs(ruleset))))
        finally:
            store.close()
    alerts.sort(key=lambda a: (a.first_trigger, a.rule_id, a.group_key))
    if args.format == "json":
        for alert in alerts:
            line = {
                "rule_id": alert.rule_id,
                "title": alert.rule_title,
                "kind": alert.kind,
                "event_ids": alert.evidence,
                "group": alert.group,
                "window": {"start": alert.window_start, "end": alert.window_end},
            }
            sys.stdout.write(orjson.dumps(line).decode() + "\n")
    else:
        _alerts_table(alerts, f"{len(alerts)} result(s) on {len(events)} event(s)")
    return EXIT_OK


def _find_rule(ref: str, config: Any) -> Any:
    """A rule file path, or an id/name/title among the configured rules."""
    path = Path(ref)
    if path.exists():
        ruleset = _load_rules_from([str(path)], config)
    else:
        ruleset = _load_rules_from([str(config.resolve_path(p)) for p in config["rules"]["paths"]], config)
    if ruleset.errors and path.exists():
        _print_rule_errors(ruleset.errors)
        raise CliError("the rule failed to load")
    candidates = list(ruleset.rules.values())
    if path.exists():
        if len(candidates) != 1:
            raise CliError(f"{ref} holds {len(candidates)} detection rules; name one by id or title")
        return candidates[0]
    for rule in candidates:
        if ref in (rule.id, rule.name, rule.title):
            return rule
    raise CliError(f"no rule with id, name or title {ref!r} in {config['rules']['paths']}")


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from engine.events import flatten

    config = _config(args)
    rule = _find_rule(args.rule, config)
    text = args.event
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"--event is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise CliError("--event must be a JSON object")
    explanation = rule.explain(flatten(document))
    if args.format == "json":
        print(orjson.dumps(explanation.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(explanation.to_text())
    return EXIT_OK if rule.matches(flatten(document)) else EXIT_FAILED


def cmd_rules_convert(args: argparse.Namespace) -> int:
    from engine.sigma import convert_rule

    config = _config(args)
    rule = _find_rule(args.rule, config)
    converted = convert_rule(rule, args.store)
    print(f"# {rule.title} ({rule.id}) -> {args.store}")
    print(f"# datasets: {', '.join(rule.datasets)}")
    if converted.note:
        print(f"# {converted.note}")
    print(converted.query if converted.query else "(no pushdown query)")
    return EXIT_OK


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from engine.app import open_configured_store

    config = _config(args)
    store = open_configured_store(config)
    try:
        alerts = store.list_alerts(rule_id=args.rule, limit=args.limit)
    finally:
        store.close()
    if args.format == "json":
        for alert in alerts:
            sys.stdout.write(orjson.dumps(alert.to_dict()).decode() + "\n")
    else:
        _alerts_table(alerts, f"{len(alerts)} alert(s)")
    return EXIT_OK


def cmd_connectors_list(args: argparse.Namespace) -> int:
    from connectors.base import available_connectors, connector_class

    for name in available_connectors():
        try:
            summary = connector_class(name).summary
        except Exception as exc:  # a broken plug-in is reported, not fatal
            summary = f"(cannot load: {exc})"
        print(f"{name:24} {summary}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Cursors, checkpoints and dead letters: what a SOC checks first when alerts look wrong."""
    from engine.app import build_app

    config = _config(args)
    app = build_app(config, console=False)
    try:
        report: dict[str, Any] = {"store": app.store.health(), "watermark": app.store.watermark()}
        report["connectors"] = {
            entry["name"]: app.store.get_cursor(entry["name"]) is not None for entry in config["connectors"]
        }
        report["rules"] = {job.id: app.store.get_checkpoint(job.id).watermark for job in app.jobs}
        report["dead_letters"] = [
            {"source": d.source, "location": d.location, "reason": d.reason}
            for d in app.store.list_dead_letters(limit=20)
        ]
    finally:
        app.close()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str).decode())
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardwatch", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config (default: ./wardwatch.yaml, else built-in demo defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (connectors + scheduler) until Ctrl-C/SIGTERM")
    run.add_argument("--once", action="store_true", help="ingest what is there, evaluate every rule, exit")
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser("ingest", help="run one connector once into the configured store")
    ingest.add_argument("type", help="connector type (see `wardwatch connectors list`)")
    ingest.add_argument("source", help="path (files), base URL (fhir-auditevent) or spool dir (atna-syslog: "
                                        "drains what a receiver accepted)")
    ingest.add_argument("--name", help="connector instance name (its cursor identity)")
    ingest.add_argument("-o", "--option", action="append", help="connector option key=value (repeatable)")
    ingest.set_defaults(func=cmd_ingest)

    rules = sub.add_parser("rules", help="validate, test, explain and convert Sigma rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    validate = rules_sub.add_parser("validate", help="load and check rules; errors name file and key")
    validate.add_argument("paths", nargs="*")
    validate.set_defaults(func=cmd_rules_validate)
    test = rules_sub.add_parser("test", help="evaluate rules (and correlations) on sample events, no store")
    test.add_argument("rule", help="rule file or directory")
    test.add_argument("--events", required=True, help="normalised events, one JSON object per line")
    test.add_argument("--dataset", help="event.dataset for events that have none")
    test.add_argument("--format", choices=("table", "json"), default="table")
    test.set_defaults(func=cmd_rules_test)
    explain = rules_sub.add_parser("explain", help="why a rule matches an event or not")
    explain.add_argument("rule", help="rule file, or id/name/title of a configured rule")
    explain.add_argument("--event", required=True, help="event JSON, or @file")
    explain.add_argument("--format", choices=("text", "json"), default="text")
    explain.set_defaults(func=cmd_rules_explain)
    convert = rules_sub.add_parser("convert", help="the query a store is handed for a rule")
    convert.add_argument("rule", help="rule file, or id/name/title of a configured rule")
    convert.add_argument("--store", choices=("sqlite", "elasticsearch"), required=True)
    convert.set_defaults(func=cmd_rules_convert)

    alerts = sub.add_parser("alerts", help="alerts in the configured store")
    alerts_sub = alerts.add_subparsers(dest="alerts_command", required=True)
    listing = alerts_sub.add_parser("list", help="list alerts")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--rule", help="only this rule id")
    listing.add_argument("--limit", type=int)
    listing.set_defaults(func=cmd_alerts_list)

    connectors = sub.add_parser("connectors", help="installed connector types")
    connectors_sub = connectors.add_subparsers(dest="connectors_command", required=True)
    connectors_sub.add_parser("list", help="list connector types").set_defaults(func=cmd_connectors_list)

    sub.add_parser("status", help="cursors, rule checkpoints, dead letters").set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from engine.logs import configure_logging

    # Until a command configures logging from its config: warnings only, on stderr (stdout is for results).
    configure_logging("debug" if args.verbose else "warning", "auto")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from connectors.base import ConnectorError
        from engine.store.base import StoreError

        if isinstance(exc, (StoreError, ConnectorError)):
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
