"""``ldap-directory`` against a real slapd (tests/ldap_server.py), the LDIF path, and the AD decoders.

What a user sees: every user of a directory larger than the server's size limit arrives, over LDAPS and
StartTLS with the certificate checked; a wrong CA or bind is one clear line; a server that is down is
"unavailable", not a traceback; an incremental sync brings exactly the users that changed; and the
identity join gives ``HOSPITAL\\jdoe``, ``jdoe@hospital.example`` and ``u0042`` one ``wardwatch.identity``.
"""

from __future__ import annotations

import io
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import ldif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorConfigError, ConnectorError
from connectors.directory.attributes import (
    FILETIME_NEVER,
    UAC_FLAGS,
    AttributeValueError,
    filetime,
    format_generalized,
    generalized_time,
    to_filetime,
    uac_disabled,
    uac_flags,
)
from connectors.directory.connector import LdapDirectoryConnector, LdapDirectoryOptions
from connectors.directory.ldif_file import LdifEntry, LdifProblem, iter_ldif
from connectors.directory.model import user_from_entry
from engine.enrich.identity import IdentityEnricher
from engine.plugins import InvalidOption, parse_options
from tests.conftest import ROOT, read_all
from tests.ldap_server import ldap_server, free_port, seed_ldif, seed_users  # noqa: F401 - fixture

SEEDED = 644  # 640 ordinary + jdoe, admin.huber, old.weber, temp.koch; the computer WS01$ is not a user


def connector(server, tmp_path: Path, *, ldaps: bool = True, ca: Path | None = None, **extra) -> LdapDirectoryConnector:
    options = {
        "url": server.ldaps_url if ldaps else server.ldap_url,
        "starttls": not ldaps,
        "base_dn": server.base_dn,
        "ca_file": str(ca or server.ca_file),
        "bind_dn": server.bind_dn,
        "bind_password_file": str(server.password_file),
        "snapshot": str(tmp_path / "directory.json"),
        "paged_size": 200,
        "timeout": 5,
        "sync_interval": 0,  # every read syncs (the tests change the directory between reads)
        **extra,
    }
    return LdapDirectoryConnector("ad", options)


def by_name(events):
    return {e["user.name"]: e for e in events}


# --- sync over TLS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ldaps", [True, False], ids=["ldaps", "starttls"])
def test_full_sync_over_tls_reads_past_the_size_limit(ldap_server, tmp_path, ldaps):
    batch = read_all(connector(ldap_server, tmp_path, ldaps=ldaps), max_events=250)
    users = by_name(batch.events)
    assert len(batch.events) == SEEDED > 500  # slapd's size limit is 500: only paging sees them all
    assert "ws01$" not in users and not batch.dead_letters
    jdoe = users["jdoe"]
    assert jdoe["event.dataset"] == "directory.user" and jdoe["wardwatch.identity"] == "jdoe"
    assert jdoe["user.email"] == "jdoe@hospital.example" and jdoe["user.domain"] == "hospital.example"
    assert jdoe["wardwatch.user.department"] == "Cardiology" and jdoe["user.roles"] == ["VPN-Users", "Clinicians"]
    assert users["old.weber"]["wardwatch.user.disabled"] is True
    assert users["old.weber"]["directory.user.flags"] == ["ACCOUNTDISABLE", "NORMAL_ACCOUNT"]
    assert users["temp.koch"]["directory.user.account_expires"] == "2026-11-20T23:00:00.000Z"
    assert not any("Doe" in str(v) for v in jdoe.values())  # no display name or DN (a person's name)
    assert len({e["event.id"] for e in batch.events}) == SEEDED
    snapshot = tmp_path / "directory.json"
    assert stat.S_IMODE(os.stat(snapshot).st_mode) == 0o600
    assert b"Doe" not in snapshot.read_bytes() and b"jdoe" in snapshot.read_bytes()  # logins, not names


def test_paging_uses_several_round_trips(ldap_server, tmp_path):
    from connectors.directory.ldap_sync import LdapEndpoint, LdapReader

    endpoint = LdapEndpoint(ldap_server.ldaps_url, ca_file=str(ldap_server.ca_file), bind_dn=ldap_server.bind_dn,
                            password=ldap_server.password_file.read_text().strip())
    with LdapReader(endpoint, paged_size=100) as reader:
        entries = list(reader.entries(ldap_server.base_dn, "(objectClass=user)", ("sAMAccountName",)))
    assert len(entries) == SEEDED + 1 and reader.pages == 7  # + the computer; ceil(645 / 100)


@pytest.mark.parametrize("ldaps", [True, False], ids=["ldaps", "starttls"])
def test_a_wrong_ca_is_refused_with_one_line(ldap_server, tmp_path, ldaps):
    conn = connector(ldap_server, tmp_path, ldaps=ldaps, ca=ldap_server.wrong_ca_file)
    with pytest.raises(ConnectorError) as info:
        conn.read(None, 100)
    message = str(info.value)
    assert "\n" not in message and "TLS certificate not trusted" in message and "wrong-ca.pem" in message
    assert not (tmp_path / "directory.json").exists()


def test_a_certificate_for_another_host_is_refused(tmp_path):
    from tests.ldap_server import require_slapd, start_slapd

    require_slapd()
    server = start_slapd(tmp_path / "srv", seed_users(3), cert_names=("dc01.hospital.example",))
    try:
        for ldaps in (True, False):
            with pytest.raises(ConnectorError) as info:
                connector(server, tmp_path, ldaps=ldaps).read(None, 100)
            assert str(info.value).endswith("TLS certificate does not name this host")
    finally:
        server.stop()


def test_a_bad_bind_is_one_line_without_the_password(ldap_server, tmp_path):
    bad = tmp_path / "bad-password"
    bad.write_text("not-the-password\n")
    conn = connector(ldap_server, tmp_path, bind_password_file=str(bad))
    with pytest.raises(ConnectorError) as info:
        conn.read(None, 100)
    message = str(info.value)
    assert "\n" not in message and "bind as cn=svc-wardwatch" in message and "invalidCredentials" in message
    assert "not-the-password" not in message


def test_at_most_one_sync_per_sync_interval(ldap_server, tmp_path):
    conn = connector(ldap_server, tmp_path, sync_interval="1h")
    first = read_all(conn)
    changed = ldap_server.users[50]
    ldap_server.modify_user(changed.dn, {"title": "Lead"}, datetime(2026, 11, 8, tzinfo=timezone.utc))
    assert read_all(conn, first.cursor).events == []  # not due: the server is not asked
    conn._synced_at -= 3600
    assert [e["user.name"] for e in read_all(conn, first.cursor).events] == [changed.sam]


def test_server_down_is_unavailable_not_a_traceback(ldap_server, tmp_path):
    conn = connector(ldap_server, tmp_path, url=f"ldaps://127.0.0.1:{free_port()}", timeout=2)
    batch = conn.read({"v": 1, "mark": 5}, 100)
    assert batch.events == [] and batch.cursor == {"v": 1, "mark": 5}
    assert batch.unavailable and "server unreachable" in batch.unavailable and "\n" not in batch.unavailable


def test_cli_ingest_of_an_ldif_export(tmp_path, capsys):
    from engine.cli import main

    (tmp_path / "users.ldif").write_text(seed_ldif(seed_users(5)), encoding="utf-8")
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nconnectors: []\n"
                                             "alerts:\n  sinks: []\n")
    code = main(["--config", str(tmp_path / "wardwatch.yaml"), "ingest", "ldap-directory", str(tmp_path / "users.ldif")])
    out, err = capsys.readouterr()
    assert code == 0 and "9 events read" in out, (out, err)


def test_cli_ingest_with_server_down_is_one_line(ldap_server, tmp_path, capsys):
    from engine.cli import main

    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nconnectors: []\n"
                                             "alerts:\n  sinks: []\n")
    code = main(["--config", str(tmp_path / "wardwatch.yaml"), "ingest", "ldap-directory",
                 f"ldap://127.0.0.1:{free_port()}", "-o", "base_dn=dc=hospital,dc=example", "-o", "timeout=2"])
    _out, err = capsys.readouterr()
    assert code != 0 and "server unreachable" in err and "Traceback" not in err


# --- incremental and full resync -------------------------------------------------------------------
def test_incremental_sync_brings_only_the_modified_and_the_newly_disabled_user(ldap_server, tmp_path):
    conn = connector(ldap_server, tmp_path)
    first = read_all(conn)
    assert len(first.events) == SEEDED and first.cursor["mark"] > 0
    moved, leaver = ldap_server.users[10], ldap_server.users[11]
    ldap_server.modify_user(moved.dn, {"department": "Oncology"}, datetime(2026, 11, 5, 9, tzinfo=timezone.utc))
    ldap_server.modify_user(leaver.dn, {"userAccountControl": 514}, datetime(2026, 11, 5, 10, tzinfo=timezone.utc))
    second = read_all(conn, first.cursor)
    events = by_name(second.events)
    assert set(events) == {moved.sam, leaver.sam}
    assert events[moved.sam]["event.action"] == "user-changed"
    assert events[moved.sam]["wardwatch.user.department"] == "Oncology"
    assert events[leaver.sam]["wardwatch.user.disabled"] is True
    assert events[leaver.sam]["directory.user.disabled_changed"] is True
    assert second.cursor["mark"] > first.cursor["mark"]
    assert read_all(conn, second.cursor).events == []  # nothing changed since
    # the enrichment reads the new snapshot: department and disabled of the changed users
    enricher = IdentityEnricher.from_config({"directory": str(tmp_path / "directory.json")})
    vpn = enricher.enrich({"event.dataset": "vpn.auth", "@timestamp": "2026-11-06T08:00:00Z",
                           "user.name": f"{leaver.sam}@hospital.example"})
    assert vpn["wardwatch.user.disabled"] is True and vpn["wardwatch.identity"] == leaver.sam
    assert enricher.enrich({"user.name": moved.sam})["wardwatch.user.department"] == "Oncology"


def test_a_restarted_connector_resumes_from_its_cursor_and_snapshot(ldap_server, tmp_path):
    first = read_all(connector(ldap_server, tmp_path))
    changed = ldap_server.users[20]
    ldap_server.modify_user(changed.dn, {"title": "Senior"}, datetime(2026, 11, 6, tzinfo=timezone.utc))
    again = read_all(connector(ldap_server, tmp_path), first.cursor)  # a new process: snapshot from the file
    assert [e["user.name"] for e in again.events] == [changed.sam]
    assert again.events[0]["directory.user.title"] == "Senior"


def test_when_changed_mode_for_directories_without_usn(ldap_server, tmp_path):
    conn = connector(ldap_server, tmp_path, change_attribute="whenChanged")
    first = read_all(conn)
    latest = max(generalized_time("w", first.cursor["mark"]), datetime(2026, 11, 7, tzinfo=timezone.utc))
    changed = ldap_server.users[30]
    ldap_server.modify_user(changed.dn, {"department": "Pharmacy"}, latest + timedelta(hours=1))
    second = read_all(conn, first.cursor)
    seen = {e["event.id"] for e in first.events}
    new = [e for e in second.events if e["event.id"] not in seen]
    assert [e["user.name"] for e in new] == [changed.sam]  # the boundary user may come again, same id
    assert second.cursor["mark"] == format_generalized(latest + timedelta(hours=1))


def test_modify_timestamp_mode_as_on_openldap(ldap_server, tmp_path):
    """OpenLDAP's own operational attribute: slapd sets it on every change (here to the real clock, while the
    seeded whenChanged values are in November): the mark must come from modifyTimestamp itself."""
    import time

    conn = connector(ldap_server, tmp_path, change_attribute="modifyTimestamp")
    time.sleep(1.05)  # modifyTimestamp has one-second resolution; slapadd gave every seeded entry one value
    ldap_server.modify_user(ldap_server.users[61].dn, {"title": "Nurse"}, datetime(2026, 11, 9, tzinfo=timezone.utc))
    first = read_all(conn)
    time.sleep(1.05)
    changed = ldap_server.users[60]
    ldap_server.modify_user(changed.dn, {"department": "Nursing"}, datetime(2026, 11, 9, tzinfo=timezone.utc))
    second = read_all(conn, first.cursor)
    seen = {e["event.id"] for e in first.events}
    assert [e["user.name"] for e in second.events if e["event.id"] not in seen] == [changed.sam]
    assert len(second.events) < 20  # only the boundary second's entries come again
    assert second.cursor["mark"] > first.cursor["mark"]
    assert generalized_time("m", second.cursor["mark"]).year >= 2026


def test_full_resync_reports_deleted_users(ldap_server, tmp_path):
    now = [datetime(2026, 12, 1, tzinfo=timezone.utc)]
    conn = connector(ldap_server, tmp_path, full_resync_interval="1h")
    conn.clock = lambda: now[0]
    first = read_all(conn)
    gone = ldap_server.users[40]
    admin = ldap_server.admin()
    assert admin.delete(gone.dn), admin.result
    admin.unbind()
    now[0] += timedelta(minutes=30)
    assert [e["event.action"] for e in read_all(conn, first.cursor).events] == []  # incremental: no delete seen
    now[0] += timedelta(hours=1)
    full = read_all(conn, first.cursor)
    deleted = [e for e in full.events if e["event.action"] == "user-deleted"]
    assert [e["user.name"] for e in deleted] == [gone.sam]
    assert {e["event.action"] for e in full.events} == {"user-listed", "user-deleted"}
    firsts = {e["event.id"] for e in first.events}
    assert {e["event.id"] for e in full.events if e["event.action"] == "user-listed"} <= firsts  # no copies
    # a crash before that cursor was committed: a new process repeats the full sync and reports the delete
    # again, with the same id and time (the store keeps one copy); after the commit it is not repeated
    again = connector(ldap_server, tmp_path, full_resync_interval="1h")
    again.clock = lambda: now[0] + timedelta(minutes=1)
    repeated = [e for e in read_all(again, first.cursor).events if e["event.action"] == "user-deleted"]
    assert [(e["event.id"], e["@timestamp"]) for e in repeated] == [(e["event.id"], e["@timestamp"]) for e in deleted]
    now[0] += timedelta(hours=2)
    later_conn = connector(ldap_server, tmp_path, full_resync_interval="1h")
    later_conn.clock = lambda: now[0]  # a full sync is due again
    later = read_all(later_conn, full.cursor)
    assert later.cursor["full_at"] > full.cursor["full_at"]
    assert [e for e in later.events if e["event.action"] == "user-deleted"] == []


# --- the identity join over the real directory ----------------------------------------------------
def test_identity_join_windows_vpn_ehr(ldap_server, tmp_path):
    read_all(connector(ldap_server, tmp_path))
    enricher = IdentityEnricher.from_config({"directory": str(tmp_path / "directory.json"),
                                             "privileged_groups": ["Domain Admins"]})
    windows = {"event.dataset": "windows.security", "@timestamp": "2026-11-02T08:00:00Z", "EventID": 4624,
               "TargetUserName": "HOSPITAL\\jdoe"}
    vpn = {"event.dataset": "vpn.auth", "@timestamp": "2026-11-02T08:05:00Z", "user.name": "jdoe@hospital.example"}
    ehr = {"event.dataset": "ehr.audit", "@timestamp": "2026-11-02T08:10:00Z", "user.id": "u0042"}
    out = [enricher.enrich(dict(e)) for e in (windows, vpn, ehr)]
    assert [e["wardwatch.identity"] for e in out] == ["jdoe", "jdoe", "jdoe"]
    assert {e["wardwatch.user.privileged"] for e in out} == {False}
    admin = enricher.enrich({"event.dataset": "vpn.auth", "user.name": "ADMIN.HUBER"})
    assert admin["wardwatch.user.privileged"] is True  # Tier0 Admins is a member of Domain Admins


# --- the LDIF path ---------------------------------------------------------------------------------
def test_ldif_export_as_a_source(tmp_path):
    path = tmp_path / "users.ldif"
    broken = "dn: CN=Broken,OU=Staff,DC=hospital,DC=example\nobjectClass: user\nsAMAccountName: broken\n" \
             "accountExpires: soon\n"
    path.write_text(seed_ldif(seed_users(20)) + "\n" + broken, encoding="utf-8")
    conn = LdapDirectoryConnector("ldif", {"path": str(path), "snapshot": str(tmp_path / "snap.json"),
                                           "sync_interval": 0})
    batch = read_all(conn)
    assert len(batch.events) == 24 and "jdoe" in by_name(batch.events)
    [dead] = batch.dead_letters
    assert dead.location == f"{path}:{len(path.read_text().splitlines()) - 3}"
    assert dead.reason == "attribute accountExpires: not an integer"
    assert read_all(conn, batch.cursor).events == []  # unchanged file: nothing new
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\ndn: CN=New,OU=Staff,DC=hospital,DC=example\nobjectClass: user\nsAMAccountName: newbie\n")
    assert "newbie" in by_name(read_all(conn, batch.cursor).events)  # changed file: read again
    ids = IdentityEnricher.from_config({"directory": str(path)})  # the LDIF itself works as the directory
    assert ids.enrich({"user.name": "HOSPITAL\\JDOE"})["wardwatch.identity"] == "jdoe"


def test_the_demo_directory_fixture_parses_cleanly():
    path = ROOT / "fixtures" / "directory" / "users.ldif"
    if not path.exists():
        pytest.skip("fixtures/directory/users.ldif is not there yet (written by the AD-rules work)")
    records = list(iter_ldif(path.open("rb")))
    assert records and not [r for r in records if isinstance(r, LdifProblem)]


# --- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options,key", [
    ({}, "url"),
    ({"url": "ldaps://dc", "path": "x.ldif", "base_dn": "dc=x"}, "url"),
    ({"url": "ldaps://dc"}, "base_dn"),
    ({"url": "http://dc", "base_dn": "dc=x"}, "url"),
    ({"url": "ldaps://dc", "base_dn": "dc=x", "starttls": True}, "starttls"),
    ({"url": "ldaps://dc", "base_dn": "dc=x", "bind_dn": "cn=x"}, "bind_password_file"),
    ({"url": "ldaps://dc", "base_dn": "dc=x", "bind_password": "hunter2"}, "bind_password"),
    ({"path": "x.ldif", "user_filter": "objectClass=user"}, "user_filter"),
    ({"path": "x.ldif", "change_attribute": "modified"}, "change_attribute"),
])
def test_options_are_checked(options, key):
    with pytest.raises(InvalidOption) as info:
        parse_options(LdapDirectoryOptions, options)
    assert info.value.key == key or key in str(info.value)


def test_plain_ldap_with_a_password_across_the_network_is_refused(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("pw")
    conn = LdapDirectoryConnector("ad", {"url": "ldap://dc01.hospital.example", "base_dn": "dc=x",
                                         "bind_dn": "cn=svc", "bind_password_file": str(secret)})
    with pytest.raises(ConnectorConfigError, match="clear text"):
        conn.read(None, 10)


# --- decoders: table and properties ---------------------------------------------------------------
def test_decoders_on_ad_values():
    assert uac_flags("514") == ["ACCOUNTDISABLE", "NORMAL_ACCOUNT"] and uac_disabled(66050)
    assert uac_flags("-2147483136")[-1] == "0x80000000"  # AD stores the int signed
    assert filetime("accountExpires", "0") is None and filetime("accountExpires", FILETIME_NEVER) is None
    # 116444736000000000 is the Unix epoch in FILETIME (11,644,473,600 s from 1601 to 1970)
    assert filetime("lastLogon", "116444736000000000") == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert filetime("accountExpires", "134091036000000000") == datetime(2025, 12, 1, 23, 0, tzinfo=timezone.utc)
    assert generalized_time("whenChanged", "20261130101500.0Z") == datetime(2026, 11, 30, 10, 15, tzinfo=timezone.utc)
    assert generalized_time("x", "202611301015-0130") == datetime(2026, 11, 30, 11, 45, tzinfo=timezone.utc)
    assert generalized_time("x", "2026113010.5Z") == datetime(2026, 11, 30, 10, 30, tzinfo=timezone.utc)
    for bad in ("2026-11-30", "20261330101500Z", "20261130101500", ""):
        with pytest.raises(AttributeValueError, match="whenChanged"):
            generalized_time("whenChanged", bad)


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)))
def test_filetime_round_trips(when):
    assert filetime("accountExpires", str(to_filetime(when))) == when


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(timezone.utc)))
def test_generalized_time_round_trips_to_the_second(when):
    assert generalized_time("whenChanged", format_generalized(when)) == when.replace(microsecond=0)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_uac_flags_name_every_set_bit(value):
    names = uac_flags(value)
    by_name = {v: k for k, v in UAC_FLAGS.items()}
    assert sum(by_name[n] if n in by_name else int(n, 16) for n in names) == value
    assert uac_disabled(value) == ("ACCOUNTDISABLE" in names)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_decoders_fail_only_with_a_named_error(text):
    for decode in (lambda t: generalized_time("whenChanged", t), lambda t: filetime("accountExpires", t),
                   uac_flags):
        try:
            decode(text)
        except AttributeValueError as exc:
            assert exc.attribute in ("whenChanged", "accountExpires", "userAccountControl")


_attr_name = st.sampled_from(["sAMAccountName", "department", "title", "employeeID", "description", "mail"])
_value = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("abcdefgh", min_size=1, max_size=8),
                          st.dictionaries(_attr_name, st.lists(_value, min_size=1, max_size=3), min_size=1)),
                min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_ldif_written_by_the_ldif_package_reads_back(entries):
    out = io.BytesIO()
    writer = ldif.LDIFWriter(out)
    for cn, attrs in entries:
        writer.unparse(f"cn={cn},dc=hospital,dc=example", {k: [v.encode() for v in vs] for k, vs in attrs.items()})
    records = list(iter_ldif(io.BytesIO(out.getvalue())))
    assert all(isinstance(r, LdifEntry) for r in records)
    assert [(r.dn, r.attrs) for r in records] == [
        (f"cn={cn},dc=hospital,dc=example", {k.lower(): vs for k, vs in attrs.items()}) for cn, attrs in entries]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([
    b"dn: cn=a,dc=x", b"dn:: Y249YixkYz14", b"dn:: !!!", b"sAMAccountName: a", b" folded", b"", b"# c",
    b"accountExpires: x", b"changetype: modify", b"version: 1", b"memberOf: not a dn", b"\xff\xfe: x"])),
    max_size=20))
def test_arbitrary_ldif_never_raises(lines):
    data = b"\n".join(lines)
    for record in iter_ldif(io.BytesIO(data)):
        assert isinstance(record, (LdifEntry, LdifProblem))
        if isinstance(record, LdifEntry):
            try:
                user_from_entry(record.dn, record.attrs)
            except AttributeValueError:
                pass


def test_without_slapd_ci_fails_and_elsewhere_skips(monkeypatch):
    import tests.ldap_server as srv

    monkeypatch.setattr(srv, "SLAPD", "/nonexistent/slapd")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        srv.require_slapd()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install the Debian packages slapd"):
        srv.require_slapd()
