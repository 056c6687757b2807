"""The engine's own logs never carry patient identifiers or secrets; alerts pseudonymise where configured."""

from __future__ import annotations

import io

import orjson
import pytest
import structlog

from engine.logs import REDACTED, configure_logging
from engine.pseudonymise import Pseudonymiser


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
    p = Pseudonymiser(b"k1", ["ehr.patient.id"])
    out = p.apply({"ehr.patient.id": "P123", "user.name": "akrause"})
    assert out["user.name"] == "akrause"
    assert out["ehr.patient.id"].startswith("pseud:") and "P123" not in out["ehr.patient.id"]
    assert p.apply({"ehr.patient.id": "P123"}) == {"ehr.patient.id": out["ehr.patient.id"]}
    assert Pseudonymiser(b"k2", ["ehr.patient.id"]).apply({"ehr.patient.id": "P123"}) != out


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
