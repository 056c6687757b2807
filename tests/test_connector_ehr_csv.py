"""ehr-csv: column mapping, encodings, growing files, resumable cursors, dead letters with line and column."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Batch, ConnectorConfigError, connector_class
from connectors.ehr_csv import EhrCsvConnector

DATA = Path(__file__).parent / "data" / "csv"

EPIC_COLUMNS = {
    "ACCESS_TIME": "@timestamp",
    "USER_ID": "user.name",
    "PAT_ID": "ehr.patient.id",
    "METRIC_NAME": ["event.action", "ehr.metric"],
    "WORKSTATION_ID": "host.name",
    "BTG_FLAG": "ehr.break_the_glass",
}
VALUE_MAPS = {
    "event.action": {"Chart Review": "read", "Patient Lookup": "search", "Print, Report": "print", "Export": "export"},
    "BTG_FLAG": {"Y": True, "N": False},
}


def make(tmp_path: Path, **extra: Any) -> EhrCsvConnector:
    options: dict[str, Any] = {
        "path": str(tmp_path),
        "pattern": "*.*sv",
        "columns": EPIC_COLUMNS,
        "value_maps": VALUE_MAPS,
        "timestamp_format": "%Y-%m-%d %H:%M:%S",
        "timezone": "Europe/Berlin",
    }
    options.update(extra)
    return EhrCsvConnector("epic", options)


def drain(conn: EhrCsvConnector, cursor: dict | None = None, max_events: int = 1000) -> tuple[list[Batch], dict]:
    batches = []
    for _ in range(1000):
        batch = conn.read(cursor, max_events)
        batches.append(batch)
        cursor = batch.cursor
        if batch.exhausted:
            break
    return batches, cursor  # type: ignore[return-value]


def test_registered_under_entry_point() -> None:
    assert connector_class("ehr-csv") is EhrCsvConnector


def test_maps_columns_value_maps_timezone_and_bom(tmp_path: Path) -> None:
    shutil.copy(DATA / "epic_access_utf8bom.csv", tmp_path)
    batch = make(tmp_path).read(None, 100)
    assert not batch.dead_letters
    assert [e["event.action"] for e in batch.events] == ["read", "search", "print"]
    first = batch.events[0]
    # 08:15:02 in Berlin in March (CET, UTC+1)
    assert first["@timestamp"] == "2026-03-01T07:15:02.000Z"
    assert first["user.name"] == "jdoe"  # no BOM glued to the first header cell
    assert first["ehr.patient.id"] == "P1001"
    assert first["ehr.metric"] == "Chart Review"  # the value map is per target field
    assert first["ehr.break_the_glass"] is False
    assert batch.events[2]["ehr.break_the_glass"] is True
    assert first["event.dataset"] == "ehr.audit"
    assert first["log.file.path"] == "epic_access_utf8bom.csv"
    assert first["event.original"].startswith("2026-03-01 08:15:02,jdoe")


def test_tsv_cp1252_auto_delimiter(tmp_path: Path) -> None:
    shutil.copy(DATA / "cerner_cp1252.tsv", tmp_path)
    conn = make(tmp_path, encoding="cp1252", timestamp_format=["%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S"])
    batch = conn.read(None, 100)
    assert not batch.dead_letters
    assert [e["user.name"] for e in batch.events] == ["müller", "görlitz"]
    assert batch.events[1]["event.action"] == "export"
    assert batch.events[0]["@timestamp"] == "2026-03-01T08:00:00.000Z"


def test_dst_gap_and_fold_in_time_zone(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG\n"
        "2026-07-01 12:00:00,u,P,Chart Review,W,N\n"  # CEST, UTC+2
        "2026-10-25 02:30:00,u,P,Chart Review,W,N\n",  # ambiguous hour: first occurrence (fold=0, CEST)
        encoding="utf-8",
    )
    batch = make(tmp_path).read(None, 10)
    assert [e["@timestamp"] for e in batch.events] == ["2026-07-01T10:00:00.000Z", "2026-10-25T00:30:00.000Z"]


def test_bad_rows_dead_lettered_with_line_and_column_rest_goes_in(tmp_path: Path) -> None:
    shutil.copy(DATA / "bad_rows.csv", tmp_path)
    batch = make(tmp_path).read(None, 100)
    assert [e["ehr.patient.id"] for e in batch.events] == ["P1001", "P1003", "P1005"]
    assert batch.events[1]["event.action"] == "Note\nwith newline"  # quoted newline kept in one row
    locations = [d.location for d in batch.dead_letters]
    assert locations == ["bad_rows.csv:3 column ACCESS_TIME", "bad_rows.csv:6"]
    assert "not-a-time" in batch.dead_letters[0].reason
    assert "3 fields" in batch.dead_letters[1].reason
    assert batch.dead_letters[0].raw.startswith("not-a-time")


def test_wrong_encoding_is_a_dead_letter_not_a_crash(tmp_path: Path) -> None:
    shutil.copy(DATA / "cerner_cp1252.tsv", tmp_path)  # cp1252 bytes read as utf-8
    batch = make(tmp_path, timestamp_format="%d.%m.%Y %H:%M:%S").read(None, 100)
    assert len(batch.dead_letters) == 2 and not batch.events
    assert batch.dead_letters[0].location == "cerner_cp1252.tsv:2"
    assert "utf-8" in batch.dead_letters[0].reason


def test_growing_file_only_complete_lines_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    header = "ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG\n"
    path.write_text(header + "2026-03-01 10:00:00,u1,P1,Chart Review,W,N\n2026-03-01 10:00:01,u2,P", encoding="utf-8")
    conn = make(tmp_path)
    b1 = conn.read(None, 100)
    assert [e["user.name"] for e in b1.events] == ["u1"]  # the torn last line waits
    entry = b1.cursor["files"]["live.csv"]
    assert entry["line"] == 2 and entry["offset"] == len(header) + len("2026-03-01 10:00:00,u1,P1,Chart Review,W,N\n")
    with path.open("a", encoding="utf-8") as fh:
        fh.write("2,Chart Review,W,N\n2026-03-01 10:00:02,u3,P3,Chart Review,W,N\n")
    b2 = conn.read(b1.cursor, 100)
    assert [(e["user.name"], e["ehr.patient.id"]) for e in b2.events] == [("u2", "P2"), ("u3", "P3")]
    b3 = conn.read(b2.cursor, 100)
    assert not b3.events and b3.exhausted


def test_unterminated_last_line_taken_once_file_is_idle(tmp_path: Path) -> None:
    path = tmp_path / "done.csv"
    path.write_text(
        "ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG\n2026-03-01 10:00:00,u1,P1,Chart Review,W,N",
        encoding="utf-8",
    )
    conn = make(tmp_path, complete_after_idle_seconds=30)
    assert not conn.read(None, 10).events
    old = time.time() - 120
    os.utime(path, (old, old))
    batch = conn.read(None, 10)
    assert [e["user.name"] for e in batch.events] == ["u1"]
    assert not conn.read(batch.cursor, 10).events


def test_small_batches_resume_exactly_and_ids_are_deterministic(tmp_path: Path) -> None:
    lines = ["ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG"]
    lines += [f"2026-03-01 10:{i // 60:02d}:{i % 60:02d},u{i},P{i},Chart Review,W,N" for i in range(250)]
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")
    conn = make(tmp_path)
    batches, cursor = drain(conn, None, max_events=7)
    events = [e for b in batches for e in b.events]
    assert len(events) == 260
    ids = [e["event.id"] for e in events]
    assert len(set(ids)) == 250  # b.csv is a copy of a.csv's head: the same rows, stored once (not by file name)
    # A fresh connector instance (restart) with no cursor produces exactly the same ids.
    again = [e["event.id"] for b in drain(make(tmp_path), None, 1000)[0] for e in b.events]
    assert sorted(again) == sorted(ids)
    # And with the final cursor: nothing new.
    assert not conn.read(cursor, 100).events


def test_replaced_file_is_reread_and_deleted_file_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG\n2026-03-01 10:00:00,u1,P1,Chart Review,W,N\n")
    conn = make(tmp_path)
    c1 = conn.read(None, 10).cursor
    path.unlink()
    c2 = conn.read(c1, 10).cursor
    assert c2 == {"files": {}}
    path.write_text("ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID\n2026-03-01 11:00:00,u9,P9,Chart Review,W\n")
    batch = conn.read(c1, 10)  # even with the stale cursor: a new file under the old name is read anew
    assert [e["user.name"] for e in batch.events] == ["u9"]


def test_header_missing_timestamp_column_dead_lettered_once(tmp_path: Path) -> None:
    (tmp_path / "odd.csv").write_text("WHEN,USER_ID\n2026-03-01,u\n")
    conn = make(tmp_path)
    b1 = conn.read(None, 10)
    assert not b1.events and len(b1.dead_letters) == 1 and b1.dead_letters[0].location == "odd.csv:1"
    assert not conn.read(b1.cursor, 10).dead_letters


def test_headerless_files_with_fieldnames_and_iso_timestamps(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("2026-03-01T10:00:00Z|u1|P1|Chart Review|W|N\n")
    conn = make(
        tmp_path,
        fieldnames=["ACCESS_TIME", "USER_ID", "PAT_ID", "METRIC_NAME", "WORKSTATION_ID", "BTG_FLAG"],
        delimiter="pipe",
        timestamp_format=None,
        constants={"observer.name": "epic-prd"},
    )
    batch = conn.read(None, 10)
    assert batch.events[0]["@timestamp"] == "2026-03-01T10:00:00.000Z"
    assert batch.events[0]["observer.name"] == "epic-prd"


def test_stray_quote_in_unquoted_field_does_not_swallow_rows(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text(
        "ACCESS_TIME,USER_ID,PAT_ID,METRIC_NAME,WORKSTATION_ID,BTG_FLAG\n"
        '2026-03-01 10:00:00,u1,P1,Height 5"7,W,N\n'
        "2026-03-01 10:00:01,u2,P2,Chart Review,W,N\n"
    )
    batch = make(tmp_path).read(None, 10)
    assert [e["user.name"] for e in batch.events] == ["u1", "u2"]


def test_config_errors() -> None:
    with pytest.raises(ConnectorConfigError):
        EhrCsvConnector("x", {"path": "/tmp", "columns": {"A": "user.name"}})
    with pytest.raises(ConnectorConfigError):
        EhrCsvConnector("x", {"path": "/tmp", "columns": {"A": "@timestamp"}, "timezone": "Mars/Olympus"})
    with pytest.raises(ConnectorConfigError):
        EhrCsvConnector("x", {"path": "/tmp", "columns": {"A": "@timestamp"}, "encoding": "klingon"})
