"""Triage state, triage marks and suppression exceptions on the Elasticsearch store (the same methods as
``engine.store.sqlite_triage.SqliteTriageMixin``; see there for why triage lives apart from the alerts).

Three indices per prefix: ``<prefix>-triage`` (one document per alert or case id), ``<prefix>-triage-marks``
(one per (mark, subject, revision)) and ``<prefix>-exceptions``. They are created on first use, so an existing
prefix gains them without a migration.

Concurrency: a triage document is written with *external* versioning (``version = expected + 1``); a writer
that read an older version gets a 409, which the store maps to ``StoreConflict``, and re-reads. Marks are
``create``-only: the first value recorded for a revision stays (a re-delivery cannot rewrite history).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import orjson

from engine.store.base import StoreConflict, StoreError

_EXACT = {"type": "keyword"}
_OPAQUE = {"type": "keyword", "index": False, "doc_values": False}

_MAPPINGS: dict[str, dict[str, Any]] = {
    "triage": {"dynamic": False, "properties": {
        "subject_id": _EXACT, "kind": _EXACT, "status": _EXACT, "assignee": _EXACT, "doc_json": _OPAQUE}},
    "triage_marks": {"dynamic": False, "properties": {
        "subject_id": _EXACT, "revision": {"type": "long"}, "mark": _EXACT, "value": _EXACT}},
    "exceptions": {"dynamic": False, "properties": {
        "id": _EXACT, "rule_id": _EXACT, "created": _EXACT, "until": _EXACT, "doc_json": _OPAQUE}},
}


class EsTriageMixin:
    """Adds triage records, triage marks and exception records to ``ElasticsearchStore``."""

    _triage_ready: bool = False

    def _triage_index(self, name: str) -> str:
        """The index to write ``name`` records to (created on first use)."""
        self._triage_schema()
        return self.names[name]  # type: ignore[attr-defined]

    def _triage_read_index(self, name: str) -> str | None:
        """The index to read ``name`` records from, or None while it does not exist: the delivery path reads
        triage on every round, and a store nobody triaged yet must not pay for creating three indices."""
        if self._triage_ready:
            return self.names[name]  # type: ignore[attr-defined]
        index = f"{self.prefix}-{name.replace('_', '-')}"  # type: ignore[attr-defined]
        if self._call(lambda: self.es.indices.exists(index=index), what="read triage"):  # type: ignore[attr-defined]
            self._triage_schema()  # known to exist: register the names (delete_all) and stop checking
            return self.names[name]  # type: ignore[attr-defined]
        return None

    def _triage_schema(self) -> None:
        """Create the three indices once per store object; their names join ``self.names`` so that
        ``delete_all`` removes them with the rest of the prefix."""
        if self._triage_ready:
            return
        prefix = self.prefix  # type: ignore[attr-defined]
        names = {"triage": f"{prefix}-triage", "triage_marks": f"{prefix}-triage-marks",
                 "exceptions": f"{prefix}-exceptions"}
        self.names.update(names)  # type: ignore[attr-defined]
        for key, index in names.items():
            self._ensure_index(index, _MAPPINGS[key])  # type: ignore[attr-defined]
        self._triage_ready = True

    def _search_all(self, index: str, query: dict[str, Any], sort_field: str, what: str) -> Iterator[dict[str, Any]]:
        """Every hit's ``_source`` of ``query``, paged with search_after (bounded pages)."""
        self._refresh(index)  # type: ignore[attr-defined]
        after = None
        while True:
            kwargs: dict[str, Any] = {"index": index, "size": 1000, "query": query, "sort": [{sort_field: "asc"}],
                                      "track_total_hits": False}
            if after is not None:
                kwargs["search_after"] = after
            hits = self._call(lambda: self.es.search(**kwargs), what=what)["hits"]["hits"]  # type: ignore[attr-defined]
            yield from (h["_source"] for h in hits)
            if len(hits) < 1000:
                return
            after = hits[-1]["sort"]

    # --- triage records -------------------------------------------------------------------------------
    def get_triage_record(self, subject_id: str) -> dict[str, Any] | None:
        return self.get_triage_records([subject_id]).get(subject_id)

    def get_triage_records(self, subject_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        index = self._triage_read_index("triage")
        out: dict[str, dict[str, Any]] = {}
        if index is None:
            return out
        if subject_ids is None:
            docs = [(s, None) for s in self._search_all(index, {"match_all": {}}, "subject_id", "read triage")]
        else:
            ids, docs = list(subject_ids), []
            for i in range(0, len(ids), 1000):
                resp = self._call(lambda: self.es.mget(index=index, ids=ids[i:i + 1000]),  # type: ignore[attr-defined]
                                  what="read triage")
                docs += [(d["_source"], d.get("_version")) for d in resp["docs"] if d.get("found")]
        for source, version in docs:
            record = orjson.loads(source["doc_json"])
            record["version"] = version if version is not None else source.get("version", 0)
            out[record["subject_id"]] = record
        return out

    def open_assigned_triage_records(self) -> dict[str, dict[str, Any]]:
        """Records with an assignee that are not closed (who may hear about a new revision), by subject id."""
        index = self._triage_read_index("triage")
        if index is None:
            return {}
        query = {"bool": {"filter": [{"exists": {"field": "assignee"}}],
                          "must_not": [{"term": {"status": "closed"}}]}}
        out = {}
        for source in self._search_all(index, query, "subject_id", "read triage"):
            record = orjson.loads(source["doc_json"])
            record["version"] = source.get("version", 0)
            out[record["subject_id"]] = record
        return out

    def put_triage_record(self, record: dict[str, Any], expected_version: int) -> int:
        index = self._triage_index("triage")
        new = expected_version + 1
        body = {k: v for k, v in record.items() if k != "version"}
        document = {"subject_id": body["subject_id"], "kind": body["kind"], "status": body.get("status"),
                    "assignee": body.get("assignee"), "version": new, "doc_json": orjson.dumps(body).decode()}
        try:
            self._call(lambda: self.es.index(index=index, id=body["subject_id"], document=document,  # type: ignore[attr-defined]
                                             version=new, version_type="external"), what="write triage")
        except StoreConflict:
            raise StoreConflict(f"triage state of {body['subject_id']} changed concurrently") from None
        return new

    # --- id prefixes (``alerts ack 3f2a9c01``) ------------------------------------------------------------
    def records_with_id_prefix(self, kind: str, prefix: str, limit: int = 2) -> list[Any]:
        """Up to ``limit`` alerts (``kind="alert"``) or cases whose id starts with ``prefix`` (a ``prefix``
        query on the keyword ``id``), instead of paging through every record."""
        from engine.alerts.case_model import Case
        from engine.alerts.model import Alert

        index, build = ((self.names["alerts"], Alert.from_dict) if kind == "alert"  # type: ignore[attr-defined]
                        else (self.names["cases"], Case.from_dict))  # type: ignore[attr-defined]
        self._refresh(index)  # type: ignore[attr-defined]
        resp = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=index, size=int(limit), query={"prefix": {"id": prefix}}, sort=[{"id": "asc"}],
            track_total_hits=False, ignore_unavailable=True), what=f"find {kind} by id prefix")
        return [build(h["_source"]) for h in resp["hits"]["hits"]]

    # --- marks ----------------------------------------------------------------------------------------
    def put_triage_marks(self, mark: str, rows: Sequence[tuple[str, int, str]]) -> None:
        if not rows:
            return
        index = self._triage_index("triage_marks")
        lines: list[bytes] = []
        for sid, rev, value in rows:
            lines.append(orjson.dumps({"create": {"_index": index, "_id": f"{mark}:{sid}:{int(rev)}"}}))
            lines.append(orjson.dumps({"subject_id": sid, "revision": int(rev), "mark": mark, "value": value}))
        resp = self._call(lambda: self.es.bulk(operations=b"\n".join(lines) + b"\n"), what="write triage marks")  # type: ignore[attr-defined]
        bad = [i["create"] for i in resp["items"] if i["create"].get("status") not in (200, 201, 409)]
        if bad:
            raise StoreError(f"write triage marks: {len(bad)} of {len(rows)} failed: {bad[0].get('error')}")

    def get_triage_marks(self, mark: str, subject_ids: Sequence[str] | None = None) -> dict[str, dict[int, str]]:
        index = self._triage_read_index("triage_marks")
        out: dict[str, dict[int, str]] = {}
        if index is None:
            return out
        ids = None if subject_ids is None else list(subject_ids)
        chunks = [None] if ids is None else [ids[i:i + 1000] for i in range(0, len(ids), 1000)]
        for part in chunks:
            if part == []:
                continue
            filters: list[dict[str, Any]] = [{"term": {"mark": mark}}]
            if part is not None:
                filters.append({"terms": {"subject_id": part}})
            for source in self._search_all(index, {"bool": {"filter": filters}}, "revision", "read triage marks"):
                out.setdefault(source["subject_id"], {})[int(source["revision"])] = source["value"]
        return out

    # --- exceptions -----------------------------------------------------------------------------------
    def put_exception_record(self, record: dict[str, Any]) -> None:
        index = self._triage_index("exceptions")
        document = {"id": record["id"], "rule_id": record["rule_id"], "created": record["created"],
                    "until": record["until"], "doc_json": orjson.dumps(record).decode()}
        self._call(lambda: self.es.index(index=index, id=record["id"], document=document),  # type: ignore[attr-defined]
                   what="write exception")

    def list_exception_records(self) -> list[dict[str, Any]]:
        index = self._triage_read_index("exceptions")
        if index is None:
            return []
        docs = [orjson.loads(s["doc_json"]) for s in self._search_all(index, {"match_all": {}}, "id", "read exceptions")]
        return sorted(docs, key=lambda r: (r["created"], r["id"]))

    def delete_exception_record(self, exception_id: str) -> bool:
        index = self._triage_index("exceptions")
        try:
            self._call(lambda: self.es.delete(index=index, id=exception_id, refresh=True),  # type: ignore[attr-defined]
                       what="delete exception")
        except StoreError as exc:
            if "404" in str(exc) or "not_found" in str(exc).lower():
                return False
            raise
        return True
