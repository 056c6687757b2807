"""The audit chain on the Elasticsearch store (same methods as ``engine.store.sqlite_audit``).

One index, ``<prefix>-audit``, one document per entry with ``_id`` = its seq. Why that makes appends safe
without a lock: an entry is written with ``op_type=create``, which Elasticsearch refuses (409) when that
``_id`` exists. Two writers that read the same tail both try seq N+1; exactly one wins, the other re-reads
the winner (a realtime GET, no refresh needed), re-links its entry after it and tries N+2. So the chain
cannot fork, whichever process writes.

A 409 can also be our own write: a request that timed out after it landed and was retried. The document
then holds exactly our hash, and is adopted instead of being written again.

The detail is kept as the JSON text that was hashed (``detail_json``, not indexed), so what ``verify`` reads
back is byte for byte what was hashed, whatever the mapping would do to an object.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator, Mapping, Sequence

import orjson

from engine.audit.chain import link
from engine.store.base import StoreConflict, StoreError

_EXACT = {"type": "keyword"}
_MAPPING = {"dynamic": False, "properties": {
    "seq": {"type": "long"}, "at": _EXACT, "kind": _EXACT, "actor": _EXACT, "subject": _EXACT,
    "detail_json": {"type": "keyword", "index": False, "doc_values": False}, "prev_hash": _EXACT,
    "hash": _EXACT}}
#: Entries read per search while iterating.
_PAGE = 1000


def _doc(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("seq", "at", "kind", "actor", "subject", "prev_hash", "hash")}
    out["detail_json"] = orjson.dumps(row["detail"]).decode()
    return out


def _row(source: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: source[k] for k in ("seq", "at", "kind", "actor", "subject", "prev_hash", "hash")}
    row["detail"] = orjson.loads(source["detail_json"])
    return row


class EsAuditMixin:
    """Adds the audit chain to ``ElasticsearchStore``."""

    _audit_index_name: str | None = None
    #: (seq, hash) of the last entry this process saw; a stale value only costs a 409 and a re-read.
    _audit_known_tail: tuple[int, str | None] | None = None

    def _audit_index(self) -> str:
        if self._audit_index_name is None:
            index = f"{self.prefix}-audit"  # type: ignore[attr-defined]
            self.names["audit"] = index  # type: ignore[attr-defined]  # so delete_all removes it
            if not self._call(lambda: self.es.indices.exists(index=index), what="install"):  # type: ignore[attr-defined]
                try:
                    self._call(lambda: self.es.indices.create(  # type: ignore[attr-defined]
                        index=index, mappings=_MAPPING,
                        settings={"index": {"number_of_shards": 1, "number_of_replicas": self.replicas}}),  # type: ignore[attr-defined]
                        what="install")
                except StoreError as exc:
                    if "resource_already_exists" not in str(exc):  # another process created it just now
                        raise
            self._audit_index_name = index
        return self._audit_index_name

    def _audit_get(self, seq: int) -> dict[str, Any] | None:
        found = self._get_doc(self._audit_index(), str(seq), "read audit")  # type: ignore[attr-defined]
        return None if found is None else found["_source"]

    def _audit_search_tail(self) -> tuple[int, str | None]:
        index = self._audit_index()
        self._refresh(index)  # type: ignore[attr-defined]
        hits = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=index, size=1, sort=[{"seq": "desc"}], track_total_hits=False), what="read audit")["hits"]["hits"]
        return (0, None) if not hits else (int(hits[0]["_source"]["seq"]), hits[0]["_source"]["hash"])

    def _audit_current_tail(self) -> tuple[int, str | None]:
        """The tail as known, moved forward past entries other writers appended (realtime GETs)."""
        seq, digest = self._audit_known_tail or self._audit_search_tail()
        while (nxt := self._audit_get(seq + 1)) is not None:
            seq, digest = seq + 1, nxt["hash"]
        return seq, digest

    def append_audit(self, bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append one entry per body, each created at seq = tail + 1 or re-linked after whoever got there
        first. One request per entry: a bulk of creates could half-succeed around another writer's entry
        and leave our later entries linked to one that lost (a fork)."""
        index = self._audit_index()
        rows: list[dict[str, Any]] = []
        # one append at a time per store object (threads of one service); other objects and processes are
        # kept apart by the create-only seq ids alone
        with self.__dict__.setdefault("_audit_lock", threading.Lock()):
            seq, prev = self._audit_current_tail()
            for body in bodies:
                while True:
                    row = link(seq, prev, body)
                    try:
                        self._call(lambda r=row: self.es.create(index=index, id=str(r["seq"]), document=_doc(r)),  # type: ignore[attr-defined]
                                   what="write audit")
                        break
                    except StoreConflict:
                        theirs = self._audit_get(row["seq"])
                        if theirs is not None and theirs["hash"] == row["hash"]:
                            break  # our own write, retried after a time-out: it landed
                        seq, prev = self._audit_current_tail()
                rows.append(row)
                seq, prev = row["seq"], row["hash"]
            self._audit_known_tail = (seq, prev)
        return rows

    def audit_rows(self, *, subject: str | None = None, kinds: Sequence[str] | None = None, after_seq: int = 0,
                   limit: int | None = None, subjects: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows in seq order, paged by seq (keyset: ``seq > last seen``), so memory stays one page."""
        if (kinds is not None and not list(kinds)) or (subjects is not None and not list(subjects)):
            return
        index = self._audit_index()
        self._refresh(index)  # type: ignore[attr-defined]
        left, last = limit, after_seq
        while left is None or left > 0:
            filters: list[dict[str, Any]] = [{"range": {"seq": {"gt": last}}}]
            if subject is not None:
                filters.append({"term": {"subject": subject}})
            if subjects is not None:
                filters.append({"terms": {"subject": list(subjects)}})
            if kinds is not None:
                filters.append({"terms": {"kind": list(kinds)}})
            size = _PAGE if left is None else min(_PAGE, left)
            hits = self._call(lambda f=filters, n=size: self.es.search(  # type: ignore[attr-defined]
                index=index, size=n, query={"bool": {"filter": f}}, sort=[{"seq": "asc"}],
                track_total_hits=False), what="read audit")["hits"]["hits"]
            for hit in hits:
                yield _row(hit["_source"])
            if len(hits) < size:
                return
            last = int(hits[-1]["_source"]["seq"])
            if left is not None:
                left -= len(hits)

    def audit_tail(self) -> dict[str, Any] | None:
        seq, _ = self._audit_current_tail() if self._audit_known_tail else self._audit_search_tail()
        if seq == 0:
            return None
        source = self._audit_get(seq)
        return None if source is None else _row(source)

    def audit_seq_of_hash(self, digest: str) -> int | None:
        index = self._audit_index()
        self._refresh(index)  # type: ignore[attr-defined]
        hits = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=index, size=1, query={"term": {"hash": digest}}, track_total_hits=False),
            what="read audit")["hits"]["hits"]
        return None if not hits else int(hits[0]["_source"]["seq"])
