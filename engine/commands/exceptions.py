"""``wardwatch exceptions list|remove``: the suppression exceptions analysts made when closing alerts
(``alerts close --suppress``; the rules are in ``engine/alerts/exceptions.py``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from engine.errors import EXIT_OK


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: dict[str, Any]) -> None:
    exceptions = sub.add_parser("exceptions", help="suppression exceptions made from triage")
    exceptions_sub = exceptions.add_subparsers(dest="exceptions_command", required=True)
    listing = exceptions_sub.add_parser("list", help="exceptions in force (with --all: expired ones too)")
    listing.add_argument("--all", action="store_true", help="also the expired exceptions")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=cmd_exceptions_list)
    remove = exceptions_sub.add_parser("remove", help="delete one exception (it stops applying at once)")
    remove.add_argument("id", help="exception id (or a unique prefix of at least 6 characters)")
    remove.add_argument("--actor", help="who does it (default: $WARDWATCH_ACTOR, else the OS user)")
    remove.set_defaults(func=cmd_exceptions_remove)


def cmd_exceptions_list(args: argparse.Namespace) -> int:
    from engine.alerts.exceptions import list_exceptions
    from engine.alerts.triage import now_iso
    from engine.commands.triage import _table, opened_store

    with opened_store(args, reader=True) as store:
        found = list_exceptions(store, include_expired=args.all)
    if args.format == "json":
        for exc in found:
            sys.stdout.write(orjson.dumps(exc.to_dict()).decode() + "\n")
        return EXIT_OK
    now = now_iso()
    _table(f"{len(found)} exception(s)" + ("" if args.all else " in force (--all: expired ones too)"),
           ("id", "rule", "field", "value", "from", "until", "author", "justification"),
           ((e.id[:12], e.rule_id, e.field, str(e.value), e.created[:19], e.until[:19] + (" (expired)" if e.until <= now else ""),
             e.author, e.justification) for e in found), ("id",))
    return EXIT_OK


def cmd_exceptions_remove(args: argparse.Namespace) -> int:
    from engine.alerts.exceptions import remove_exception
    from engine.commands.triage import actor_of, opened_store

    with opened_store(args) as store:
        exc = remove_exception(store, args.id, actor=actor_of(args))
    print(f"exception {exc.id} removed: rule {exc.rule_id} applies to {exc.field}={exc.value} again")
    return EXIT_OK
