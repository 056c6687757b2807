"""The audit chain on the Elasticsearch store (same methods as ``engine.store.sqlite_audit``).

One index, ``<prefix>-audit``, one document per entry with ``_id`` = its seq. Appends are conditional on the
tail in two ways. Every writer (the service, a CLI command, another host) first takes the chain's write
lease, a ``lease`` document that can only be *created* while absent, so one writer appends at a time and
may send its entries as bulk requests. And each entry is itself written with ``op_type=create``, so even a
writer that lost its lease (expired during a stall) can never overwrite an entry: its write is refused, it
raises, and nothing is linked behind the refusal.

A 409 can also be our own write: a request that timed out after it landed and was retried. The document
then holds exactly our hash, and is adopted instead of being written again.

The detail is kept as the JSON text that was hashed (``detail_json``, not indexed), so what ``verify`` reads
back is byte for byte what was hashed, whatever the mapping would do to an object.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import orjson

from engine.audit.chain import link
from engine.store.base import PurgeResult, StoreConflict, StoreError, StoreUnavailable

_EXACT = {"type": "keyword"}
_MAPPING = {"dynamic": False, "properties": {
    "seq": {"type": "long"}, "at": _EXACT, "kind": _EXACT, "actor": _EXACT, "subject": _EXACT,
    "detail_json": {"type": "keyword", "index": False, "doc_values": False}, "prev_hash": _EXACT,
    "hash": _EXACT}}
#: Entries read per search while iterating, and written per bulk request.
_PAGE = 1000
_BULK = 500
#: Realtime GETs past a known tail before the tail is searched for instead.
_PROBE = 16
#: The write lease: its document id, how long it holds without being released, how long a writer waits.
_LEASE_ID = "lease"
_LEASE_MS = 60_000
_LEASE_WAIT_S = 120.0


def _now_ms() -> int:
    return int(time.time() * 1000)


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
            self._ensure_index(index, _MAPPING)  # type: ignore[attr-defined]
            self._audit_index_name = index
        return self._audit_index_name

    def _audit_get(self, seq: int) -> dict[str, Any] | None:
        found = self._get_doc(self._audit_index(), str(seq), "read audit")  # type: ignore[attr-defined]
        return None if found is None else found["_source"]

    def _audit_search_tail(self) -> tuple[int, str | None]:
        index = self._audit_index()
        self._refresh(index)  # type: ignore[attr-defined]
        hits = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=index, size=1, query={"exists": {"field": "seq"}}, sort=[{"seq": "desc"}],
            track_total_hits=False), what="read audit")["hits"]["hits"]
        return (0, None) if not hits else (int(hits[0]["_source"]["seq"]), hits[0]["_source"]["hash"])

    def _audit_current_tail(self) -> tuple[int, str | None]:
        """The tail as known, moved forward past entries other writers appended (realtime GETs)."""
        seq, digest = self._audit_known_tail or self._audit_search_tail()
        steps = 0
        while (nxt := self._audit_get(seq + 1)) is not None:
            seq, digest, steps = seq + 1, nxt["hash"], steps + 1
            if steps == _PROBE:  # another writer appended a lot: one search instead of a GET per entry
                seq, digest = max((seq, digest), self._audit_search_tail())
        return seq, digest

    @contextmanager
    def _audit_lease(self) -> Iterator[None]:
        """Hold the chain's write lease (the ``lease`` document, created only if absent) while appending.

        Why a lease and not just create-only ids: a bulk of creates is not atomic. Had another writer won one
        seq in the middle of our bulk, our later entries would still land, linked to the entry that lost: a
        fork. Under the lease nobody else appends, so one bulk per 500 entries is safe (one request per
        entry cost ~15 ms each on a busy cluster: minutes for a SigmaHQ backlog). A lease left by a crashed
        writer expires after ``_LEASE_MS`` and is taken over, conditional on its version."""
        index, owner = self._audit_index(), uuid.uuid4().hex
        give_up = time.monotonic() + _LEASE_WAIT_S
        while True:
            try:
                held = self._call(lambda: self.es.create(  # type: ignore[attr-defined]
                    index=index, id=_LEASE_ID, document={"owner": owner, "expires_ms": _now_ms() + _LEASE_MS}),
                    what="lock audit")
                break
            except StoreConflict:
                current = self._get_doc(index, _LEASE_ID, "lock audit")  # type: ignore[attr-defined]
                if current is not None and current["_source"].get("owner") == owner:
                    held = current  # our create landed; its retry after a time-out conflicted with it
                    break
                if current is not None and current["_source"].get("expires_ms", 0) < _now_ms():
                    self._audit_drop_lease(current)  # a crashed writer's: take it over
                    continue
                if time.monotonic() > give_up:
                    raise StoreUnavailable(f"the audit chain of {self.prefix} is locked by another writer "  # type: ignore[attr-defined]
                                           f"for more than {_LEASE_WAIT_S:.0f} s") from None
                time.sleep(0.02)
        try:
            yield
        finally:
            self._audit_drop_lease(held)

    def _audit_drop_lease(self, held: Mapping[str, Any]) -> None:
        """Delete the lease if it is still the version ``held`` (else someone took an expired one over)."""
        try:
            self._call(lambda: self.es.delete(  # type: ignore[attr-defined]
                index=self._audit_index(), id=_LEASE_ID, if_seq_no=held["_seq_no"],
                if_primary_term=held["_primary_term"]), what="unlock audit")
        except StoreError:
            pass  # gone or replaced: nothing of ours to release

    def append_audit(self, bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Append one entry per body after the current tail, under the write lease, 500 entries a bulk."""
        index = self._audit_index()
        rows: list[dict[str, Any]] = []
        with self.__dict__.setdefault("_audit_lock", threading.Lock()), self._audit_lease():
            seq, prev = self._audit_current_tail()
            for start in range(0, len(bodies), _BULK):
                chunk = []
                for body in bodies[start:start + _BULK]:
                    row = link(seq, prev, body)
                    chunk.append(row)
                    seq, prev = row["seq"], row["hash"]
                self._audit_bulk(index, chunk)
                rows.extend(chunk)
                self._audit_known_tail = (seq, prev)
        return rows

    def _audit_bulk(self, index: str, rows: Sequence[Mapping[str, Any]]) -> None:
        lines: list[bytes] = []
        for row in rows:
            lines.append(orjson.dumps({"create": {"_index": index, "_id": str(row["seq"])}}))
            lines.append(orjson.dumps(_doc(row)))
        resp = self._call(lambda: self.es.bulk(operations=b"\n".join(lines) + b"\n"), what="write audit")  # type: ignore[attr-defined]
        for row, item in zip(rows, resp["items"]):
            status = item["create"].get("status")
            if status in (200, 201):
                continue
            theirs = self._audit_get(row["seq"]) if status == 409 else None
            if theirs is not None and theirs["hash"] == row["hash"]:
                continue  # our own write, from a bulk retried after a time-out
            self._audit_known_tail = None
            raise StoreError(f"write audit: seq {row['seq']} refused ({status}: {item['create'].get('error')}); "
                             "another writer appended without the lease")

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

    # --- retention (engine.audit.retention decides what may go; these only count and delete) ---------

    def audit_prunable_through(self, before: str) -> int:
        """The largest seq N such that every entry up to N is older than ``before`` (0: none is)."""
        index = self._audit_index()
        self._refresh(index)  # type: ignore[attr-defined]
        hits = self._call(lambda: self.es.search(  # type: ignore[attr-defined]
            index=index, size=1, query={"range": {"at": {"gte": before}}}, sort=[{"seq": "asc"}],
            track_total_hits=False), what="read audit")["hits"]["hits"]
        if hits:
            return int(hits[0]["_source"]["seq"]) - 1
        return self._audit_search_tail()[0]

    def audit_count_through(self, seq: int) -> int:
        """How many entries with seq <= ``seq`` are still stored (a dry run's count)."""
        return self._delete_by_query(self._audit_index(), {"range": {"seq": {"lte": seq}}},  # type: ignore[attr-defined]
                                     True, 1).deleted

    def delete_audit_through(self, seq: int, *, batch_size: int = 5000) -> PurgeResult:
        """Delete the entries with seq <= ``seq`` (never the lease: it has no seq), ``batch_size`` a bulk."""
        return self._delete_by_query(self._audit_index(), {"range": {"seq": {"lte": seq}}},  # type: ignore[attr-defined]
                                     False, batch_size)
