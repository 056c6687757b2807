"""The last line of a finished file: one-shot runs read it even without a trailing newline (issue 7, item 8).

A one-shot ``wardwatch ingest`` or ``run --once`` reads a file as it is now, so a final line or row that
lacks its newline is a complete record. The service keeps waiting for the writer to finish such a line
(documented in connectors/tailing.py and each connector's docstring): that is checked here too.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, connectors: str = " []") -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nrules:\n  paths: [{ROOT}/rules]\n"
                    f"connectors:{connectors}\nalerts:\n  sinks: []\nlogging:\n  level: warning\n")
    return path


def _ndjson(path: Path, count: int) -> Path:
    lines = [orjson.dumps({"@timestamp": f"2026-11-02T10:00:0{i}Z", "user.name": f"u{i}", "event.action": "login"})
             for i in range(count)]
    path.write_bytes(b"\n".join(lines))  # no newline after the last record
    return path


def _auditevents(path: Path, count: int) -> Path:
    lines = (ROOT / "fixtures/ehr/auditevents.ndjson").read_bytes().splitlines()[:count]
    path.write_bytes(b"\n".join(lines))
    return path


def _access_log(path: Path, count: int) -> Path:
    rows = [b"ACCESS_TIME,USER_ID,PAT_ID"] + [b"10.03.2026 10:0%d:00,u%d,P9%02d" % (i, i, i) for i in range(count)]
    path.write_bytes(b"\n".join(rows))
    return path


CSV_OPTIONS = ["-o", 'columns={ACCESS_TIME: "@timestamp", USER_ID: user.name, PAT_ID: ehr.patient.id}',
               "-o", "timestamp_format=%d.%m.%Y %H:%M:%S", "-o", "timezone=Europe/Berlin"]

# connector type -> (file writer, file name, extra CLI options)
FILE_CONNECTORS = {
    "ndjson": (_ndjson, "app.ndjson", ["-o", "dataset=app.auth"]),
    "fhir-auditevent-file": (_auditevents, "audit.ndjson", []),
    "ehr-csv": (_access_log, "access.csv", CSV_OPTIONS),
}


@pytest.mark.parametrize("kind", list(FILE_CONNECTORS))
def test_one_shot_ingest_reads_a_last_line_without_newline(tmp_path, capsys, monkeypatch, kind):
    write, name, options = FILE_CONNECTORS[kind]
    monkeypatch.chdir(tmp_path)
    _config(tmp_path)
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / name, 3)
    code = main(["ingest", kind, str(tmp_path / "in"), *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "3 events read, 3 stored" in out


def test_run_once_reads_a_last_line_without_newline(tmp_path, capsys):
    _ndjson(tmp_path / "app.ndjson", 4)
    config = _config(tmp_path, f"\n  - name: app\n    type: ndjson\n    path: {tmp_path}/app.ndjson\n"
                               "    dataset: app.auth\n")
    code = main(["--config", str(config), "run", "--once"])
    assert code == 0, capsys.readouterr().err
    import sqlite3

    with sqlite3.connect(tmp_path / "w.db") as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (4,)


@pytest.mark.parametrize("kind", list(FILE_CONNECTORS))
def test_the_service_still_waits_for_the_writer_to_end_the_line(tmp_path, kind):
    from connectors.base import connector_class

    write, name, _ = FILE_CONNECTORS[kind]
    write(tmp_path / name, 3)
    options = {"path": str(tmp_path)}
    if kind == "ndjson":
        options["dataset"] = "app.auth"
    if kind == "ehr-csv":
        options.update(columns={"ACCESS_TIME": "@timestamp", "USER_ID": "user.name"},
                       timestamp_format="%d.%m.%Y %H:%M:%S", timezone="Europe/Berlin")
    connector = connector_class(kind)("svc", options)
    try:
        batch = connector.read(None, 100)
    finally:
        connector.close()
    assert len(batch.events) == 2  # the unterminated third record waits for its newline


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
                      min_size=1, max_size=8),
       terminated=st.booleans())
def test_line_follower_read_to_end_yields_every_line_once(tmp_path_factory, lines, terminated):
    from connectors.tailing import LineFollower

    path = tmp_path_factory.mktemp("f") / "x.ndjson"
    path.write_bytes(b"\n".join(lines) + (b"\n" if terminated else b""))
    waiting, finishing = LineFollower(), LineFollower()
    finishing.read_to_end()
    try:
        waited = [line.data for line in waiting.follow([str(path)], {})]
        positions: dict = {}
        finished = [line.data for line in finishing.follow([str(path)], positions)]
        again = [line.data for line in finishing.follow([str(path)], positions)]
    finally:
        waiting.close()
        finishing.close()
    expected = lines if terminated or lines[-1] else lines[:-1]  # an empty unterminated tail is no line
    assert finished == expected and again == []
    assert waited == (lines if terminated else lines[:-1])
