"""``wardwatch report patient ID | user ID --from --to --format csv|html [-o FILE]`` (engine.reports).

A report is PHI: it is written to ``-o FILE`` as a private file (0600, its directory 0700 when created) or to
stdout; nothing of it is logged, and that it was produced, by whom, is recorded in the audit chain
(``engine.reports.accountability``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.errors import EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: Any) -> None:
    from engine.commands.hunt import add_range_arguments

    report = sub.add_parser("report", help="access reports: every access to a patient's record, or by a user "
                                           "(PHI: GDPR Art. 15 access overview, NEN 7513)")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    for kind, help_text in (("patient", "every access to this patient's record (ehr.patient.id)"),
                            ("user", "every patient-record access by this user (user.name or user.id)")):
        parser = report_sub.add_parser(kind, help=help_text)
        parser.add_argument("id", help=f"the {kind}'s id")
        add_range_arguments(parser)
        parser.add_argument("--format", choices=("csv", "html"), default="csv")
        parser.add_argument("-o", "--output", metavar="FILE", help="write here (a private 0600 file), not stdout")
        parser.add_argument("--actor", help="who runs it, recorded in the audit chain (default: $WARDWATCH_ACTOR, "
                                            "else the OS user)")
        parser.set_defaults(func=cmd_report, report_kind=kind)


def cmd_report(args: argparse.Namespace) -> int:
    from engine.app import build_app
    from engine.cli import _config, _warn_refusal
    from engine.commands.triage import actor_of
    from engine.private_files import open_private
    from engine.reports import patient_report, record_report, render_csv, render_html, user_report
    from engine.time_bounds import parse_range

    start, end = parse_range(args.start, args.end)
    if args.output is not None and args.output.endswith(("/", "\\")):
        raise UsageError(f"-o {args.output}: is a directory; give a file")
    app = build_app(_config(args), console=False, reader=True)
    _warn_refusal(app.store)
    try:
        build = patient_report if args.report_kind == "patient" else user_report
        report = build(app, args.id, start, end)
        record_report(app.store, report, actor=actor_of(args), output=args.format)
    finally:
        app.close()
    text = render_csv(report) if args.format == "csv" else render_html(report)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        with open_private(args.output, "w") as handle:
            handle.write(text)
    except IsADirectoryError:
        raise UsageError(f"-o {args.output}: is a directory; give a file") from None
    except OSError as exc:
        raise UsageError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"{args.output}: {len(report.rows)} access(es), {len(report.alerts)} alert(s) "
          f"(contains PHI: keep it private)", file=sys.stderr)
    return EXIT_OK
