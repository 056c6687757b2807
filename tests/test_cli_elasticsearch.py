"""`store.kind: elasticsearch` runs every command on the cluster: ingest, run --once, alerts list, status."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson

from engine.cli import main
from engine.store import open_store
from tests.conftest import require_elasticsearch

ROOT = Path(__file__).resolve().parent.parent


def test_cli_on_elasticsearch(tmp_path, capsys, monkeypatch):
    url = require_elasticsearch()
    prefix = f"wwtest-cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(
        f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [{url}]\n    index_prefix: {prefix}\n"
        f"rules:\n  paths: [{ROOT}/rules/healthcare, {ROOT}/rules/windows/windows_kerberoasting.yml]\n"
        f"connectors:\n  - {{name: win, type: ndjson, path: {ROOT}/fixtures/windows, dataset: windows.security}}\n"
        f"alerts:\n  sinks: []\n")
    try:
        assert main(["ingest", "ndjson", str(ROOT / "fixtures/vpn"), "-o", "dataset=vpn.auth"]) == 0
        assert "66 events read, 66 stored" in capsys.readouterr().out
        assert main(["run", "--once"]) == 0
        assert "2 new or updated alert(s)" in capsys.readouterr().out  # VPN (ingested) + Kerberoasting (run)
        assert main(["alerts", "list", "--alerts", "--format", "json"]) == 0
        alerts = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(a["rule_title"] for a in alerts) == [
            "Kerberoasting: RC4 service tickets for many SPNs", "VPN brute force followed by successful login"]
        assert main(["status"]) == 0
        status = orjson.loads(capsys.readouterr().out)
        assert status["store"]["store"] == "elasticsearch" and status["connectors"] == {"win": True}
    finally:
        store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
        store.delete_all()
        store.close()
