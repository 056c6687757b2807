"""No silent blindness (issue 7, item 3): a source Wardwatch cannot read is an error the operator sees, in
the one-shot commands (exit 1, one line naming the connector), on ``/health`` (503, naming the connector,
no absolute paths) and in ``wardwatch status`` run as a separate process."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine.app import build_app
from engine.cli import main
from engine.config import load_config
from engine.scheduler import Service

ROOT = Path(__file__).resolve().parent.parent
VPN = ROOT / "fixtures/vpn"


def free_port() -> int:
    """A loopback port nothing listens on right now (the config accepts 1..65535, not 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def _logs_to_real_stderr():
    """``main()`` points logging at capsys's stream, which is closed after the test: service threads of
    the next test must not write there."""
    yield
    from engine.logs import configure_logging

    configure_logging("warning", "json", stream=sys.__stderr__)


def write_config(tmp_path: Path, connectors: list[dict], **extra) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({
        "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules/healthcare")]},
        "connectors": connectors,
        "alerts": {"sinks": []},
        "scheduler": {"ingest_interval": "100ms", "rule_interval": "1s", "delivery_interval": "1s"},
        **extra,
    }))
    return path


def cli(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def error_lines(err: list[str]) -> list[str]:
    assert not any("Traceback" in line for line in err), err
    return [line for line in err if line.startswith("error:")]


def status_of(config: Path) -> dict:
    """``wardwatch status`` as a separate process, as an operator runs it next to the service."""
    done = subprocess.run([sys.executable, "-m", "engine.cli", "--config", str(config), "status"],
                          capture_output=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def get_health(service: Service) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(*service.http.address, timeout=5)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def wait_for(predicate, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


# --- the one-shot commands ------------------------------------------------------------------------

@pytest.mark.parametrize("connector", [
    {"name": "vpn", "type": "ndjson", "dataset": "vpn.auth", "path": "fixtures/vpn-typo"},
    {"name": "vpn", "type": "ndjson", "dataset": "vpn.auth", "path": "no-such-dir/*.ndjson"},
    {"name": "vpn", "type": "fhir-auditevent-file", "path": "fixtures/ehr-typo"},
    {"name": "vpn", "type": "ehr-csv", "path": "exports-typo", "columns": {"ts": "@timestamp"}},
], ids=["ndjson-path", "ndjson-glob", "fhir-file", "ehr-csv"])
def test_run_once_exits_1_naming_a_connector_whose_path_does_not_exist(tmp_path, capsys, connector):
    config = write_config(tmp_path, [connector, {"name": "win", "type": "ndjson", "dataset": "windows.security",
                                                 "path": str(ROOT / "fixtures/windows")}])
    code, out, err = cli(capsys, "--config", str(config), "run", "--once")
    assert code == 1
    [line] = error_lines(err)
    assert "'vpn'" in line and "does not exist" in line
    assert "alert(s) in the store" in out  # the healthy source was still ingested and evaluated
    report = status_of(config)
    assert report["connector_health"]["vpn"]["ok"] is False
    assert "does not exist" in report["connector_health"]["vpn"]["reason"]
    assert str(tmp_path) not in report["connector_health"]["vpn"]["reason"]
    assert report["connector_health"]["win"]["ok"] is True


def test_ingest_exits_1_naming_a_missing_source(tmp_path, capsys):
    config = write_config(tmp_path, [])
    code, _, err = cli(capsys, "--config", str(config), "ingest", "ndjson", str(tmp_path / "typo.ndjson"),
                       "--name", "vpn-cli", "-o", "dataset=vpn.auth")
    assert code == 1
    [line] = error_lines(err)
    assert "'vpn-cli'" in line and "typo.ndjson" in line and "does not exist" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: permissions cannot be tested")
def test_an_unreadable_source_is_an_error(tmp_path, capsys):
    source = tmp_path / "vpn.ndjson"
    source.write_bytes((VPN / sorted(os.listdir(VPN))[0]).read_bytes())
    source.chmod(0)
    config = write_config(tmp_path, [])
    code, _, err = cli(capsys, "--config", str(config), "ingest", "ndjson", str(source), "-o", "dataset=vpn.auth")
    assert code == 1 and "cannot be read" in error_lines(err)[0]


def test_an_empty_drop_directory_is_not_an_error(tmp_path, capsys):
    (tmp_path / "drop").mkdir()
    config = write_config(tmp_path, [{"name": "drop", "type": "ndjson", "path": str(tmp_path / "drop")}])
    code, _, err = cli(capsys, "--config", str(config), "run", "--once")
    assert code == 0 and not error_lines(err)


def test_run_once_exits_1_when_every_record_of_a_source_was_rejected(tmp_path, capsys):
    garbage = tmp_path / "garbage.ndjson"
    garbage.write_text("not json\n{also not\n[1, 2]\n")
    config = write_config(tmp_path, [
        {"name": "junk", "type": "ndjson", "dataset": "vpn.auth", "path": str(garbage)},
        {"name": "vpn", "type": "ndjson", "dataset": "vpn.auth", "path": str(VPN)},
    ])
    code, _, err = cli(capsys, "--config", str(config), "run", "--once")
    assert code == 1
    [line] = error_lines(err)
    assert "'junk'" in line and "3" in line and "rejected" in line
    # a second run reads nothing new from either source: nothing is wrong any more
    code, _, err = cli(capsys, "--config", str(config), "run", "--once")
    assert code == 0 and not error_lines(err)


# --- the service ------------------------------------------------------------------------------------

def test_service_health_goes_degraded_naming_a_missing_source_and_recovers(tmp_path):
    source = tmp_path / "incoming" / "vpn.ndjson"
    config = write_config(tmp_path, [{"name": "vpn", "type": "ndjson", "dataset": "vpn.auth", "path": str(source)}],
                          service={"http": {"host": "127.0.0.1", "port": free_port()}})
    service = Service(build_app(load_config(config, environ={}), console=False))
    service.start()
    try:
        # The job's status entry appears when it starts; wait until its first run has ended.
        wait_for(lambda: service.status.get("ingest:vpn", {}).get("failures", 0) >= 1)
        code, report = get_health(service)
        assert code == 503 and report["status"] == "degraded"
        assert report["connectors"]["vpn"]["ok"] is False
        assert "does not exist" in report["connectors"]["vpn"]["reason"]
        assert str(tmp_path) not in orjson.dumps(report).decode()
        assert status_of(config)["connector_health"]["vpn"]["ok"] is False
        assert service.metrics.value("wardwatch_connector_up", connector="vpn") == 0

        source.parent.mkdir()
        source.write_bytes(b"".join(p.read_bytes() for p in sorted(VPN.iterdir())))
        wait_for(lambda: get_health(service)[0] == 200)
        assert get_health(service)[1]["connectors"]["vpn"]["ok"] is True
        assert status_of(config)["connector_health"]["vpn"]["ok"] is True
    finally:
        service.stop()


def test_service_health_names_a_source_that_fails_on_every_poll(tmp_path):
    with socket.socket() as closed:  # a port nothing listens on: every poll is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write_config(tmp_path, [{"name": "fhir", "type": "fhir-auditevent", "base_url": f"http://127.0.0.1:{port}/fhir",
                                      "max_retries": 0}],
                          service={"http": {"host": "127.0.0.1", "port": free_port()}})
    service = Service(build_app(load_config(config, environ={}), console=False))
    service.start()
    try:
        wait_for(lambda: service.status.get("ingest:fhir", {}).get("runs", 0) >= 2)
        code, report = get_health(service)
    finally:
        service.stop()
    assert code == 503 and report["connectors"]["fhir"]["ok"] is False and report["connectors"]["fhir"]["reason"]


def test_service_health_names_a_listener_that_cannot_bind(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = write_config(tmp_path, [{"name": "atna", "type": "atna-syslog", "spool_dir": str(tmp_path / "spool"),
                                          "listen": [{"protocol": "tcp", "host": "127.0.0.1", "port": port}]}],
                              service={"http": {"host": "127.0.0.1", "port": free_port()}})
        service = Service(build_app(load_config(config, environ={}), console=False))
        service.start()  # the other sources and the endpoint keep running
        try:
            code, report = get_health(service)
            assert code == 503 and report["connectors"]["atna"]["ok"] is False
            reason = report["connectors"]["atna"]["reason"]
            assert f"port {port}" in reason and "already in use" in reason and reason.count("'atna'") == 1
        finally:
            service.stop()


# --- what /health may say ----------------------------------------------------------------------------

_SEGMENT = st.text(alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_.~+"),
                   min_size=1, max_size=12)


@given(directories=st.lists(_SEGMENT, min_size=1, max_size=6), name=_SEGMENT,
       before=st.sampled_from(["path ", "directory ", "(path: ", "'", "cannot read "]),
       after=st.sampled_from([" does not exist", ")", "': denied", ", retrying", ""]))
def test_scrub_leaves_no_absolute_path_but_keeps_the_file_name(directories, name, before, after):
    from engine.health import scrub

    path = "/" + "/".join(directories) + "/" + name
    text = scrub(f"connector 'vpn': {before}{path}{after}")
    assert "/".join(directories) + "/" not in text.replace(".../", "")
    assert text.endswith(f".../{name}{after}") and text.startswith("connector 'vpn': ")


@given(query=st.text(alphabet=st.characters(blacklist_categories=("Z", "C"), blacklist_characters="'\""), max_size=40))
def test_scrub_drops_url_query_strings_and_keeps_the_endpoint(query):
    from engine.health import scrub

    text = scrub(f"GET https://fhir.example:8443/r4/AuditEvent?{query} failed")
    assert text == "GET https://fhir.example:8443/r4/AuditEvent?... failed"


# --- the lookups ------------------------------------------------------------------------------------

def test_service_health_names_a_lookup_that_is_gone_or_stale_and_recovers(tmp_path):
    """A roster HR stopped exporting ends nobody's contract, and the service kept quiet about it: it logged
    one warning and went on with the old table. Now ``/health`` is degraded, naming the lookup and why
    (no absolute path), and ``wardwatch_lookup_up`` is 0, until the file is back and loads."""
    import shutil

    roster = tmp_path / "lookups" / "roster.csv"
    roster.parent.mkdir()
    roster.write_text("user_id,login,department,role\nU1,anna,Cardiology,nurse\nU2,ben,Emergency,physician\n",
                      encoding="utf-8")
    vpn = tmp_path / "vpn.ndjson"
    vpn.write_bytes(b"".join(p.read_bytes() for p in sorted(VPN.iterdir())))
    config = write_config(tmp_path, [{"name": "vpn", "type": "ndjson", "dataset": "vpn.auth", "path": str(vpn)}],
                          service={"http": {"host": "127.0.0.1", "port": free_port()}},
                          enrichment={"privacy": {"roster_csv": str(roster)}})
    data = yaml.safe_load(config.read_text())
    data["scheduler"]["enrichment_refresh_interval"] = "100ms"
    config.write_text(yaml.safe_dump(data))
    service = Service(build_app(load_config(config, environ={}), console=False))
    service.start()
    try:
        wait_for(lambda: get_health(service)[0] == 200)
        report = get_health(service)[1]["lookups"]["privacy.roster"]
        assert report["ok"] is True and report["entries"] == 2 and report["source"] == ".../roster.csv"
        assert report["loaded_at"].endswith("+00:00") and report["error"] is None  # UTC, as connectors' since
        assert service.metrics.value("wardwatch_lookup_up", lookup="privacy.roster") == 1
        assert service.metrics.value("wardwatch_lookup_entries", lookup="privacy.roster") == 2

        shutil.move(roster, tmp_path / "away.csv")  # gone: the old table is served, stale
        wait_for(lambda: get_health(service)[0] == 503)
        code, report = get_health(service)
        assert report["status"] == "degraded"
        stale = report["lookups"]["privacy.roster"]
        assert stale == {"ok": False, "source": ".../roster.csv", "loaded": True, "entries": 2,
                         "loaded_at": stale["loaded_at"], "error": "unavailable: No such file or directory"}
        assert str(tmp_path) not in orjson.dumps(report).decode()
        wait_for(lambda: service.metrics.value("wardwatch_lookup_up", lookup="privacy.roster") == 0)
        # wardwatch status, a process of its own, loads the lookups as they are now: nothing there
        assert status_of(config)["lookups"]["privacy.roster"] == {
            "ok": False, "source": ".../roster.csv", "loaded": False, "entries": None, "loaded_at": None,
            "error": "unavailable: No such file or directory"}

        roster.write_text("user_id,login,department,role\nU1,anna,Cardiology,nurse\n", encoding="utf-8")
        wait_for(lambda: get_health(service)[0] == 200)
        assert get_health(service)[1]["lookups"]["privacy.roster"]["entries"] == 1

        roster.write_bytes("user_id,login,department\nU1,Ärztin,Kardiologie\n".encode("cp1252"))  # not UTF-8
        wait_for(lambda: get_health(service)[0] == 503)
        error = get_health(service)[1]["lookups"]["privacy.roster"]["error"]
        assert error.startswith("not reloaded: roster_encoding: ") and "is not utf-8-sig text (line 2" in error
        assert get_health(service)[1]["lookups"]["privacy.roster"]["entries"] == 1   # the last good table
    finally:
        service.stop()
