"""Store fixtures and builders shared by the store contract suite and back-end specific tests.

The ``store`` fixture is parametrised over every store kind, so one contract suite runs on SQLite and on
Elasticsearch. Elasticsearch asks ``require_elasticsearch()`` *first*: without a cluster the test skips
locally (and fails in CI) before anything tries to import a back-end that may not exist yet.

Test modules import the fixtures they use (``from tests.store_fixtures import store``); registering this
module globally with ``pytest_plugins = ["tests.store_fixtures"]`` in conftest works as well.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pytest

from engine.alerts.model import Alert, alert_id
from engine.events import Event, make_event_id
from engine.store import open_store
from engine.store.base import SearchQuery, Store, Watermark
from tests.conftest import require_elasticsearch

STORE_KINDS = ["sqlite", "elasticsearch"]


def _open(kind: str, tmp_path: Path) -> Store:
    if kind == "sqlite":
        return open_store("sqlite", path=tmp_path / "wardwatch.db")
    url = require_elasticsearch()  # skips (or fails in CI) before importing engine.store.elasticsearch
    return open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind (a unique index prefix per test on Elasticsearch)."""
    s = _open(request.param, tmp_path)
    try:
        yield s
    finally:
        delete_all = getattr(s, "delete_all", None)
        if callable(delete_all):
            delete_all()  # a test's indices must not pile up in the shared cluster
        s.close()


@pytest.fixture
def store_factory(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Open SQLite stores on one file, closing whatever is still open at the end (for reopen tests)."""
    opened: list[Store] = []

    def make(path: Path | None = None, **options: Any) -> Store:
        s = open_store("sqlite", path=path or tmp_path / "wardwatch.db", **options)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


#: The rest of a minimal site config for command-line tests: no rules, sources or sinks.
QUIET_SITE = "rules:\n  paths: []\nconnectors: []\nalerts:\n  sinks: []\nlogging:\n  level: warning\n"


@pytest.fixture(params=STORE_KINDS)
def configured_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[list[str], Store]]:
    """``(["--config", FILE], store)``: a config file naming a fresh store of each kind, and that store
    open, so a test can seed it directly and then drive ``engine.cli.main`` against the same data."""
    config = tmp_path / "wardwatch.yaml"
    if request.param == "sqlite":
        config.write_text(f"store:\n  sqlite:\n    path: {tmp_path / 'w.db'}\n{QUIET_SITE}")
        s = open_store("sqlite", path=tmp_path / "w.db")
    else:
        url, prefix = require_elasticsearch(), f"wwtest-{uuid.uuid4().hex[:12]}"
        config.write_text(f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [{url}]\n"
                          f"    index_prefix: {prefix}\n{QUIET_SITE}")
        s = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    try:
        yield ["--config", str(config)], s
    finally:
        if s.kind == "elasticsearch":
            s.delete_all()  # type: ignore[attr-defined]
        s.close()


# --- builders -----------------------------------------------------------------------------------------
def ts(seconds: int, minute: int = 15, hour: int = 9, day: int = 2) -> str:
    """A canonical timestamp on 2026-11-<day> (seconds may exceed 59: they roll into minutes)."""
    minute += seconds // 60
    hour += minute // 60
    return f"2026-11-{day:02d}T{hour % 24:02d}:{minute % 60:02d}:{seconds % 60:02d}.000Z"


def ehr_event(n: int, *, dataset: str = "ehr.audit", at: str | None = None, user: str = "jdoe",
              **extra: Any) -> Event:
    """A small flat EHR audit event with a deterministic id (``n`` identifies the raw record)."""
    event: Event = {
        "@timestamp": at or ts(n),
        "event.dataset": dataset,
        "event.id": make_event_id(f"test:{dataset}", str(n)),
        "event.action": "read",
        "event.outcome": "success",
        "user.name": user,
        "ehr.patient.id": f"P{n % 7:04d}",
        "ehr.action": "R",
    }
    event.update(extra)
    return event


def make_alert(rule_id: str = "rule-1", group_key: str = "user.name=jdoe", *, first: str | None = None,
               last: str | None = None, revision: int = 1, triggers: int = 1, **extra: Any) -> Alert:
    first = first or ts(0)
    last = last or first
    return Alert(
        id=alert_id(rule_id, group_key, first),
        rule_id=rule_id,
        rule_title="Test rule",
        rule_level="high",
        rule_tags=["attack.t1078"],
        kind="correlation",
        group={"user.name": group_key.split("=", 1)[-1]},
        group_key=group_key,
        window_start=first,
        window_end=last,
        first_trigger=first,
        last_trigger=last,
        metric={"count": triggers},
        evidence=[f"e{i}" for i in range(triggers)],
        evidence_total=triggers,
        triggers=triggers,
        revision=revision,
        **extra,
    )


def search_all(store: Store, **query: Any) -> list[Event]:
    return list(store.search(SearchQuery(**query)))


def ids(events: Sequence[Event]) -> list[str]:
    return [e["event.id"] for e in events]


def covering_watermark(store: Store, expected_ids: Sequence[str], timeout: float = 60.0) -> Watermark:
    """A watermark at or past every event in ``expected_ids``.

    SQLite's watermark covers a write as soon as it returns; Elasticsearch's trails ingest time by a safety
    lag. Polling keeps the contract tests portable without weakening what they check.
    """
    wanted = set(expected_ids)
    deadline = time.monotonic() + timeout
    while True:
        mark = store.watermark()
        if mark is not None:
            seen = set(ids(search_all(store, ingested_upto=mark, fields=[])))
            if wanted <= seen:
                return mark
        if time.monotonic() > deadline:
            raise AssertionError(f"watermark {mark!r} did not cover the written events within {timeout}s")
        time.sleep(0.2)
