"""The tamper-evident audit chain (engine.audit) on SQLite and Elasticsearch, and ``wardwatch audit``.

What a user relies on: ``audit verify`` says "chain intact" for an untouched chain, and for a chain someone
edited *in the database itself* (not through Wardwatch) it names the first broken seq and what is wrong.
Two writers (the service and a CLI command) never fork it. Every alert and case revision is in it exactly
once, and a rule file is recorded when its hash changes, not at every start.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import audit
from engine.alerts.sinks import deliver_pending
from engine.audit.chain import GENESIS, link, verify_rows
from engine.audit.recorder import AuditRecorder
from engine.audit.rules import record_rule_loads
from engine.sigma.loader import load_rules
from engine.cli import main
from engine.store import open_store
from engine.store.base import RuleCheckpoint
from tests.conftest import require_elasticsearch
from tests.store_fixtures import configured_store, make_alert, store, ts  # noqa: F401 - fixture

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _fill(s: Any, n: int = 5) -> list[audit.AuditEntry]:
    return [audit.record(s, "triage.comment", actor=f"user{i % 2}", subject=f"alert-{i % 3}",
                         detail={"record": "alert", "length": i}, at=ts(i)) for i in range(n)]


# --- the store contract ---------------------------------------------------------------------------------
def test_entries_come_back_in_chain_order_and_filter(store):
    assert audit.verify(store) == audit.VerifyResult(True, 0) and audit.head(store) is None
    written = _fill(store, 7)
    assert [e.seq for e in written] == list(range(1, 8))
    assert written[0].prev_hash == GENESIS and all(b.prev_hash == a.hash for a, b in zip(written, written[1:]))
    assert [e.to_dict() for e in audit.entries(store)] == [e.to_dict() for e in written]
    assert [e.seq for e in audit.entries(store, subject="alert-1")] == [2, 5]
    assert [e.seq for e in audit.entries(store, after_seq=5)] == [6, 7]
    assert [e.seq for e in audit.entries(store, limit=3)] == [1, 2, 3]
    assert list(audit.entries(store, kinds=["triage.close"])) == []
    assert audit.head(store).hash == written[-1].hash
    assert audit.verify(store) == audit.VerifyResult(True, 7)
    with pytest.raises(ValueError, match="unknown audit entry kind"):
        audit.record(store, "triage.delete", actor="x", subject="y", detail={})


def test_two_writers_never_fork_the_chain(store, tmp_path):
    """The service and a CLI command appending at once, each with its own store object (connection)."""
    other = open_store("sqlite", path=store.path) if store.kind == "sqlite" else \
        open_store("elasticsearch", hosts=[require_elasticsearch()], index_prefix=store.prefix)
    errors: list[BaseException] = []
    per_writer = 25 if store.kind == "sqlite" else 10  # a shared cluster: fewer, still interleaved

    def write(s: Any, who: str) -> None:
        try:
            for i in range(per_writer):
                audit.record(s, "triage.comment", actor=who, subject=f"{who}-{i}", detail={"i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, who)) for s, who in ((store, "svc"), (other, "cli"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert errors == []
    got = list(audit.entries(store))
    assert [e.seq for e in got] == list(range(1, 2 * per_writer + 1))
    assert sorted(e.subject for e in got) == sorted(f"{w}-{i}" for w in ("svc", "cli") for i in range(per_writer))
    assert audit.verify(store).ok


# --- tampering in the database itself ---------------------------------------------------------------------
class Tamper:
    """Edits the stored chain behind Wardwatch's back: SQL on the file, or the Elasticsearch document API."""

    def __init__(self, s: Any):
        self.s = s

    def set(self, seq: int, **fields: Any) -> None:
        if "detail" in fields:
            fields["detail"] = orjson.dumps(fields["detail"]).decode()
        if self.s.kind == "sqlite":
            with sqlite3.connect(self.s.path) as conn:
                conn.execute(f"UPDATE audit_log SET {', '.join(f'{k} = ?' for k in fields)} WHERE seq = ?",
                             [*fields.values(), seq])
        else:
            doc = {("detail_json" if k == "detail" else k): v for k, v in fields.items()}
            self.s.es.update(index=f"{self.s.prefix}-audit", id=str(seq), doc=doc, refresh=True)

    def delete(self, seq: int) -> None:
        if self.s.kind == "sqlite":
            with sqlite3.connect(self.s.path) as conn:
                conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
        else:
            self.s.es.delete(index=f"{self.s.prefix}-audit", id=str(seq), refresh=True)


def test_an_altered_detail_is_caught_at_its_seq_and_a_deleted_entry_is_a_gap(store):
    entries = _fill(store)
    tamper = Tamper(store)
    tamper.set(3, detail={"record": "alert", "length": 99})
    result = audit.verify(store)
    assert (result.ok, result.first_broken, result.checked) == (False, 3, 2)
    assert "hash mismatch" in result.reason
    tamper.set(3, detail=entries[2].detail)  # put back: intact again
    assert audit.verify(store).ok
    tamper.delete(4)
    result = audit.verify(store)
    assert (result.ok, result.first_broken, result.reason) == (False, 4, "gap: seq 4 missing (entry removed)")


def test_an_altered_entry_with_a_recomputed_hash_breaks_the_next_link(tmp_path):
    s = open_store("sqlite", path=tmp_path / "w.db")
    entries = _fill(s)
    forged = link(2, entries[1].hash, {**entries[2].to_dict(), "actor": "someone-else"})
    Tamper(s).set(3, actor="someone-else", hash=forged["hash"])
    result = audit.verify(s)
    assert (result.ok, result.first_broken) == (False, 4)
    assert result.reason.startswith("broken link: prev_hash is not the hash of seq 3")
    s.close()


def test_swapped_entries_are_reported_as_reordered(tmp_path):
    s = open_store("sqlite", path=tmp_path / "w.db")
    entries = _fill(s)
    tamper = Tamper(s)
    for seq, e in ((2, entries[2]), (3, entries[1])):  # contents of 2 and 3 swapped, seq numbers kept
        tamper.set(seq, at=e.at, kind=e.kind, actor=e.actor, subject=e.subject, detail=e.detail,
                   prev_hash=e.prev_hash, hash=e.hash)
    result = audit.verify(s)
    assert (result.first_broken, result.reason) == (2, "reordered: links to seq 3, not seq 1")
    s.close()


# --- the chain rule, as an outside verifier would apply it -------------------------------------------------
details = st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8), max_size=4)
bodies = st.lists(st.fixed_dictionaries({"at": st.text(max_size=24), "kind": st.sampled_from(audit.KINDS),
                                         "actor": st.text(max_size=10), "subject": st.text(max_size=12),
                                         "detail": details}), min_size=1, max_size=8)


def _chain(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for body in items:
        rows.append(link(len(rows), rows[-1]["hash"] if rows else None, body))
    return rows


@settings(max_examples=150, deadline=None)
@given(bodies)
def test_the_documented_rule_recomputes_every_hash_with_the_stdlib(items):
    """docs/alerts.md: sha256(prev_hash + json.dumps(body, sort_keys, compact, ensure_ascii=False))."""
    prev = "0" * 64
    for row in _chain(items):
        body = {k: row[k] for k in ("seq", "at", "kind", "actor", "subject", "detail")}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert row["prev_hash"] == prev
        assert row["hash"] == hashlib.sha256((prev + text).encode("utf-8")).hexdigest()
        prev = row["hash"]


@settings(max_examples=200, deadline=None)
@given(bodies, st.data())
def test_any_single_change_is_caught_at_that_entry(items, data):
    rows = _chain(items)
    assert verify_rows(rows).ok
    k = data.draw(st.integers(0, len(rows) - 1))
    name = data.draw(st.sampled_from(["at", "kind", "actor", "subject", "detail", "prev_hash", "hash"]))
    changed = dict(rows[k])
    changed[name] = {"x": changed[name]} if name == "detail" else str(changed[name]) + "!"
    result = verify_rows([*rows[:k], changed, *rows[k + 1:]])
    assert (result.ok, result.first_broken, result.checked) == (False, k + 1, k)


# --- the command line -------------------------------------------------------------------------------------
def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_audit_verify_list_and_head_on_the_command_line(configured_store, capsys):
    c, s = configured_store
    entries = _fill(s)
    assert run(capsys, *c, "audit", "verify") == (0, "ok: 5 entries, chain intact\n", "")
    assert run(capsys, *c, "audit", "head")[1] == f"5 {entries[-1].hash}\n"
    code, out, _ = run(capsys, *c, "audit", "list", "--subject", "alert-0", "--format", "json")
    assert [orjson.loads(line)["seq"] for line in out.splitlines()] == [1, 4]
    code, out, _ = run(capsys, *c, "audit", "list", "--kind", "triage.comment")
    assert code == 0 and "triage.comment" in out and out.rstrip().endswith("5 entries")

    kept = run(capsys, *c, "audit", "head")[1].strip()  # kept off the machine
    Tamper(s).delete(5)  # the newest entry cut off: the links alone cannot show it
    assert run(capsys, *c, "audit", "verify")[1] == "ok: 4 entries, chain intact\n"
    code, out, _ = run(capsys, *c, "audit", "verify", "--expect-head", kept)
    assert code == 1 and out.startswith("broken at seq 5: truncated: seq 5 (the kept head) is gone")

    Tamper(s).set(2, detail={"record": "alert", "length": 1000})
    code, out, err = run(capsys, *c, "audit", "verify")
    assert code == 1 and err == ""
    assert out == "broken at seq 2: hash mismatch: the entry's contents were altered (1 entries before it hold)\n"
    assert run(capsys, *c, "audit", "verify", "--expect-head", "5 nothex")[0] == 2
    code, out, _ = run(capsys, *c, "audit", "verify", "--format", "json")
    assert code == 1 and orjson.loads(out)["first_broken"] == 2


# --- what feeds the chain ---------------------------------------------------------------------------------
def test_every_alert_revision_is_recorded_exactly_once(store):
    recorder = AuditRecorder(store)
    first = make_alert("r1", "user.name=kim", first=ts(0))
    store.commit_rule_run(RuleCheckpoint("r1"), [first])
    deliver_pending(store, [recorder])
    deliver_pending(store, [recorder])  # nothing new: nothing recorded
    recorder.deliver([first])  # a crash after the append and before the acknowledgement hands it over again
    second = make_alert("r1", "user.name=kim", first=ts(0), last=ts(30), revision=2, triggers=2)
    store.commit_rule_run(RuleCheckpoint("r1"), [second])
    deliver_pending(store, [recorder])
    got = [(e.kind, e.subject, e.detail["revision"]) for e in audit.entries(store)]
    assert got == [("alert.revision", first.id, 1), ("alert.revision", first.id, 2)]
    detail = next(audit.entries(store, after_seq=1)).detail
    assert detail["group"] == {"user.name": "kim"} and detail["rule_id"] == "r1" and len(detail["sha256"]) == 64
    assert "evidence" not in detail  # ids of events are in the alert, not in the chain


RULE_ID = "aaaaaaaa-0000-4000-8000-000000000001"


def _rule_text(title: str) -> str:
    return (f"title: {title}\nid: {RULE_ID}\nlogsource: {{product: ehr}}\n"
            "detection:\n  sel:\n    ehr.action: read\n  condition: sel\n")


def test_a_rule_file_is_recorded_when_its_hash_changes(tmp_path):
    rule = tmp_path / "rule.yml"
    rule.write_text(_rule_text("one"))
    s = open_store("sqlite", path=tmp_path / "w.db")
    assert record_rule_loads(s, load_rules([rule])) == 1
    assert record_rule_loads(s, load_rules([rule])) == 0  # a restart with the same file
    rule.write_text(_rule_text("two"))
    assert record_rule_loads(s, load_rules([rule])) == 1
    got = [e.detail for e in audit.entries(s, kinds=["rule.loaded"])]
    assert got[-1] == {"path": str(rule), "sha256": hashlib.sha256(_rule_text("two").encode()).hexdigest()}
    assert len(got) == 2 and got[0]["sha256"] != got[1]["sha256"]
    s.close()


def test_the_recorded_hash_is_of_the_bytes_loaded_not_of_a_later_edit(tmp_path):
    """The entry says which version ran: a file edited after loading (before recording) must not be
    recorded under the new bytes while the old rule is what evaluates."""
    rule = tmp_path / "rule.yml"
    rule.write_text(_rule_text("loaded"))
    ruleset = load_rules([rule])
    rule.write_text(_rule_text("edited afterwards"))
    s = open_store("sqlite", path=tmp_path / "w.db")
    assert record_rule_loads(s, ruleset) == 1
    [entry] = audit.entries(s, kinds=["rule.loaded"])
    assert entry.detail["sha256"] == hashlib.sha256(_rule_text("loaded").encode()).hexdigest()
    s.close()


def test_elasticsearch_appends_wait_for_the_write_lease_and_take_over_a_crashed_writers(monkeypatch):
    from engine.store import es_audit
    from engine.store.base import StoreUnavailable

    s = open_store("elasticsearch", hosts=[require_elasticsearch()], index_prefix=f"wwtest-{uuid.uuid4().hex[:12]}")
    try:
        index = f"{s.prefix}-audit"
        audit.record(s, "triage.comment", actor="kim", subject="a", detail={})
        s.es.create(index=index, id="lease", document={"owner": "another-host", "expires_ms": 2**62})
        monkeypatch.setattr(es_audit, "_LEASE_WAIT_S", 0.3)
        with pytest.raises(StoreUnavailable, match="locked by another writer"):
            audit.record(s, "triage.comment", actor="kim", subject="b", detail={})
        s.es.index(index=index, id="lease", document={"owner": "crashed-host", "expires_ms": 1})
        audit.record_many(s, [("triage.comment", "kim", f"c{i}", {}, None) for i in range(1200)])  # 3 bulks
        assert audit.verify(s) == audit.VerifyResult(True, 1201)
        assert s.es.exists(index=index, id="lease").body is False  # released
    finally:
        s.delete_all()
        s.close()


@given(st.integers(1, 10**12), st.text("0123456789abcdef", min_size=64, max_size=64), st.sampled_from([" ", ":", "  "]),
       st.booleans())
def test_a_kept_head_reads_back_as_audit_head_printed_it(seq, digest, sep, upper):
    text = f"{seq}{sep}{digest.upper() if upper else digest}"
    assert audit.parse_head(text) == (seq, digest)


@given(st.text(max_size=80))
def test_anything_else_is_refused_with_a_value_error(text):
    try:
        seq, digest = audit.parse_head(text)
    except ValueError:
        return
    assert seq >= 1 and len(digest) == 64


def test_an_alerts_content_hash_is_the_hash_of_its_stored_form_without_the_overlay():
    """``content_sha256`` reads an Alert's fields directly (no ``to_dict`` copies): the bytes must stay those
    of the stored form, tuples and all, so a verifier hashing the stored alert gets the same digest."""
    import dataclasses
    import hashlib

    from engine.alerts.model import canonical_json
    from engine.audit.recorder import content_sha256
    from tests.store_fixtures import make_alert

    plain = make_alert(triggers=3)
    odd = dataclasses.replace(plain, rule_tags=("attack.t1078", "wardwatch.privacy"), evidence=("e0", "e1"),
                              status="closed", assignee="dpo")
    for alert in (plain, odd):
        stored = {k: v for k, v in alert.to_dict().items() if k not in ("status", "assignee")}
        assert content_sha256(alert) == hashlib.sha256(canonical_json(stored).encode()).hexdigest()
    assert content_sha256(odd) == content_sha256(dataclasses.replace(odd, status="open", assignee=None))


@settings(max_examples=100, deadline=None)
@given(group=details, evidence=st.lists(st.text(max_size=6), max_size=4), title=st.text(max_size=10),
       metric=details)
def test_an_alerts_content_hash_equals_the_documented_bytes_for_any_content(group, evidence, title, metric):
    """``content_sha256`` hashes orjson's bytes directly (no str round trip): the same digest as the
    canonical JSON text of the stored form, non-ASCII, nesting and all."""
    import dataclasses

    from engine.alerts.model import canonical_json
    from engine.audit.recorder import content_sha256
    from tests.store_fixtures import make_alert

    alert = dataclasses.replace(make_alert(), group=group, evidence=evidence, rule_title=title, metric=metric,
                                status="closed", assignee="dpo")
    stored = {k: v for k, v in alert.to_dict().items() if k not in ("status", "assignee")}
    assert content_sha256(alert) == hashlib.sha256(canonical_json(stored).encode()).hexdigest()
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert content_sha256(alert) == hashlib.sha256(text.encode("utf-8")).hexdigest()
