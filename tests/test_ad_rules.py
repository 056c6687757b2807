"""rules/windows (the AD pack) and rules/chains on the demo fixtures, through the connectors and enrichment
the demo uses.

Pipeline: fixtures/windows-winlogbeat (Winlogbeat 8 NDJSON, ``winlogbeat`` connector), fixtures/vpn-cisco_asa
(``cisco-asa``), fixtures/ehr/chain-export.ndjson (``fhir-auditevent-file``) -> identity enrichment from
fixtures/directory/users.ldif -> engine.app.alerts_over_sample (the store, correlation and episode path of
``wardwatch rules test``).

Positive: the whole fixture set raises exactly ``EXPECTED`` (and nothing else: the thousands of ordinary
events raise nothing). Negative, per rule: the same fixtures with that rule's scenario events removed
(the generator knows which documents each scenario wrote) raise no alert of the rule, while the
ordinary look-alikes the rule must ignore (``LOOKALIKES``: RC4 of the legacy lab account, DC-to-DC
replication, department-group changes, SCCM tasks on workstations, user-object edits, one locked-out phone,
typos, ...) are still there, so the negative case is not empty.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import orjson
import pytest
import yaml

from engine.app import alerts_over_sample, build_connector, build_enrichment
from engine.config import load_config
from engine.sigma import load_rules
from tests.conftest import read_all

ROOT = Path(__file__).resolve().parent.parent
WINLOGBEAT = ROOT / "fixtures" / "windows-winlogbeat"
DIRECTORY = ROOT / "fixtures" / "directory"
RULES = ["rules/windows", "rules/chains", "rules/privacy", "rules/healthcare/vpn_bruteforce_then_success.yml"]
PRIVILEGED = ["Domain Admins", "Enterprise Admins", "Schema Admins", "Administrators", "Account Operators",
              "Server Operators", "Backup Operators", "DnsAdmins", "Group Policy Creator Owners"]
SID = "S-1-5-21-1004336348-1177238915-682003330-"

#: (rule name, identifying group fields) -> number of alerts, over all fixtures
EXPECTED: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {
    ("windows_kerberoasting", (("TargetUserName", "pwagner@KLINIKUM.EXAMPLE"),)): 1,
    ("windows_asrep_roasting", (("user.name", "svc_scanner"),)): 1,
    ("windows_roastable_account_change", (("user.name", "svc_scanner"),)): 1,
    ("windows_dcsync", (("user.name", "svc_backup"),)): 2,  # one 4662 per replication right used
    ("windows_privileged_group_change", (("SubjectUserName", "admin.roth"), ("TargetUserName", "Backup Operators"))): 1,
    ("windows_privileged_group_change", (("SubjectUserName", "jarnold"), ("TargetUserName", "Domain Admins"))): 1,
    ("windows_privileged_group_change", (("SubjectUserName", "it.schulte"), ("TargetUserName", "Domain Admins"))): 1,
    ("windows_new_account_added_to_admin_group", (("account_sid", SID + "4102"),)): 1,
    ("windows_lockout_storm", ()): 1,
    ("windows_security_log_cleared", (("user.name", "pwagner"),)): 1,
    ("windows_system_log_cleared", (("user.name", "pwagner"),)): 1,
    ("windows_disabled_account_logon", (("user.name", "kwinkler"),)): 1,
    ("windows_disabled_account_logon", (("user.name", "hschroeder"),)): 1,
    ("windows_password_spray", (("source.ip", "10.20.8.66"),)): 1,
    ("windows_dc_scheduled_task", (("user.name", "pwagner"),)): 1,
    ("windows_privileged_password_reset", (("user.name", "admin.roth"),)): 1,
    ("windows_gpo_modified", (("user.name", "pwagner"),)): 1,
    ("chain_vpn_ad_change_ehr_export", (("wardwatch.identity", "jarnold"),)): 1,
    # not AD rules, but the same fixtures: the chain person's export alone, and the ASA brute force
    ("ehr_privacy_bulk_export_print", (("user.name", "jarnold"),)): 1,
    ("vpn_bruteforce_then_success", (("user.name", "admin.huber"),)): 1,
}

Event = dict[str, Any]
#: rule -> (scenarios whose events make it fire, predicate of the ordinary look-alikes it must not fire on)
LOOKALIKES: dict[str, tuple[tuple[str, ...], Callable[[Event], bool]]] = {
    "windows_kerberoasting": (("kerberoasting",), lambda e: e["EventID"] == 4769 and e.get("TicketEncryptionType") == "0x17"),
    "windows_asrep_roasting": (("asrep_roast",), lambda e: e["EventID"] == 4768 and e.get("TargetUserName") == "svc_scanner"),
    "windows_roastable_account_change": (("dont_req_preauth",), lambda e: e["EventID"] == 4738),
    "windows_dcsync": (("dcsync",), lambda e: e["EventID"] == 4662 and "1131f6ad" in e.get("Properties", "")),
    "windows_privileged_group_change": (
        ("privileged_group_change_backup_operators", "chain_domain_admins", "new_admin_account"),
        lambda e: e["EventID"] == 4728 and e.get("TargetUserName", "").startswith("GG-")),
    "windows_new_account_added_to_admin_group": (("new_admin_account",), lambda e: e["EventID"] == 4720),
    "windows_lockout_storm": (("lockout_storm",), lambda e: e["EventID"] == 4740),
    "windows_security_log_cleared": (("log_cleared",), lambda e: e.get("Provider_Name") == "Microsoft-Windows-Security-Auditing"),
    "windows_system_log_cleared": (("log_cleared",), lambda e: e.get("Channel") == "System"),
    "windows_disabled_account_logon": (("kwinkler_expired_tgt", "hschroeder_disabled_ntlm"),
                                       lambda e: e["EventID"] in (4768, 4776) and e.get("wardwatch.user.disabled") is False),
    "windows_password_spray": (("password_spray",), lambda e: e["EventID"] in (4625, 4771)),
    "windows_dc_scheduled_task": (("dc_scheduled_task",), lambda e: e["EventID"] == 4698),
    "windows_privileged_password_reset": (("admin_password_reset",), lambda e: e["EventID"] == 4724),
    "windows_gpo_modified": (("gpo_change",), lambda e: e["EventID"] == 5136),
    # the chain without its AD step: jarnold's VPN login and EHR exports are still there
    "chain_vpn_ad_change_ehr_export": (("chain_domain_admins",),
                                       lambda e: e.get("wardwatch.identity") == "jarnold" and e.get("event.action") == "export"),
}


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def winlogbeat_generator() -> Any:
    return _load("wardwatch_ad_fixture_generate", WINLOGBEAT / "generate.py")


def demo_config(tmp: Path) -> Any:
    """The config the demo needs for these fixtures (docs/rules-pack.md "Cross-source chains")."""
    path = tmp / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({
        "connectors": [
            {"name": "dc-security", "type": "winlogbeat", "path": str(WINLOGBEAT)},
            {"name": "vpn", "type": "cisco-asa", "path": str(ROOT / "fixtures" / "vpn-cisco_asa"),
             "timezone": "Europe/Berlin"},
            {"name": "ehr", "type": "fhir-auditevent-file", "path": str(ROOT / "fixtures" / "ehr" / "chain-export.ndjson")},
        ],
        "enrichment": {"identity": {"directory": str(DIRECTORY / "users.ldif"), "privileged_groups": PRIVILEGED}},
    }))
    return load_config(str(path))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, winlogbeat_generator: Any) -> dict[str, Any]:
    config = demo_config(tmp_path_factory.mktemp("adrules"))
    events: list[Event] = []
    for entry in config["connectors"]:
        batch = read_all(build_connector(config, entry), None, 5000)
        if entry["type"] != "cisco-asa":  # the ASA fixture has message types the parser does not map (its own tests)
            assert batch.dead_letters == [], batch.dead_letters[:3]
        events += batch.events
    events = build_enrichment(config).enrich_all(events)
    ruleset = load_rules([str(ROOT / p) for p in RULES], placeholders=config["rules"]["placeholders"])
    assert not ruleset.errors, ruleset.errors
    log = winlogbeat_generator.build()
    docs = log.documents("Security") + log.documents("System")
    scenario_of = {(d["winlog"]["computer_name"], int(d["winlog"]["record_id"])): log.scenario_of[id(d)]
                   for d in docs if id(d) in log.scenario_of}
    return {"events": events, "ruleset": ruleset, "scenario_of": scenario_of,
            "names": {i.id: i.name for i in [*ruleset.rules.values(), *ruleset.correlations.values()]}}


def scenario(setup: dict[str, Any], event: Event) -> str | None:
    return setup["scenario_of"].get((event.get("winlog.computer_name"), event.get("winlog.record_id")))


def summarise(setup: dict[str, Any], alerts: Any) -> Counter:
    """(rule name, the EXPECTED group fields of its alert) -> count."""
    keys = {name: [k for k, _ in fields] for name, fields in EXPECTED}
    out: Counter = Counter()
    for alert in alerts:
        name = setup["names"][alert.rule_id]
        fields = tuple((k, alert.group.get(k)) for k in keys.get(name, sorted(alert.group)))
        out[(name, fields)] += 1
    return out


def summary(setup: dict[str, Any], events: list[Event]) -> Counter:
    return summarise(setup, alerts_over_sample(setup["ruleset"], events))


@pytest.fixture(scope="module")
def positive(setup: dict[str, Any]) -> Counter:
    return summary(setup, setup["events"])


@pytest.fixture(scope="module")
def negative(setup: dict[str, Any]) -> tuple[Counter, list[Event]]:
    """Every scenario's Windows events removed: what each rule sees of the ordinary day."""
    ordinary = [e for e in setup["events"] if scenario(setup, e) is None]
    return summary(setup, ordinary), ordinary


def test_fixtures_are_what_the_generators_write(tmp_path: Path, winlogbeat_generator: Any) -> None:
    assert winlogbeat_generator.main(["generate.py", str(tmp_path)]) == 0
    for name in ("security.ndjson", "system.ndjson"):
        assert (tmp_path / name).read_bytes() == (WINLOGBEAT / name).read_bytes(), (
            f"{name} differs: re-run python fixtures/windows-winlogbeat/generate.py")
    ldif = _load("wardwatch_directory_generate", DIRECTORY / "generate.py")
    assert ldif.render() == (DIRECTORY / "users.ldif").read_bytes(), "re-run python fixtures/directory/generate.py"


def test_fixtures_are_a_realistic_day(setup: dict[str, Any]) -> None:
    windows = [e for e in setup["events"] if str(e.get("event.dataset", "")).startswith("windows.")]
    ordinary = [e for e in windows if scenario(setup, e) is None]
    assert len(ordinary) > 2500
    counts = Counter(e["EventID"] for e in ordinary)
    assert all(counts[i] >= 15 for i in (4624, 4634, 4768, 4769, 4776, 4625, 4771, 7036)), counts
    users = {e["wardwatch.identity"] for e in ordinary if "wardwatch.identity" in e}
    assert len(users) >= 150  # identity resolved for the staff through KLINIKUM\name and name@REALM


def test_directory_joins_one_person_across_sources(setup: dict[str, Any]) -> None:
    jarnold = [e for e in setup["events"] if e.get("wardwatch.identity") == "jarnold"]
    assert {e["event.dataset"] for e in jarnold} >= {"windows.security", "vpn.auth", "ehr.audit"}
    ehr = next(e for e in jarnold if e["event.dataset"] == "ehr.audit")
    assert ehr["user.id"] == "U1030"  # the EHR id is the directory's employeeID


def test_at_least_twelve_alerting_ad_rules(setup: dict[str, Any]) -> None:
    ruleset = setup["ruleset"]
    alerting = {r.name for r in ruleset.rules.values() if r.level != "informational"}
    alerting |= {c.name for c in ruleset.correlations.values()}
    windows = {name for name, _ in EXPECTED if name.startswith("windows_")}
    assert len(windows) >= 12 and windows <= alerting
    assert set(LOOKALIKES) == windows | {"chain_vpn_ad_change_ehr_export"}  # each has its negative case


def test_the_fixtures_raise_exactly_the_expected_alerts(positive: Counter) -> None:
    assert dict(positive) == EXPECTED


@pytest.mark.parametrize("rule", sorted(LOOKALIKES))
def test_rule_positive_and_negative(rule: str, positive: Counter, negative: tuple[Counter, list[Event]]) -> None:
    fired = {key for key in positive if key[0] == rule}
    assert fired, f"{rule} did not fire on its scenario"
    counts, ordinary = negative
    assert not [key for key in counts if key[0] == rule], f"{rule} fired without its scenario events"
    _scenarios, lookalike = LOOKALIKES[rule]
    assert any(lookalike(e) for e in ordinary), f"{rule}: the negative case has no look-alike events"


def test_the_ordinary_day_raises_only_the_non_ad_alerts(negative: tuple[Counter, list[Event]]) -> None:
    counts, _ = negative
    assert {name for name, _ in counts} == {"ehr_privacy_bulk_export_print", "vpn_bruteforce_then_success"}


def test_scenarios_are_those_of_the_generator(setup: dict[str, Any], winlogbeat_generator: Any) -> None:
    used = {s for scenarios, _ in LOOKALIKES.values() for s in scenarios}
    marked = set(setup["scenario_of"].values())
    # every scenario the generator marks is some rule's; asrep's account change belongs to its own rule
    assert marked == used, marked ^ used
    assert set(winlogbeat_generator.SCENARIOS) - {"rc4_legacy"} == marked


def test_terminated_user_logon_through_the_privacy_roster(setup: dict[str, Any], tmp_path: Path) -> None:
    """The rule's second branch: the HR/EHR roster says the person left (ehr.user.terminated), the directory
    still has the account enabled. Privacy enrichment for windows.security with a roster of our own."""
    roster = tmp_path / "roster.csv"
    roster.write_text("user_id,login,family_name,department,address,postal_code,patient_id,end_date\n"
                      "U1013,lbrandt,Brandt,Internal Medicine,Am Park 1,10119,P1,2026-10-31\n", encoding="utf-8")
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"enrichment": {
        "identity": {"directory": str(DIRECTORY / "users.ldif"), "privileged_groups": PRIVILEGED},
        "privacy": {"roster_csv": str(roster), "timezone": "Europe/Berlin", "datasets": ["windows.security"]}}}))
    config = load_config(str(path))
    entry = {"name": "dc-security", "type": "winlogbeat", "path": str(WINLOGBEAT / "security.ndjson")}
    events = build_enrichment(config).enrich_all(read_all(build_connector(config, entry), None, 5000).events)
    lbrandt = [e for e in events if e.get("user.name") == "lbrandt" and e["EventID"] in (4624, 4768)]
    assert lbrandt and all(e.get("ehr.user.terminated") is True for e in lbrandt)
    assert all(e.get("wardwatch.user.disabled") is False for e in lbrandt)
    users = [a.group.get("user.name") for a in alerts_over_sample(setup["ruleset"], events)
             if setup["names"][a.rule_id] == "windows_disabled_account_logon"]
    assert set(users) == {"hschroeder", "kwinkler", "lbrandt"}  # one alert per logon (suppression: per site)


def test_spray_over_ntlm_and_kerberos_is_one_address(setup: dict[str, Any]) -> None:
    """4625 logs 10.20.8.66, 4771 ::ffff:10.20.8.66: grouped by source.ip the spray is one alert of 12."""
    by_id = {e["event.id"]: e for e in setup["events"]}
    spray = [a for a in alerts_over_sample(setup["ruleset"], setup["events"])
             if setup["names"][a.rule_id] == "windows_password_spray"]
    assert len(spray) == 1 and spray[0].metric["value"] == 12
    assert {by_id[i]["EventID"] for i in spray[0].evidence} == {4625, 4771}


def test_elasticsearch_store_raises_the_same_alerts(setup: dict[str, Any], positive: Counter) -> None:
    """The pack on the Elasticsearch store (Lucene queries, keyword fields, booleans, exists): same alerts."""
    import uuid

    from engine.app import build_jobs
    from engine.evaluation import Evaluator, iter_alerts, run_all
    from engine.store import open_store
    from tests.conftest import require_elasticsearch

    url = require_elasticsearch()
    store = open_store("elasticsearch", hosts=[url], index_prefix=f"wwtest-ad-{uuid.uuid4().hex[:12]}")
    try:
        store.write(setup["events"])
        evaluator = Evaluator(store, evidence_cap=10**9, candidates=setup["ruleset"].candidates)
        assert summarise(setup, iter_alerts(run_all(evaluator, build_jobs(setup["ruleset"])))) == positive
    finally:
        store.delete_all()
        store.close()


def test_rule_branches_the_day_does_not_exercise(setup: dict[str, Any], winlogbeat_generator: Any,
                                                  tmp_path: Path) -> None:
    """Universal groups (4756), a German DC's group names, builtin SIDs, an SPN set on a user (4738): built
    with the generator's own event builders, read through the winlogbeat connector."""
    import random

    gen = winlogbeat_generator
    people = {p["login"]: p for p in gen.P.people()}
    huber, roth, lpohl = people["admin.huber"], people["admin.roth"], people["lpohl"]
    log = gen.Log(random.Random(1))
    t = gen.utc(9)
    log.member_added(t, huber, "0x1", gen.P.user_dn(roth), roth["sid"], "Enterprise Admins")  # 4756
    log.add(t, 4732, {"MemberName": "-", "MemberSid": lpohl["sid"], "TargetUserName": "Administratoren",
                      "TargetDomainName": "Builtin", "TargetSid": "S-1-5-32-544", **log.subject(huber, "0x1")})
    log.add(t, 4732, {"MemberName": "-", "MemberSid": roth["sid"], "TargetUserName": "Remotedesktopbenutzer",
                      "TargetDomainName": "Builtin", "TargetSid": "S-1-5-32-555", **log.subject(huber, "0x1")})
    log.account_changed(t, huber, "0x1", lpohl, spns="HTTP/lpohl-web.klinikum.example")
    log.account_changed(t + gen.timedelta(seconds=1), huber, "0x1", roth, spns="-")
    path = tmp_path / "branches.ndjson"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in log.documents("Security")))
    config = demo_config(tmp_path)
    entry = {"name": "branches", "type": "winlogbeat", "path": str(path)}
    events = build_enrichment(config).enrich_all(read_all(build_connector(config, entry), None, 100).events)
    got = summarise(setup, alerts_over_sample(setup["ruleset"], events))
    assert got == {
        ("windows_privileged_group_change", (("SubjectUserName", "admin.huber"), ("TargetUserName", "Enterprise Admins"))): 1,
        ("windows_privileged_group_change", (("SubjectUserName", "admin.huber"), ("TargetUserName", "Administratoren"))): 1,
        ("windows_roastable_account_change", (("user.name", "lpohl"),)): 1,
    }


def _shifted(events: list[Event], pick: Callable[[Event], bool], minutes: int) -> list[Event]:
    from datetime import datetime, timedelta

    out = []
    for e in events:
        if pick(e):
            t = datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")) + timedelta(minutes=minutes)
            e = dict(e, **{"@timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"})
        out.append(e)
    return out


@pytest.mark.parametrize("case,minutes", [("ad_change_after_the_exports", 40), ("exports_an_hour_later", 50)])
def test_chain_needs_the_order_and_the_hour(setup: dict[str, Any], case: str, minutes: int) -> None:
    """The AD change moved after the exports (12:22:40 -> 13:02:40), or the exports 50 minutes later (the
    last step more than an hour after the VPN login): every step is still there, the chain is not."""
    if case == "ad_change_after_the_exports":
        pick: Callable[[Event], bool] = lambda e: e.get("EventID") == 4728 and e.get("SubjectUserName") == "jarnold"
    else:
        pick = lambda e: e.get("event.action") == "export"
    got = summary(setup, _shifted(setup["events"], pick, minutes))
    names = {name for name, _ in got}
    assert "chain_vpn_ad_change_ehr_export" not in names
    assert {"windows_privileged_group_change", "ehr_privacy_bulk_export_print"} <= names


def test_the_kerberoasting_account_is_one_case_with_what_it_did_next(setup: dict[str, Any]) -> None:
    """pwagner Kerberoasts at 15:06, then creates a task on a DC, clears the logs and changes a GPO: one
    person, one case. The correlation groups by ``TargetUserName`` (``pwagner@KLINIKUM.EXAMPLE``), which
    no case kind reads, so its alert was a case of its own beside pwagner's; its rule file now says that
    field names a user (``wardwatch: {case_by: {user: [TargetUserName]}}``)."""
    from engine.alerts.cases import case_settings, memberships

    settings = case_settings({}, setup["ruleset"])
    alerts = alerts_over_sample(setup["ruleset"], setup["events"])
    by_name = {setup["names"][a.rule_id]: a for a in alerts}
    [(kind, subject, _, kerberoasting, _)] = memberships(by_name["windows_kerberoasting"], settings)
    assert (kind, subject) == ("user", "pwagner")
    assert by_name["windows_kerberoasting"].group == {"TargetUserName": "pwagner@KLINIKUM.EXAMPLE"}  # as before
    for later in ("windows_dc_scheduled_task", "windows_security_log_cleared", "windows_gpo_modified"):
        assert memberships(by_name[later], settings)[0][3] == kerberoasting, later
