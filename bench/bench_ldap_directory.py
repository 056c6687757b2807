"""Directory sync throughput: users/s of a full ``ldap-directory`` sync from a local slapd, against a bare
ldap3 paged search of the same users and attributes (the baseline: the network and the server's part).

Why this ratio: the sync adds decoding (FILETIME, GeneralizedTime, DNs), the snapshot file and one event per
user on top of the search. The ratio says what that costs; the absolute number says how long a full resync
of a hospital directory (10-50k accounts) takes. Needs /usr/sbin/slapd (Debian package slapd).

    .venv/bin/python -m bench.bench_ldap_directory [--users 20000] [--paged-size 500] [--rounds 3]
        [--enrich-events 200000]

It then runs the identity enrichment over Windows/VPN/EHR-shaped events with the snapshot just written
(events/s against a loop that only copies the events: the enrichment's own cost per event).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from connectors.directory.connector import LdapDirectoryConnector
from connectors.directory.ldap_sync import user_attributes
from tests.ldap_server import BIND_PASSWORD, start_slapd, seed_users


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(server, paged_size: int) -> int:
    import ldap3

    conn = ldap3.Connection(ldap3.Server("127.0.0.1", port=server.port, get_info=ldap3.NONE),
                            server.bind_dn, BIND_PASSWORD, auto_bind=True, read_only=True)
    n = 0
    for item in conn.extend.standard.paged_search(server.base_dn, "(&(objectClass=user)(!(objectClass=computer)))",
                                                  attributes=list(user_attributes("uSNChanged", ("employeeID",))),
                                                  paged_size=paged_size, generator=True):
        n += item.get("type") == "searchResEntry"
    conn.unbind()
    return n


def sync(server, tmp: Path, paged_size: int) -> int:
    conn = LdapDirectoryConnector("bench", {
        "url": server.ldap_url, "base_dn": server.base_dn, "bind_dn": server.bind_dn,
        "bind_password_file": str(server.password_file), "snapshot": str(tmp / "directory.json"),
        "paged_size": paged_size})
    n = 0
    cursor = None
    while True:
        batch = conn.read(cursor, 5000)
        n += len(batch.events)
        cursor = batch.cursor
        if batch.exhausted:
            return n


def enrich(server, snapshot: Path, count: int) -> None:
    from engine.enrich.identity import IdentityEnricher

    enricher = IdentityEnricher.from_config({"directory": str(snapshot), "privileged_groups": ["Domain Admins"]})
    users = server.users
    shapes = []
    for i in range(1000):
        u = users[i % len(users)]
        shapes += [
            {"event.dataset": "windows.security", "@timestamp": "2026-11-02T08:00:00Z", "EventID": 4624,
             "TargetUserName": u.sam.upper(), "TargetDomainName": "HOSPITAL", "SubjectUserName": "DC01$"},
            {"event.dataset": "vpn.auth", "@timestamp": "2026-11-02T08:00:00Z", "user.name": u.sam,
             "user.domain": "hospital.example"},
            {"event.dataset": "ehr.audit", "@timestamp": "2026-11-02T08:00:00Z", "user.id": u.employee_id,
             "user.name": u.employee_id},
            {"event.dataset": "vpn.auth", "@timestamp": "2026-11-02T08:00:00Z", "user.name": f"nobody{i}"},
        ]
    events = (shapes * (count // len(shapes) + 1))[:count]
    t = time.perf_counter()
    copies = [dict(e) for e in events]
    base = time.perf_counter() - t
    t = time.perf_counter()
    out = [enricher.enrich(dict(e)) for e in events]
    took = time.perf_counter() - t
    resolved = sum("wardwatch.identity" in e for e in out)
    del copies
    print(f"identity enrichment: {count} events in {took:.2f} s = {count / took:,.0f} events/s "
          f"(copy-only loop {count / base:,.0f} events/s); {resolved} resolved; peak RSS {rss_mib():.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--paged-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--enrich-events", type=int, default=200_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="wardwatch-bench-ldap-"))
    server = start_slapd(root / "srv", seed_users(args.users))
    try:
        base_times, sync_times = [], []
        base_n = sync_n = 0
        base_rss = 0.0
        for i in range(args.rounds):  # interleaved, so load on the machine and server caches hit both alike
            t = time.perf_counter()
            base_n = baseline(server, args.paged_size)
            base_times.append(time.perf_counter() - t)
            base_rss = base_rss or rss_mib()  # before the first sync: the baseline's own peak
            t = time.perf_counter()
            sync_n = sync(server, root / f"run{i}", args.paged_size)
            sync_times.append(time.perf_counter() - t)
        b, s = min(base_times), min(sync_times)
        print(f"baseline ldap3 paged search: {base_n} users in {b:.2f} s = {base_n / b:,.0f} users/s; "
              f"peak RSS {base_rss:.1f} MiB")
        print(f"ldap-directory full sync:    {sync_n} users in {s:.2f} s = {sync_n / s:,.0f} users/s; "
              f"peak RSS {rss_mib():.1f} MiB")
        print(f"ratio sync/baseline: {(sync_n / s) / (base_n / b):.2f}")
        enrich(server, root / "run0" / "directory.json", args.enrich_events)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
