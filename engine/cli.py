"""``wardwatch``: the command line. Every command is documented in README.md.

Exit codes (the same table is in README.md):

* 0 success (``rules explain``: the rule matches);
* 1 the job failed at run time: a store, connector or sink error, a source that cannot be read, the
  ``service.http`` port already in use (``rules explain``: the rule does not match);
* 2 bad usage, bad config or invalid rules: a missing ``--events`` file or a directory given for it,
  ``--event @missing.json``, a rules path that cannot be read, a missing secret, key, CA or certificate file,
  a port outside 0..65535, an unknown option or rule;
* 130 interrupted (Ctrl-C).

Every expected failure is one readable line on stderr naming the file, key or port, never a stack trace:
the errors form one tree (:mod:`engine.errors`) and :func:`main` maps it once. Anything else is a bug; it is
reported in one line too, and its traceback is logged with ``-v``.
"""

from __future__ import annotations

import argparse
import re
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import orjson

from engine.config import load_config
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ConfigError, UsageError
from engine.errors import SourceUnavailable, WardwatchError

#: The historical name of :class:`engine.errors.UsageError`.
CliError = UsageError


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

def _service_console(config: Any, args: argparse.Namespace) -> bool:
    """Whether the console sink runs: only in service mode, and only with ``--console``.

    A service's stdout lands in journald, which more people can read than the 0600 alert files, and the
    alerts name staff (and patients, where not pseudonymised). ``run --once`` prints its table instead.
    """
    if args.once:
        return False
    if not args.console and any(s.get("type") == "console" for s in config["alerts"]["sinks"]):
        from engine.logs import get_logger

        get_logger("wardwatch.run").info(
            "console sink is off in service mode (stdout reaches journald); pass `run --console` to print alerts")
    return bool(args.console)


def cmd_run(args: argparse.Namespace) -> int:
    from engine.app import build_app

    config = _config(args)
    _setup_logging(config, args)
    app = build_app(config, console=_service_console(config, args))
    if app.ruleset.errors:
        _print_rule_errors(app.ruleset.errors)
        app.close()
        raise UsageError(f"{len(app.ruleset.errors)} rule(s) failed to load; fix them or remove them")
    if args.once:
        return _run_once(app)
    from engine.scheduler import Service

    service = Service(app)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: service.request_stop())
    try:
        service.start()
    except OSError as exc:  # the status endpoint cannot bind (connector listeners report their own)
        service.stop()
        http = config["service"]["http"]
        raise SourceUnavailable(f"service.http: cannot listen on {http['host']}:{http['port']}: "
                                f"{exc.strerror or exc}") from None
    service.wait()
    service.stop()
    return EXIT_OK


def _read_to_end(connector: Any) -> None:
    """One-shot commands read files as they are now: a last line without newline is a complete record
    (file connectors offer ``read_to_end``; the service never calls it, so it waits for the writer)."""
    read_to_end = getattr(connector, "read_to_end", None)
    if callable(read_to_end):
        read_to_end()


#: ``run --once`` prints at most this many alert rows: a first run of the whole SigmaHQ set over a backlog
#: raises thousands, and a terminal table of them is unreadable and took longer than evaluating them.
#: ``wardwatch alerts list --alerts`` (and the sinks) have every one.
RUN_ONCE_TABLE_ROWS = 50
_LEVEL_RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "informational": 0}


def _most_severe(alerts: Sequence[Any], limit: int) -> list[Any]:
    """The ``limit`` most severe alerts (earliest first among equals), shown in their original order."""
    if len(alerts) <= limit:
        return list(alerts)
    ranked = sorted(range(len(alerts)),
                    key=lambda i: (-_LEVEL_RANK.get(alerts[i].rule_level, 0), alerts[i].first_trigger))
    return [alerts[i] for i in sorted(ranked[:limit])]


def _run_once(app: Any) -> int:
    from engine.evaluation import iter_alerts, run_all
    from engine.health import HealthBook
    from engine.ingest import ingest_once, ingest_workers
    from engine.alerts.sinks import deliver_pending
    from engine.demo_hint import next_steps
    from engine.logs import get_logger

    log = get_logger("wardwatch.run")
    problems = []  # sources that could not be read: reported after the healthy ones ran (exit 1)
    try:
        from engine.gc_pause import freeze_long_lived

        freeze_long_lived()  # the rule set lives until exit: full collections need not walk it (issue 10)
        health = HealthBook(app.store)
        for entry, connector in app.connectors():
            _read_to_end(connector)
            with _progress(entry["name"]) as on_batch:
                stats, problem = ingest_once(app.store, connector, app.enrichment,
                                             app.config["scheduler"]["batch_size"], health, on_batch=on_batch,
                                             workers=ingest_workers(app.config["scheduler"]["ingest_workers"]))
            connector.close()
            if problem is not None:
                problems.append(problem)
            log.info("ingested", connector=entry["name"], events=stats.events, duplicates=stats.duplicates,
                     dead_letters=stats.dead_letters, events_per_s=round(stats.rate))
        results = run_all(app.evaluator, app.jobs)
        deliver_pending(app.store, app.sinks)
        for sink in app.sinks:   # held alerts (engine/alerts/hold.py): decided with the events there are
            getattr(sink, "decide_held", lambda: None)()
        deliver_pending(app.store, app.sinks)
        alerts = sorted(iter_alerts(results), key=lambda a: (a.first_trigger, a.rule_title))
        _alerts_table(_most_severe(alerts, RUN_ONCE_TABLE_ROWS),
                      f"{len(alerts)} new or updated alert(s) in this run"
                      + (f", the {RUN_ONCE_TABLE_ROWS} most severe" if len(alerts) > RUN_ONCE_TABLE_ROWS else ""))
        total = app.store.count_alerts()
        if any(getattr(s, "name", "") == "@cases" for s in app.sinks):
            _print_cases(app.store.list_cases())
        print(f"{total} alert(s) in the store; `wardwatch alerts list` shows the cases, "
              "`wardwatch alerts list --alerts` every alert.")
        for line in next_steps(app.store, alerts):  # the two commands to try next, with ids from this run
            print(line)
    finally:
        app.close()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


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
    from engine.health import HealthBook
    from engine.ingest import ingest_once, ingest_workers

    config = _config(args)
    _setup_logging(config, args)
    options: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--option expects key=value, got {item!r}")
        options[key] = value  # text: coerced to the option's declared type by the shared parser
    cls = connector_class(args.type)
    # SOURCE as typed: a path option is made absolute by connector_options below (abspath, not resolve():
    # resolve() raises on a symlink loop); a URL or an index pattern is not a path
    options.setdefault(cls.source_option, args.source)
    from engine.app import connector_options
    from engine.plugins import InvalidOption

    try:
        options = connector_options(cls, options, os.path.abspath, coerce_strings=True)
    except InvalidOption as exc:
        raise UsageError(f"--option {exc}") from None
    name = args.name or f"cli-{args.type}"
    connector = cls(name, options)
    _read_to_end(connector)
    store = open_configured_store(config)
    try:
        with _progress(name) as on_batch:
            stats, problem = ingest_once(store, connector, build_enrichment(config),
                                         config["scheduler"]["batch_size"], HealthBook(store), on_batch=on_batch,
                                         workers=ingest_workers(config["scheduler"]["ingest_workers"]))
    finally:
        connector.close()
        store.close()
    print(f"{name}: {stats.events} events read, {stats.written} stored, {stats.duplicates} duplicates, "
          f"{stats.dead_letters} dead letters ({stats.rate:,.0f} events/s)")
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_parse(args: argparse.Namespace) -> int:
    """``wardwatch parse TYPE FILE``: a file connector's parser + normaliser on FILE, no store (a stable
    contract, like ``wazuh-logtest``). One flat JSON event per line on stdout (sorted keys, no
    ``event.ingested``); dead letters on stderr with their position. Memory is bounded by the batch size."""
    import glob

    import orjson

    from connectors.base import connector_class
    from engine.app import build_enrichment, connector_options
    from engine.plugins import InvalidOption, declared_options, option_names

    config = _config(args)
    _setup_logging(config, args)
    cls = connector_class(args.type)
    if cls.source_option != "path":
        raise UsageError(f"connector type {args.type!r} does not read files (its source is "
                         f"{cls.source_option!r}): `wardwatch parse` needs a file connector")
    if not os.path.exists(args.file) and not (glob.has_magic(args.file) and glob.glob(args.file)):
        raise UsageError(f"{args.file}: no such file")
    options: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--option expects key=value, got {item!r}")
        options[key] = value
    if args.timezone is not None:
        declared = declared_options(cls)
        if declared is None or "timezone" not in option_names(declared):
            raise UsageError(f"--timezone: connector type {args.type!r} has no timezone option")
        options["timezone"] = args.timezone
    options.setdefault("path", os.path.abspath(args.file))
    try:
        options = connector_options(cls, options, os.path.abspath, coerce_strings=True)
    except InvalidOption as exc:
        raise UsageError(f"--option {exc}") from None
    enrichment = build_enrichment(config) if args.enrich else None
    batch_size = config["scheduler"]["batch_size"]
    connector = cls(f"cli-parse-{args.type}", options)
    _read_to_end(connector)
    events = dead = 0
    cursor = None
    out = sys.stdout.buffer
    try:
        while True:
            batch = connector.read(cursor, batch_size)
            for letter in batch.dead_letters:
                print(f"dead letter: {letter.location}: {letter.reason}", file=sys.stderr)
            dead += len(batch.dead_letters)
            found = enrichment.enrich_all(batch.events) if enrichment is not None else batch.events
            for event in found:
                event.pop("event.ingested", None)
                out.write(orjson.dumps(event, option=orjson.OPT_SORT_KEYS, default=str) + b"\n")
            events += len(found)
            out.flush()
            if batch.unavailable:
                print(f"error: {batch.unavailable}", file=sys.stderr)
                return EXIT_FAILED
            if batch.cursor is not None:
                cursor = batch.cursor
            if batch.exhausted:
                break
    finally:
        connector.close()
    return EXIT_FAILED if dead and not events else EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the config like a start would and load its lookup files, contacting nothing: a line per
    lookup, then ``ok: ...``; a config error, or a lookup a start would refuse or run without, exits 2."""
    from engine.config import check_config
    from engine.lookup_check import check_lookups, problems

    config = _config(args)
    summary = check_config(config)
    lines = check_lookups(config)
    for line in lines:
        print(line)
    failed = list(problems(lines))
    if failed:
        print(f"error: {config.source}: {len(failed)} lookup(s) cannot be used as configured (above)", file=sys.stderr)
        return EXIT_USAGE
    looked = len({line.key for line in lines})
    print(f"{summary}, {looked} lookup{'' if looked == 1 else 's'}" if looked else summary)
    return EXIT_OK


def _load_rules_from(paths: Sequence[str], config: Any) -> Any:
    from engine.config import rule_cache_dir
    from engine.sigma import load_rules

    return load_rules(list(paths), placeholders=config["rules"]["placeholders"], cache_dir=rule_cache_dir(config))


def cmd_rules_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    paths = args.paths or [str(config.resolve_path(p)) for p in config["rules"]["paths"]]
    ruleset = _load_rules_from(paths, config)
    _print_rule_errors(ruleset.errors)
    print(f"{len(ruleset.rules)} rule(s), {len(ruleset.correlations)} correlation(s) valid; "
          f"{len(ruleset.errors)} error(s)")
    return EXIT_USAGE if ruleset.errors else EXIT_OK


def _open_named(path: str, what: str) -> Any:
    """Open a file the user named on the command line; failing that, one line naming it and ``what``."""
    try:
        if Path(path).is_dir():
            raise UsageError(f"{what} {path}: is a directory; give a file")
        return open(path, "rb")  # noqa: SIM115 - the caller's ``with`` closes it
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None


def _read_events(path: str, dataset: str | None, id_prefix: str = "") -> Iterator[dict[str, Any]]:
    """The events of one ``--events`` file, one at a time (a sample may be larger than memory)."""
    from engine.events import DATASET, EVENT_ID, TIMESTAMP, flatten, normalise_timestamp

    with _open_named(path, "--events") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: invalid JSON: {exc}") from None
            if not isinstance(document, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object")
            event = flatten(document)
            event.setdefault(EVENT_ID, f"{id_prefix}{number}")
            if dataset and not event.get(DATASET):
                event[DATASET] = dataset
            try:
                event[TIMESTAMP] = normalise_timestamp(event.get(TIMESTAMP, 0))
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: @timestamp: {exc}") from None
            if not event.get(DATASET):
                raise UsageError(f"{path}:{number}: event.dataset: missing (or pass --dataset)")
            yield event


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Evaluate rules on sample events with the same engine the service uses, on a throw-away store."""
    from engine.app import alerts_over_sample

    config = _config(args)
    ruleset = _load_rules_from([args.rule], config)
    if ruleset.errors:
        _print_rule_errors(ruleset.errors)
        raise UsageError(f"{len(ruleset.errors)} rule(s) failed to load")
    # Events without an id get their line number; with several files, "file:line" so that they cannot collide.
    several = len(args.events) > 1
    for path in args.events:  # a missing file is one line before any work, as before streaming
        _open_named(path, "--events").close()
    read = [0]

    def events() -> Iterator[dict[str, Any]]:
        for path in args.events:
            for event in _read_events(path, args.dataset, f"{path}:" if several else ""):
                read[0] += 1
                yield event

    from engine.alerts.cases import merged_suppression

    alerts = alerts_over_sample(ruleset, events(), batch_size=config["scheduler"]["batch_size"],
                                suppression=merged_suppression(ruleset, config["alerts"]["suppression"]))
    alerts.sort(key=lambda a: (a.first_trigger, a.rule_id, a.group_key))
    if args.format == "json":
        from engine.hunt import contract_line  # `wardwatch hunt` prints the same lines

        for alert in alerts:
            sys.stdout.write(orjson.dumps(contract_line(alert)).decode() + "\n")
    else:
        _alerts_table(alerts, f"{len(alerts)} result(s) on {read[0]} event(s)")
    return EXIT_OK


def _matches_ref(item: Any, ref: str) -> bool:
    """A rule or correlation named by ``ref``: its id, name, title, or its file's name (with or without .yml)."""
    from engine.alerts.triage import rule_matches_ref

    return rule_matches_ref(item, ref)


def _top_correlations(ruleset: Any) -> list[Any]:
    """Correlations no other correlation of the set refers to (what a rule file is "about")."""
    referenced = {ref for corr in ruleset.correlations.values() for ref in corr.spec.rules}
    return [corr for corr in ruleset.correlations.values() if corr.id not in referenced]


def _find_rule(ref: str, config: Any) -> tuple[Any, Any]:
    """A rule file path, or an id/name/title among the configured rules -> (rule or correlation, its ruleset).

    A file whose rules feed one correlation (the usual layout) means that correlation.
    """
    path = Path(ref)
    if path.exists():
        ruleset = _load_rules_from([str(path)], config)
        if ruleset.errors:
            _print_rule_errors(ruleset.errors)
            raise UsageError("the rule failed to load")
        tops = _top_correlations(ruleset)
        if len(tops) == 1:
            return tops[0], ruleset
        candidates = list(ruleset.rules.values())
        if len(candidates) != 1 or tops:
            raise UsageError(f"{ref} holds {len(candidates)} detection rules and {len(tops)} correlations; "
                             "name one by id, name or title")
        return candidates[0], ruleset
    ruleset = _load_rules_from([str(config.resolve_path(p)) for p in config["rules"]["paths"]], config)
    for item in [*ruleset.rules.values(), *ruleset.correlations.values()]:
        if ref in (item.id, item.name, item.title):
            return item, ruleset
    raise UsageError(f"no rule with id, name or title {ref!r} in {config['rules']['paths']}")


def _is_correlation(item: Any) -> bool:
    return hasattr(item, "spec")


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from engine.events import flatten
    from engine.sigma.explain import explain_correlation

    config = _config(args)
    rule, ruleset = _find_rule(args.rule, config)
    text = args.event
    if text.startswith("@"):
        with _open_named(text[1:], "--event @file") as handle:
            text = handle.read().decode("utf-8", "replace")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--event is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UsageError("--event must be a JSON object")
    event = flatten(document)
    if _is_correlation(rule):
        explanation: Any = explain_correlation(rule, ruleset, event)
        matched = explanation.matched
    else:
        explanation = rule.explain(event)
        matched = rule.matches(event)
    if args.format == "json":
        print(orjson.dumps(explanation.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(explanation.to_text())
    return EXIT_OK if matched else EXIT_FAILED


def cmd_rules_convert(args: argparse.Namespace) -> int:
    from engine.sigma import convert_rule
    from engine.sigma.convert import base_rules
    from engine.sigma.explain import correlation_summary

    config = _config(args)
    rule, ruleset = _find_rule(args.rule, config)
    rules = [rule]
    if _is_correlation(rule):
        for line in correlation_summary(rule):
            print(f"# {line}")
        print("# the store is handed each base rule's query; the engine groups and counts the matches")
        rules = base_rules(rule, ruleset)
    for number, base in enumerate(rules):
        converted = convert_rule(base, args.store)
        if number or _is_correlation(rule):
            print()
        print(f"# {base.title} ({base.id}) -> {args.store}")
        print(f"# datasets: {', '.join(base.datasets)}")
        if converted.note:
            print(f"# {converted.note}")
        print(converted.query if converted.query else "(no pushdown query)")
    return EXIT_OK


def _print_cases(cases: Sequence[Any], limit: int = 20) -> None:
    """The cases an analyst opens first (highest risk), each with its rules and reasons."""
    from engine.alerts.sinks import case_lines

    ranked = sorted(cases, key=lambda c: (-c.score, c.first_trigger, c.id))
    print(f"{len(cases)} case(s) in the store" + (f", the {limit} with the highest risk:" if len(cases) > limit
                                                  else ":"))
    for case in ranked[:limit]:
        lines = case_lines(case)
        print(f"{lines[0]} | id {case.id}")
        for line in lines[1:]:
            print(line)
        for reason in case.reasons:
            print(f"    why: {reason}")


def cmd_cases_show(args: argparse.Namespace) -> int:
    """``wardwatch cases show ID``: one case with its score parts, reasons, alerts and evidence (an id prefix
    of at least 6 characters is enough when it is unique)."""
    from engine.app import open_configured_store
    from engine.alerts.sinks import case_lines
    from engine.alerts.triage import by_id_or_prefix

    config = _config(args)
    store = open_configured_store(config, reader=True)
    _warn_refusal(store)
    try:
        case = by_id_or_prefix(args.id, store.get_case, lambda: store.records_with_id_prefix("case", args.id), "case id")
        alerts = [a for a in (store.get_alert(aid) for aid in case.alerts) if a is not None] if case else []
    finally:
        store.close()
    if case is None:
        print(f"error: no case {args.id!r} (`wardwatch alerts list` shows the case ids)", file=sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        sys.stdout.write(orjson.dumps({**case.to_dict(), "alert_records": [a.to_dict() for a in alerts]}).decode()
                         + "\n")
        return EXIT_OK
    lines = case_lines(case)
    print(f"{lines[0]}\ncase {case.id}, period {case.period_start} .. {case.period_end}, status {case.status}")
    print("why:")
    for reason in case.reasons:
        print(f"  - {reason}")
    print(f"risk {case.score:g} =")
    for part in case.score_parts:
        print(f"  {part['points']:+g}  {part['signal']}: {part['detail']}")
    print("alerts:")
    for alert in alerts:
        group = ", ".join(f"{k}={v}" for k, v in alert.group.items()) or "-"
        print(f"  [{alert.rule_level}] {alert.rule_title} | {group} | {alert.first_trigger} .. {alert.last_trigger}"
              f" | {alert.evidence_total} events | id {alert.id}")
    more = f" (+{case.evidence_total - len(case.evidence)} not listed)" if case.evidence_total > len(case.evidence) else ""
    print(f"evidence ({case.evidence_total} events{more}): {' '.join(case.evidence)}")
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


def cmd_retention_run(args: argparse.Namespace) -> int:
    """One retention pass (engine.retention); the service runs the same every scheduler.retention_interval."""
    from engine.app import build_app
    from engine.retention import run_for_app

    app = build_app(_config(args), console=False)
    try:
        report = run_for_app(app, dry_run=args.dry_run)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    finally:
        app.close()
    for line in report.to_text():
        print(line)
    return EXIT_OK


def _warn_refusal(store: Any) -> None:
    """A reading command on a store that refuses writes (old event ids) says so in one line, and goes on."""
    refusal = getattr(store, "refusal", None)
    if refusal:
        print(f"warning: {refusal}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    """Cursors, checkpoints and dead letters: what a SOC checks first when alerts look wrong."""
    from engine.app import build_app
    from engine.health import scrub_report, stored_health

    config = _config(args)
    app = build_app(config, console=False, reader=True)
    _warn_refusal(app.store)
    try:
        report: dict[str, Any] = {"store": app.store.health(), "watermark": app.store.watermark()}
        report["connectors"] = {
            entry["name"]: app.store.get_cursor(entry["name"]) is not None for entry in config["connectors"]
        }
        # Recorded by the service (or the last one-shot run): a source it could not read, and why.
        report["connector_health"] = stored_health(app.store, [entry["name"] for entry in config["connectors"]])
        # The lookup files as this command loaded them just now (the service's own view is on /health)
        report["lookups"] = scrub_report({s.name: s.to_dict() for s in app.enrichment.lookups()})
        report["rules"] = {job.id: app.store.get_checkpoint(job.id).watermark for job in app.jobs}
        report["dead_letters"] = [  # the newest first: the failure being looked into, not the first ever kept
            {"source": d.source, "location": d.location, "reason": d.reason, "received_at": d.received_at}
            for d in app.store.list_dead_letters(limit=20, newest=True)
        ]
    finally:
        app.close()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str).decode())
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """A parser on which ``--config`` and ``-v`` work at every level: ``wardwatch -v rules test ...`` and
    ``wardwatch rules test ... -v`` alike (the README promises both).

    argparse gives a subcommand's parser the class of its parent, so every subcommand (also those added
    later) gets the two options. Their defaults are SUPPRESS, so a subcommand that does not see them does
    not overwrite what the top level parsed; the top level's ``set_defaults`` supplies None/False.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--config", default=argparse.SUPPRESS,
                          help="YAML config (default: ./wardwatch.yaml, else built-in demo defaults)")
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="debug logging (and the traceback of an unexpected error)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wardwatch", description=__doc__.splitlines()[0])
    parser.set_defaults(config=None, verbose=False)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service (connectors + scheduler) until Ctrl-C/SIGTERM")
    run.add_argument("--once", action="store_true", help="ingest what is there, evaluate every rule, exit")
    run.add_argument("--console", action="store_true",
                     help="service mode: also print each alert on stdout (the console sink; off by default "
                          "because stdout reaches journald)")
    run.set_defaults(func=cmd_run)

    ingest = sub.add_parser("ingest", help="run one connector once into the configured store")
    ingest.add_argument("type", help="connector type (see `wardwatch connectors list`)")
    ingest.add_argument("source", help="path (files), base URL (fhir-auditevent) or spool dir (atna-syslog: "
                                        "drains what a receiver accepted)")
    ingest.add_argument("--name", help="connector instance name (its cursor identity)")
    ingest.add_argument("-o", "--option", action="append", help="connector option key=value (repeatable)")
    ingest.set_defaults(func=cmd_ingest)

    parse = sub.add_parser("parse", help="run a file connector's parser on a file: normalised events as "
                                         "JSON lines, no store (a stable contract)")
    parse.add_argument("type", help="file connector type (ndjson, ehr-csv, cisco-asa, openvpn, ...)")
    parse.add_argument("file", help="the log file (or directory / glob, as the connector's path option)")
    parse.add_argument("--format", choices=("json",), default="json", help="output format (json lines)")
    parse.add_argument("--timezone", help="source time zone: IANA name (Europe/Berlin) or offset (-05:00)")
    parse.add_argument("-o", "--option", action="append", help="connector option key=value (repeatable)")
    parse.add_argument("--enrich", action="store_true", help="also apply the configured enrichment chain")
    parse.set_defaults(func=cmd_parse)

    rules = sub.add_parser("rules", help="validate, test, explain and convert Sigma rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    validate = rules_sub.add_parser("validate", aliases=["check"],
                                    help="load and check rules; errors name file and key")
    validate.add_argument("paths", nargs="*")
    validate.set_defaults(func=cmd_rules_validate)
    test = rules_sub.add_parser("test", help="evaluate rules (and correlations) on sample events, no store")
    test.add_argument("rule", help="rule file or directory")
    test.add_argument("--events", required=True, nargs="+", action="extend",
                      help="normalised events, one JSON object per line (several files, or repeat --events)")
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
    # list, show, ack, assign, comment, close: engine/commands/triage.py

    cases = sub.add_parser("cases", help="cases: alerts about one user or patient in one period")
    cases_sub = cases.add_subparsers(dest="cases_command", required=True)
    show = cases_sub.add_parser("show", help="one case: reasons, risk score parts, alerts, evidence")
    show.add_argument("id", help="case id (or a unique prefix of at least 6 characters)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=cmd_cases_show)

    connectors = sub.add_parser("connectors", help="installed connector types")
    connectors_sub = connectors.add_subparsers(dest="connectors_command", required=True)
    connectors_sub.add_parser("list", help="list connector types").set_defaults(func=cmd_connectors_list)

    sub.add_parser("status", help="cursors, rule checkpoints, dead letters").set_defaults(func=cmd_status)

    retention = sub.add_parser("retention", help="delete data older than the retention: config allows")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    retention_run = retention_sub.add_parser("run", help="one retention pass; prints what it deleted per dataset")
    retention_run.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    retention_run.set_defaults(func=cmd_retention_run)

    config_cmd = sub.add_parser("config", help="check the configuration")
    config_sub = config_cmd.add_subparsers(dest="config_command", required=True)
    config_sub.add_parser("check", help="validate the config (and load the rules) without running anything"
                          ).set_defaults(func=cmd_config_check)
    from engine.commands import register_all

    register_all(sub, {"rules": rules_sub, "alerts": alerts_sub, "cases": cases_sub})
    return parser


_NEGATIVE_OFFSET = re.compile(r"-\d{1,2}(:?\d{2})?\Z")


def _join_negative_offsets(argv: Sequence[str]) -> list[str]:
    """``--timezone -05:00`` -> ``--timezone=-05:00``: argparse takes any word starting with ``-`` that is
    not a plain negative number for an option, and a UTC offset west of Greenwich is not one."""
    out: list[str] = []
    for word in argv:
        if out and out[-1] == "--timezone" and _NEGATIVE_OFFSET.match(word):
            out[-1] = f"--timezone={word}"
        else:
            out.append(word)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_offsets(sys.argv[1:] if argv is None else argv))
    from engine.logs import configure_logging

    # Until a command configures logging from its config: warnings only, on stderr (stdout is for results).
    configure_logging("debug" if args.verbose else "warning", "auto")
    try:
        return int(args.func(args) or 0)
    except WardwatchError as exc:
        print(_one_line(exc), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file or port the config names: a secret, a certificate, a listen address
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line; the traceback only with -v (it may quote event data)
        if args.verbose:
            import traceback

            traceback.print_exc()
        hint = "" if args.verbose else " (run with -v for the traceback)"
        print(f"error: unexpected {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(exc: WardwatchError) -> str:
    """``config error: FILE: KEY: ...`` / ``error: ...``; run-time failures keep their class name."""
    if isinstance(exc, ConfigError):
        return f"config error: {exc}"
    if exc.exit_code == EXIT_USAGE:
        return f"error: {exc}"
    return f"error: {type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main())
