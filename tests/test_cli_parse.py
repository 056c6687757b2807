"""`wardwatch parse TYPE FILE`: a connector's parser on a file, no store - through the real CLI."""

from __future__ import annotations

from pathlib import Path

import orjson

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent
VPN_NDJSON = ROOT / "fixtures/vpn/vpn-auth.ndjson"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "wardwatch.yaml"
    config.write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nrules:\n  paths: [{ROOT}/rules]\n"
                      f"connectors: []\nalerts:\n  sinks: []\n")
    return config


def test_parse_prints_what_ingest_stores(tmp_path, capsys):
    config = write_config(tmp_path)
    code, out, err = run_cli(capsys, "--config", str(config), "parse", "ndjson", str(VPN_NDJSON),
                             "-o", "dataset=vpn.auth", "--enrich")
    assert code == 0 and err == ""
    lines = out.splitlines()
    parsed = [orjson.loads(line) for line in lines]
    assert len(parsed) == 66
    assert all(line == orjson.dumps(e, option=orjson.OPT_SORT_KEYS).decode() for line, e in zip(lines, parsed))
    assert all("event.ingested" not in e and e["event.dataset"] == "vpn.auth" for e in parsed)
    assert not (tmp_path / "w.db").exists()  # touches no store

    code, out, _ = run_cli(capsys, "--config", str(config), "ingest", "ndjson", str(VPN_NDJSON),
                           "-o", "dataset=vpn.auth")
    assert code == 0
    from engine.app import open_configured_store
    from engine.config import load_config
    from engine.store.base import SearchQuery

    store = open_configured_store(load_config(str(config)))
    try:
        stored = [{k: v for k, v in e.items() if k != "event.ingested"} for e in store.search(SearchQuery())]
    finally:
        store.close()
    by_id = {e["event.id"]: e for e in parsed}
    assert {e["event.id"]: e for e in stored} == by_id


def test_bad_line_goes_to_stderr_with_file_and_line(tmp_path, capsys):
    source = tmp_path / "mixed.ndjson"
    source.write_text('{"@timestamp": "2026-12-01T08:00:00Z", "user": {"name": "a"}}\nnot json\n')
    code, out, err = run_cli(capsys, "--config", str(write_config(tmp_path)), "parse", "ndjson", str(source))
    assert code == 0
    assert orjson.loads(out)["user.name"] == "a"
    (line,) = err.splitlines()
    assert f"{source}:2" in line and "invalid JSON" in line
    source.write_text("not json\nnor this\n")
    code, out, err = run_cli(capsys, "--config", str(write_config(tmp_path)), "parse", "ndjson", str(source))
    assert code == 1 and out == "" and len(err.splitlines()) == 2  # every record rejected


def test_usage_errors_are_one_line_exit_2(tmp_path, capsys):
    config = str(write_config(tmp_path))
    code, out, err = run_cli(capsys, "--config", config, "parse", "ndjson", str(tmp_path / "missing.ndjson"))
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "missing.ndjson" in err
    code, _, err = run_cli(capsys, "--config", config, "parse", "ndjson", str(VPN_NDJSON), "--timezone", "UTC")
    assert code == 2 and "timezone" in err
    code, _, err = run_cli(capsys, "--config", config, "parse", "ndjson", str(VPN_NDJSON), "-o", "datasett=x")
    assert code == 2 and "datasett" in err


def test_vpn_type_with_timezone_and_options(tmp_path, capsys, monkeypatch):
    """A VPN connector type through `parse`: the fake vendor module stands in for a real one."""
    from typing import ClassVar

    import connectors.base as base
    from connectors.vpn.base import VpnConnector

    class FakeVpn(VpnConnector):
        type_name: ClassVar[str] = "fake-vpn"
        parser_module: ClassVar[str] = "tests.vpn_fake_parser"

    real = base.connector_class
    monkeypatch.setattr(base, "connector_class", lambda name: FakeVpn if name == "fake-vpn" else real(name))
    log = tmp_path / "gw.log"
    log.write_text("<166>Dec  1 08:15:00 gw01 fakevpn: FAKEVPN user=jdoe action=login\n"
                   "<166>Dec  1 08:16:00 gw01 fakevpn: garbage\n")
    config = str(write_config(tmp_path))
    code, out, err = run_cli(capsys, "--config", config, "parse", "fake-vpn", str(log), "--timezone=-05:00",
                             "-o", "default_domain=hospital", "-o", "dataset=vpn.test", "--format", "json")
    assert code == 0
    (event,) = [orjson.loads(line) for line in out.splitlines()]
    assert event["@timestamp"].endswith("-12-01T13:15:00.000Z")
    assert (event["user.name"], event["user.domain"], event["event.dataset"]) == ("jdoe", "hospital", "vpn.test")
    assert f"{log}:2" in err and "no FAKEVPN marker" in err
    code, _, err = run_cli(capsys, "--config", config, "parse", "fake-vpn", str(log), "--timezone", "Mars/X")
    assert code == 2 and "Mars/X" in err and len(err.splitlines()) == 1


def test_a_negative_offset_is_taken_as_the_timezone_value(tmp_path, capsys):
    """`--timezone -05:00` as the issue writes it: argparse alone would take -05:00 for an unknown option."""
    log = tmp_path / "asa.log"
    log.write_text("<166>Dec 01 2026 08:15:00 asa-edge-01 : %ASA-6-113039: Group <GroupPolicy_Staff> "
                   "User <jdoe> IP <198.51.100.7> AnyConnect parent session started.\n")
    config = str(write_config(tmp_path))
    results = []
    for spelling in (("--timezone", "-05:00"), ("--timezone=-05:00",)):
        code, out, err = run_cli(capsys, "--config", config, "parse", "cisco-asa", str(log), *spelling)
        assert code == 0, err
        results.append(orjson.loads(out.splitlines()[0])["@timestamp"])
    assert results == ["2026-12-01T13:15:00.000Z"] * 2
