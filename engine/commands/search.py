"""``wardwatch events search QUERY --from --to [--fields a,b] [--format table|json] [--limit N]``."""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from typing import Any, Iterable

import orjson

from engine.errors import EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: Any) -> None:
    from engine.commands.hunt import add_range_arguments

    events = sub.add_parser("events", help="stored events")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    search = events_sub.add_parser("search", help="events matching a field:value expression or a Sigma "
                                                   "detection (docs/alerts.md, Searching events)")
    search.add_argument("query", help="e.g. 'user.name:bob AND event.action:read*', or inline Sigma YAML "
                                      "'{selection: {user.name: bob}, condition: selection}'")
    add_range_arguments(search)
    search.add_argument("--fields", help="comma-separated fields to show (default: every field; the table "
                                         "shows @timestamp, event.dataset, user.name, event.action)")
    search.add_argument("--dataset", action="append", help="only this event.dataset (repeatable)")
    search.add_argument("--format", choices=("table", "json"), default="table")
    search.add_argument("--limit", type=int, help="at most this many events")
    search.add_argument("--page-size", type=int, default=500, help=argparse.SUPPRESS)
    search.set_defaults(func=cmd_events_search)


TABLE_FIELDS = ("@timestamp", "event.dataset", "user.name", "event.action", "ehr.patient.id")


def _fields(text: str | None) -> list[str] | None:
    if text is None:
        return None
    fields = [f.strip() for f in text.split(",") if f.strip()]
    if not fields:
        raise UsageError("--fields: no field names given (e.g. --fields user.name,event.action)")
    return fields


def cmd_events_search(args: argparse.Namespace) -> int:
    from engine.app import open_configured_store
    from engine.cli import _config, _warn_refusal
    from engine.search import compile_query, search_events
    from engine.time_bounds import parse_range

    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must not be negative")
    if args.page_size < 1:
        raise UsageError("--page-size must be at least 1")
    start, end = parse_range(args.start, args.end)
    query = compile_query(args.query)  # a bad query is one line before the store is opened
    fields = _fields(args.fields)
    store = open_configured_store(_config(args), reader=True)
    _warn_refusal(store)
    try:
        found: Iterable[dict[str, Any]] = search_events(store, query, start, end, fields=fields,
                                                        page_size=args.page_size, datasets=args.dataset)
        if args.limit is not None:
            found = islice(found, args.limit)
        if args.format == "json":
            out = sys.stdout
            for event in found:
                out.write(orjson.dumps(event, option=orjson.OPT_SORT_KEYS, default=str).decode() + "\n")
        else:
            _table(found, fields or list(TABLE_FIELDS))
    finally:
        store.close()
    return EXIT_OK


def _table(events: Iterable[dict[str, Any]], fields: list[str]) -> None:
    """Tab-separated rows, streamed (a rich table would hold every row until the end)."""
    print("\t".join(fields))
    count = 0
    for event in events:
        print("\t".join(_cell(event.get(f)) for f in fields))
        count += 1
    print(f"({count} event(s))", file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value).replace("\t", " ").replace("\n", " ")
