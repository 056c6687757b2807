"""The committed demo fixtures: reproducible, well-formed, and carrying exactly the planted scenarios.

The ground-truth checks here are plain Python (no Sigma, no engine), so they state independently what the
rules in rules/healthcare must find in the fixtures; see docs/rules-pack.md.
"""

from __future__ import annotations

import base64
import importlib.util
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
FILES = ("ehr/auditevents.ndjson", "vpn/vpn-auth.ndjson", "windows/security.ndjson")
#: Europe/Berlin on the demo dates (CET, no DST change between 2026-11-02 and 2026-11-03)
LOCAL = timezone(timedelta(hours=1))


def _load_generator():
    spec = importlib.util.spec_from_file_location("wardwatch_fixtures_generate", FIXTURES / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(rel: str) -> list[dict]:
    with open(FIXTURES / rel, "rb") as fh:
        return [orjson.loads(line) for line in fh]


def _ts(s: str) -> datetime:
    assert s.endswith("Z"), s
    return datetime.fromisoformat(s[:-1] + "+00:00")


def _after_hours(t: datetime) -> bool:
    lt = t.astimezone(LOCAL)
    return lt.weekday() >= 5 or not (7 <= lt.hour < 19)


# ------------------------------------------------------------------------------------ reproducibility
def test_committed_fixtures_are_what_the_generator_writes(tmp_path):
    gen = _load_generator()
    gen.write(tmp_path)
    for rel in FILES:
        assert (tmp_path / rel).read_bytes() == (FIXTURES / rel).read_bytes(), (
            f"{rel} differs from generate.py output: re-run `python fixtures/generate.py`")


def test_generator_is_deterministic():
    gen = _load_generator()
    assert gen.generate() == gen.generate()


def test_total_size_is_small():
    assert sum((FIXTURES / rel).stat().st_size for rel in FILES) < 3 * 1024 * 1024


# ---------------------------------------------------------------------------------------------- EHR
def _ehr_flat(ev: dict) -> dict:
    """A minimal, independent version of the mapping the FHIR connector performs."""
    user = next(a for a in ev["agent"] if a.get("requestor"))
    patient = next((e["what"]["reference"].split("/", 1)[1] for e in ev["entity"]
                    if e.get("role", {}).get("code") == "1"), None)
    query = next((base64.b64decode(e["query"]).decode() for e in ev["entity"] if "query" in e), None)
    purposes = [c["code"] for p in user.get("purposeOfUse", []) for c in p["coding"]]
    return {"t": _ts(ev["recorded"]), "action": ev["subtype"][0]["code"], "user": user["altId"],
            "user_id": user["who"]["identifier"]["value"], "patient": patient, "query": query,
            "purposes": purposes, "outcome": ev["outcome"]}


@pytest.fixture(scope="module")
def ehr():
    return _read("ehr/auditevents.ndjson")


def test_ehr_auditevent_shape(ehr):
    assert len(ehr) > 1000
    ids = set()
    for ev in ehr:
        assert ev["resourceType"] == "AuditEvent"
        ids.add(ev["id"])
        assert ev["type"] == {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"}
        (sub,) = ev["subtype"]
        assert sub["system"] == "http://hl7.org/fhir/restful-interaction"
        assert sub["code"] in {"read", "vread", "search-type", "update", "create"}
        assert ev["action"] == {"read": "R", "vread": "R", "search-type": "E", "update": "U", "create": "C"}[
            sub["code"]]
        _ts(ev["recorded"])
        assert ev["outcome"] in {"0", "4"}
        assert ev["source"]["observer"]["display"] == "ehr.hospital.example"
        users = [a for a in ev["agent"] if a["requestor"]]
        assert len(users) == 1 and len(ev["agent"]) == 2
        u = users[0]
        assert u["type"]["coding"][0]["code"] == "IRCP"
        assert u["who"]["identifier"]["value"].startswith("U") and u["who"]["display"] and u["altId"]
        assert u["network"]["type"] == "2" and u["network"]["address"].startswith("10.")
        assert u["purposeOfUse"][0]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActReason"
        roles = {e["role"]["code"] for e in ev["entity"]}
        if sub["code"] == "search-type":
            assert "24" in roles
        else:
            assert "1" in roles  # every non-search event names its patient
        for e in ev["entity"]:
            if e["role"]["code"] == "1":
                assert e["what"]["reference"].startswith("Patient/")
            if e["role"]["code"] == "4":
                assert e["what"]["reference"].split("/")[0] in {
                    "Observation", "Condition", "MedicationRequest", "DiagnosticReport", "Encounter"}
    assert len(ids) == len(ehr)
    flat = [_ehr_flat(e) for e in ehr]
    assert len({f["user"] for f in flat}) == 40
    assert len({f["patient"] for f in flat if f["patient"]}) >= 300
    assert all(f["query"] for f in flat if f["action"] == "search-type")
    assert [f["t"] for f in flat] == sorted(f["t"] for f in flat)


def test_ehr_bulk_access_only_mkeller(ehr):
    reads = defaultdict(list)
    for f in map(_ehr_flat, ehr):
        if f["action"] in ("read", "vread") and f["patient"]:
            reads[f["user"]].append((f["t"], f["patient"]))
    peak = {}
    for user, evs in reads.items():
        evs.sort()
        peak[user] = max(len({p for t, p in evs if end - timedelta(hours=1) <= t <= end}) for end, _ in evs)
    over = {u: n for u, n in peak.items() if n > 50}
    assert over == {"mkeller": 65}
    assert max(n for u, n in peak.items() if u != "mkeller") <= 25
    user_ids = {f["user_id"] for f in map(_ehr_flat, ehr) if f["user"] == "mkeller"}
    assert user_ids == {"U1042"}
    bulk = [(t, p) for t, p in reads["mkeller"]
            if datetime(2026, 11, 2, 13, 0, tzinfo=timezone.utc) <= t < datetime(2026, 11, 2, 13, 50,
                                                                                  tzinfo=timezone.utc)]
    assert len(bulk) == 65 and len({p for _, p in bulk}) == 65


def test_ehr_break_the_glass_only_tbauer(ehr):
    btg = [f for f in map(_ehr_flat, ehr) if "BTG" in f["purposes"]]
    assert len(btg) == 1
    (f,) = btg
    assert f["user"] == "tbauer" and f["action"] == "read"
    assert f["t"].astimezone(LOCAL).strftime("%Y-%m-%d %H:%M") == "2026-11-02 10:12"


def test_ehr_after_hours_only_jschmidt(ehr):
    late = [f for f in map(_ehr_flat, ehr) if _after_hours(f["t"])]
    assert len(late) == 3
    assert {f["user"] for f in late} == {"jschmidt"}
    assert {f["action"] for f in late} == {"read"}
    assert len({f["patient"] for f in late}) == 3
    for f in late:
        lt = f["t"].astimezone(LOCAL)
        assert lt.date().isoformat() == "2026-11-03" and lt.hour == 2 and 10 <= lt.minute <= 25


# ---------------------------------------------------------------------------------------------- VPN
VPN_FIELDS = ("@timestamp", "event.dataset", "event.category", "event.action", "event.outcome", "user.name",
              "source.ip", "source.geo.country_iso_code", "observer.vendor", "observer.product", "event.original")


@pytest.fixture(scope="module")
def vpn():
    return _read("vpn/vpn-auth.ndjson")


def test_vpn_shape(vpn):
    assert len({e["user.name"] for e in vpn}) == 30
    for e in vpn:
        for k in VPN_FIELDS:
            assert k in e, k
        assert e["event.dataset"] == "vpn.auth" and e["event.category"] == ["authentication"]
        assert e["event.action"] == "vpn-login" and e["event.outcome"] in {"success", "failure"}
        assert e["observer.vendor"] == "Fortinet" and e["observer.product"] == "FortiGate"
        assert ("event.reason" in e) == (e["event.outcome"] == "failure")
        assert f'user="{e["user.name"]}"' in e["event.original"] and f'remip={e["source.ip"]}' in e["event.original"]
        _ts(e["@timestamp"])


def test_vpn_bruteforce_only_admin_huber(vpn):
    fails = defaultdict(list)
    for e in vpn:
        if e["event.outcome"] == "failure":
            fails[e["user.name"]].append(_ts(e["@timestamp"]))
    peak = {u: max(sum(1 for t in ts if end - timedelta(minutes=10) <= t <= end) for end in ts)
            for u, ts in fails.items()}
    assert {u for u, n in peak.items() if n >= 10} == {"admin.huber"}
    assert peak["admin.huber"] == 14
    assert max(len(ts) for u, ts in fails.items() if u != "admin.huber") <= 2
    huber = [e for e in vpn if e["user.name"] == "admin.huber"]
    attack = [e for e in huber if e["source.ip"] == "203.0.113.50"]
    assert all(e["source.geo.country_iso_code"] == "RU" for e in attack)
    assert [e["event.outcome"] for e in attack] == ["failure"] * 14 + ["success"]
    first, last_fail, success = (_ts(attack[i]["@timestamp"]) for i in (0, 13, 14))
    assert last_fail - first < timedelta(minutes=4)
    assert timedelta(minutes=2) <= success - last_fail < timedelta(minutes=3)
    assert first.astimezone(LOCAL).strftime("%H:%M") == "21:30"
    # the brute force is followed by a success within 30 minutes for nobody else
    for u, ts in fails.items():
        if u != "admin.huber":
            assert peak[u] < 10


# ------------------------------------------------------------------------------------------ Windows
@pytest.fixture(scope="module")
def win():
    return _read("windows/security.ndjson")


def test_windows_shape(win):
    assert {e["EventID"] for e in win} == {4624, 4625, 4634, 4769}
    assert sum(1 for e in win if e["EventID"] == 4769) >= 300
    for e in win:
        assert e["event.dataset"] == "windows.security" and e["Channel"] == "Security"
        assert e["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
        assert e["Computer"] == "dc01.klinikum.example" and isinstance(e["EventID"], int)
        assert "TargetUserName" in e and "TargetDomainName" in e
        _ts(e["@timestamp"])
        if e["EventID"] == 4769:
            for k in ("ServiceName", "ServiceSid", "TicketEncryptionType", "TicketOptions", "IpAddress", "IpPort",
                      "Status"):
                assert k in e, k
            assert e["TicketEncryptionType"] in {"0x12", "0x17"} and e["Status"] == "0x0"
            assert e["IpAddress"].startswith("::ffff:10.")
    assert len({e["EventRecordID"] for e in win}) == len(win)


def _kerberoast_base(e: dict) -> bool:
    return (e["EventID"] == 4769 and e["TicketEncryptionType"] == "0x17" and e["Status"] == "0x0"
            and not (e["ServiceName"].endswith("$") or e["ServiceName"].lower() == "krbtgt"))


def test_kerberoasting_only_pwagner(win):
    rc4 = defaultdict(list)
    for e in win:
        if _kerberoast_base(e):
            rc4[e["TargetUserName"]].append((_ts(e["@timestamp"]), e["ServiceName"]))
    peak = {u: max(len({s for t, s in evs if end - timedelta(minutes=10) <= t <= end}) for end, _ in evs)
            for u, evs in rc4.items()}
    assert {u for u, n in peak.items() if n >= 5} == {"pwagner@KLINIKUM.EXAMPLE"}
    assert peak["pwagner@KLINIKUM.EXAMPLE"] == 7
    evs = sorted(rc4["pwagner@KLINIKUM.EXAMPLE"])
    assert evs[-1][0] - evs[0][0] < timedelta(minutes=3)
    assert evs[0][0].astimezone(LOCAL).strftime("%H:%M") == "16:05"
    roast = [e for e in win if e["TargetUserName"] == "pwagner@KLINIKUM.EXAMPLE" and e["EventID"] == 4769
             and e["TicketEncryptionType"] == "0x17"]
    assert {e["IpAddress"] for e in roast} == {"::ffff:10.20.5.77"}
    # exactly one other RC4 ticket in the whole file: the legacy lab integration, a single service
    others = [e for e in win if e["EventID"] == 4769 and e["TicketEncryptionType"] == "0x17"
              and e["TargetUserName"] != "pwagner@KLINIKUM.EXAMPLE"]
    assert len(others) == 1 and others[0]["ServiceName"] == "svc_medlegacy"
