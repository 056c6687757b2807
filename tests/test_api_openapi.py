"""The OpenAPI document: served by the running API, checked in as docs/openapi.json, and the same."""

from __future__ import annotations

import orjson

from engine.api.openapi import DOC_PATH, render
from engine.store import open_store
from tests.api_peer import client, serving


def test_the_checked_in_document_is_the_generated_one():
    assert DOC_PATH.read_bytes() == render(), \
        "docs/openapi.json is stale: run `.venv/bin/python -m engine.api.openapi` and commit it"


def test_the_served_document_is_the_checked_in_one_and_names_every_resource(tmp_path):
    store = open_store("sqlite", path=tmp_path / "w.db")
    try:
        with serving(store=store) as (url, _, _ctx), client(url) as anonymous:
            served = anonymous.get("/api/v1/openapi.json")
    finally:
        store.close()
    assert served.status_code == 200  # the contract is public; what it describes is not
    assert served.json() == orjson.loads(DOC_PATH.read_bytes())
    paths = served.json()["paths"]
    for resource in ("alerts", "cases", "rules", "exceptions", "hunts", "reports/patient", "reports/user",
                     "health", "metrics", "audit/verify"):
        assert f"/api/v1/{resource}" in paths, resource
    assert "HTTPBearer" in served.json()["components"]["securitySchemes"]
    assert "get" not in paths["/api/v1/reports/patient"]  # a patient id never goes into a URL
