"""Differential check: the current ``connectors.fhir_mapping`` against a saved copy of an older version.

Usage: .venv/bin/python bench/profile_mapping_equivalence.py OLD_FHIR_MAPPING.py [--cases 50000] [--seed 1]

Why: the mapping is a field contract (docs/schema.md); a speed-up must not change one output field, value,
type or key order. The corpus is every AuditEvent we have (fixtures, tests/data/fhir, Bundle entries, the
bench generator) plus random mutations of them: elements deleted, replaced by other JSON types, wrapped in or
unwrapped from lists, R4 elements renamed to R5, odd network addresses and timestamps. Exceptions must match
(type and message). Exit status 1 on the first difference, with the case printed.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import random
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import connectors.fhir_mapping as new  # noqa: E402

SOURCE = "fhir-auditevent-file:equivalence"
ODD_VALUES: list[Any] = [None, "", "x", 0, 1, True, False, 1.5, [], {}, [None], [{}], {"coding": None},
                         {"coding": []}, {"coding": [{}]}, {"code": ""}, {"code": 5}, "Patient/1",
                         {"reference": "Patient/abc"}, {"reference": 7}, ["24"], {"coding": {"code": "24"}}]
ODD_ADDRESSES = ["10.0.0.1", " 10.0.0.1 ", "10.0.0.1:8080", "[2001:db8::1]", "[2001:db8::1]:443",
                 "2001:0db8:0000:0000:0000:0000:0000:0001", "::ffff:10.0.0.1", "fe80::1%eth0", "host.example",
                 "https://10.1.2.3/x", "256.1.1.1", "1.2.3", "010.1.1.1", "", " ", "0.0.0.0", "[", "a:b.c",
                 "1.2.3.4:5:6", "١٢.1.1.1", "10.0.0.1\n", "::", "1::2::3", "12.34.56.78/24"]
ODD_TIMES = ["2026-11-02T06:05:24.773Z", "2026-11-02T06:05:24Z", "2026-11-02T06:05:24.773+01:00",
             "2026-11-02T06:05:24.7731Z", "2026-13-02T06:05:24.773Z", "2026-02-30T06:05:24.773Z",
             "0999-01-01T00:00:00.000Z", "0001-01-01T00:00:00.000Z", "2026-11-02T24:00:00.000Z",
             "2026-11-02T06:05:60.000Z", "2026-11-02", "2026-11-02T06:05:24.773z", " 2026-11-02T06:05:24.773Z",
             "2026-11-02T06:05:24.773Z ", "٢٠٢٦-11-02T06:05:24.773Z", "9999-12-31T23:59:59.999Z",
             "2026-11-02T06:05:24,773Z", "2026-11-02 06:05:24.773Z", "", 5, None, ["x"]]
R4_TO_R5 = {"type": "category", "subtype": "code", "purposeOfEvent": "authorization"}


def load_old(path: str):
    spec = importlib.util.spec_from_file_location("old_fhir_mapping", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def seeds() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(doc: Any) -> None:
        if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
            for entry in doc.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    found.append(entry["resource"])
        elif isinstance(doc, dict):
            found.append(doc)

    for path in sorted((ROOT / "fixtures").rglob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            if b'"AuditEvent"' in line:
                add(orjson.loads(line))
    for path in sorted((ROOT / "tests" / "data" / "fhir").glob("*.json")):
        add(orjson.loads(path.read_bytes()))
    sys.path.insert(0, str(ROOT / "bench"))
    import tempfile

    from bench_pipeline import generate
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "g.ndjson", 300, seed=3)
        for line in (Path(tmp) / "g.ndjson").read_bytes().splitlines():
            add(orjson.loads(line))
    return found


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths(value, prefix + (index,))
    return out


def get_parent(doc: Any, path: tuple) -> tuple[Any, Any]:
    node = doc
    for step in path[:-1]:
        node = node[step]
    return node, path[-1]


ENTITY_EXTRAS: list[tuple[str, Any]] = [
    ("description", "GET /fhir/Observation?patient=1"), ("description", "POST /fhir/Patient/_search HTTP/1.1"),
    ("role", {"code": "24"}), ("role", [{"coding": [{"code": "24"}]}]), ("role", {"code": "1"}),
    ("query", "R0VUIC9maGlyL1BhdGllbnQ/bmFtZT14"), ("query", "not base64!"), ("query", "R0VU IC9m\naGly"),
    ("detail", [{"type": "X-Request-Id", "valueString": "r-1"}]),
    ("detail", [{"type": {"text": "x-request-id"}, "valueBase64Binary": "cmVxLTI="}]),
    ("detail", [{"type": {"coding": [{"code": "X-REQUEST-ID"}]}, "valueBase64Binary": "%%%"}]),
    ("detail", {"type": "other", "valueString": "v"}),
    ("type", {"system": "http://hl7.org/fhir/resource-types", "code": "encounter"}),
    ("type", {"code": "XrequestId"}), ("type", [{"code": "Observation"}, {"code": "x"}]),
    ("what", {"identifier": {"value": "P-ident"}}), ("what", {"reference": "DocumentReference/d1"}),
    ("what", {"reference": "https://ehr/fhir/Patient/77/_history/3"}), ("what", {"reference": "urn:uuid:1"}),
    ("securityLabel", [{"code": "R"}, {"coding": [{"code": "PSY"}, {"code": "R"}]}]),
]
AGENT_EXTRAS: list[tuple[str, Any]] = [
    ("network", {"address": "ws-12.hospital.example", "type": "1"}), ("network", {"address": "host", "type": "2"}),
    ("network", {"address": "10.9.8.7", "type": "5"}), ("network", {"address": "10.9.8.7"}),
    ("requestor", False), ("requestor", True), ("altId", ""), ("name", "Dr X"),
    ("who", {"reference": "Practitioner/p1"}), ("who", {"identifier": {"value": ""}, "reference": "x"}),
    ("purposeOfUse", {"code": "BTG"}), ("authorization", [{"coding": [{"code": "ETREAT"}]}]),
    ("type", {"coding": [{"code": "110127"}]}),
]


def mutate(rng: random.Random, doc: dict[str, Any], donors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 4)):
        candidates = [p for p in paths(doc) if p]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent, key = get_parent(doc, path)
        roll = rng.random()
        if roll < 0.15 and donors:
            donor = rng.choice(donors)
            donor_paths = [p for p in paths(donor) if p]
            if donor_paths:
                donor_parent, donor_key = get_parent(donor, rng.choice(donor_paths))
                parent[key] = copy.deepcopy(donor_parent[donor_key])
        elif roll < 0.3:
            target = doc.get(rng.choice(["entity", "agent"]))
            extras = ENTITY_EXTRAS if target is doc.get("entity") else AGENT_EXTRAS
            if isinstance(target, list) and target:
                node = rng.choice(target)
                if isinstance(node, dict):
                    name, value = rng.choice(extras)
                    node[name] = copy.deepcopy(value)
                    if rng.random() < 0.3:
                        node.pop(rng.choice(list(node)), None)
            elif isinstance(target, list):
                target.append({})
        elif roll < 0.4:
            del parent[key]
        elif roll < 0.4:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif roll < 0.5:
            parent[key] = [parent[key]]
        elif roll < 0.6 and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key][0]
        elif roll < 0.7 and isinstance(parent, dict) and key in R4_TO_R5:
            parent[R4_TO_R5[key]] = parent.pop(key)
        elif roll < 0.8 and isinstance(parent, dict) and key in ("address", "networkString", "display"):
            parent[key] = rng.choice(ODD_ADDRESSES)
        elif roll < 0.85:
            doc["recorded"] = rng.choice(ODD_TIMES)
        elif roll < 0.9 and isinstance(parent, dict) and isinstance(parent.get(key), dict):
            parent[key] = {k: parent[key][k] for k in reversed(list(parent[key]))}
        else:
            agents = doc.get("agent")
            if isinstance(agents, list) and agents and isinstance(agents[-1], dict):
                agent = agents[rng.randrange(len(agents))]
                if isinstance(agent, dict):
                    agent.pop("network", None)
                    kind = rng.choice(["networkString", "networkUri", "networkReference", "requestor", "role"])
                    if kind == "networkReference":
                        agent[kind] = {"display": rng.choice(ODD_ADDRESSES)}
                    elif kind == "networkUri":
                        agent[kind] = rng.choice(["https://10.1.2.3:8443/app", "http://[::1]:80/", "urn:x",
                                                  "http://[bad/", "relative/path", ""])
                    elif kind == "requestor":
                        agent[kind] = rng.choice([True, False, 1, "true", None])
                    elif kind == "role":
                        agent[kind] = copy.deepcopy(rng.choice(ODD_VALUES))
                    else:
                        agent[kind] = rng.choice(ODD_ADDRESSES)
    return doc


def outcome(module, resource: Any, raw: bytes) -> tuple:
    try:
        event = module.auditevent_to_event(resource, raw=raw)
    except Exception as exc:  # noqa: BLE001
        return ("raise", type(exc).__name__, str(exc), getattr(exc, "field", None))
    return ("ok", list(event.keys()), repr(list(event.items())))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old")
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    old = load_old(args.old)
    rng = random.Random(args.seed)
    base = seeds()
    checked = 0
    for case in [*base, *(mutate(rng, rng.choice(base), base) for _ in range(args.cases))]:
        raw = orjson.dumps(case)
        a, b = outcome(old, case, raw), outcome(new, case, raw)
        if a != b:
            print("DIFFERENCE for", raw.decode())
            print(" old:", a)
            print(" new:", b)
            sys.exit(1)
        checked += 1
    for odd in (None, [], "x", 5, {"resourceType": "Patient"}, {"resourceType": "AuditEvent"}):
        if outcome(old, odd, b"x") != outcome(new, odd, b"x"):
            print("DIFFERENCE for", odd)
            sys.exit(1)
    print(f"identical on {checked} resources ({len(base)} seeds)")


if __name__ == "__main__":
    main()
