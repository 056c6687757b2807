"""Declared plug-in options (engine/plugins.py): one parser for connectors, sinks and enrichment.

What a user sees: a typo or a wrong type in any connector, sink or enrichment block stops the start with
``file: connectors[2].datasett: unknown option (known: ...)``; ``wardwatch config check`` says so without
running anything; ``ingest -o key=value`` goes through the same parser; credentials never travel over plain
http:// beyond loopback.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorConfigError, connector_class
from engine.cli import main
from engine.config import ConfigError, load_config
from engine.plugins import InvalidOption, duration_option, parse_options, path_option
from tests.json_peer import json_peer

ROOT = Path(__file__).resolve().parents[1]


# --- the parser ---------------------------------------------------------------------------------------

@dataclass
class Sample:
    path: str = path_option(dataclasses.MISSING)
    page_size: int = 200
    ratio: float = 0.5
    mode: Literal["fast", "safe"] = "safe"
    timeout: float | None = duration_option(None)
    tags: list[str] = field(default_factory=list)
    enabled: bool = True


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(InvalidOption) as error:
        parse_options(Sample, {"path": "x", "datasett": "y"})
    assert error.value.key == "datasett"
    assert "unknown option (known: enabled, mode, page_size, path, ratio, tags, timeout)" in str(error.value)


def test_wrong_type_names_the_key():
    with pytest.raises(InvalidOption, match=r"^page_size: expected an integer, got 'lots'$"):
        parse_options(Sample, {"path": "x", "page_size": "lots"})
    with pytest.raises(InvalidOption, match=r"^mode: must be one of 'fast', 'safe', got 'quick'$"):
        parse_options(Sample, {"path": "x", "mode": "quick"})
    with pytest.raises(InvalidOption, match=r"^enabled: expected true or false, got 'yes please'$"):
        parse_options(Sample, {"path": "x", "enabled": "yes please"})
    with pytest.raises(InvalidOption, match=r"^path: required option is missing$"):
        parse_options(Sample, {})


def test_paths_resolve_and_durations_parse():
    parsed = parse_options(Sample, {"path": "logs", "timeout": "5m", "ratio": 1},
                           resolve_path=lambda p: Path("/etc/ww") / p)
    assert parsed.path == "/etc/ww/logs"
    assert parsed.timeout == 300.0
    assert parsed.ratio == 1.0 and isinstance(parsed.ratio, float)


def test_strings_from_the_command_line_are_coerced_to_the_declared_type():
    parsed = parse_options(Sample, {"path": "7", "page_size": "50", "enabled": "false", "tags": "[a, b]"},
                           coerce_strings=True)
    assert (parsed.path, parsed.page_size, parsed.enabled, parsed.tags) == ("7", 50, False, ["a", "b"])
    with pytest.raises(InvalidOption, match="page_size"):
        parse_options(Sample, {"path": "x", "page_size": "lots"}, coerce_strings=True)


def test_secret_literals_are_refused_with_the_file_and_env_alternatives():
    for key in ("password", "client_secret", "token", "api_key", "patients_fhir_token"):
        with pytest.raises(InvalidOption) as error:
            parse_options(Sample, {"path": "x", key: "hunter2"})
        assert f"use {key}_file" in str(error.value) and f"{key}_env" in str(error.value)
        assert "hunter2" not in str(error.value)


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["path", "page_size", "ratio", "mode", "timeout", "tags", "enabled",
                                        "datasett", "x"]), _JSONISH, max_size=6))
def test_any_mapping_parses_or_fails_with_an_option_error_naming_a_key(values: dict[str, Any]):
    """Property: the parser never leaks TypeError/KeyError; a failure always names the key at fault."""
    try:
        parsed = parse_options(Sample, values)
    except InvalidOption as exc:
        assert exc.key in values or exc.key == "path"
        return
    assert isinstance(parsed.page_size, int) and not isinstance(parsed.page_size, bool)
    assert parsed.mode in ("fast", "safe")
    assert all(isinstance(t, str) for t in parsed.tags)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**6, max_value=10**6), st.booleans())
def test_integers_round_trip_through_command_line_text(number: int, flag: bool):
    parsed = parse_options(Sample, {"path": "p", "page_size": str(number), "enabled": str(flag).lower()},
                           coerce_strings=True)
    assert parsed.page_size == number and parsed.enabled is flag


# --- every built-in connector declares its options --------------------------------------------------

@pytest.mark.parametrize("type_name,options,bad_key", [
    ("ndjson", {"path": "x", "datasett": "vpn"}, "datasett"),
    ("fhir-auditevent-file", {"path": "x", "settle_second": 2}, "settle_second"),
    ("fhir-auditevent", {"base_url": "https://f", "page_sise": 5}, "page_sise"),
    ("ehr-csv", {"path": "x", "columns": {"TS": "@timestamp"}, "timezon": "UTC"}, "timezon"),
    ("atna-syslog", {"spool_dir": "x", "spooldir": "y"}, "spooldir"),
])
def test_every_connector_refuses_a_typo(type_name, options, bad_key):
    with pytest.raises(ConnectorConfigError, match=rf"{bad_key}: unknown option \(known: "):
        connector_class(type_name)("c", options)


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text("rules:\n  paths: []\n" + body)
    return path


CONNECTORS = """connectors:
  - {name: a, type: ndjson, path: a}
  - {name: b, type: ndjson, path: b}
"""


def test_config_names_file_index_and_option(tmp_path):
    path = _config(tmp_path, CONNECTORS + "  - {name: c, type: ndjson, path: c, datasett: vpn.auth}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value).startswith(f"{path}: connectors[2].datasett: unknown option (known: dataset, ")


def test_config_reports_a_wrong_type(tmp_path):
    path = _config(tmp_path, "connectors:\n  - {name: f, type: fhir-auditevent, base_url: 'https://f/r4', "
                             "page_size: lots}\n")
    with pytest.raises(ConfigError, match=r"connectors\[0\]\.page_size: expected an integer, got 'lots'"):
        load_config(path, environ={})


def test_config_reports_an_unknown_connector_type(tmp_path):
    path = _config(tmp_path, "connectors:\n  - {name: f, type: ndjsn, path: x}\n")
    with pytest.raises(ConfigError, match=r"connectors\[0\]\.type: unknown connector type 'ndjsn'"):
        load_config(path, environ={})


def test_sinks_and_enrichment_are_strict_too(tmp_path):
    path = _config(tmp_path, "alerts:\n  sinks:\n    - {type: jsonl, path: a.jsonl, rotate: daily}\n")
    with pytest.raises(ConfigError, match=r"alerts\.sinks\[0\]\.rotate: unknown option \(known: cases_path, deliver, drop, .*path, pseudonymise, .*retry\)"):
        load_config(path, environ={})
    path = _config(tmp_path, "enrichment:\n  privacy:\n    roster_csv: r.csv\n    patient_columns: {}\n")
    with pytest.raises(ConfigError, match=r"enrichment\.privacy\.patient_columns: unknown option \(known: .*"
                                          r"patients_columns"):
        load_config(path, environ={})


def test_validation_opens_nothing(tmp_path):
    """A config check must not create spool directories or open sockets: options are parsed, not built."""
    path = _config(tmp_path, "connectors:\n  - {name: s, type: atna-syslog, spool_dir: spool, "
                             "listen: [{protocol: tcp, host: 127.0.0.1, port: 0}]}\n")
    load_config(path, environ={})
    assert not (tmp_path / "spool").exists()


def test_config_check_command(tmp_path, capsys):
    path = _config(tmp_path, CONNECTORS)
    assert main(["config", "check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 2 connectors, 2 sinks, 0 rules"
    path.write_text(path.read_text() + "  - {name: c, type: ndjson, path: c, datasett: x}\n")
    assert main(["config", "check", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "connectors[2].datasett: unknown option" in err[0]


def test_ingest_options_go_through_the_parser(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.ndjson").write_text('{"@timestamp": "2026-01-01T00:00:00Z", "msg": "x"}\n')
    config = _config(tmp_path, "store:\n  sqlite: {path: w.db}\n")
    assert main(["ingest", "ndjson", str(tmp_path / "e.ndjson"), "--config", str(config),
                 "-o", "max_line_bytes=4096", "-o", "dataset=5"]) == 0
    assert "1 events read" in capsys.readouterr().out
    assert main(["ingest", "ndjson", str(tmp_path / "e.ndjson"), "--config", str(config),
                 "-o", "max_line_bytes=lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "max_line_bytes: expected an integer, got 'lots'" in err and "Traceback" not in err


# --- CSV column mappings name columns that exist --------------------------------------------------

def test_roster_column_missing_from_the_header_is_a_config_error(tmp_path):
    (tmp_path / "roster.csv").write_text("EMPLOYEE,DEPT\nalice,ICU\n")
    path = _config(tmp_path, "enrichment:\n  privacy:\n    roster_csv: roster.csv\n"
                             "    roster_columns: {user_id: EMP_ID, department: DEPT}\n")
    from engine.app import build_enrichment

    with pytest.raises(ConfigError, match=r"roster_columns\.user_id: column 'EMP_ID' is not in the header of "):
        build_enrichment(load_config(path, environ={}))


def test_patients_column_missing_from_the_header_is_a_config_error(tmp_path):
    (tmp_path / "patients.csv").write_text("MRN,SURNAME\nP1,Smith\n")
    path = _config(tmp_path, "enrichment:\n  privacy:\n    patients_csv: patients.csv\n"
                             "    patients_columns: {patient_id: MRN, family_name: LAST_NAME}\n")
    from engine.app import build_enrichment

    with pytest.raises(ConfigError, match=r"patients_columns\.family_name: column 'LAST_NAME' is not in"):
        build_enrichment(load_config(path, environ={}))


def test_ehr_csv_mapped_column_missing_from_the_header_names_option_and_column(tmp_path):
    from tests.conftest import read_all

    export = tmp_path / "exports"
    export.mkdir()
    (export / "a.csv").write_text("TS,USER\n2026-01-01T00:00:00Z,alice\n2026-01-01T00:00:01Z,bob\n")
    connector = connector_class("ehr-csv")("e", {"path": str(export), "columns": {
        "TS": "@timestamp", "USER": "user.name", "PATIENT_MRN": "ehr.patient.id"}})
    batch = read_all(connector)
    assert [e["user.name"] for e in batch.events] == ["alice", "bob"]  # an optional column may be dropped
    dead = batch.dead_letters  # ... but the operator hears it, once per file
    assert len(dead) == 1 and "columns.PATIENT_MRN: column 'PATIENT_MRN' is not in the header" in dead[0].reason
    assert dead[0].location == "a.csv:1"


# --- no credentials over plaintext ----------------------------------------------------------------

#: what the FHIR peers below answer to a search: an empty page
EMPTY_BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


def _recorder() -> Any:
    """A real HTTP server on every interface, recording each request's Authorization header."""
    return json_peer(lambda _request: (200, EMPTY_BUNDLE), host="0.0.0.0")


def _lan_address() -> str:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("no non-loopback interface on this machine")
    return address


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")
    return str(path)


def test_bearer_token_is_not_configured_for_plain_http_beyond_loopback(token_file):
    with pytest.raises(ConnectorConfigError, match=r"base_url: http://192\.0\.2\.7 is plain http:// beyond "
                                                   r"loopback .* allow_insecure_http: true"):
        connector_class("fhir-auditevent")("f", {"base_url": "http://192.0.2.7/fhir", "auth": "bearer",
                                                 "token_file": token_file})
    with pytest.raises(ConnectorConfigError, match=r"token_url: http://auth\.example"):
        connector_class("fhir-auditevent")("f", {
            "base_url": "https://fhir.example/r4", "auth": "client_credentials", "client_id": "ww",
            "token_url": "http://auth.example/token", "client_secret_file": token_file})


def test_config_refuses_credentials_over_http(tmp_path, token_file):
    path = _config(tmp_path, "connectors:\n  - {name: f, type: fhir-auditevent, base_url: 'http://fhir.lan/r4', "
                             f"auth: bearer, token_file: '{token_file}'}}\n")
    with pytest.raises(ConfigError, match=r"connectors\[0\]\.base_url: http://fhir\.lan is plain http://"):
        load_config(path, environ={})
    path = _config(tmp_path, "enrichment:\n  privacy:\n    patients_fhir_base_url: http://mpi.lan/fhir\n"
                             "    patients_fhir_token_env: MPI_TOKEN\n")
    with pytest.raises(ConfigError, match=r"enrichment\.privacy\.patients_fhir_base_url: .* set "
                                          r"patients_fhir_allow_insecure_http: true"):
        load_config(path, environ={})


def test_token_goes_to_loopback_and_to_an_allowed_insecure_source(token_file):
    lan = _lan_address()
    with _recorder() as server:
        for url, extra in ((f"http://127.0.0.1:{server.port}/fhir", {}),
                           (f"http://{lan}:{server.port}/fhir", {"allow_insecure_http": True})):
            connector = connector_class("fhir-auditevent")("f", {"base_url": url, "auth": "bearer",
                                                                 "token_file": token_file, **extra})
            connector.read(None, 10)
            connector.close()
    assert server.authorizations == ["Bearer s3cret-token", "Bearer s3cret-token"]


def test_next_link_to_plain_http_never_receives_the_token(token_file):
    """Request-time check: a paging link (next_link_same_origin: false) cannot downgrade to http://."""
    lan = _lan_address()
    with _recorder() as far:
        page = {**EMPTY_BUNDLE, "link": [{"relation": "next", "url": f"http://{lan}:{far.port}/fhir/page2"}]}
        with json_peer(lambda _request: (200, page)) as origin:
            connector = connector_class("fhir-auditevent")("f", {
                "base_url": f"{origin.base}/fhir", "auth": "bearer",
                "token_file": token_file, "next_link_same_origin": False, "max_retries": 0})
            batch = connector.read(None, 10)
            connector.close()
    assert far.authorizations == []
    assert any("plain http://" in d.reason for d in batch.dead_letters)


def test_patient_directory_refuses_a_token_over_plain_http():
    from connectors.fhir_auth import AuthError
    from engine.enrich.lookups import FhirPatientDirectory

    with pytest.raises(AuthError, match="patients_fhir_allow_insecure_http"):
        FhirPatientDirectory("http://mpi.lan/fhir", headers={"Authorization": "Bearer x"})
    FhirPatientDirectory("http://localhost:8080/fhir", headers={"Authorization": "Bearer x"}).close()
    FhirPatientDirectory("http://mpi.lan/fhir", headers={"Authorization": "Bearer x"},
                         allow_insecure_http=True).close()


def test_a_redirect_never_carries_the_token_elsewhere(token_file):
    """Request-time check: a 3xx from the FHIR server (to plain http on another host) is not followed."""
    lan = _lan_address()
    with _recorder() as far:
        moved = {"Location": f"http://{lan}:{far.port}/fhir/AuditEvent"}
        with json_peer(lambda _request: (302, None, moved)) as origin:
            connector = connector_class("fhir-auditevent")("f", {
                "base_url": f"{origin.base}/fhir", "auth": "bearer", "token_file": token_file, "max_retries": 0})
            batch = connector.read(None, 10)
            connector.close()
    assert far.authorizations == []
    assert [d.reason for d in batch.dead_letters] and "302" in batch.dead_letters[0].reason


def test_a_tls_key_password_is_taken_from_a_file_never_from_the_yaml(tmp_path):
    entry = {"protocol": "tls", "host": "127.0.0.1", "port": 0, "certfile": "c.pem", "keyfile": "k.pem"}
    with pytest.raises(ConnectorConfigError, match=r"listen\[0\]\.password: a secret must not be written in the "
                                                   r"config file; use password_file"):
        connector_class("atna-syslog")("s", {"spool_dir": str(tmp_path / "s"),
                                             "listen": [{**entry, "password": "hunter2"}]})
    (tmp_path / "pass").write_text("hunter2\n")
    connector = connector_class("atna-syslog")("s", {"spool_dir": str(tmp_path / "s"),
                                                     "listen": [{**entry, "password_file": str(tmp_path / "pass")}]})
    assert connector.listen[0].password == "hunter2"
    connector.close()


def test_a_plugin_sink_is_built_from_its_declared_options(tmp_path, monkeypatch):
    from engine.alerts import sinks

    @dataclass
    class MemoryOptions:
        path: str = path_option(dataclasses.MISSING)
        limit: int = 10

    class MemorySink:
        Options = MemoryOptions

        def __init__(self, path: str, limit: int):
            self.name, self.path, self.limit = "memory", path, limit

    monkeypatch.setitem(sinks._BUILTIN_SINKS, "memory", MemorySink)
    with pytest.raises(ConfigError, match=r"alerts\.sinks\[0\]\.limit: expected an integer"):
        load_config(_config(tmp_path, "alerts:\n  sinks:\n    - {type: memory, path: m, limit: many}\n"), environ={})
    monkeypatch.delitem(sinks._BUILTIN_SINKS, "memory")
    monkeypatch.setattr(sinks, "sink_class", lambda name: MemorySink)
    built = sinks.build_sinks([{"type": "memory", "path": "m"}], resolve=lambda p: tmp_path / p)
    assert [(s.path, s.limit) for s in built] == [(str(tmp_path / "m"), 10)]


@pytest.mark.parametrize("block, error", [
    ("timezon: Europe/Berlin",
     r"enrichment\.working_hours\.timezon: unknown option \(known: days, end, start, timezone\)"),
    ("timezone: Europe/Berlim", r"enrichment\.working_hours\.timezone: unknown time zone 'Europe/Berlim'"),
    ("start: '7'", r"enrichment\.working_hours\.start: expected HH:MM, got '7'"),
    # YAML 1.1 reads an unquoted 7:00 or 19:30 as a sexagesimal number (420, 1170): "expected a string, got
    # int" did not say why a clock time was a number
    ("start: 7:00\n    end: '19:30'", r'enrichment\.working_hours\.start: write the time in quotes \("07:00"\): '
                                     r"unquoted, YAML reads 07:00 as the number 420"),
    ("start: '07:00'\n    end: 19:30", r'working_hours\.end: write the time in quotes \("19:30"\)'),
], ids=["unknown-key", "unknown-zone", "not-a-clock", "unquoted-start", "unquoted-end"])
def test_working_hours_are_declared_options_checked_when_the_config_loads(tmp_path, block, error):
    path = _config(tmp_path, f"enrichment:\n  working_hours:\n    {block}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path, environ={})
