"""``wardwatch report patient|user``: every access with who, when, what and why, and the alerts each took part
in; CSV and self-contained, escaped HTML; private files; the same report on SQLite and on the real cluster."""

from __future__ import annotations

import csv
import io
import os
import stat

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.reports import AccessRow, AlertRef, Report, render_csv, render_html
from engine.reports.render import CSV_COLUMNS
from tests.history_site import drop_site, json_lines, write_site

BTG_PATIENT, BULK_USER = "P100667", "mkeller"
ODD = {"@timestamp": "2026-11-02T15:00:00.000Z", "user.name": "evil", "user.id": "U666",
       "user.full_name": "<script>alert(1)</script>", "ehr.patient.id": "PX-1", "event.action": "read",
       "ehr.purpose_of_use": ["=HYPERLINK(\"http://x\")"], "ehr.break_the_glass": False}


def _roster(path) -> str:
    path.write_text("user_id,login,family_name,department\nU1042,mkeller,Keller,Cardiology\n"
                    "U1007,tbauer,Bauer,Emergency\n")
    return f"enrichment:\n  privacy:\n    roster_csv: {path}\n"


@pytest.fixture(scope="module", params=["sqlite", "elasticsearch"])
def site(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"report-{request.param}")
    odd = tmp / "odd.ndjson"
    odd.write_text(orjson.dumps(ODD).decode() + "\n")
    # the roster is configured for the report, not at ingest: names and departments come from it
    built = write_site(tmp, request.param)
    try:
        built.ingest_ehr()
        assert built.cli("ingest", "ndjson", str(odd), "-o", "dataset=ehr.audit") == 0
        assert built.cli("run", "--once") == 0
        built.add_config(_roster(tmp / "roster.csv"))
        yield built
    finally:
        drop_site(built)


def _csv(site, capsys, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert site.cli("report", *argv, "--format", "csv") == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    return rows


def _alerts(site, capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert site.cli("alerts", "list", "--alerts", "--format", "json") == 0
    return {a["rule_title"]: a for a in json_lines(capsys.readouterr().out)}


def test_patient_report_lists_every_access_with_who_why_and_alerts(site, capsys):
    rows = _csv(site, capsys, "patient", BTG_PATIENT, "--from", "2026-11-01", "--to", "2026-11-04")
    capsys.readouterr()
    assert site.cli("events", "search", f"ehr.patient.id:{BTG_PATIENT}", "--format", "json") == 0
    assert len(rows) == len(json_lines(capsys.readouterr().out)) >= 4  # every access, ordinary ones too
    assert {r["patient"] for r in rows} == {BTG_PATIENT}
    assert [r["time_utc"] for r in rows] == sorted(r["time_utc"] for r in rows)
    btg = [r for r in rows if r["break_the_glass"] == "yes"]
    assert len(btg) == 1 and btg[0]["user"] == "tbauer" and btg[0]["purpose_of_use"] == "BTG"
    assert btg[0]["name"] == "Thomas Bauer" and btg[0]["department"] == "Emergency"  # roster department
    alert = _alerts(site, capsys)["EHR break-the-glass access"]
    assert alert["id"] in btg[0]["alerts"]
    assert all(alert["id"] not in r["alerts"] for r in rows if r is not btg[0])


def test_every_report_handed_out_is_in_the_audit_chain(site, capsys):
    rows = _csv(site, capsys, "patient", BTG_PATIENT, "--actor", "privacy.officer", "--from", "2026-11-01",
                "--to", "2026-11-04")
    capsys.readouterr()
    assert site.cli("audit", "list", "--kind", "report.run", "--subject", BTG_PATIENT, "--format", "json") == 0
    entry = json_lines(capsys.readouterr().out)[-1]
    assert (entry["actor"], entry["subject"]) == ("privacy.officer", BTG_PATIENT)
    alerts = entry["detail"].pop("alerts")
    assert alerts >= 1  # the break-the-glass alert at least
    assert entry["detail"] == {"report": "patient", "from": "2026-11-01T00:00:00.000Z",
                               "to": "2026-11-04T00:00:00.000Z", "rows": len(rows), "format": "csv"}
    assert site.cli("audit", "verify") == 0


def test_user_report_links_the_bulk_alert(site, capsys):
    rows = _csv(site, capsys, "user", BULK_USER)
    bulk = _alerts(site, capsys)["Bulk patient-record access"]
    linked = [r for r in rows if bulk["id"] in r["alerts"]]
    assert len(linked) == bulk["evidence_total"] == 65
    assert {r["user"] for r in rows} == {BULK_USER} and len(rows) > len(linked)
    assert {r["department"] for r in rows} == {"Cardiology"}
    assert _csv(site, capsys, "user", "U1042") == rows  # the user id names the same person
    assert _csv(site, capsys, "user", BULK_USER, "--from", "2026-11-02T13:00:00Z",
                "--to", "2026-11-02T13:10:00Z") == [r for r in rows if "2026-11-02T13:00" <= r["time_utc"] < "2026-11-02T13:10"]


def test_hostile_values_are_escaped(site, capsys, tmp_path):
    rows = _csv(site, capsys, "patient", "PX-1")
    assert rows[0]["name"] == "<script>alert(1)</script>"
    assert rows[0]["purpose_of_use"].startswith("'=HYPERLINK(")  # never a formula in a spreadsheet
    out = tmp_path / "r.html"
    assert site.cli("report", "patient", "PX-1", "--format", "html", "-o", str(out)) == 0
    page = out.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "src=" not in page and "<link" not in page  # self-contained
    assert "personal health information" in page
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert "1 access(es)" in capsys.readouterr().err


@pytest.mark.slow  # two fresh sites (one on the cluster)
def test_the_same_report_on_both_stores(tmp_path_factory, capsys):
    texts = {}
    for kind in ("sqlite", "elasticsearch"):
        built = write_site(tmp_path_factory.mktemp(f"same-{kind}"), kind)
        try:
            built.ingest_ehr()
            assert built.cli("run", "--once") == 0
            capsys.readouterr()
            assert built.cli("report", "user", BULK_USER, "--format", "csv") == 0
            texts[kind] = capsys.readouterr().out
        finally:
            drop_site(built)
    assert texts["sqlite"] == texts["elasticsearch"] and texts["sqlite"].count("\n") > 100


@pytest.mark.parametrize("argv,message", [
    (["patient", " "], "error: patient ID: ' ' is not an identifier"),
    (["user", "a\nb"], "error: user ID: 'a\\nb' is not an identifier"),
    (["patient", "P1", "--from", "soon"], "error: --from: not a time: 'soon'"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    built = write_site(tmp_path, "sqlite")
    assert built.cli("report", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_an_unknown_patient_is_an_empty_report(tmp_path, capsys):
    built = write_site(tmp_path, "sqlite")
    assert _csv(built, capsys, "patient", "P-nobody") == []


TEXT = st.text(max_size=20)


@given(st.lists(st.tuples(TEXT, TEXT, TEXT, st.booleans()), max_size=5))
def test_csv_reads_back_and_html_holds_no_markup_from_data(values):
    rows = [AccessRow(at="2026-11-02T09:00:00.000Z", user=u, user_id="", name=n, department="", patient="P1",
                      action="read", resource="", purpose=p, break_the_glass=b, outcome="", source_ip="",
                      event_id=f"e{i}", alerts=(AlertRef("a1", n, "high", "new", "", ""),))
            for i, (u, n, p, b) in enumerate(values)]
    report = Report("patient", "P1", None, None, "2026-12-01T00:00:00.000Z", rows)
    back = list(csv.reader(io.StringIO(render_csv(report), newline="")))
    assert back[0] == list(CSV_COLUMNS) and len(back) == len(rows) + 1
    for row, line in zip(rows, back[1:]):
        for cell, original in ((line[1], row.user), (line[3], row.name), (line[8], row.purpose)):
            assert cell == original or (cell == "'" + original and original[:1] in "=+-@\t\r")
    page = render_html(report)
    assert page.count("<tr") == len(rows) + 1 and page.count("<td") == 12 * len(rows)
