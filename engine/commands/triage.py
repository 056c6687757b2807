"""``wardwatch alerts list|show|ack|assign|comment|close``: finding alerts and working them (the lifecycle is
in ``engine/alerts/triage.py``; this module only parses, opens the store and prints).

Every action takes an alert id or a case id (or a unique prefix of at least 6 characters) and an actor
(``--actor``, default ``$WARDWATCH_ACTOR``, else the OS user), who is recorded in the audit chain.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

import orjson

from engine.alerts.case_model import subject_label
from engine.errors import EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: dict[str, Any]) -> None:
    alerts = groups["alerts"]
    listing = alerts.add_parser("list", help="list cases (highest risk first), or every alert with --alerts; "
                                             "filters by status, level, time, rule, user, patient")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--rule", help="only this rule: its id, name, title or file name")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--alerts", action="store_true", help="the raw alerts instead of cases")
    listing.add_argument("--status", help="new, acknowledged, closed, or suppressed (held back by an exception; "
                                          "implies --alerts)")
    listing.add_argument("--level", help="rule level: informational, low, medium, high, critical")
    listing.add_argument("--since", help="last trigger at or after: ISO time, or a duration ago (24h, 7d)")
    listing.add_argument("--until", help="last trigger before: ISO time, or a duration ago")
    listing.add_argument("--user", help="alerts about this user (group value, else the listed evidence events)")
    listing.add_argument("--patient", help="alerts about this patient id (group value, else the listed evidence)")
    listing.set_defaults(func=cmd_alerts_list)

    show = alerts.add_parser("show", help="one alert or case: rule, group, window, evidence, triage, history")
    show.add_argument("id", help="alert or case id (or a unique prefix of at least 6 characters)")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=cmd_alerts_show)

    def action(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        parser = alerts.add_parser(name, help=help_text)
        parser.add_argument("id", help="alert or case id (or a unique prefix of at least 6 characters)")
        parser.add_argument("--actor", help="who does it (default: $WARDWATCH_ACTOR, else the OS user)")
        parser.set_defaults(func=func)
        return parser

    action("ack", "acknowledge: new -> acknowledged", cmd_alerts_ack)
    action("assign", "give it to a user (told about later revisions)", cmd_alerts_assign).add_argument(
        "user", help="the assignee")
    action("comment", "add a comment", cmd_alerts_comment).add_argument("text", help="the comment")
    close = action("close", "close with a reason; --suppress adds an exception for this rule and user",
                   cmd_alerts_close)
    close.add_argument("--reason", required=True, help="true_positive, benign, false_positive or duplicate")
    close.add_argument("--comment", help="a closing comment")
    close.add_argument("--suppress", metavar="DURATION",
                       help="also suppress this rule for this alert's user for DURATION (like 30d)")
    close.add_argument("--justification", help="why the suppression is safe (required with --suppress)")
    close.add_argument("--field", help="the group field the exception keys on (default: the alert's user field)")


# --- helpers ------------------------------------------------------------------------------------------

def actor_of(args: argparse.Namespace) -> str:
    """``--actor``, else ``$WARDWATCH_ACTOR``, else the OS user."""
    return getattr(args, "actor", None) or os.environ.get("WARDWATCH_ACTOR") or getpass.getuser()


class opened_store:
    """The configured store for one command (``reader``: a reading command on an old file still works)."""

    def __init__(self, args: argparse.Namespace, reader: bool = False):
        from engine.cli import _config, _warn_refusal
        from engine.app import open_configured_store

        self.config = _config(args)
        self.store = open_configured_store(self.config, reader=reader)
        _warn_refusal(self.store)

    def __enter__(self) -> Any:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def time_arg(value: str | None, option: str, now: datetime | None = None) -> str | None:
    """An ISO time (any form ``normalise_timestamp`` reads), or a duration meaning that long ago."""
    if value is None:
        return None
    from engine.config import parse_duration
    from engine.events import format_timestamp, normalise_timestamp

    try:
        ago = parse_duration(value)
    except ValueError:
        pass
    else:
        return format_timestamp((now or datetime.now(timezone.utc)) - timedelta(seconds=ago))
    try:
        return normalise_timestamp(value)
    except (ValueError, TypeError):
        raise UsageError(f"{option} {value!r}: not a time (use ISO like 2026-11-02T09:00:00Z, or 24h, 7d)") from None


def _short(record_id: str) -> str:
    return record_id[:12]


# --- list ---------------------------------------------------------------------------------------------

def cmd_alerts_list(args: argparse.Namespace) -> int:
    from engine.alerts.triage import SUPPRESSED
    from engine.alerts.triage_query import AlertFilter, find_alerts, find_cases

    flt = AlertFilter(status=args.status, level=args.level, since=time_arg(args.since, "--since"),
                      until=time_arg(args.until, "--until"), rule=args.rule, user=args.user, patient=args.patient)
    opened = opened_store(args, reader=True)
    with opened as store:
        config = opened.config
        ruleset = _ruleset(config) if args.rule is not None else None
        if not args.alerts and args.status != SUPPRESSED and config["alerts"]["cases"]["enabled"]:
            cases = find_cases(store, flt, ruleset)
            cases.sort(key=lambda c: (-c.score, c.first_trigger, c.id))
            return _print_listing(cases, args, lambda shown: _cases_table(
                shown, f"{len(shown)} case(s), highest risk first (--alerts: every alert)"))
        alerts = find_alerts(store, flt, ruleset)
    return _print_listing(alerts, args, lambda shown: _alerts_table(shown, f"{len(shown)} alert(s)"))


def _ruleset(config: Any) -> Any:
    from engine.cli import _load_rules_from

    return _load_rules_from([str(config.resolve_path(p)) for p in config["rules"]["paths"]], config)


def _print_listing(records: list[Any], args: argparse.Namespace, table: Callable[[list[Any]], None]) -> int:
    """``--limit`` records as JSON lines or as the table ``table`` prints."""
    records = records[: args.limit] if args.limit is not None else records
    if args.format == "json":
        for record in records:
            sys.stdout.write(orjson.dumps(record.to_dict()).decode() + "\n")
    else:
        table(records)
    return EXIT_OK


def _table(title: str, columns: Sequence[str], rows: Iterator[Sequence[str]], no_wrap: Sequence[str] = ()) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.cli import _is_tty

    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in no_wrap)
    for row in rows:
        table.add_row(*row)
    Console(width=None if _is_tty() else 200).print(table)


def _alerts_table(alerts: Sequence[Any], title: str) -> None:
    from engine.cli import _window

    def rows() -> Iterator[Sequence[str]]:
        for a in alerts:
            group = ", ".join(f"{k}={v}" for k, v in a.group.items()) or "-"
            yield (_short(a.id), a.status, a.assignee or "-", a.rule_level, a.rule_title, group,
                   _window(a.window_start, a.window_end), str(a.evidence_total))

    _table(title, ("id", "status", "assignee", "level", "rule", "group", "window (UTC)", "events"), rows(),
           ("id", "window (UTC)"))


def _cases_table(cases: Sequence[Any], title: str) -> None:
    from engine.cli import _window

    def rows() -> Iterator[Sequence[str]]:
        for c in cases:
            yield (_short(c.id), c.status, c.assignee or "-", f"{c.score:g}", c.level,
                   subject_label(c.subject_kind, c.subject_field, c.subject), _window(c.first_trigger, c.last_trigger),
                   str(len(c.alerts)), "; ".join(f"{r['title']} x{r['alerts']}" for r in c.rules))

    _table(title, ("id", "status", "assignee", "risk", "level", "subject", "period (UTC)", "alerts", "rules"),
           rows(), ("id", "period (UTC)"))


# --- show ---------------------------------------------------------------------------------------------

def cmd_alerts_show(args: argparse.Namespace) -> int:
    from engine.alerts.triage_query import describe

    with opened_store(args, reader=True) as store:
        view = describe(store, args.id)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(view, default=str).decode() + "\n")
        return EXIT_OK
    for line in _show_lines(view):
        print(line)
    return EXIT_OK


def _show_lines(view: dict[str, Any]) -> Iterator[str]:
    triage = view["triage"]
    record = view[view["kind"]]
    if view["kind"] == "alert":
        group = ", ".join(f"{k}={v}" for k, v in record["group"].items()) or "-"
        yield f"alert {record['id']}  [{record['rule_level']}] {record['rule_title']}"
        yield f"rule: {record['rule_id']}" + (f" ({record['correlation_type']})" if record.get("correlation_type") else "")
        yield f"group: {group}"
        yield (f"window: {record['window_start']} .. {record['window_end']} (triggers {record['first_trigger']} .. "
               f"{record['last_trigger']}), revision {record['revision']}")
        if record.get("metric"):
            yield "metric: " + ", ".join(f"{k}={v}" for k, v in record["metric"].items())
        more = record["evidence_total"] - len(record["evidence"])
        yield (f"evidence ({record['evidence_total']} events" + (f", {more} not listed" if more > 0 else "") + "): "
               + " ".join(record["evidence"]))
        hold = view.get("hold")
        if hold and hold["state"] == "held":
            yield "cases: held by its rule's hold (wardwatch.hold): decided once the events pass the hold"
        elif hold:
            yield (f"cases: none, spared at revision {hold['revision']}: after each of its {hold['accesses']} "
                   f"access(es) the same user opened at least {hold['min_patients']} other patient(s) of that "
                   f"patient's department within {hold['hold_seconds'] // 60} min (wardwatch.hold)")
    else:
        yield f"case {record['id']}  [{record['level']}] risk {record['score']:g}"
        yield f"subject: {subject_label(record['subject_kind'], record['subject_field'], record['subject'])}"
        yield f"period: {record['first_trigger']} .. {record['last_trigger']}, revision {record['revision']}"
        yield "alerts:"
        for a in view.get("alert_records", []):
            group = ", ".join(f"{k}={v}" for k, v in a["group"].items()) or "-"
            yield (f"  [{a['rule_level']}] {a['rule_title']} | {group} | {a['first_trigger']} .. {a['last_trigger']}"
                   f" | {a['status']}, {a['assignee'] or '-'} | id {a['id']}")
    reason = f", close reason {triage['close_reason']}" if triage.get("close_reason") else ""
    yield f"status: {triage['status']}, assignee: {triage['assignee'] or '-'}{reason}"
    if view.get("suppressed_revisions"):
        yield "suppressed revisions: " + ", ".join(f"{rev} (exception {exc})" for rev, exc in
                                                   sorted(view["suppressed_revisions"].items()))
    if triage["comments"]:
        yield "comments:"
        for c in triage["comments"]:
            yield f"  {c['at']} {c['author']}: {c['text']}"
    if view["history"]:
        yield "history:"
        for entry in view["history"]:
            detail = ", ".join(f"{k}={v}" for k, v in entry["detail"].items() if k != "record")
            yield f"  #{entry['seq']} {entry['at']} {entry['actor']} {entry['kind']}" + (f" {detail}" if detail else "")
    if view.get("deadlines"):
        yield "incident deadlines:"
        for d in view["deadlines"]:
            left = float(d["remaining_seconds"])
            yield (f"  {d['regime']} {d['milestone']}: due {d['due']} "
                   + (f"({left / 3600:.1f} h left)" if left >= 0 else f"(overdue by {-left / 3600:.1f} h)"))


# --- actions ------------------------------------------------------------------------------------------

def _act(args: argparse.Namespace, do: Callable[[Any, str], Any]) -> int:
    with opened_store(args) as store:
        state = do(store, actor_of(args))
    if isinstance(state, tuple):
        state, exc = state
    else:
        exc = None
    print(f"{state.kind} {state.subject_id}: {state.status}, assignee {state.assignee or '-'}"
          + (f", close reason {state.close_reason}" if state.close_reason else ""))
    if exc is not None:
        print(f"exception {exc.id}: rule {exc.rule_id} quiet for {exc.field}={exc.value} until {exc.until}")
    return EXIT_OK


def cmd_alerts_ack(args: argparse.Namespace) -> int:
    from engine.alerts.triage import acknowledge

    return _act(args, lambda store, actor: acknowledge(store, args.id, actor=actor))


def cmd_alerts_assign(args: argparse.Namespace) -> int:
    from engine.alerts.triage import assign

    return _act(args, lambda store, actor: assign(store, args.id, args.user, actor=actor))


def cmd_alerts_comment(args: argparse.Namespace) -> int:
    from engine.alerts.triage import comment

    return _act(args, lambda store, actor: comment(store, args.id, args.text, actor=actor))


def cmd_alerts_close(args: argparse.Namespace) -> int:
    from engine.alerts.triage import close, suppression_seconds

    suppress = suppression_seconds(args.suppress, args.justification, args.field)
    return _act(args, lambda store, actor: close(store, args.id, args.reason, actor=actor, comment=args.comment,
                                                 suppress_for=suppress, justification=args.justification,
                                                 field=args.field))
