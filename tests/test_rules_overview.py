"""``wardwatch rules list`` on SQLite and on the real cluster: last run, checkpoint lag, alerts in the last
24 h and rule coverage (data of the rule's logsource seen or not)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from engine.app import build_app
from engine.rules_overview import COLUMNS, rules_overview
from tests.history_site import ROOT, drop_site, json_lines, write_site

BULK, VPN = "Bulk patient-record access", "VPN brute force followed by successful login"


def _rows(site, capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert site.cli("rules", "list", "--format", "json") == 0
    return {row["title"]: row for row in json_lines(capsys.readouterr().out)}


@pytest.mark.parametrize("kind", ["sqlite", "elasticsearch"])
def test_rules_list_tracks_runs_lag_alerts_and_coverage(tmp_path, capsys, kind):
    site = write_site(tmp_path, kind)
    try:
        site.ingest_ehr()
        rows = _rows(site, capsys)
        assert set(rows[BULK]) >= set(COLUMNS)
        assert rows[BULK]["last_run"] is None and rows[BULK]["lag_seconds"] is None
        assert rows[BULK]["data_seen"] is True and rows[VPN]["data_seen"] is False  # no VPN data: a gap
        assert rows["EHR break-the-glass access"]["status"] == "experimental"
        assert rows[BULK]["status"] == "experimental"  # a correlation's, from its YAML

        assert site.cli("run", "--once") == 0
        rows = _rows(site, capsys)
        assert rows[BULK]["last_run"] is not None and rows[BULK]["lag_seconds"] == 0.0
        assert rows[BULK]["alerts_24h"] == 0  # the demo's alerts are from November 2026, not today

        time.sleep(1.1)  # the next ingest is measurably later than what the rules have seen
        assert site.cli("ingest", "ndjson", str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth") == 0
        rows = _rows(site, capsys)
        assert rows[VPN]["data_seen"] is True and rows[VPN]["lag_seconds"] >= 1.0
        assert rows[BULK]["lag_seconds"] >= 1.0  # it has not seen the new batch either (other dataset)

        app = build_app(site.config(), console=False)
        try:
            by_title = {r["title"]: r for r in rules_overview(app, datetime(2026, 11, 3, 8, tzinfo=timezone.utc))}
        finally:
            app.close()
        assert by_title[BULK]["alerts_24h"] == 1 and by_title["EHR break-the-glass access"]["alerts_24h"] == 1
        assert by_title[VPN]["alerts_24h"] == 0
    finally:
        drop_site(site)


def test_rules_list_table(tmp_path, capsys):
    site = write_site(tmp_path, "sqlite")
    site.ingest_ehr()
    capsys.readouterr()
    assert site.cli("rules", "list") == 0
    out = capsys.readouterr().out
    assert "5 rule(s)" in out and "NO DATA" in out and "never" in out
