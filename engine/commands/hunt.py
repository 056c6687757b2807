"""``wardwatch hunt RULE-OR-DIR --from --to [--alert] [--format table|json]`` (engine.hunt does the work)."""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import orjson

from engine.errors import EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: Any) -> None:
    hunt = sub.add_parser("hunt", help="run rules (and correlations) over stored events between two times")
    hunt.add_argument("rule", help="rule file or directory")
    add_range_arguments(hunt)
    hunt.add_argument("--alert", action="store_true",
                      help="also store the alerts (deterministic ids: a second hunt or the scheduler never "
                           "duplicates them); without it the store is left untouched")
    hunt.add_argument("--format", choices=("table", "json"), default="table")
    hunt.set_defaults(func=cmd_hunt)


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    """``--from``/``--to`` as every history command spells them (engine.time_bounds reads them)."""
    parser.add_argument("--from", dest="start", metavar="TIME",
                        help="event time from (inclusive): ISO 8601, or a duration back from now (24h, 7d)")
    parser.add_argument("--to", dest="end", metavar="TIME", help="event time to (exclusive); default: no bound")


@contextmanager
def progress_bar(what: str) -> Iterator[Callable[[int], None] | None]:
    """A rich spinner with the events read so far on a TTY stderr; None otherwise (stderr stays clean)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task(what)
    with progress:
        yield lambda n: progress.update(task, description=f"{what}: {n:,} events read")


def cmd_hunt(args: argparse.Namespace) -> int:
    from engine.app import build_app
    from engine.cli import _alerts_table, _config, _load_rules_from, _print_rule_errors, _setup_logging
    from engine.hunt import contract_line, hunt
    from engine.time_bounds import parse_range

    start, end = parse_range(args.start, args.end)
    config = _config(args)
    _setup_logging(config, args)
    ruleset = _load_rules_from([args.rule], config)
    if ruleset.errors:
        _print_rule_errors(ruleset.errors)
        raise UsageError(f"{len(ruleset.errors)} rule(s) failed to load")
    if not ruleset.rules and not ruleset.correlations:
        raise UsageError(f"{args.rule}: no rules found")
    app = build_app(config, console=False, reader=not args.alert)
    try:
        with progress_bar("hunting") as on_progress:
            result = hunt(app, ruleset, start, end, write_alerts=args.alert, progress=on_progress)
    finally:
        app.close()
    if args.format == "json":
        for alert in result.alerts:
            sys.stdout.write(orjson.dumps(contract_line(alert)).decode() + "\n")
    else:
        span = f"{start or 'the beginning'} .. {end or 'now'}"
        stored = "; stored" if args.alert else "; not stored (--alert stores them)"
        _alerts_table(result.alerts, f"{len(result.alerts)} result(s) on {result.scanned} event(s), "
                                     f"{span}{stored}")
    return EXIT_OK
