"""Shared fixtures. Store fixtures are parametrised so one contract suite runs on every store.

Elasticsearch tests need a real cluster at ``WARDWATCH_TEST_ES_URL``. Without it they skip locally; in CI
(``CI`` set) a skip is turned into a failure, so a missing cluster can never look like a green run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests check behaviour, not speed: no per-example deadline (a loaded CI machine must not turn a
# slow example into a failure). Speed is measured in bench/.
settings.register_profile("wardwatch", deadline=None)
settings.load_profile("wardwatch")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _logging_isolated():
    """A test that runs the CLI in-process configures logging onto *its* captured stderr; pytest closes that
    stream afterwards, and a later test's log line would then fail with "I/O operation on closed file".
    Put structlog and the root logger back after every test."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


def es_url() -> str | None:
    return os.environ.get("WARDWATCH_TEST_ES_URL") or None


def require_elasticsearch() -> str:
    url = es_url()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but WARDWATCH_TEST_ES_URL is not: Elasticsearch tests must run in CI")
        pytest.skip("no Elasticsearch: set WARDWATCH_TEST_ES_URL (scripts/elasticsearch-dev start)")
    return url


def demo_connectors() -> list[dict]:
    """The three demo sources in fixtures/, as connector config entries (absolute paths)."""
    return [
        {"name": "ehr", "type": "fhir-auditevent-file", "path": str(ROOT / "fixtures/ehr")},
        {"name": "vpn", "type": "ndjson", "path": str(ROOT / "fixtures/vpn"), "dataset": "vpn.auth"},
        {"name": "win", "type": "ndjson", "path": str(ROOT / "fixtures/windows"), "dataset": "windows.security"},
    ]


def read_all(connector, cursor: dict | None = None, max_events: int = 1000):
    """Read a pull connector until it is exhausted: one merged Batch with the final cursor."""
    from connectors.base import Batch

    out = Batch(cursor=cursor)
    while True:
        batch = connector.read(out.cursor, max_events)
        out.events += batch.events
        out.dead_letters += batch.dead_letters
        out.cursor = batch.cursor
        if batch.exhausted:
            return out
