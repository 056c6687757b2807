"""``wardwatch audit verify|list|head`` (the chain, ``engine.audit``) and ``wardwatch alerts incident ID`` /
``alerts deadlines`` (the legal clocks, ``engine.incidents``). This module parses, opens the store and prints.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

import orjson

from engine.audit import KINDS
from engine.errors import EXIT_FAILED, EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: dict[str, Any]) -> None:
    group = sub.add_parser("audit", help="the tamper-evident audit chain: verify, list, head")
    commands = group.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser("verify", help="recompute the whole chain; exit 1 naming the first broken link")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.add_argument("--expect-head", metavar="'SEQ HASH'",
                        help="a head printed earlier and kept off the machine: it must still be in the chain "
                             "(catches entries cut off the end)")
    verify.set_defaults(func=cmd_audit_verify)
    listing = commands.add_parser("list", help="entries in chain order")
    listing.add_argument("--subject", help="only entries about this alert, case, rule or exception id")
    listing.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                         help=f"only this kind (repeatable): {', '.join(KINDS)}")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=cmd_audit_list)
    head = commands.add_parser("head", help="the last entry's seq and hash: keep it off this machine, so "
                                            "entries cut off the end of the chain can be shown")
    head.add_argument("--format", choices=("text", "json"), default="text")
    head.set_defaults(func=cmd_audit_head)

    alerts = groups["alerts"]
    incident = alerts.add_parser("incident", help="declare an alert or case an incident: starts the GDPR Art. 33 "
                                                  "and NIS2 Art. 23 reporting clocks")
    incident.add_argument("id", help="alert or case id (or a unique prefix of at least 6 characters)")
    incident.add_argument("--regime", action="append", choices=("gdpr", "nis2"),
                          help="only this regime (repeatable; default: both)")
    incident.add_argument("--actor", help="who declares it (default: $WARDWATCH_ACTOR, else the OS user)")
    incident.add_argument("--format", choices=("text", "json"), default="text")
    incident.set_defaults(func=cmd_alerts_incident)
    due = alerts.add_parser("deadlines", help="every declared incident's reporting deadlines, soonest first")
    due.add_argument("--format", choices=("table", "json"), default="table")
    due.set_defaults(func=cmd_alerts_deadlines)


def _json(value: Any) -> None:
    print(orjson.dumps(value).decode())


# --- audit --------------------------------------------------------------------------------------------

def cmd_audit_verify(args: argparse.Namespace) -> int:
    from engine import audit
    from engine.commands.triage import opened_store

    expected = None
    if args.expect_head is not None:
        try:
            expected = audit.parse_head(args.expect_head)
        except ValueError as exc:
            raise UsageError(f"--expect-head {exc}") from None
    with opened_store(args, reader=True) as store:
        result = audit.verify(store, expect_head=expected)
    if args.format == "json":
        _json({"ok": result.ok, "checked": result.checked, "first_broken": result.first_broken,
               "reason": result.reason, "pruned_through": result.pruned_through})
    elif result.ok and result.pruned_through:
        print(f"ok: {result.checked} entries from seq {result.pruned_through + 1}, chain intact; "
              f"seq 1..{result.pruned_through} removed by retention")
    elif result.ok:
        print(f"ok: {result.checked} entries, chain intact")
    else:
        print(f"broken at seq {result.first_broken}: {result.reason} ({result.checked} entries before it hold)")
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_audit_list(args: argparse.Namespace) -> int:
    from engine import audit
    from engine.commands.triage import opened_store

    with opened_store(args, reader=True) as store:
        found = audit.entries(store, subject=args.subject, kinds=args.kind, limit=args.limit)
        if args.format == "json":
            for entry in found:
                _json(entry.to_dict())
            return EXIT_OK
        rows = [(str(e.seq), e.at, e.kind, e.actor, e.subject[:32], _brief(e.detail)) for e in found]
    _table(("SEQ", "AT", "KIND", "ACTOR", "SUBJECT", "DETAIL"), rows)
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    return EXIT_OK


def _brief(detail: dict[str, Any], width: int = 60) -> str:
    text = " ".join(f"{k}={v}" for k, v in detail.items() if not isinstance(v, (dict, list)))
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], indent: str = "") -> None:
    """Left-aligned columns as wide as their widest cell (plain text: pipes and greps keep working)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in (header, *rows):
        print(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_audit_head(args: argparse.Namespace) -> int:
    from engine import audit
    from engine.commands.triage import opened_store

    with opened_store(args, reader=True) as store:
        entry = audit.head(store)
    value = {"seq": 0, "hash": audit.GENESIS, "at": None} if entry is None else \
        {"seq": entry.seq, "hash": entry.hash, "at": entry.at}
    if args.format == "json":
        _json(value)
    else:
        print(f"{value['seq']} {value['hash']}")
    return EXIT_OK


# --- incidents ----------------------------------------------------------------------------------------

def cmd_alerts_incident(args: argparse.Namespace) -> int:
    from engine.commands.triage import actor_of, opened_store
    from engine.incidents import declare, incident_deadlines, incidents

    now = datetime.now(timezone.utc)
    with opened_store(args) as store:
        from engine.alerts.triage import resolve

        subject = resolve(store, args.id)
        before = incidents(store, subject.id)
        incident = declare(store, subject.id, actor=actor_of(args),
                           regimes=tuple(dict.fromkeys(args.regime or ("gdpr", "nis2"))))
    due = incident_deadlines(incident, now)
    if args.format == "json":
        _json({"subject": incident.subject, "record": incident.record, "declared_at": incident.declared_at,
               "actor": incident.actor, "regimes": list(incident.regimes), "new": not before,
               "deadlines": [d.to_dict() for d in due]})
        return EXIT_OK
    said = "already declared" if before else "declared an incident"
    print(f"{incident.record} {incident.subject}: {said} at {incident.declared_at} by {incident.actor}")
    _deadline_rows(due, with_subject=False)
    return EXIT_OK


def cmd_alerts_deadlines(args: argparse.Namespace) -> int:
    from engine.commands.triage import opened_store
    from engine.incidents import deadlines

    with opened_store(args, reader=True) as store:
        due = deadlines(store, datetime.now(timezone.utc))
    if args.format == "json":
        for d in due:
            _json(d.to_dict())
        return EXIT_OK
    _deadline_rows(due, with_subject=True)
    return EXIT_OK


def _deadline_rows(due: list[Any], *, with_subject: bool) -> None:
    from engine.incidents import left_text

    header = ("REGIME", "MILESTONE", "DUE", "TIME")
    rows = [(d.regime, d.milestone, d.due, left_text(d.remaining_seconds)) for d in due]
    if with_subject:
        header, rows = ("SUBJECT", *header), [(d.subject[:12], *row) for d, row in zip(due, rows)]
    _table(header, rows, indent="  ")
