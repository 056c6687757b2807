"""``wardwatch rules list [--format table|json]`` (engine.rules_overview builds the rows)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import Any

import orjson

from engine.errors import EXIT_OK


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: Any) -> None:
    listing = groups["rules"].add_parser(
        "list", help="configured rules: level, status, last run, checkpoint lag, alerts in 24 h, data seen")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=cmd_rules_list)


def _lag_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def cmd_rules_list(args: argparse.Namespace) -> int:
    from engine.app import build_app
    from engine.cli import _config, _is_tty, _warn_refusal
    from engine.rules_overview import rules_overview

    app = build_app(_config(args), console=False, reader=True)
    _warn_refusal(app.store)
    try:
        rows = rules_overview(app, datetime.now(timezone.utc))
    finally:
        app.close()
    if args.format == "json":
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(rows)} rule(s)")
    for column in ("title", "level", "status", "last run (UTC)", "lag", "alerts 24h", "data seen", "id"):
        table.add_column(column, overflow="fold")
    for row in rows:
        seen = {True: "yes", False: "NO DATA", None: "?"}[row["data_seen"]]
        table.add_row(row["title"], row["level"], row["status"] or "-",
                      (row["last_run"] or "never")[:19].replace("T", " "), _lag_text(row["lag_seconds"]),
                      str(row["alerts_24h"]), seen, row["id"])
    Console(width=None if _is_tty() else 200).print(table)
    return EXIT_OK
