"""Issue 7 item 1: every file Wardwatch writes holds PHI, so it is 0600 in 0700 directories, whatever the umask.

The end-to-end tests run the real CLI in a child process started under umask 022 (the usual default that
made the store world-readable) and look at every file under the data directory.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from engine.private_files import open_private, private_dir, tighten, touch_private

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes_under(directory: Path) -> dict[str, str]:
    """Relative path -> octal mode for the directory itself and everything in it."""
    found = {".": f"{mode(directory):04o}"}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root, name)
            found[str(path.relative_to(directory))] = f"{mode(path):04o}"
    return found


def test_private_dir_makes_missing_parents_0700(tmp_path, umask):
    leaf = private_dir(tmp_path / "a" / "b" / "c")
    assert leaf.is_dir()
    assert {p: mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")} == {"a": 0o700, "a/b": 0o700, "a/b/c": 0o700}


def test_open_private_creates_0600_and_appends(tmp_path, umask):
    target = tmp_path / "new" / "alerts.jsonl"
    with open_private(target, "ab") as handle:
        handle.write(b"one\n")
    with open_private(target, "ab") as handle:
        handle.write(b"two\n")
    assert target.read_bytes() == b"one\ntwo\n"
    assert mode(target) == 0o600 and mode(target.parent) == 0o700


def test_touch_private_creates_an_empty_0600_file_and_keeps_content(tmp_path, umask):
    target = tmp_path / "w.db"
    touch_private(target)
    assert target.read_bytes() == b"" and mode(target) == 0o600
    target.write_bytes(b"data")
    touch_private(target)
    assert target.read_bytes() == b"data"


def test_tighten_reports_exactly_what_it_changed(tmp_path):
    loose = tmp_path / "w.db"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    already = tmp_path / "ok.jsonl"
    already.write_bytes(b"")
    already.chmod(0o600)
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o755)
    spool.chmod(0o755)
    segment = spool / "00000000000000000001.spool"
    segment.write_bytes(b"")
    segment.chmod(0o640)
    changed = tighten([loose, already, spool, tmp_path / "missing"])
    assert {(Path(c.path).name, c.old_mode, c.new_mode) for c in changed} == {
        ("w.db", "0644", "0600"), ("spool", "0755", "0700"), (segment.name, "0640", "0600")}
    assert mode(loose) == 0o600 and mode(spool) == 0o700 and mode(segment) == 0o600
    assert tighten([loose, already, spool]) == []


def test_sqlite_store_and_its_wal_and_shm_are_0600(tmp_path, umask):
    from engine.store.base import DeadLetter
    from engine.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "data" / "w.db")
    try:
        store.dead_letter([DeadLetter("s", "r", "l", "raw")])  # a write: SQLite makes -wal and -shm now
        found = modes_under(tmp_path / "data")
    finally:
        store.close()
    assert {"w.db", "w.db-wal", "w.db-shm"} <= set(found)
    assert found == {name: ("0700" if name == "." else "0600") for name in found}


def test_syslog_spool_directory_and_segments_are_private(tmp_path, umask):
    from connectors.syslog.spool import Spool

    spool = Spool(tmp_path / "spool" / "atna")
    spool.open_writer()
    spool.close()
    found = modes_under(tmp_path / "spool")
    assert any(name.endswith(".spool") for name in found)
    assert found == {n: ("0700" if (tmp_path / "spool" / n).is_dir() else "0600") for n in found}


# --- the real CLI -----------------------------------------------------------------------------------------

def write_config(tmp_path: Path, data: Path) -> Path:
    config = {
        "store": {"sqlite": {"path": str(data / "store" / "w.db")}},
        "rules": {"paths": [str(ROOT / "rules/healthcare")]},
        "connectors": [{"name": "vpn", "type": "ndjson", "path": str(ROOT / "fixtures/vpn"),
                        "dataset": "vpn.auth"}],
        "alerts": {"sinks": [{"type": "jsonl", "path": str(data / "out" / "alerts.jsonl")}]},
        "logging": {"format": "json"},
    }
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_once(config: Path, umask_value: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "run", "--once"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(umask_value),
    )


def test_run_once_under_umask_022_leaves_only_private_files(tmp_path):
    data = tmp_path / "data"
    result = run_once(write_config(tmp_path, data))
    assert result.returncode == 0, result.stderr
    found = modes_under(data)
    assert "store/w.db" in found and "out/alerts.jsonl" in found  # the run really wrote both
    assert (data / "out" / "alerts.jsonl").read_bytes()  # and an alert came out (the VPN brute force)
    wrong = {
        rel: m for rel, m in found.items()
        if m != ("0700" if (data / rel).is_dir() else "0600")
    }
    assert wrong == {}, f"not private under {data}: {wrong}"


def test_an_existing_world_readable_store_is_tightened_and_logged(tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path, data)
    assert run_once(config).returncode == 0
    store = data / "store" / "w.db"
    sink = data / "out" / "alerts.jsonl"
    wal = store.with_name("w.db-wal")
    wal.write_bytes(b"")  # as an older version left it next to the store
    for path in (store, sink, wal):
        path.chmod(0o644)
    result = run_once(config)
    assert result.returncode == 0, result.stderr
    assert mode(store) == 0o600 and mode(sink) == 0o600  # (SQLite removes the -wal on a clean close)
    lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    tightened = {(r["path"], r["old_mode"], r["new_mode"]) for r in lines if r["event"] == "tightened file mode"}
    assert tightened == {(str(store), "0644", "0600"), (str(sink), "0644", "0600"), (str(wal), "0644", "0600")}


def test_ingest_also_tightens_at_start(tmp_path):
    data = tmp_path / "data"
    config = write_config(tmp_path, data)
    assert run_once(config).returncode == 0
    sink = data / "out" / "alerts.jsonl"
    sink.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "ingest", "ndjson",
         str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert mode(sink) == 0o600 and f'"path":"{sink}"' in result.stderr
