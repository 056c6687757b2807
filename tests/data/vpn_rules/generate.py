"""Writes the VPN rule fixtures in this directory (deterministic; run: python tests/data/vpn_rules/generate.py).

Why generated: each scenario is a few attack events inside a busy ordinary day (about 200 normalised
``vpn.auth`` events from four vendors, as the VPN parsers emit them), so a rule that fires on ordinary
traffic is caught. The committed ``*.ndjson`` files are the product; this script only documents how they
were made. Addresses: 192.0.2.0/24 and 198.51.100.0/24 are German staff at home, 203.0.113.0/24 is a
hosting provider in Russia, 198.18.0.0/15 is the United States, 100.64.0.0/10 Austria (the test's own mmdb).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAY = datetime(2026, 11, 3, 6, 30, tzinfo=timezone.utc)  # Tuesday, 07:30 Berlin

VENDORS = {
    "cisco": ("Cisco", "ASA", {"fail": ("aaa-user-authentication-rejected", "113015"),
                               "ok": ("svc-session-started", "722022"), "end": ("session-disconnected", "113019")}),
    "forti": ("Fortinet", "FortiGate", {"fail": ("ssl-login-fail", "0101039426"),
                                        "ok": ("tunnel-up", "0101039947"), "end": ("tunnel-down", "0101039948")}),
    "panw": ("Palo Alto Networks", "GlobalProtect", {"fail": ("gateway-auth", "gateway-auth"),
                                                      "ok": ("gateway-connected", "gateway-connected"),
                                                      "end": ("gateway-logout", "gateway-logout")}),
    "ovpn": ("OpenVPN", "OpenVPN", {"fail": ("auth-failed", "AUTH_FAILED"),
                                    "ok": ("peer-connection-initiated", "peer-connection"),
                                    "end": ("client-exit", "client-exit")}),
}
GIVEN = ["anna", "ben", "clara", "david", "eva", "felix", "greta", "hans", "ida", "jonas", "karl", "lena",
         "max", "nina", "otto", "paula", "quirin", "rosa", "sven", "tina", "uwe", "vera", "willi", "xenia"]
FAMILY = ["becker", "fischer", "hoffmann", "klein", "lang", "meier", "neumann", "schulz", "wolf", "zimmer"]


class Writer:
    """Collects events; ``kind`` is fail/ok/end, one vendor per user so sessions look consistent."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[dict] = []

    def add(self, kind: str, user: str, ip: str, at: datetime, vendor: str = "cisco", session: str | None = None,
            domain: str | None = None) -> None:
        vendor_name, product, actions = VENDORS[vendor]
        action, code = actions[kind]
        category = {"fail": ["authentication"], "ok": ["authentication", "session"], "end": ["session"]}[kind]
        event = {
            "@timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
            "event.dataset": "vpn.auth", "event.kind": "event", "event.category": category,
            "event.type": ["end"] if kind == "end" else ["start"], "event.action": action,
            "event.outcome": "failure" if kind == "fail" else "success", "event.code": code,
            "user.name": user, "source.ip": ip, "observer.vendor": vendor_name, "observer.product": product,
        }
        if domain:
            event["user.domain"] = domain
        if session and kind != "fail":
            event["vpn.session.id"] = session
        self.events.append(event)

    def background(self) -> None:
        """An ordinary day: 60 staff log in once from home during working hours, some mistype once."""
        vendors = list(VENDORS)
        for n in range(60):
            user = f"{GIVEN[n % len(GIVEN)][0]}{FAMILY[n % len(FAMILY)]}{n // 24 or ''}"
            ip = f"192.0.2.{10 + n}" if n < 40 else f"198.51.100.{n}"
            vendor = vendors[n % 4]
            start = DAY + timedelta(minutes=self.rng.randint(0, 600), seconds=self.rng.randint(0, 59))
            if n % 5 == 0:
                self.add("fail", user, ip, start - timedelta(seconds=40), vendor)
            session = f"s{n:04d}"
            self.add("ok", user, ip, start, vendor, session, "klinikum" if n % 3 == 0 else None)
            self.add("end", user, ip, start + timedelta(minutes=self.rng.randint(20, 240)), vendor, session)
        # the IT team works during the day: admin logins at 10:00 Berlin are ordinary
        self.add("ok", "admin.keller", "192.0.2.200", DAY + timedelta(hours=2, minutes=30), "forti", "a1")

    def write(self, name: str) -> None:
        self.events.sort(key=lambda e: e["@timestamp"])
        with (HERE / f"{name}.ndjson").open("w", encoding="utf-8") as fh:
            for i, event in enumerate(self.events, start=1):
                fh.write(json.dumps({**event, "event.id": f"{name}-{i}"}, sort_keys=True) + "\n")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 0) -> datetime:
    """A UTC time on the fixture day (Berlin is UTC+1 in November)."""
    return DAY.replace(hour=hour, minute=minute, second=second) + timedelta(days=day)


def scenario(name: str, build) -> None:
    w = Writer(sum(map(ord, name)))
    w.background()
    build(w)
    w.write(name)


def bruteforce_pos(w: Writer) -> None:
    for i in range(12):
        w.add("fail", "rbauer", "203.0.113.50", at(14, 0, 0) + timedelta(seconds=15 * i), "cisco")
    w.add("ok", "rbauer", "203.0.113.50", at(14, 8), "cisco", "bf1")


def bruteforce_neg(w: Writer) -> None:
    for i in range(12):  # the burst, but the success comes two hours later from home
        w.add("fail", "rbauer", "203.0.113.50", at(14, 0, 0) + timedelta(seconds=15 * i), "cisco")
    w.add("ok", "rbauer", "192.0.2.250", at(16, 30), "cisco", "bf1")


def spray_pos(w: Writer) -> None:
    for i in range(12):
        w.add("fail", f"{GIVEN[i]}.{FAMILY[i % 10]}", "203.0.113.77", at(13, 0) + timedelta(seconds=30 * i), "forti")


def spray_neg(w: Writer) -> None:
    for i in range(12):  # the same twelve users, one every six minutes: never ten in ten minutes
        w.add("fail", f"{GIVEN[i]}.{FAMILY[i % 10]}", "203.0.113.77", at(13, 0) + timedelta(minutes=6 * i), "forti")
    for i in range(9):  # nine users in one minute: under the threshold
        w.add("fail", f"{GIVEN[i]}.x", "203.0.113.78", at(15, 0) + timedelta(seconds=5 * i), "forti")


def terminated_pos(w: Writer) -> None:
    w.add("ok", "ex.mueller", "198.51.100.201", at(11, 0), "panw", "t1", "klinikum")


def terminated_neg(w: Writer) -> None:
    w.add("fail", "ex.mueller", "198.51.100.201", at(11, 0), "panw")  # rejected: the account works as intended
    w.add("ok", "stay.schmitt", "198.51.100.202", at(11, 5), "panw", "t2")  # end date next year


def concurrent_pos(w: Writer) -> None:
    w.add("ok", "mlorenz", "192.0.2.240", at(9, 0), "ovpn", "c1")
    w.add("ok", "mlorenz", "198.51.100.240", at(9, 12), "ovpn", "c2")


def concurrent_neg(w: Writer) -> None:
    w.add("ok", "mlorenz", "192.0.2.240", at(9, 0), "ovpn", "c1")
    w.add("end", "mlorenz", "192.0.2.240", at(9, 40), "ovpn", "c1")
    w.add("ok", "mlorenz", "198.51.100.240", at(12, 0), "ovpn", "c2")  # later, from another network
    w.add("ok", "mlorenz.b", "192.0.2.240", at(12, 10), "ovpn", "c3")  # another user on the same home network


def travel_pos(w: Writer) -> None:
    w.add("ok", "jhartmann", "192.0.2.230", at(8, 0), "cisco", "g1")
    w.add("ok", "jhartmann", "198.18.4.20", at(8, 25), "cisco", "g2")


def travel_neg(w: Writer) -> None:
    w.add("ok", "jhartmann", "192.0.2.230", at(8, 0), "cisco", "g1")
    w.add("ok", "jhartmann", "198.18.4.20", at(15, 0), "cisco", "g2")  # seven hours later: a flight
    w.add("fail", "jhartmann", "203.0.113.9", at(15, 10), "cisco")  # failures do not count


def watched_pos(w: Writer) -> None:
    w.add("ok", "dkoch", "203.0.113.60", at(10, 0), "forti", "w1")


def watched_neg(w: Writer) -> None:
    w.add("fail", "dkoch", "203.0.113.60", at(10, 0), "forti")  # rejected from the watched country
    w.add("ok", "dkoch", "100.64.3.4", at(12, 0), "forti", "w2")  # Austria is not on the list


def admin_pos(w: Writer) -> None:
    w.add("ok", "admin.keller", "192.0.2.201", at(22, 10), "forti", "a2")  # 23:10 Berlin


def admin_neg(w: Writer) -> None:
    w.add("ok", "gadmin", "192.0.2.202", at(22, 10), "forti", "a3")  # contains "admin" but no naming rule
    w.add("fail", "admin.keller", "192.0.2.201", at(22, 15), "forti")  # failed at night: not a login
    w.add("ok", "ldiaz", "192.0.2.203", at(22, 20), "forti", "a4")  # a nurse on night shift


def burst_pos(w: Writer) -> None:
    for i in range(7):
        w.add("fail", "kpohl", "198.51.100.222", at(12, 0) + timedelta(seconds=80 * i), "ovpn")


def burst_neg(w: Writer) -> None:
    for i in range(5):  # five mistypes in ten minutes: under the threshold
        w.add("fail", "kpohl", "198.51.100.222", at(12, 0) + timedelta(minutes=2 * i), "ovpn")
    for i in range(8):  # eight failures over four hours: a stale password on a phone
        w.add("fail", "lstale", "198.51.100.223", at(9, 0) + timedelta(minutes=30 * i), "ovpn")


SCENARIOS = {
    "vpn_bruteforce_then_success": (bruteforce_pos, bruteforce_neg),
    "vpn_password_spray": (spray_pos, spray_neg),
    "vpn_terminated_user": (terminated_pos, terminated_neg),
    "vpn_concurrent_sessions": (concurrent_pos, concurrent_neg),
    "vpn_impossible_travel": (travel_pos, travel_neg),
    "vpn_login_watched_country": (watched_pos, watched_neg),
    "vpn_admin_after_hours": (admin_pos, admin_neg),
    "vpn_failed_login_burst": (burst_pos, burst_neg),
}

if __name__ == "__main__":
    scenario("background", lambda w: None)
    for rule, (pos, neg) in SCENARIOS.items():
        scenario(f"{rule}.positive", pos)
        scenario(f"{rule}.negative", neg)
    (HERE / "roster.csv").write_text(
        "user_id,login,family_name,department,address,postal_code,patient_id,end_date\n"
        "U900,ex.mueller,Mueller,Radiology,,,,2026-10-31\n"
        "U901,stay.schmitt,Schmitt,Cardiology,,,,2027-06-30\n", encoding="utf-8")
