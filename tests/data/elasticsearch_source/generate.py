"""Writes documents.ndjson: what a hospital's cluster holds after Winlogbeat 8 and Elastic Agent shipped a
morning of Windows Security, Cisco ASA, FortiGate and PAN-OS GlobalProtect logs. Deterministic (seed 9).

Why generated: the elasticsearch-source tests index hundreds of ordinary documents around a few scenarios
(a password-guessing burst then a success on each source) so that paging, the overlap and the mapping run
over realistic variety. Each line is ``{"_id": ..., "_index_hint": ..., "_source": {...}}``; the tests index
``_source`` under ``_id``. Field names follow the Winlogbeat 8 exported-fields reference and Elastic's
``cisco_asa``, ``fortinet_fortigate`` and ``panw`` integration field lists; the documents are our own. Some
VPN documents keep ``event.original`` (the integrations' ``preserve_original_event`` tag), the others have
only the parsed fields, as an integration writes by default. Run ``python generate.py`` here to rebuild.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

SEED = 9
DAY = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)
USERS = ["abauer", "bweber", "clange", "dhoffmann", "eengel", "fvogel", "gmeier", "hkoch", "irichter",
         "jklein", "kbauer", "lpohl", "mhorn", "nkraus", "owagner", "pschulz", "rkoch", "ssimon", "tbeck"]
HOSTS = ["WS-ICU-03", "WS-RAD-11", "WS-ER-02", "WS-ADM-07", "WS-LAB-04"]
ATTACKER = "203.0.113.201"
TARGET = "mhorn"


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def home(user: str) -> str:
    return f"192.0.2.{10 + USERS.index(user)}"


def windows(r: random.Random, when: datetime, record: int, code: int, user: str, ip: str) -> dict:
    ok = code != 4625
    data = {"SubjectUserSid": "S-1-5-18", "SubjectUserName": "DC01$", "SubjectDomainName": "HOSPITAL",
            "SubjectLogonId": "0x3e7", "TargetUserName": user, "TargetDomainName": "HOSPITAL",
            "LogonType": r.choice(["3", "10"]), "WorkstationName": r.choice(HOSTS), "IpAddress": ip,
            "IpPort": str(r.randrange(49152, 65535)), "AuthenticationPackageName": "NTLM"}
    if code == 4625:
        data.update({"Status": "0xc000006d", "SubStatus": "0xc000006a", "FailureReason": "%%2313"})
    elif code == 4624:
        data["TargetUserSid"] = f"S-1-5-21-3623811015-3361044348-30300820-{1100 + USERS.index(user)}"
    names = {4624: "An account was successfully logged on.", 4625: "An account failed to log on.",
             4634: "An account was logged off."}
    return {
        "@timestamp": ts(when),
        "agent": {"type": "winlogbeat", "version": "8.15.3", "name": "DC01"},
        "ecs": {"version": "8.0.0"},
        "data_stream": {"type": "logs", "dataset": "system.security", "namespace": "default"},
        "event": {"code": str(code), "kind": "event", "module": "system", "dataset": "system.security",
                  "provider": "Microsoft-Windows-Security-Auditing", "category": ["authentication"],
                  "type": ["start"] if code != 4634 else ["end"], "outcome": "success" if ok else "failure"},
        "host": {"name": "dc01.hospital.example"},
        "message": names[code],
        "winlog": {"channel": "Security", "computer_name": "DC01.hospital.example",
                   "provider_name": "Microsoft-Windows-Security-Auditing", "event_id": str(code),
                   "record_id": str(record), "api": "wineventlog", "task": "Logon",
                   "keywords": ["Audit Success" if ok else "Audit Failure"],
                   "process": {"pid": 668, "thread": {"id": r.randrange(1000, 9999)}}, "event_data": data},
    }


def asa(r: random.Random, when: datetime, user: str, ip: str, ok: bool, original: bool) -> dict:
    code = "113004" if ok else "113005"
    text = (f"AAA user authentication {'Successful' if ok else 'Rejected'} : "
            + ("" if ok else "reason = AAA failure : ") + f"server = 10.0.0.5 : user = {user} : user IP = {ip}")
    doc = {
        "@timestamp": ts(when),
        "data_stream": {"type": "logs", "dataset": "cisco_asa.log", "namespace": "default"},
        "event": {"code": code, "dataset": "cisco_asa.log", "module": "cisco_asa", "severity": 6,
                  "kind": "event", "category": ["authentication"], "outcome": "success" if ok else "failure",
                  "action": "firewall-rule"},
        "cisco": {"asa": {"message_id": code}},
        "log": {"level": "informational"},
        "message": text,
        "observer": {"vendor": "Cisco", "product": "asa", "type": "firewall", "hostname": "asa-edge-01"},
        "source": {"ip": ip, "address": ip},
        "user": {"name": user},
        "tags": ["cisco-asa", "forwarded"],
    }
    if original:
        local = when + timedelta(hours=1)
        doc["event"]["original"] = (f"<166>{local:%b %d %Y %H:%M:%S} asa-edge-01 : %ASA-6-{code}: {text}")
        doc["tags"].append("preserve_original_event")
    return doc


def fortigate(r: random.Random, when: datetime, user: str, ip: str, ok: bool, original: bool) -> dict:
    action = "tunnel-up" if ok else "ssl-login-fail"
    logid = "0101039424" if ok else "0101039426"
    tunnelid = r.randrange(1000, 9000) if ok else 0
    tunnelip = f"10.212.134.{r.randrange(2, 250)}"
    doc = {
        "@timestamp": ts(when),
        "data_stream": {"type": "logs", "dataset": "fortinet_fortigate.log", "namespace": "default"},
        "event": {"code": logid, "dataset": "fortinet_fortigate.log", "module": "fortinet_fortigate",
                  "action": action, "kind": "event", "outcome": "success" if ok else "failure"},
        "fortinet": {"firewall": {"type": "event", "subtype": "vpn", "vd": "root", "action": action,
                                  "tunneltype": "ssl-tunnel" if ok else "ssl-web", "tunnelid": str(tunnelid),
                                  "group": "VPN-Users" if ok else "N/A",
                                  "reason": "N/A" if ok else "sslvpn_login_permission_denied"}},
        "log": {"level": "information" if ok else "alert"},
        "message": "SSL tunnel established" if ok else "SSL user failed to logged in",
        "observer": {"name": "FGT-KLINIKUM-01", "serial_number": "FG100FTK19000001", "vendor": "Fortinet",
                     "product": "Fortigate", "type": "firewall"},
        "rule": {"description": "SSL VPN tunnel up" if ok else "SSL VPN login fail"},
        "source": {"ip": ip, "user": {"name": f"KLINIKUM\\{user}"}},
    }
    if ok:
        doc["fortinet"]["firewall"]["tunnelip"] = tunnelip
    if original:
        local = when + timedelta(hours=1)
        ns = int(when.timestamp()) * 1_000_000_000
        extra = f" tunnelip={tunnelip}" if ok else ""
        doc["event"]["original"] = (
            f'<190>date={local:%Y-%m-%d} time={local:%H:%M:%S} devname="FGT-KLINIKUM-01" '
            f'devid="FG100FTK19000001" eventtime={ns} tz="+0100" logid="{logid}" type="event" subtype="vpn" '
            f'level="{doc["log"]["level"]}" vd="root" logdesc="{doc["rule"]["description"]}" action="{action}" '
            f'tunneltype="{doc["fortinet"]["firewall"]["tunneltype"]}" tunnelid={tunnelid} remip={ip}{extra} '
            f'user="KLINIKUM\\{user}" group="{doc["fortinet"]["firewall"]["group"]}" '
            f'reason="{doc["fortinet"]["firewall"]["reason"]}" msg="{doc["message"]}"')
    return doc


def globalprotect(r: random.Random, when: datetime, seq: int, user: str, ip: str, ok: bool) -> dict:
    event_id = r.choice(["portal-auth", "gateway-auth"]) if not ok else "gateway-auth"
    return {
        "@timestamp": ts(when),
        "data_stream": {"type": "logs", "dataset": "panw.panos", "namespace": "default"},
        "event": {"dataset": "panw.panos", "module": "panw", "action": event_id, "kind": "event",
                  "outcome": "success" if ok else "failure", "category": ["authentication"],
                  **({} if ok else {"reason": "Authentication failed: Invalid username or password"})},
        "panw": {"panos": {"type": "GLOBALPROTECT", "virtual_sys": "vsys1", "stage": "login",
                           "auth_method": "LDAP", "tunnel_type": "ipsec" if ok else "",
                           "portal": "GP-Portal-KLINIKUM", "gateway": "GP-Gateway-KLINIKUM",
                           "connect_method": "user-logon", "client_ver": "6.2.4", "login_duration": "0",
                           "error_code": 0, "repeatcnt": 1, "sequence_number": seq,
                           "client_os": "Windows", "client_os_ver": "Microsoft Windows 11 Enterprise, 64-bit",
                           "description": "" if ok else "Authentication failed: Invalid username or password",
                           "private_ip": f"10.30.{r.randrange(0, 4)}.{r.randrange(2, 250)}" if ok else ""}},
        "observer": {"serial_number": "013201012345", "hostname": "pa-gp-klinikum-01", "vendor": "Palo Alto Networks",
                     "product": "PAN-OS", "type": "firewall"},
        "source": {"ip": ip, "user": {"name": user}},
        "host": {"hostname": f"LAPTOP-{r.randrange(10, 99)}"},
    }


def generic(r: random.Random, when: datetime, n: int) -> dict:
    user = r.choice(USERS)
    if n % 3 == 0:  # no dataset at all: the connector's configured dataset applies
        return {"@timestamp": ts(when), "message": f"backup job {n} finished", "host": {"name": "backup01"}}
    return {
        "@timestamp": ts(when),
        "data_stream": {"type": "logs", "dataset": "system.auth", "namespace": "default"},
        "event": {"dataset": "system.auth", "module": "system", "category": ["authentication"],
                  "outcome": "failure" if n % 5 == 1 else "success"},
        "host": {"name": "pacs01"}, "user": {"name": user}, "source": {"ip": home(user)},
        "process": {"name": "sshd"},
        "message": f"{'Failed password' if n % 5 == 1 else 'Accepted publickey'} for {user}",
    }


def build() -> list[dict]:
    r = random.Random(SEED)
    docs: list[dict] = []
    record = 437900
    seq = 7000
    for i in range(420):
        when = DAY + timedelta(seconds=i * 17 + r.randrange(0, 10))
        user = r.choice(USERS)
        kind = i % 6
        record += 1
        seq += 1
        ok = r.random() > 0.08
        if kind in (0, 1):
            code = r.choice([4624, 4624, 4634]) if ok else 4625
            docs.append(windows(r, when, record, code, user, home(user)))
        elif kind == 2:
            docs.append(asa(r, when, user, home(user), ok, original=i % 4 == 0))
        elif kind == 3:
            docs.append(fortigate(r, when, user, home(user), ok, original=i % 4 == 1))
        elif kind == 4:
            docs.append(globalprotect(r, when, seq, user, home(user), ok))
        else:
            docs.append(generic(r, when, i // 6))
    # scenario: password guessing from one address against TARGET on every source, then a success
    start = DAY + timedelta(hours=1, minutes=5)
    for k in range(12):
        when = start + timedelta(seconds=k * 4)
        record += 1
        seq += 1
        docs.append(windows(r, when, record, 4625, TARGET, ATTACKER))
        docs.append(asa(r, when, TARGET, ATTACKER, False, original=k % 2 == 0))
        docs.append(fortigate(r, when, TARGET, ATTACKER, False, original=k % 2 == 1))
        docs.append(globalprotect(r, when, seq, TARGET, ATTACKER, False))
    when = start + timedelta(seconds=60)
    record += 1
    docs.append(windows(r, when, record, 4624, TARGET, ATTACKER))
    docs.append(asa(r, when, TARGET, ATTACKER, True, original=True))
    docs.append(fortigate(r, when, TARGET, ATTACKER, True, original=False))
    docs.append(globalprotect(r, when, seq + 1, TARGET, ATTACKER, True))
    return [{"_id": f"doc-{n:05d}", "_source": d} for n, d in enumerate(docs)]


def main() -> None:
    out = Path(__file__).with_name("documents.ndjson")
    with out.open("w", encoding="utf-8") as fh:
        for doc in build():
            fh.write(json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
