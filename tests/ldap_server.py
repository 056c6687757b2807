"""A real ``slapd`` for the directory tests: AD-like schema, 600+ seeded users, LDAPS and StartTLS.

Started once per test session as the current user (root in CI is fine: slapd then simply keeps running as
root) from ``/usr/sbin/slapd`` with a ``slapd.conf`` in a temp dir: mdb backend, schema core + cosine +
inetorgperson + nis + ``tests/data/ldap/ad-lite.schema`` (our own OIDs), a TLS certificate from ``trustme``.
The seed is built with ``slapadd`` before the server starts (600 users load in well under a second that
way). The size limit is 500 and paged results are unlimited, exactly so that a search that does not page
cannot see every user.

Without slapd the tests skip; in CI (``CI`` set) they fail instead, so a missing package can never pass as a
green run (``.ci/run`` installs ``slapd`` and ``ldap-utils``).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
AD_LITE = Path(__file__).resolve().parent / "data" / "ldap" / "ad-lite.schema"
BASE_DN = "dc=hospital,dc=example"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-test-only"
BIND_DN = f"cn=svc-wardwatch,ou=Service,{BASE_DN}"
BIND_PASSWORD = "svc-test-only"
FIRST_USN = 10_000
BASE_TIME = datetime(2026, 11, 1, 6, 0, tzinfo=timezone.utc)

_GIVEN = ["Anna", "Ben", "Clara", "David", "Elif", "Felix", "Greta", "Hannes", "Ines", "Jonas", "Katrin",
          "Lukas", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Uwe"]
_FAMILY = ["Becker", "Fischer", "Hoffmann", "Koch", "Lange", "Meyer", "Neumann", "Schulz", "Wagner",
           "Weber", "Yilmaz", "Zimmermann", "Krause", "Braun", "Wolf", "Schmitt"]
DEPARTMENTS = ["Cardiology", "Emergency", "Radiology", "Oncology", "Pharmacy", "IT", "Billing", "Nursing"]


def require_slapd() -> None:
    """Skip without slapd; fail in CI, where ``.ci/run`` must have installed it."""
    if os.path.exists(SLAPD) and os.path.exists(SLAPADD) and (SCHEMA_DIR / "core.schema").exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {SLAPD} (Debian package slapd) is missing: the LDAP tests must run in CI")
    pytest.skip(f"no {SLAPD}: install the Debian packages slapd and ldap-utils to run the LDAP tests")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def to_filetime(when: datetime) -> int:
    from connectors.directory.attributes import to_filetime as convert

    return convert(when)


def gtime(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S.0Z")


def _entry(dn: str, attrs: dict[str, Any]) -> str:
    lines = [f"dn: {dn}"]
    for key, value in attrs.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key}: {v}")
    return "\n".join(lines) + "\n"


@dataclass
class SeedUser:
    sam: str
    cn: str
    department: str
    uac: int = 512
    employee_id: str | None = None
    groups: list[str] = field(default_factory=list)
    expires: datetime | None = None

    @property
    def dn(self) -> str:
        return f"cn={self.cn.replace(',', chr(92) + ',')},ou=Staff,{BASE_DN}"


def group_dn(cn: str) -> str:
    return f"cn={cn},ou=Groups,{BASE_DN}"


def seed_users(count: int = 640, seed: int = 9) -> list[SeedUser]:
    """jdoe (the identity-join person), admin.huber (nested Domain Admins), and ``count`` ordinary staff."""
    rng = random.Random(seed)
    users = [
        SeedUser("jdoe", "Doe, John", "Cardiology", employee_id="u0042", groups=["VPN-Users", "Clinicians"]),
        SeedUser("admin.huber", "Huber, Admin", "IT", employee_id="u0007", groups=["Tier0 Admins", "VPN-Users"]),
        SeedUser("old.weber", "Weber, Old", "Billing", employee_id="u0099", uac=514, groups=["VPN-Users"]),
        SeedUser("temp.koch", "Koch, Temp", "Radiology", employee_id="u0100",
                 expires=datetime(2026, 11, 20, 23, 0, tzinfo=timezone.utc)),
    ]
    for i in range(count):
        given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
        sam = f"{given[0]}{family}{i:03d}".lower()
        users.append(SeedUser(sam, f"{family}, {given} {i:03d}", rng.choice(DEPARTMENTS),
                              uac=514 if rng.random() < 0.03 else 512, employee_id=f"e{i + 1000:05d}",
                              groups=rng.sample(["VPN-Users", "Clinicians"], rng.randint(0, 2))))
    return users


def seed_ldif(users: list[SeedUser]) -> str:
    blocks = [
        _entry(BASE_DN, {"objectClass": ["top", "dcObject", "organization"], "dc": "hospital", "o": "Hospital"}),
        *(_entry(f"ou={ou},{BASE_DN}", {"objectClass": "organizationalUnit", "ou": ou})
          for ou in ("Staff", "Groups", "Service", "Computers")),
        _entry(BIND_DN, {"objectClass": "inetOrgPerson", "cn": "svc-wardwatch", "sn": "svc",
                         "userPassword": BIND_PASSWORD}),
    ]
    usn = FIRST_USN
    groups = {"Domain Admins": [], "Tier0 Admins": ["Domain Admins"], "VPN-Users": [], "Clinicians": []}
    for cn, parents in groups.items():
        usn += 1
        blocks.append(_entry(group_dn(cn), {
            "objectClass": "group", "cn": cn, "sAMAccountName": cn,
            "memberOf": [group_dn(p) for p in parents], "uSNChanged": usn, "whenChanged": gtime(BASE_TIME)}))
    for i, u in enumerate(users):
        usn += 1
        attrs: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson", "user"],
            "cn": u.cn, "sn": u.cn.split(",")[0], "displayName": u.cn, "sAMAccountName": u.sam,
            "userPrincipalName": f"{u.sam}@hospital.example", "mail": f"{u.sam}@hospital.example",
            "department": u.department, "title": "Staff", "userAccountControl": u.uac,
            "accountExpires": to_filetime(u.expires) if u.expires else 9223372036854775807,
            "uSNChanged": usn, "whenChanged": gtime(BASE_TIME + timedelta(minutes=i)),
            "memberOf": [group_dn(g) for g in u.groups],
        }
        if u.employee_id:
            attrs["employeeID"] = u.employee_id
        blocks.append(_entry(u.dn, attrs))
    usn += 1
    blocks.append(_entry(f"cn=WS01,ou=Computers,{BASE_DN}", {
        "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson", "user", "computer"],
        "cn": "WS01", "sn": "WS01", "sAMAccountName": "WS01$", "userAccountControl": 4096, "uSNChanged": usn}))
    return "\n".join(blocks)


def _slapd_conf(root: Path, cert: Path, key: Path) -> str:
    schemas = [SCHEMA_DIR / f"{n}.schema" for n in ("core", "cosine", "inetorgperson", "nis")] + [AD_LITE]
    return "\n".join([
        *(f"include {s}" for s in schemas),
        f"pidfile {root}/slapd.pid",
        f"argsfile {root}/slapd.args",
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        f"TLSCertificateFile {cert}",
        f"TLSCertificateKeyFile {key}",
        "sizelimit size.soft=500 size.hard=500 size.pr=unlimited size.prtotal=unlimited",
        "database mdb",
        "maxsize 268435456",
        f'suffix "{BASE_DN}"',
        f'rootdn "{ADMIN_DN}"',
        f"rootpw {ADMIN_PASSWORD}",
        f"directory {root}/db",
        "index objectClass eq",
        "index uSNChanged,whenChanged eq",
        "access to attrs=userPassword by self write by anonymous auth by * none",
        "access to * by users read by * none",
        "",
    ])


@dataclass
class LdapServer:
    root: Path
    port: int
    ldaps_port: int
    ca_file: Path
    wrong_ca_file: Path
    password_file: Path
    users: list[SeedUser]
    process: subprocess.Popen | None = None
    next_usn: int = 0

    base_dn: str = BASE_DN
    bind_dn: str = BIND_DN

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def admin(self) -> Any:
        import ldap3

        return ldap3.Connection(ldap3.Server("127.0.0.1", port=self.port), ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)

    def modify_user(self, dn: str, changes: dict[str, Any], when: datetime) -> int:
        """Change attributes as AD would: the change bumps uSNChanged and whenChanged. Returns the new USN."""
        import ldap3

        self.next_usn += 1
        changes = {**changes, "uSNChanged": self.next_usn, "whenChanged": gtime(when)}
        conn = self.admin()
        try:
            ok = conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, v if isinstance(v, list) else [v])]
                                  for k, v in changes.items()})
            assert ok, conn.result
        finally:
            conn.unbind()
        return self.next_usn

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_slapd(root: Path, users: list[SeedUser] | None = None,
                cert_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> LdapServer:
    import trustme

    root.mkdir(parents=True, exist_ok=True)
    (root / "db").mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert(*cert_names)
    cert_file, key_file, ca_file = root / "server.pem", root / "server.key", root / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    key_file.write_bytes(cert.private_key_pem.bytes())
    key_file.chmod(0o600)
    ca.cert_pem.write_to_path(str(ca_file))
    wrong_ca = root / "wrong-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(wrong_ca))
    password_file = root / "bind-password"
    password_file.write_text(BIND_PASSWORD + "\n")
    password_file.chmod(0o600)

    users = users if users is not None else seed_users()
    conf = root / "slapd.conf"
    conf.write_text(_slapd_conf(root, cert_file, key_file))
    seed = root / "seed.ldif"
    seed.write_text(seed_ldif(users))
    done = subprocess.run([SLAPADD, "-q", "-f", str(conf), "-l", str(seed)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"slapadd failed: {done.stderr.strip()[-2000:]}")
    port, ldaps_port = free_port(), free_port()
    log = open(root / "slapd.log", "wb")
    process = subprocess.Popen(
        [SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{ldaps_port}/", "-d", "0"],
        stdout=log, stderr=subprocess.STDOUT)
    server = LdapServer(root, port, ldaps_port, ca_file, wrong_ca, password_file, users, process,
                        next_usn=FIRST_USN + len(users) + 100)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slapd exited {process.returncode}: {(root / 'slapd.log').read_text()[-2000:]}")
        try:
            for p in (port, ldaps_port):
                socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("slapd did not start listening within 15 s")


@pytest.fixture(scope="session")
def ldap_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    require_slapd()
    root = tmp_path_factory.mktemp("slapd")
    server = start_slapd(root / "srv")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
