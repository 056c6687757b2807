"""A Wardwatch site with stored history, on SQLite or on the real Elasticsearch cluster, for the commands
that look back over it (hunt, events search, rules list, access reports).

``site(kind)`` writes a ``wardwatch.yaml`` in a fresh directory (the test's cwd), ingests the demo EHR
AuditEvents (1,539 ordinary accesses around the injected scenarios: a bulk access, a break-the-glass, an
after-hours read) through the real CLI, and deletes its indices afterwards on Elasticsearch.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from engine.cli import main
from engine.config import load_config
from engine.store import open_store
from tests.conftest import require_elasticsearch

ROOT = Path(__file__).resolve().parent.parent
EHR_EVENTS = 1525  # fixtures/ehr/auditevents.ndjson


@dataclass
class Site:
    kind: str
    path: Path
    config_text: str

    def config(self) -> Any:
        return load_config(self.path / "wardwatch.yaml")

    def cli(self, *argv: str) -> int:
        """``wardwatch --config SITE/wardwatch.yaml ARGV...`` in this process."""
        return main(["--config", str(self.path / "wardwatch.yaml"), *argv])

    def add_config(self, text: str) -> None:
        """Append top-level sections to the site's config (same store, same indices)."""
        self.config_text += text
        (self.path / "wardwatch.yaml").write_text(self.config_text)

    def ingest_ehr(self) -> None:
        assert self.cli("ingest", "fhir-auditevent-file", str(ROOT / "fixtures/ehr/auditevents.ndjson")) == 0

    def open_store(self) -> Any:
        from engine.app import open_configured_store

        return open_configured_store(self.config())


def write_site(tmp_path: Path, kind: str, rules: str = "rules/healthcare", extra: str = "") -> Site:
    if kind == "sqlite":
        store = f"store:\n  kind: sqlite\n  sqlite: {{path: {tmp_path}/data/wardwatch.db}}\n"
    else:
        url = require_elasticsearch()
        prefix = f"wwtest-hist-{uuid.uuid4().hex[:10]}"
        store = (f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [{url}]\n"
                 f"    index_prefix: {prefix}\n    ingest_lag_seconds: 0\n")
    text = f"{store}rules:\n  paths: [{ROOT / rules}]\nconnectors: []\nalerts:\n  sinks: []\n{extra}"
    (tmp_path / "wardwatch.yaml").write_text(text)
    return Site(kind, tmp_path, text)


def drop_site(site: Site) -> None:
    if site.kind == "elasticsearch":
        es = site.config()["store"]["elasticsearch"]
        store = open_store("elasticsearch", hosts=es["hosts"], index_prefix=es["index_prefix"])
        store.delete_all()
        store.close()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module", params=["sqlite", "elasticsearch"])
def ehr_site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One ingested site per store kind for a whole test module (tests that write use their own)."""
    tmp_path = tmp_path_factory.mktemp(f"site-{request.param}")
    site = write_site(tmp_path, request.param)
    try:
        site.ingest_ehr()
        yield site
    finally:
        drop_site(site)
