"""fhir-auditevent against a real HTTP server: paging, ties, late arrivals, throttling, errors, auth, TLS.

``FhirTestServer`` is a small FHIR-like server (http.server in a thread, 127.0.0.1, port 0) that serves
AuditEvent search Bundles from an in-memory list, HAPI-style: a search is snapshotted, pages are fetched by
``_getpages`` links, ``_count`` is capped. It can be told to answer with faults (429 + Retry-After, 500,
malformed JSON) and to require OAuth2 tokens that it can expire. No HTTP mocking anywhere.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.base import connector_class
from connectors.fhir_rest import FhirAuditEventRestConnector, retry_after_seconds

T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def audit_event(n: int, last_updated: datetime, *, recorded: datetime | None = None, user: str = "u1",
                patient: str = "P1", r5: bool = False) -> dict[str, Any]:
    """A BALP PatientRead-shaped AuditEvent (R4, or R5 with the renamed elements)."""
    rid = f"ae-{n:06d}"
    rec = iso(recorded or last_updated)
    agent = {"who": {"identifier": {"value": user}}, "requestor": True}
    entity = [{"what": {"reference": f"Patient/{patient}"},
               "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}}]
    meta = {"versionId": "1", "lastUpdated": iso(last_updated)}
    if r5:
        return {"resourceType": "AuditEvent", "id": rid, "meta": meta,
                "category": [{"coding": [{"code": "rest"}]}], "code": {"coding": [{"code": "read"}]},
                "action": "R", "recorded": rec, "outcome": {"code": {"code": "0"}},
                "agent": [{**agent, "networkString": "10.0.0.9"}], "patient": {"reference": f"Patient/{patient}"},
                "source": {"observer": {"display": "fhir.test"}}, "entity": entity}
    return {"resourceType": "AuditEvent", "id": rid, "meta": meta,
            "type": {"code": "rest"}, "subtype": [{"code": "read"}], "action": "R", "recorded": rec,
            "outcome": "0", "agent": [{**agent, "altId": user, "network": {"address": "10.0.0.9", "type": "2"}}],
            "source": {"observer": {"display": "fhir.test"}}, "entity": entity}


class FhirTestServer:
    """In-memory FHIR AuditEvent endpoint with fault injection. Use as a context manager."""

    def __init__(self, *, max_count: int = 10, require_token: bool = False, tls: ssl.SSLContext | None = None):
        self.resources: list[dict[str, Any]] = []
        self.max_count = max_count
        self.require_token = require_token
        self.valid_tokens: set[str] = set()
        self.token_requests = 0
        self.faults: list[tuple[int, dict[str, str], bytes]] = []
        self.fault_path: str | None = None  # only inject faults on requests whose URL contains this
        self.requests: list[tuple[float, str, int]] = []
        self.searches: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.base = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.base_url = self.base + "/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FhirTestServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- control ----------------------------------------------------------------------------------
    def add(self, *resources: dict[str, Any]) -> None:
        with self.lock:
            self.resources.extend(resources)

    def fail_next(self, times: int, status: int, headers: dict[str, str] | None = None, body: bytes = b"",
                  path_contains: str | None = None) -> None:
        self.fault_path = path_contains
        self.faults.extend([(status, headers or {}, body)] * times)

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def data_requests(self) -> list[tuple[float, str, int]]:
        return [r for r in self.requests if "/token" not in r[1]]

    # --- HTTP -------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                server.requests.append((time.monotonic(), self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # the OAuth2 token endpoint
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                if self.path != "/token" or form.get("grant_type") != ["client_credentials"] \
                        or not (self.headers.get("Authorization") or "").startswith("Basic "):
                    return self._send(400, b'{"error":"invalid_request"}')
                server.token_requests += 1
                token = f"tok-{uuid.uuid4().hex}"
                server.valid_tokens.add(token)
                self._send(200, json.dumps({"access_token": token, "token_type": "bearer",
                                            "expires_in": 3600}).encode())

            def do_GET(self) -> None:
                if server.require_token:
                    auth = self.headers.get("Authorization") or ""
                    if not auth.startswith("Bearer ") or auth[7:] not in server.valid_tokens:
                        return self._send(401, b'{"resourceType":"OperationOutcome"}')
                if server.faults and (server.fault_path is None or server.fault_path in self.path):
                    status, headers, body = server.faults.pop(0)
                    return self._send(status, body, headers)
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                if url.path == "/fhir/AuditEvent":
                    matches = server.search(q)
                    sid = uuid.uuid4().hex
                    server.searches[sid] = matches
                    return self._send(200, server.page(sid, 0, q))
                if url.path == "/fhir" and "_getpages" in q:
                    sid = q["_getpages"][0]
                    if sid not in server.searches:
                        return self._send(410, b'{"resourceType":"OperationOutcome"}')
                    return self._send(200, server.page(sid, int(q["_offset"][0]), q))
                self._send(404, b'{"resourceType":"OperationOutcome"}')

        return Handler

    def search(self, q: dict[str, list[str]]) -> list[dict[str, Any]]:
        with self.lock:
            items = list(self.resources)
        for param, key in (("_lastUpdated", lambda r: r["meta"]["lastUpdated"]), ("date", lambda r: r["recorded"])):
            for cond in q.get(param, []):
                op, value = cond[:2], cond[2:]
                bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
                ops = {"ge": lambda a: a >= bound, "gt": lambda a: a > bound,
                       "le": lambda a: a <= bound, "lt": lambda a: a < bound}
                items = [r for r in items if ops[op](datetime.fromisoformat(key(r).replace("Z", "+00:00")))]
        sort = (q.get("_sort") or ["_lastUpdated"])[0]
        items.sort(key=lambda r: (r["meta"]["lastUpdated"] if sort == "_lastUpdated" else r["recorded"], r["id"]))
        return items

    def page(self, sid: str, offset: int, q: dict[str, list[str]]) -> bytes:
        count = min(int((q.get("_count") or ["50"])[0]), self.max_count)
        items = self.searches[sid]
        chunk = items[offset: offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle", "type": "searchset", "total": len(items),
            "link": [{"relation": "self", "url": f"{self.base_url}?_getpages={sid}&_offset={offset}"}],
            "entry": [{"fullUrl": f"{self.base_url}/AuditEvent/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in chunk],
        }
        if offset + count < len(items):
            bundle["link"].append({"relation": "next",
                                   "url": f"{self.base_url}?_getpages={sid}&_offset={offset + count}&_count={count}"})
        return json.dumps(bundle).encode()


def connector(server: FhirTestServer, **extra: Any) -> FhirAuditEventRestConnector:
    options = {"base_url": server.base_url, "page_size": 50, "overlap_seconds": 300,
               "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}
    options.update(extra)
    return FhirAuditEventRestConnector("ehr-fhir", options)


def read_all(conn: FhirAuditEventRestConnector, cursor: dict | None, max_events: int = 1000,
             limit: int = 200) -> tuple[list[dict], list, dict]:
    events, dead = [], []
    for _ in range(limit):
        batch = conn.read(cursor, max_events)
        events += batch.events
        dead += batch.dead_letters
        cursor = batch.cursor
        if batch.exhausted:
            break
    return events, dead, cursor  # type: ignore[return-value]


def ids(events: list[dict]) -> list[str]:
    return [e["ehr.audit.id"] for e in events]


@pytest.fixture
def server() -> Iterator[FhirTestServer]:
    with FhirTestServer(max_count=10) as srv:
        yield srv


def test_registered_under_entry_point() -> None:
    assert connector_class("fhir-auditevent") is FhirAuditEventRestConnector


def test_pages_follow_next_links_and_cap(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(25)])
    conn = connector(server)
    events, dead, cursor = read_all(conn, None)
    assert ids(events) == [f"ae-{i:06d}" for i in range(25)] and not dead
    paths = [p for _, p, _ in server.data_requests()]
    assert "_count=50" in paths[0] and "_sort=_lastUpdated" in paths[0]
    assert len(paths) == 3 and all("_getpages=" in p for p in paths[1:])  # links followed as given
    assert events[0]["event.dataset"] == "ehr.audit" and events[0]["ehr.patient.id"] == "P1"
    assert cursor["high_water_ms"] is not None and cursor["next"] is None
    # A later poll asks for the overlap window and delivers nothing new.
    again, _, cursor2 = read_all(conn, cursor)
    assert again == []
    assert "_lastUpdated=ge2026-03-01T09:55:24.000Z" in server.data_requests()[-3][1]


def test_r4_and_r5_map_the_same(server: FhirTestServer) -> None:
    server.add(audit_event(1, T0), audit_event(2, T0 + timedelta(seconds=1), r5=True))
    events, dead, _ = read_all(connector(server), None)
    assert not dead
    assert [e["ehr.fhir.version"] for e in events] == ["R4", "R5"]
    for e in events:
        assert (e["ehr.patient.id"], e["user.id"], e["event.action"]) == ("P1", "u1", "read")


def test_ties_across_page_boundaries_small_batches_exactly_once(server: FhirTestServer) -> None:
    same = T0 + timedelta(minutes=1)
    server.add(*[audit_event(i, same) for i in range(37)])  # 37 events share one lastUpdated
    conn = connector(server)
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        batch = conn.read(cursor, 5)  # smaller than a page: one page per read, cursor carries the next link
        seen += ids(batch.events)
        cursor = batch.cursor
        if batch.exhausted:
            break
    assert sorted(seen) == [f"ae-{i:06d}" for i in range(37)] and len(seen) == 37
    # More arrive with the very same timestamp: only the new ones come.
    server.add(*[audit_event(i, same) for i in range(37, 45)])
    more, _, cursor = read_all(conn, cursor, max_events=5)
    assert sorted(ids(more)) == [f"ae-{i:06d}" for i in range(37, 45)]
    assert read_all(conn, cursor)[0] == []


def test_late_arrivals_inside_overlap_and_recorded_long_ago(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(10)])
    conn = connector(server)
    first, _, cursor = read_all(conn, None)
    assert len(first) == 10
    # Committed late: lastUpdated earlier than our high-water mark (clustered server, long transaction) ...
    late = audit_event(100, T0 + timedelta(seconds=5, milliseconds=500))
    # ... and a device that uploaded an access recorded two days ago: lastUpdated is now.
    old = audit_event(101, T0 + timedelta(seconds=30), recorded=T0 - timedelta(days=2))
    server.add(late, old)
    second, _, cursor = read_all(conn, cursor)
    assert sorted(ids(second)) == ["ae-000100", "ae-000101"]
    assert second[ids(second).index("ae-000101")]["@timestamp"] == "2026-02-27T10:00:00.000Z"
    assert read_all(conn, cursor)[0] == []


def test_lost_cursor_replays_with_identical_event_ids(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(12)])
    a, _, _ = read_all(connector(server), None)
    b, _, _ = read_all(connector(server), None)
    assert [e["event.id"] for e in a] == [e["event.id"] for e in b]


def test_429_retry_after_is_honoured(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(15)])
    server.fail_next(1, 429, {"Retry-After": "1"}, path_contains="_getpages")
    conn = connector(server)
    events, dead, _ = read_all(conn, None)
    assert len(events) == 15 and not dead
    reqs = server.data_requests()
    throttled = next(i for i, r in enumerate(reqs) if r[2] == 429)
    assert reqs[throttled + 1][0] - reqs[throttled][0] >= 1.0  # it waited as told
    assert reqs[throttled + 1][1] == reqs[throttled][1]  # and retried the same page


def test_503_http_date_retry_after_parsed() -> None:
    soon = datetime.now(timezone.utc) + timedelta(seconds=30)
    value = retry_after_seconds(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert value is not None and 25 <= value <= 31
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None


def test_500s_then_success(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(5)])
    server.fail_next(3, 500)
    events, dead, _ = read_all(connector(server, max_retries=4), None)
    assert len(events) == 5 and not dead
    assert [s for _, _, s in server.data_requests()] == [500, 500, 500, 200]


def test_malformed_json_page_dead_lettered_then_resumed(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(25)])
    conn = connector(server, max_retries=2)
    server.fail_next(3, 200, body=b'{"resourceType":"Bundle", "entry": [tru', path_contains="_getpages")
    b1 = conn.read(None, 1000)
    assert ids(b1.events) == [f"ae-{i:06d}" for i in range(10)]
    assert len(b1.dead_letters) == 1
    dl = b1.dead_letters[0]
    assert "_getpages=" in dl.location and "HTTP 200" in dl.reason and "malformed JSON" in dl.reason
    assert b1.cursor["next"] == dl.location  # the connector keeps its place on the failed page
    rest, dead, _ = read_all(conn, b1.cursor)
    assert ids(b1.events) + ids(rest) == [f"ae-{i:06d}" for i in range(25)] and not dead


def test_persistent_server_error_dead_letters_and_keeps_running(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(3)])
    server.fail_next(2, 503)
    conn = connector(server, max_retries=1)
    b1 = conn.read(None, 100)
    assert not b1.events and len(b1.dead_letters) == 1 and "503" in b1.dead_letters[0].reason
    assert "/AuditEvent?" in b1.dead_letters[0].location
    b2 = conn.read(b1.cursor, 100)
    assert len(b2.events) == 3


def test_expired_paging_link_restarts_search_without_repeats(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(25)])
    conn = connector(server)
    b1 = conn.read(None, 5)
    server.searches.clear()  # the server forgot its paging state (HAPI search expiry): 410 Gone
    rest, dead, _ = read_all(conn, b1.cursor, max_events=5)
    assert len(dead) == 1 and "410" in dead[0].reason
    assert sorted(ids(b1.events) + ids(rest)) == [f"ae-{i:06d}" for i in range(25)]
    assert len(ids(b1.events) + ids(rest)) == 25


def test_mapping_error_names_resource_and_field(server: FhirTestServer) -> None:
    bad = audit_event(7, T0)
    del bad["recorded"]
    server.add(audit_event(6, T0), bad, audit_event(8, T0))
    events, dead, _ = read_all(connector(server), None)
    assert ids(events) == ["ae-000006", "ae-000008"]
    assert len(dead) == 1 and dead[0].location == "AuditEvent/ae-000007#recorded"
    assert "recorded" in dead[0].reason


def test_oauth2_client_credentials_refreshed_on_401(caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("WW_TEST_SECRET", "s3cr3t-value")
    with FhirTestServer(max_count=10, require_token=True) as srv:
        srv.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(25)])
        conn = connector(srv, auth="client_credentials", token_url=srv.base + "/token", client_id="wardwatch",
                         client_secret_env="WW_TEST_SECRET")
        b1 = conn.read(None, 5)
        assert srv.token_requests == 1
        srv.expire_tokens()  # revoked / expired server-side before our cached expiry
        rest, dead, _ = read_all(conn, b1.cursor)
        assert not dead and len(ids(b1.events) + ids(rest)) == 25
        assert srv.token_requests == 2
        assert [s for _, _, s in srv.data_requests()].count(401) == 1
    assert "s3cr3t-value" not in caplog.text and "tok-" not in caplog.text
    assert "s3cr3t" not in repr(conn.auth)


def test_bearer_token_file_reread_on_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    with FhirTestServer(require_token=True) as srv:
        srv.valid_tokens.add("old-token")
        srv.add(audit_event(1, T0))
        conn = connector(srv, auth="bearer", token_file=str(token_file))
        assert len(conn.read(None, 10).events) == 1
        srv.expire_tokens()
        srv.valid_tokens.add("new-token")
        token_file.write_text("new-token\n")  # a sidecar rotated it
        srv.add(audit_event(2, T0 + timedelta(seconds=1)))
        events, dead, _ = read_all(conn, None)
        assert len(events) == 2 and not dead


def test_tls_verified_by_default_and_mutual_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the client must present a certificate
    client_cert = ca.issue_cert("wardwatch-client")
    ca_pem, cert_pem, key_pem = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    ca.cert_pem.write_to_path(str(ca_pem))
    client_cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    client_cert.private_key_pem.write_to_path(str(key_pem))
    with FhirTestServer(tls=server_ctx) as srv:
        srv.add(audit_event(1, T0))
        # Unknown CA: verification is on by default, so the page fails (dead letter, no crash).
        b = connector(srv, max_retries=0).read(None, 10)
        assert not b.events and b.dead_letters and "transport error" in b.dead_letters[0].reason
        ok = connector(srv, ca_certs=str(ca_pem), client_cert=str(cert_pem), client_key=str(key_pem))
        assert len(ok.read(None, 10).events) == 1


def test_next_link_to_another_origin_not_followed(server: FhirTestServer) -> None:
    server.add(*[audit_event(i, T0 + timedelta(seconds=i)) for i in range(15)])
    conn = connector(server)
    original = server.page

    def evil_page(sid: str, offset: int, q: dict) -> bytes:
        return original(sid, offset, q).replace(b"http://127.0.0.1", b"http://evil.example")

    server.page = evil_page  # type: ignore[method-assign]
    batch = conn.read(None, 100)
    assert len(batch.events) == 10 and "another origin" in batch.dead_letters[0].reason


@pytest.mark.parametrize("seed", range(5))
def test_randomised_ties_late_arrivals_small_batches_exactly_once(server: FhirTestServer, seed: int) -> None:
    """Interleave arrivals (many ties, some committed late inside the overlap) with reads of random size."""
    import random

    rnd = random.Random(seed)
    conn = connector(server, overlap_seconds=60)
    delivered: list[str] = []
    cursor = None
    now = T0
    n = 0
    for _ in range(30):
        for _ in range(rnd.randint(0, 15)):
            late = rnd.random() < 0.2
            lu = now - timedelta(seconds=rnd.randint(1, 50)) if late else now + timedelta(seconds=rnd.choice([0, 0, 1]))
            server.add(audit_event(n, lu))
            n += 1
        now += timedelta(seconds=rnd.choice([0, 1, 2]))
        batch = conn.read(cursor, rnd.randint(1, 25))
        delivered += ids(batch.events)
        assert not batch.dead_letters
        cursor = batch.cursor
    rest, _, _ = read_all(conn, cursor)
    delivered += ids(rest)
    assert len(delivered) == len(set(delivered)) == n
