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
def demo_work(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh directory with the demo's fixtures/ and rules/, and the environment of a new user."""
    work = tmp_path_factory.mktemp("demo")
    for name in ("fixtures", "rules"):
        os.symlink(ROOT / name, work / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    env["WARDWATCH_LOGGING__FORMAT"] = "json"
    return work, env


@pytest.fixture(scope="module")
def demo_run(demo_work) -> tuple[subprocess.CompletedProcess, list[dict]]:
    result = _wardwatch(demo_work, "run", "--once", timeout=300)
    alerts = [orjson.loads(line) for line in (demo_work[0] / "data/alerts.jsonl").read_bytes().splitlines()]
    return result, alerts


def _wardwatch(demo_work: tuple[Path, dict[str, str]], *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    work, env = demo_work
    return subprocess.run([sys.executable, "-m", "engine.cli", *argv], cwd=work, capture_output=True, text=True,
                          timeout=timeout, env=env)


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


def test_the_demo_ends_with_the_next_commands_and_they_work(demo_run, demo_work):
    result, alerts = demo_run
    tail = result.stdout.rstrip().splitlines()[-3:]
    assert tail[0] == "next:"
    show, report = (line.split("#")[0].split() for line in tail[1:])
    assert show[:3] == ["wardwatch", "alerts", "show"] and report[:3] == ["wardwatch", "report", "patient"]
    most_severe = [a for a in alerts if a["rule_level"] == "critical"]
    assert any(a["id"].startswith(show[3]) for a in most_severe)
    shown = _wardwatch(demo_work, *show[1:])
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert show[3] in shown.stdout and "[critical]" in shown.stdout
    reported = _wardwatch(demo_work, *report[1:])
    assert reported.returncode == 0, reported.stderr[-2000:]
    assert report[3] in reported.stdout and len(reported.stdout.splitlines()) > 1  # header + its accesses


def test_the_demo_run_is_in_an_intact_audit_chain(demo_run, demo_work):
    _, alerts = demo_run
    verified = _wardwatch(demo_work, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok: ") and "chain intact" in verified.stdout
    listed = _wardwatch(demo_work, "audit", "list", "--kind", "alert.revision", "--format", "json")
    recorded = sorted((e["subject"], e["detail"]["revision"]) for e in map(orjson.loads, listed.stdout.splitlines()))
    assert recorded == sorted((a["id"], a["revision"]) for a in alerts)
