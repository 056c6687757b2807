"""An access report as CSV (a header, one row per access) or as one self-contained HTML page.

Both escape what they print: HTML through ``html.escape`` (a user name or purpose is data, never markup), CSV
through the csv module plus a leading ``'`` on cells a spreadsheet would run as a formula (``=``, ``+``,
``-``, ``@``: CSV injection), because these files are opened in Excel by privacy officers.
"""

from __future__ import annotations

import csv
import html
import io

from engine.reports.model import AccessRow, Report

CSV_COLUMNS = ("time_utc", "user", "user_id", "name", "department", "patient", "action", "resource",
               "purpose_of_use", "break_the_glass", "outcome", "source_ip", "event_id", "alerts")
PHI_NOTICE = "Contains personal health information (GDPR Art. 9): keep it confidential, share it only with the data subject or as the law requires."


def _alerts_cell(row: AccessRow) -> str:
    return "; ".join(f"{a.title} [{a.level}, {a.status}] {a.id}" for a in row.alerts)


def _cells(row: AccessRow) -> list[str]:
    return [row.at, row.user, row.user_id, row.name, row.department, row.patient, row.action, row.resource,
            row.purpose, "yes" if row.break_the_glass else "no", row.outcome, row.source_ip, row.event_id,
            _alerts_cell(row)]


def _csv_safe(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _title(report: Report) -> str:
    what = "Accesses to the record of patient" if report.kind == "patient" else "Patient-record accesses by user"
    return f"{what} {report.subject}"


def _period(report: Report) -> str:
    return f"{report.start or 'the first stored event'} to {report.end or report.generated} (UTC)"


def render_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180; and a CR inside a cell gets quoted
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        writer.writerow([_csv_safe(c) for c in _cells(row)])
    return out.getvalue()


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%;
font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr.btg td{background:#fff4e5}.notice{border-left:4px solid #c00;padding:.5em 1em;background:#fdf0f0}
.muted{color:#666}"""


def render_html(report: Report) -> str:
    e = html.escape
    head = ["Time (UTC)", "User", "Name", "Department", "Patient", "Action", "Resource", "Purpose of use",
            "Break the glass", "Outcome", "Source IP", "Alerts"]
    body = []
    for row in report.rows:
        alerts = "<br>".join(f"{e(a.title)} <span class=muted>[{e(a.level)}, {e(a.status)}] {e(a.id)}</span>"
                             for a in row.alerts)
        cells = [row.at, row.user + (f" ({row.user_id})" if row.user_id and row.user_id != row.user else ""),
                 row.name, row.department, row.patient, row.action, row.resource, row.purpose,
                 "yes" if row.break_the_glass else "no", row.outcome, row.source_ip]
        tr = "<tr class=btg>" if row.break_the_glass else "<tr>"
        body.append(tr + "".join(f"<td>{e(c)}</td>" for c in cells) + f"<td>{alerts}</td></tr>")
    alert_items = "".join(f"<li>{e(a.first_trigger)} .. {e(a.last_trigger)}: {e(a.title)} [{e(a.level)}, "
                          f"{e(a.status)}] <span class=muted>{e(a.id)}</span></li>" for a in report.alerts)
    btg = sum(1 for r in report.rows if r.break_the_glass)
    return "".join([
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>",
        "<meta name=robots content=noindex>",
        f"<title>{e(_title(report))}</title><style>{_CSS}</style></head><body>",
        f"<p class=notice>{e(PHI_NOTICE)}</p>",
        f"<h1>{e(_title(report))}</h1>",
        f"<p>Period {e(_period(report))}. Generated {e(report.generated)} by Wardwatch. {len(report.rows)} "
        f"access(es), {btg} with break the glass, {len(report.alerts)} alert(s).</p>",
        "<table><thead><tr>", "".join(f"<th>{e(h)}</th>" for h in head), "</tr></thead><tbody>",
        "".join(body), "</tbody></table>",
        f"<h2>Alerts</h2><ul>{alert_items or '<li>none</li>'}</ul>",
        "</body></html>\n",
    ])
