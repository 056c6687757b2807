"""`make run`: the built-in defaults (no config file) on fixtures/, as a new user first sees them.

Why a test of its own: the demo is the project's first impression and its sources are real connectors
(FHIR files, a Cisco ASA syslog file, Winlogbeat JSON, an LDIF directory). A demo that dead-letters lines
or loses the cross-source alert is broken even when every connector's own tests pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, list[dict]]:
    work = tmp_path_factory.mktemp("demo")
    for name in ("fixtures", "rules"):
        os.symlink(ROOT / name, work / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    env["WARDWATCH_LOGGING__FORMAT"] = "json"
    result = subprocess.run([sys.executable, "-m", "engine.cli", "run", "--once"],
                            cwd=work, capture_output=True, text=True, timeout=300, env=env)
    alerts = [orjson.loads(line) for line in (work / "data/alerts.jsonl").read_bytes().splitlines()]
    return result, alerts


def test_every_demo_source_is_read_without_a_dead_letter(demo_run):
    result, _ = demo_run
    assert result.returncode == 0, result.stderr[-2000:]
    ingested = {}
    for line in result.stderr.splitlines() + result.stdout.splitlines():
        if line.startswith("{") and '"ingested"' in line:
            record = orjson.loads(line)
            ingested[record["connector"]] = record
    assert set(ingested) == {"ehr-audit-demo", "vpn-demo", "windows-demo"}
    for name, record in ingested.items():
        assert record["events"] > 500, name
        assert record["dead_letters"] == 0, name


def test_the_demo_shows_the_cross_source_chain_for_one_person(demo_run):
    result, alerts = demo_run
    chain = [a for a in alerts if a["rule_title"].startswith("Cross-source chain")]
    assert len(chain) == 1
    assert chain[0]["group"] == {"wardwatch.identity": "jarnold"}
    assert "Cross-source chain" in result.stdout
    titles = {a["rule_title"] for a in alerts}
    assert {"Kerberoasting: RC4 service tickets for many SPNs", "VPN brute force followed by successful login",
            "Bulk patient-record access"} <= titles
