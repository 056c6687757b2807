"""The pieces the push connectors share (connectors/syslog/listening.py) and what a user sees of them.

Why these tests: dead-letter reasons are logged by the engine, and engine logs must never carry PHI. A
parser bug raised on a record's content (a patient's name in the exception text) must cost one dead letter
whose reason names the position and the exception TYPE only - for files (``ndjson``, ``winlogbeat``'s file
mode, the VPN connectors) and for the spool (``atna-syslog``, VPN and ``winlogbeat`` listeners) alike.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.atna_syslog import AtnaSyslogConnector, AtnaSyslogOptions
from connectors.ndjson import NdjsonFileConnector
from connectors.syslog.listening import ListenerOptions
from connectors.syslog.spool import KIND_ERROR, Spool, SpoolRecord
from connectors.vpn.base import VpnConnector, VpnOptions
from connectors.windows.winlogbeat import WinlogbeatConnector, WinlogbeatOptions
from engine.plugins import InvalidOption, option_names, parse_options
from engine.store.base import DeadLetter

PATIENT = "Jane Q. Patientname MRN 00442211"


class Boom(RuntimeError):
    """What a buggy parser raises: its message quotes the record, as exception messages often do."""


def _raise_on_content(*args: Any, **_: Any) -> Any:
    # unquoted, so the log layer's scrubbing of quoted values (engine.logs.scrub_text) cannot hide a leak
    raise Boom("cannot handle " + str(args[0]).replace("'", "").replace('"', ""))


class _VpnUnderTest(VpnConnector):
    type_name = "test-vpn"
    parser_module = "tests.vpn_fake_parser"


def _buggy_vpn_parser() -> types.ModuleType:
    module = types.ModuleType("buggy_vpn")
    module.parse = _raise_on_content  # type: ignore[attr-defined]
    return module


def _assert_no_phi(dead: DeadLetter, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
                   location: str) -> None:
    assert dead.reason.startswith("internal error") and "Boom" in dead.reason
    assert PATIENT not in dead.reason and "Patientname" not in dead.reason
    assert dead.location.startswith(location)
    assert PATIENT in dead.raw  # the dead letter itself keeps the record: nothing is lost
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    assert "Patientname" not in logged


def _spool_with(directory: Path, *records: SpoolRecord) -> None:
    spool = Spool(directory)
    spool.open_writer()
    spool.append(list(records))
    spool.close()


# --- PHI: internal-error reasons name the type, never the content -----------------------------------------
_JSON_LINE = f'{{"@timestamp": "2026-12-01T08:00:00Z", "message": "{PATIENT}"}}\n'
_SYSLOG_LINE = f"<166>Dec  1 08:15:00 gw01 fakevpn: FAKEVPN user=jdoe {PATIENT}\n"
_ATNA_FRAME = f"<110>1 2026-12-01T08:00:00Z ehr app - - - <AuditMessage>{PATIENT}</AuditMessage>"
#: (connector factory, the buggy function to patch or None, a line that reaches it)
_CASES = {
    "ndjson": (lambda opts: NdjsonFileConnector("audit", opts), "connectors.ndjson.flatten", _JSON_LINE),
    "winlogbeat": (lambda opts: WinlogbeatConnector("wlb", opts),
                   "connectors.windows.winlogbeat.record_from_document", _JSON_LINE),
    "vpn": (lambda opts: _VpnUnderTest("vpn", opts, parser=_buggy_vpn_parser()), None, _SYSLOG_LINE),
    "atna-syslog": (lambda opts: AtnaSyslogConnector("atna", opts), "connectors.atna_syslog.parse_atna",
                    _ATNA_FRAME),
}


def _buggy(name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> tuple[Any, str]:
    caplog.set_level(logging.DEBUG)
    make, target, line = _CASES[name]
    if target:
        monkeypatch.setattr(target, _raise_on_content)
    return make, line


@pytest.mark.parametrize("name", ["ndjson", "winlogbeat", "vpn"])
def test_file_internal_error_reason_names_the_type_not_the_content(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    make, line = _buggy(name, monkeypatch, caplog)
    path = tmp_path / "input.ndjson"
    path.write_text(line)
    conn = make({"path": str(path)})
    conn.read_to_end()
    batch = conn.read(None, 10)
    assert batch.events == []
    (dead,) = batch.dead_letters
    assert dead.reason == "internal error: Boom"
    _assert_no_phi(dead, caplog, capsys, f"{path}:1")


@pytest.mark.parametrize("name", ["winlogbeat", "vpn", "atna-syslog"])
def test_spool_internal_error_reason_names_the_type_not_the_content(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    make, line = _buggy(name, monkeypatch, caplog)
    _spool_with(tmp_path / "spool", SpoolRecord(line.encode(), "tls:10.0.0.9:6514", time.time()))
    conn = make({"spool_dir": str(tmp_path / "spool")})
    batch = conn.read(None, 10)
    assert batch.events == []
    (dead,) = batch.dead_letters
    assert dead.reason == "internal error: Boom"
    _assert_no_phi(dead, caplog, capsys, "spool:1:0")


def test_a_parser_bug_on_a_pushed_record_reaches_the_engine_log_without_its_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import io

    from engine.enrich import EnrichmentChain
    from engine.ingest import ingest_connector
    from engine.logs import configure_logging
    from engine.store.sqlite import SqliteStore

    make, line = _buggy("vpn", monkeypatch, caplog)
    _spool_with(tmp_path / "spool", SpoolRecord(line.encode(), "tls:10.0.0.9:6514", time.time()))
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    store = SqliteStore(tmp_path / "w.db")
    try:
        stats = ingest_connector(store, make({"spool_dir": str(tmp_path / "spool")}), EnrichmentChain([]), 100)
        (stored,) = store.list_dead_letters()
    finally:
        store.close()
    assert stats.dead_letters == 1 and stored.reason == "internal error: Boom" and PATIENT in stored.raw
    logged = stream.getvalue()
    assert "spool:1:0" in logged and "Boom" in logged  # the operator learns where and what kind of bug
    assert "Patientname" not in logged


# --- the shared spool loop: what every push connector does with the same spool -----------------------------
@pytest.mark.parametrize("make", [
    lambda d: AtnaSyslogConnector("a", {"spool_dir": d}),
    lambda d: _VpnUnderTest("v", {"spool_dir": d}),
    lambda d: WinlogbeatConnector("w", {"spool_dir": d}),
], ids=["atna-syslog", "vpn", "winlogbeat"])
def test_listener_errors_and_corrupt_spool_bytes_are_dead_letters_and_the_cursor_resumes(
        tmp_path: Path, make: Any) -> None:
    spool_dir = tmp_path / "spool"
    received = 1_764_576_000.0  # 2025-12-01T08:00:00Z
    _spool_with(spool_dir,
                SpoolRecord(b"partial frame", "tcp:10.0.0.7:4000", received, KIND_ERROR, "frame too long"),
                SpoolRecord(b"   ", "tcp:10.0.0.7:4000", received))
    (segment_file,) = spool_dir.iterdir()
    with open(segment_file, "ab") as fh:  # a torn write, a disk error: bytes that are no spool record
        fh.write(b"\x00garbage that is no spool record\x00")
    conn = make(str(spool_dir))
    try:
        batch = conn.read(None, 100)
        reasons = [d.reason for d in batch.dead_letters]
        assert reasons[0] == "frame too long"
        assert batch.dead_letters[0].location == "tcp:10.0.0.7:4000"
        assert batch.dead_letters[0].received_at.startswith("2025-12-01T08:00:00")
        assert batch.events == []
        # a blank message is skipped by the line-based connectors; to atna-syslog it is no syslog message
        assert ("no <PRI>" in reasons[1]) == isinstance(conn, AtnaSyslogConnector)
        corrupt = batch.dead_letters[-1]
        assert corrupt.reason.startswith("bytes in the spool that are not a record")
        assert corrupt.location.startswith("spool:1:") and "garbage" in corrupt.raw
        again = conn.read(batch.cursor, 100)
        assert again.events == [] and again.dead_letters == []
        conn.acknowledge(batch.cursor)
    finally:
        conn.close()


# --- one set of listener options ------------------------------------------------------------------------
#: the option names users write in YAML, as they were before the listener options were shared
_NAMES = {
    AtnaSyslogOptions: "fsync listen max_message_bytes max_xml_bytes segment_bytes spool_dir",
    VpnOptions: "dataset default_domain eof_grace_seconds fsync listen max_line_bytes max_message_bytes path "
                "segment_bytes spool_dir timezone",
    WinlogbeatOptions: "eof_grace_seconds fsync listen max_line_bytes max_message_bytes path segment_bytes "
                       "spool_dir timezone",
}


@pytest.mark.parametrize("options_cls", list(_NAMES), ids=lambda c: c.__name__)
def test_every_push_connector_declares_the_listener_options_once(options_cls: type) -> None:
    shared = {f.name for f in dataclasses.fields(ListenerOptions)}
    assert shared == {"spool_dir", "listen", "max_message_bytes", "segment_bytes", "fsync"}
    assert issubclass(options_cls, ListenerOptions)
    assert option_names(options_cls) == _NAMES[options_cls].split()


@pytest.mark.parametrize("options_cls, values, key", [
    (AtnaSyslogOptions, {}, "spool_dir"),
    (AtnaSyslogOptions, {"spool_dir": "s", "segment_bytes": 0}, "segment_bytes"),
    (AtnaSyslogOptions, {"spool_dir": "s", "max_xml_bytes": 0}, "max_xml_bytes"),
    (VpnOptions, {"path": "p", "listen": [{"port": 0}]}, "spool_dir"),
    (VpnOptions, {"spool_dir": "s", "max_message_bytes": 0}, "max_message_bytes"),
    (VpnOptions, {"spool_dir": "s", "listen": [{"port": 0, "password": "x"}]}, "listen[0].password"),
    (WinlogbeatOptions, {"path": "p", "listen": [{"port": 0}]}, "spool_dir"),
    (WinlogbeatOptions, {"spool_dir": "s", "timezone": "Mars/Olympus"}, "timezone"),
    (WinlogbeatOptions, {"spool_dir": "s", "listen": [{"port": 0, "protocol": "udp"}]}, "listen[0].protocol"),
    (WinlogbeatOptions, {"path": "p", "max_line_bytes": 0}, "max_line_bytes"),
])
def test_bad_listener_options_name_the_key(options_cls: type, values: dict, key: str) -> None:
    with pytest.raises(InvalidOption) as info:
        parse_options(options_cls, values)
    assert str(info.value).startswith(f"{key}: ")  # the line a user sees names the key


def test_winlogbeat_keeps_its_larger_message_limit() -> None:
    assert WinlogbeatOptions(spool_dir="s").max_message_bytes == 1 << 20
    assert VpnOptions(spool_dir="s").max_message_bytes == AtnaSyslogOptions(spool_dir="s").max_message_bytes \
        == 65536


# --- property: any received bytes become an event, a dead letter, or (blank) nothing -------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.lists(st.one_of(st.binary(max_size=200), st.sampled_from([
    _JSON_LINE.encode(), _SYSLOG_LINE.encode(), _ATNA_FRAME.encode(), b"<13>1 - - - - - - {\"a\": 1}"])),
    min_size=1, max_size=8))
def test_any_spooled_bytes_become_an_event_or_a_dead_letter(tmp_path_factory: pytest.TempPathFactory,
                                                            messages: list[bytes]) -> None:
    spool_dir = tmp_path_factory.mktemp("spool")
    _spool_with(spool_dir, *(SpoolRecord(m, "tcp:10.0.0.1:1", 1_764_576_000.0) for m in messages))
    for make in (lambda: AtnaSyslogConnector("a", {"spool_dir": str(spool_dir)}),
                 lambda: _VpnUnderTest("v", {"spool_dir": str(spool_dir)}),
                 lambda: WinlogbeatConnector("w", {"spool_dir": str(spool_dir)})):
        conn = make()
        batch = conn.read(None, 100)
        assert len(batch.events) + len(batch.dead_letters) <= len(messages)
        assert all(not d.reason.startswith("internal error") for d in batch.dead_letters)
        assert conn.read(batch.cursor, 100).events == []
        conn.close()
