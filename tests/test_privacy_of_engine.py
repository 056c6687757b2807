"""The engine's own logs never carry patient identifiers or secrets; alerts pseudonymise where configured."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import structlog
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.logs import REDACTED, configure_logging
from engine.alerts.pseudonymise import Pseudonymiser


def test_log_lines_are_json_and_redact_phi_and_secrets():
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").info(
        "looked up", user="akrause", patient_id="P123", password="hunter2",
        event_fields={"ehr.patient.id": "P123", "event.original": "{...}", "user.name": "akrause"},
    )
    record = orjson.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "looked up" and record["level"] == "info"
    assert record["patient_id"] == REDACTED and record["password"] == REDACTED
    assert record["event_fields"]["ehr.patient.id"] == REDACTED
    assert record["event_fields"]["event.original"] == REDACTED
    assert record["event_fields"]["user.name"] == "akrause"
    assert "P123" not in stream.getvalue() and "hunter2" not in stream.getvalue()


def test_pseudonyms_are_keyed_stable_and_only_for_configured_fields():
    p = Pseudonymiser(b"k1" * 16, ["ehr.patient.id"])
    out = p.apply({"ehr.patient.id": "P123", "user.name": "akrause"})
    assert out["user.name"] == "akrause"
    assert out["ehr.patient.id"].startswith("pseud:") and "P123" not in out["ehr.patient.id"]
    assert p.apply({"ehr.patient.id": "P123"}) == {"ehr.patient.id": out["ehr.patient.id"]}
    assert Pseudonymiser(b"k2" * 16, ["ehr.patient.id"]).apply({"ehr.patient.id": "P123"}) != out


def test_fields_without_key_is_a_clear_error():
    with pytest.raises(ValueError, match="no key"):
        Pseudonymiser(None, ["ehr.patient.id"])


def test_stdlib_loggers_render_as_redacted_json_lines_too():
    import logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("engine.store.elasticsearch").warning("retrying %s", "bulk", extra={"api_key": "s3cret"})
    record = orjson.loads(stream.getvalue().strip().splitlines()[-1])
    assert record["event"] == "retrying bulk" and record["level"] == "warning"
    assert record["logger"] == "engine.store.elasticsearch" and record["api_key"] == REDACTED
    assert "s3cret" not in stream.getvalue()


# --- issue 7 item 12: PHI in places that are not alerts --------------------------------------------------

def json_lines(stream: io.StringIO) -> list[dict]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def test_dead_letter_reason_and_location_reach_the_log_without_phi(tmp_path):
    """A sender-controlled value quoted in a reason stays in the private store, not in the log."""
    from connectors.ndjson import NdjsonFileConnector
    from engine.enrich import EnrichmentChain
    from engine.ingest import ingest_connector
    from engine.store.sqlite import SqliteStore

    source = tmp_path / "ehr.ndjson"
    source.write_text('{"@timestamp": "Patient P950 Mueller", "event.dataset": "ehr.audit"}\n')
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    store = SqliteStore(tmp_path / "w.db")
    try:
        stats = ingest_connector(store, NdjsonFileConnector("ehr", {"path": str(source)}), EnrichmentChain([]), 100)
        stored = store.list_dead_letters()
    finally:
        store.close()
    assert stats.dead_letters == 1 and "P950" in stored[0].reason  # stored whole, for `wardwatch status`
    [logged] = [r for r in json_lines(stream) if r["event"] == "dead letter"]
    assert "P950" not in stream.getvalue() and "Mueller" not in stream.getvalue()
    assert logged["location"] == f"{source}:1"  # the operator still learns where
    assert logged["reason"].startswith("field '@timestamp': invalid timestamp (not an ISO 8601 timestamp: ")


def test_urls_in_logged_locations_keep_only_their_origin():
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").warning(
        "dead letter", location="https://svc:s3cret@fhir.example:8443/Patient/P950/AuditEvent?patient=P950#x",
        reason="page failed after retries: HTTP 500 for https://fhir.example/AuditEvent?patient=P950")
    [record] = json_lines(stream)
    assert record["location"] == f"https://fhir.example:8443/{REDACTED}"
    assert record["reason"] == f"page failed after retries: HTTP 500 for https://fhir.example/{REDACTED}"
    assert "P950" not in stream.getvalue() and "s3cret" not in stream.getvalue()


def test_listen_address_is_logged_but_a_patient_address_is_still_masked(tmp_path):
    from engine.app import build_app
    from engine.config import load_config
    from engine.scheduler import Service
    from tests.test_service import vpn_service_config

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    import socket

    with socket.socket() as probe:  # a free port (the config refuses 0)
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    config = vpn_service_config(tmp_path, service={"http": {"host": "127.0.0.1", "port": free_port}})
    service = Service(build_app(load_config(config, environ={}), console=False))
    service.start()
    try:
        port = service.http.address[1]
    finally:
        service.stop()
    [endpoint] = [r for r in json_lines(stream) if r["event"] == "status endpoint"]
    assert endpoint["listen"] == f"http://127.0.0.1:{port}"

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    structlog.get_logger("t").info("looked up", address="Hauptstr. 1", patient={"address": "Hauptstr. 1"},
                                   listen_address="Hauptstr. 1")
    [record] = json_lines(stream)
    assert record["address"] == REDACTED and record["patient"] == REDACTED
    assert record["listen_address"] == REDACTED  # only the exact key `listen` is a listener
    assert "Hauptstr" not in stream.getvalue()


@given(st.text(min_size=1))
def test_no_quoted_sender_value_survives_scrubbing(value):
    from engine.logs import scrub_text

    reason = f"field 'ts': invalid timestamp (not an ISO 8601 timestamp: {value!r})"
    quote = repr(value)[0]
    assert scrub_text(reason) == (
        f"field 'ts': invalid timestamp (not an ISO 8601 timestamp: {quote}{REDACTED}{quote})")


@given(st.sampled_from(["http", "https"]), st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
       st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1).map(lambda s: "/" + s))
def test_a_url_in_a_location_keeps_only_scheme_host_and_port(scheme, host, rest):
    from engine.logs import scrub_text

    assume("'" not in rest and '"' not in rest and rest.strip("/"))
    assert scrub_text(f"{scheme}://{host}{rest}") == f"{scheme}://{host}/{REDACTED}"


# --- the console sink (item 12 a) ------------------------------------------------------------------------

PATIENT_RULES = """\
title: Patient record read (test)
id: 0b5f0f1e-1111-4222-8333-944444444444
name: test_patient_read
logsource:
    product: ehr
detection:
    selection:
        event.action: read
    condition: selection
level: low
---
title: Same patient read twice (test)
id: 0b5f0f1e-1111-4222-8333-955555555555
correlation:
    type: event_count
    rules: [test_patient_read]
    group-by: [ehr.patient.id]
    timespan: 1h
    condition:
        gte: 2
level: high
"""


def patient_config(tmp_path: Path, sinks: list[dict]) -> Path:
    import yaml

    (tmp_path / "rules.yml").write_text(PATIENT_RULES)
    events = [{"@timestamp": f"2026-11-02T10:0{i}:00Z", "event.dataset": "ehr.audit", "event.action": "read",
               "ehr.patient.id": "P950", "user.name": "akrause"} for i in range(2)]
    (tmp_path / "ehr.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({
        "store": {"sqlite": {"path": str(tmp_path / "data" / "w.db")}},
        "rules": {"paths": [str(tmp_path / "rules.yml")]},
        "connectors": [{"name": "ehr", "type": "ndjson", "path": str(tmp_path / "ehr.ndjson")}],
        "alerts": {"sinks": sinks, "pseudonymise": {"fields": ["ehr.patient.id"]}},
    }))
    return path


def test_console_sink_prints_what_the_jsonl_sink_stores_pseudonymised(tmp_path, monkeypatch):
    from engine.app import build_app
    from engine.config import load_config
    from engine.evaluation import run_all
    from engine.ingest import ingest_connector
    from engine.alerts.sinks import ConsoleSink, deliver_pending

    monkeypatch.setenv("WARDWATCH_PSEUDONYM_KEY", "k" * 32)
    config = patient_config(tmp_path, [{"type": "jsonl", "path": str(tmp_path / "data" / "alerts.jsonl")}])
    app = build_app(load_config(config), console=False)
    out = io.StringIO()
    app.sinks.append(ConsoleSink(out))
    try:
        for _, connector in app.connectors():
            ingest_connector(app.store, connector, app.enrichment, 100)
        run_all(app.evaluator, app.jobs)
        deliver_pending(app.store, app.sinks)
    finally:
        app.close()
    [stored] = [orjson.loads(line) for line in (tmp_path / "data" / "alerts.jsonl").read_bytes().splitlines()]
    pseudonym = stored["group"]["ehr.patient.id"]
    assert pseudonym.startswith("pseud:")
    assert f"ehr.patient.id={pseudonym}" in out.getvalue() and "P950" not in out.getvalue()


def run_service_until_alert(config, *extra: str) -> tuple[str, str]:
    """`wardwatch run` (the service) until the JSONL sink has an alert, then SIGTERM: (stdout, stderr)."""
    alerts = Path(config).parent / "data" / "alerts.jsonl"
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--config", str(config), "run", *extra],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "WARDWATCH_PSEUDONYM_KEY": "k" * 32})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not (alerts.exists() and alerts.stat().st_size):
            time.sleep(0.1)
        time.sleep(0.5)  # one more delivery tick for the console sink
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert alerts.stat().st_size, err
    return out, err


FAST = {"scheduler": {"ingest_interval": "100ms", "rule_interval": "100ms", "delivery_interval": "100ms"}}


def fast_service_config(tmp_path, sinks):
    import yaml

    path = patient_config(tmp_path, sinks)
    data = yaml.safe_load(path.read_text())
    data.update(FAST, logging={"format": "json"})
    path.write_text(yaml.safe_dump(data))
    return path


def test_service_mode_prints_no_alerts_on_stdout_unless_asked(tmp_path):
    sinks = [{"type": "jsonl", "path": str(tmp_path / "data" / "alerts.jsonl")}, {"type": "console"}]
    out, err = run_service_until_alert(fast_service_config(tmp_path, sinks))
    assert "ALERT" not in out and "ehr.patient.id" not in out  # journald gets nothing about patients
    logged = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["event"].startswith("console sink is off in service mode") for r in logged)


def test_service_mode_console_with_flag_is_pseudonymised(tmp_path):
    sinks = [{"type": "jsonl", "path": str(tmp_path / "data" / "alerts.jsonl")}, {"type": "console"}]
    out, _ = run_service_until_alert(fast_service_config(tmp_path, sinks), "--console")
    assert "ALERT [high] Same patient read twice (test)" in out
    assert "ehr.patient.id=pseud:" in out and "P950" not in out


def test_stdlib_log_reason_is_scrubbed_like_a_dead_letter():
    import logging

    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("connectors.fhir_rest").warning(
        "fhir-auditevent %s: page failed (HTTP %s)", "ehr", 400,
        extra={"reason": "server answered 400: unknown patient 'P950' at https://fhir.example/Patient/P950"})
    [record] = json_lines(stream)
    assert record["event"] == "fhir-auditevent ehr: page failed (HTTP 400)"
    assert record["reason"] == f"server answered 400: unknown patient '{REDACTED}' at https://fhir.example/{REDACTED}"
