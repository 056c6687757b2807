"""The identity enrichment on its own: one ``wardwatch.identity`` for one person on every source.

The directory here is a small AD-style LDIF export (``ldifde`` attribute names), so these tests need no
server; tests/test_ldap_directory.py runs the same join over a real slapd.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.directory.attributes import to_filetime
from connectors.directory.index import DirectoryIndex
from connectors.directory.snapshot import DirectorySnapshot
from engine.enrich.identity import DirectoryRoster, IdentityEnricher, IdentityOptions
from engine.enrich.privacy import PrivacyEnricher
from engine.plugins import InvalidOption, parse_options

EXPIRY = datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)  # "end of 20 Nov" in Europe/Berlin

LDIF = f"""version: 1

dn: CN=Domain Admins,CN=Users,DC=hospital,DC=example
objectClass: top
objectClass: group
cn: Domain Admins

dn: CN=Tier0 Admins,OU=Groups,DC=hospital,DC=example
objectClass: group
cn: Tier0 Admins
memberOf: CN=Domain Admins,CN=Users,DC=hospital,DC=example

dn: CN=Doe\\, John,OU=Staff,DC=hospital,DC=example
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Doe, John
displayName: John Doe
sAMAccountName: JDoe
userPrincipalName: jdoe@hospital.example
mail: john.doe@hospital.example
employeeID: u0042
department: Cardiology
userAccountControl: 512
accountExpires: 9223372036854775807
whenChanged: 20261101060000.0Z
uSNChanged: 10001
memberOf: CN=VPN-Users,OU=Groups,DC=hospital,DC=example

dn: CN=Huber\\, Admin,OU=Staff,DC=hospital,DC=example
objectClass: user
sAMAccountName: admin.huber
userPrincipalName: admin.huber@hospital.example
employeeID: u0007
department: IT
userAccountControl: 512
accountExpires: 0
memberOf: CN=Tier0 Admins,OU=Groups,DC=hospital,DC=example

dn: CN=Weber\\, Old,OU=Staff,DC=hospital,DC=example
objectClass: user
sAMAccountName: old.weber
employeeID: u0099
department: Billing
userAccountControl: 514
whenChanged: 20261110120000.0Z

dn: CN=Koch\\, Temp,OU=Staff,DC=hospital,DC=example
objectClass: user
sAMAccountName: temp.koch
employeeID: u0100
department: Radiology
userAccountControl: 512
accountExpires: {to_filetime(EXPIRY)}

dn: CN=WS01,OU=Computers,DC=hospital,DC=example
objectClass: user
objectClass: computer
sAMAccountName: WS01$
userAccountControl: 4096
"""

WINDOWS = {"@timestamp": "2026-11-02T08:00:00.000Z", "event.dataset": "windows.security", "EventID": 4624,
           "TargetUserName": "JDOE", "TargetDomainName": "HOSPITAL", "SubjectUserName": "-"}
VPN = {"@timestamp": "2026-11-02T08:05:00.000Z", "event.dataset": "vpn.auth", "user.name": "jdoe",
       "user.domain": "hospital.example", "vpn.user.original": "jdoe@hospital.example"}
EHR = {"@timestamp": "2026-11-02T08:10:00.000Z", "event.dataset": "ehr.audit", "user.id": "u0042",
       "user.name": "u0042", "ehr.patient.id": "p1"}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "users.ldif"
    path.write_text(LDIF, encoding="utf-8")
    return path


def enricher(directory: Path, **options) -> IdentityEnricher:
    return IdentityEnricher.from_config({"directory": str(directory), **options})


def test_one_identity_for_windows_vpn_and_ehr(directory):
    e = enricher(directory)
    out = [e.enrich(dict(ev)) for ev in (WINDOWS, VPN, EHR,
                                         {**VPN, "user.name": "HOSPITAL\\JDoe"},
                                         {**VPN, "user.name": "john.doe@hospital.example"})]
    assert {ev["wardwatch.identity"] for ev in out} == {"jdoe"}
    assert all(ev["wardwatch.user.department"] == "Cardiology" for ev in out)
    assert all(ev["wardwatch.user.disabled"] is False for ev in out)


def test_unknown_users_computers_and_dashes_get_nothing(directory):
    e = enricher(directory)
    for event in ({**VPN, "user.name": "mallory"}, {**WINDOWS, "TargetUserName": "WS01$"},
                  {**WINDOWS, "TargetUserName": "WS01$@HOSPITAL.EXAMPLE"},
                  {**WINDOWS, "TargetUserName": "-"}, {"event.dataset": "vpn.auth"}):
        out = e.enrich(dict(event))
        assert not any(k.startswith("wardwatch.") for k in out), out


def test_privileged_by_nested_group_cn_or_dn(directory):
    for groups in (["Domain Admins"], ["cn=domain admins, cn=users, dc=hospital, dc=example"]):
        e = enricher(directory, privileged_groups=groups)
        admin = e.enrich({**VPN, "user.name": "admin.huber"})
        jdoe = e.enrich(dict(VPN))
        assert admin["wardwatch.user.privileged"] is True  # via Tier0 Admins -> Domain Admins
        assert jdoe["wardwatch.user.privileged"] is False
    assert "wardwatch.user.privileged" not in enricher(directory).enrich(dict(VPN))


def test_disabled_by_flag_or_expiry_at_event_time(directory):
    e = enricher(directory)
    assert e.enrich({**VPN, "user.name": "old.weber"})["wardwatch.user.disabled"] is True
    before = e.enrich({**VPN, "user.name": "temp.koch", "@timestamp": "2026-11-20T22:59:59.000Z"})
    after = e.enrich({**VPN, "user.name": "temp.koch", "@timestamp": "2026-11-20T23:00:00.000Z"})
    assert (before["wardwatch.user.disabled"], after["wardwatch.user.disabled"]) == (False, True)


def test_ehr_attribute_is_configurable_and_limited_to_ehr_datasets(directory):
    e = enricher(directory)
    assert "wardwatch.identity" not in e.enrich({**VPN, "user.name": "u0042"})  # a VPN login is not an EHR id
    custom = enricher(directory, ehr_user_attribute="userPrincipalName")
    assert custom.enrich({**EHR, "user.id": "admin.huber@hospital.example",
                          "user.name": "x"})["wardwatch.identity"] == "admin.huber"


def test_domains_option_rejects_foreign_domains(directory):
    e = enricher(directory, domains=["hospital", "hospital.example"])
    assert e.enrich(dict(WINDOWS))["wardwatch.identity"] == "jdoe"
    assert "wardwatch.identity" not in e.enrich({**VPN, "user.domain": "partner.example"})
    assert "wardwatch.identity" not in e.enrich({**WINDOWS, "TargetDomainName": "EVILCORP"})


def test_datasets_option_limits_the_enricher(directory):
    e = enricher(directory, datasets=["vpn.auth"])
    assert "wardwatch.identity" not in e.enrich(dict(WINDOWS))
    assert e.enrich(dict(VPN))["wardwatch.identity"] == "jdoe"


def test_reload_when_the_directory_file_changes_and_keep_it_when_broken(directory):
    e = enricher(directory)
    assert "wardwatch.identity" not in e.enrich({**VPN, "user.name": "newbie"})
    directory.write_text(LDIF + "\ndn: CN=New,OU=Staff,DC=hospital,DC=example\nobjectClass: user\n"
                                "sAMAccountName: newbie\n", encoding="utf-8")
    os.utime(directory, (time.time() + 5, time.time() + 5))
    e.refresh()
    assert e.enrich({**VPN, "user.name": "newbie"})["wardwatch.identity"] == "newbie"
    directory.write_bytes(b'{"format": "wardwatch-directory-snapshot", "version": 99}')
    e.refresh()  # unreadable: the previous directory stays
    assert e.enrich(dict(VPN))["wardwatch.identity"] == "jdoe"


def test_missing_directory_adds_nothing_and_never_raises(tmp_path):
    e = enricher(tmp_path / "not-yet-synced.json")
    assert e.enrich(dict(VPN)) == VPN


def test_options_are_checked():
    with pytest.raises(InvalidOption, match="directory"):
        parse_options(IdentityOptions, {})
    with pytest.raises(InvalidOption, match="privileged_groups"):
        parse_options(IdentityOptions, {"directory": "d.ldif", "privileged_groups": ["cn=,=x"]})
    with pytest.raises(InvalidOption, match="unknown option"):
        parse_options(IdentityOptions, {"directory": "d.ldif", "privileged_group": ["x"]})


def test_directory_roster_feeds_the_privacy_flags(directory):
    roster = DirectoryRoster(directory, timezone_name="Europe/Berlin")
    privacy = PrivacyEnricher(roster=roster, timezone_name="Europe/Berlin")
    jdoe = privacy.enrich(dict(EHR))
    assert jdoe["ehr.user.department"] == "Cardiology" and jdoe["ehr.user.terminated"] is False
    assert jdoe["ehr.user.on_roster"] is True
    assert "ehr.relationship.patient_is_employee" not in jdoe  # the directory cannot tell: absent, not false
    assert "ehr.relationship.same_last_name" not in jdoe
    # accountExpires 2026-11-21 00:00 Berlin: the 20th is the last working day
    koch = {**EHR, "user.id": "u0100", "user.name": "u0100"}
    on_last_day = privacy.enrich({**koch, "@timestamp": "2026-11-20T20:00:00.000Z"})
    next_day = privacy.enrich({**koch, "@timestamp": "2026-11-21T07:00:00.000Z"})
    assert (on_last_day["ehr.user.terminated"], next_day["ehr.user.terminated"]) == (False, True)
    # disabled (changed 2026-11-10): terminated from that day on
    weber = {**EHR, "user.id": "u0099", "user.name": "u0099"}
    assert privacy.enrich({**weber, "@timestamp": "2026-11-10T13:00:00.000Z"})["ehr.user.terminated"] is True
    assert privacy.enrich({**weber, "@timestamp": "2026-11-08T13:00:00.000Z"})["ehr.user.terminated"] is False


def test_config_wires_identity_before_privacy(directory, tmp_path):
    from engine.app import build_enrichment
    from engine.config import load_config

    cfg = tmp_path / "wardwatch.yaml"
    cfg.write_text(
        "enrichment:\n"
        f"  identity: {{directory: {directory.name}, privileged_groups: [Domain Admins]}}\n"
        f"  privacy: {{roster_directory: {directory.name}, user_fields: [wardwatch.identity, user.name]}}\n",
        encoding="utf-8")
    (tmp_path / directory.name).write_text(LDIF, encoding="utf-8")
    chain = build_enrichment(load_config(cfg, environ={}))
    names = [step.name for step in chain.enrichers]
    assert names.index("identity") < names.index("privacy")
    [ehr] = chain.enrich_all([dict(EHR, **{"user.id": "u0007", "user.name": "u0007"})])
    assert ehr["wardwatch.identity"] == "admin.huber" and ehr["wardwatch.user.privileged"] is True
    assert ehr["ehr.user.department"] == "IT"  # privacy found the user through wardwatch.identity


def test_config_error_names_the_key(tmp_path):
    from engine.config import ConfigError, load_config

    cfg = tmp_path / "wardwatch.yaml"
    cfg.write_text("enrichment:\n  identity: {directory: d.ldif, ehr_user_attribut: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"enrichment\.identity\.ehr_user_attribut: unknown option"):
        load_config(cfg, environ={})
    cfg.write_text("enrichment:\n  privacy: {roster_csv: r.csv, roster_directory: d.ldif}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="roster_directory"):
        load_config(cfg, environ={})


JOIN_RULES = """title: VPN login
id: 0b5b3c7e-1d0e-4d8e-9a51-6c0c8c1e0001
name: t_vpn_login
logsource: {product: vpn}
detection:
    sel: {event.outcome: success}
    condition: sel
---
title: Windows logon
id: 0b5b3c7e-1d0e-4d8e-9a51-6c0c8c1e0002
name: t_win_logon
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4624}
    condition: sel
---
title: EHR record opened
id: 0b5b3c7e-1d0e-4d8e-9a51-6c0c8c1e0003
name: t_ehr_read
logsource: {product: ehr}
detection:
    sel: {ehr.action: read}
    condition: sel
---
title: One person on VPN, Windows and the EHR within an hour
id: 0b5b3c7e-1d0e-4d8e-9a51-6c0c8c1e0004
correlation:
    type: temporal
    rules: [t_vpn_login, t_win_logon, t_ehr_read]
    group-by: [wardwatch.identity]
    timespan: 1h
level: medium
"""


def test_a_sigma_correlation_joins_the_three_sources_on_wardwatch_identity(directory, tmp_path):
    """The point of the join: a temporal correlation over Windows, VPN and EHR events of one person fires,
    grouped by the identity; without the enrichment the three logins never meet."""
    from engine.app import alerts_over_sample
    from engine.sigma import load_rules

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "join.yml").write_text(JOIN_RULES, encoding="utf-8")
    ruleset = load_rules([str(tmp_path / "rules")])
    assert not ruleset.errors
    events = [
        {**WINDOWS, "event.id": "w1", "TargetUserName": "jdoe", "TargetDomainName": "HOSPITAL"},
        {**VPN, "event.id": "v1", "event.outcome": "success"},
        {**EHR, "event.id": "e1", "ehr.action": "read"},
        {**VPN, "event.id": "v2", "event.outcome": "success", "user.name": "admin.huber"},  # not on all three
    ]
    plain = alerts_over_sample(ruleset, [dict(e) for e in events])
    assert [a for a in plain if a.rule_title.startswith("One person")] == []
    e = enricher(directory)
    alerts = [a for a in alerts_over_sample(ruleset, [e.enrich(dict(ev)) for ev in events])
              if a.rule_title.startswith("One person")]
    assert [a.group for a in alerts] == [{"wardwatch.identity": "jdoe"}]


_sam = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20).filter(lambda s: not s.endswith("$"))
_domain = st.text("abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(_sam, _domain, st.sampled_from(["{d}\\{n}", "{n}@{d}", "{n}", "{D}\\{N}", "{N}@{D}"]), _sam)
def test_every_spelling_of_a_login_resolves_to_one_identity(name, domain, form, other):
    """Property: ``DOMAIN\\name``, ``name@domain`` and ``NAME`` in any case are the same directory user, and a
    name that is not in the directory never resolves."""
    snap = DirectorySnapshot()
    user = snap.add_entry(f"CN={name},OU=Staff,DC=hospital,DC=example",
                          {"objectclass": ["user"], "samaccountname": [name.upper()]}, ())
    index = DirectoryIndex(snap)
    spelled = form.format(n=name, d=domain, N=name.upper(), D=domain.upper())
    assert index.by_login(spelled) is user
    if other != name:
        assert index.by_login(other) is None
