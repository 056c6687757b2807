"""bench/detection_quality.py on a tiny hospital: the report has its shape, every injected incident kind is
caught by the rule meant for it (today's rules and documented enrichment), and the run is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import detection_quality
from bench.hospital import activity, incidents, output, population
from engine.enrich.privacy import PrivacyOptions

pytestmark = pytest.mark.slow   # generates a hospital and runs `wardwatch run --once` (~5-10 s)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dq") / "hospital"
    detection_quality.main(["--staff", "90", "--days", "3", "--seed", "7", "--incidents-per-kind", "1",
                            "--out", str(out), "--json"])
    return out


@pytest.fixture(scope="module")
def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def test_a_missed_incident_and_a_false_alert_are_scored_as_such(run_dir: Path, report: dict,
                                                                 tmp_path: Path) -> None:
    """Scoring the same store without the self-access alert: that kind's recall drops to 0; and an alert
    whose evidence holds no incident event is a false one."""
    import shutil
    import sqlite3

    from bench.hospital import evaluate

    work = tmp_path / "copy"
    shutil.copytree(run_dir, work, ignore=shutil.ignore_patterns("audit"))
    db = sqlite3.connect(work / "wardwatch.db")
    ids = {n: i for i, n in evaluate.rule_names().items()}
    db.execute("DELETE FROM alerts WHERE rule_id = ?", (ids["ehr_privacy_self_access"],))
    db.execute("UPDATE alerts SET doc = json_set(doc, '$.evidence', json('[]')) WHERE rule_id = ?",
               (ids["ehr_privacy_terminated_user"],))
    db.commit()
    db.close()
    again = evaluate.score(work, report["counts"]["accesses"])
    assert again["recall"]["self"]["detected"] == 0
    assert again["recall"]["terminated_user"]["detected"] == 0
    terminated = again["rules"]["ehr_privacy_terminated_user"]
    assert terminated["false"] == terminated["alerts"] > 0
    assert again["recall"]["vip"] == report["recall"]["vip"]


@pytest.mark.parametrize("config", ["site_de.yaml", "site_de_from_docs.yaml"])
def test_the_german_sites_extracts_with_its_config_give_the_same_figures(tmp_path: Path, report: dict, config: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The same hospital exported the German way (bench/hospital/dialect.py: other columns, job titles,
    departments, ward codes, Windows-1252, J for yes) and configured with the knobs the docs document is
    scored exactly as the English files with the default config: every fact survives the translation, and
    every knob the translation needs exists. site_de.yaml is ours; site_de_from_docs.yaml was written by a
    session that read only the docs (what issue 11's held-out scenario does)."""
    out = tmp_path / "de"
    detection_quality.main(["--staff", "90", "--days", "3", "--seed", "7", "--incidents-per-kind", "1",
                            "--out", str(out), "--json", "--dialect", "de",
                            "--config", str(Path(detection_quality.__file__).parent / "hospital" / config)])
    german = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert not any((out / name).exists() for name in ("roster.csv", "patients.csv", "encounters.csv", "vip.txt"))
    assert "Ã" not in (out / "personal.csv").read_text(encoding="cp1252")  # Windows-1252, not UTF-8 bytes
    assert (german["recall"], german["rules"], german["cases"]) == (report["recall"], report["rules"],
                                                                    report["cases"])
    assert german["cases"]["cases"] > 0 and german["rules"]["ehr_privacy_deceased_patient"]["alerts"] > 0
    # and `wardwatch config check` agrees: every lookup loads, every ward code maps to a roster department,
    # the ZNA is an emergency department, and the billing titles are in the records roles' list
    from engine.cli import main as cli

    assert cli(["config", "check", "--config", str(out / "wardwatch.yaml")]) == 0
    said = capsys.readouterr().out.splitlines()
    warnings = [line for line in said if line.startswith(("warning: ", "error: "))]
    assert not [w for w in warnings if "emergency_departments" in w or "units are no roster department" in w
                or "privacy_deceased_allowed_roles" in w], warnings
    assert any(" loaded: " in line and "personal.csv" in line for line in said)


def test_the_german_dialect_needs_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        detection_quality.main(["--staff", "90", "--days", "3", "--out", str(tmp_path / "x"), "--dialect", "de"])
    assert "--dialect de needs --config" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()   # told before the minutes of generating


def test_report_shape(report: dict) -> None:
    assert report["params"] == {"staff": 90, "days": 3, "seed": 7, "incidents_per_kind": 1, "dialect": "en"}
    assert report["counts"]["accesses"] > 2000 and report["counts"]["incidents"] == len(incidents.EXPECTED_RULE)
    assert report["run_seconds"] > 0 and report["events_per_second"] > 0
    assert set(report["recall"]) == set(incidents.EXPECTED_RULE)
    for rule, row in report["rules"].items():
        assert row["alerts"] >= row["false"] >= 0, rule
        assert row["false_per_100k"] == round(row["false"] * 100_000 / report["counts"]["accesses"], 1)
    assert report["false_alerts"] == sum(r["false"] for r in report["rules"].values())
    cases = report["cases"]
    if cases is not None:
        assert cases["cases"] >= len(incidents.EXPECTED_RULE) - 1 and cases["cases"] >= cases["false"] >= 0
        for rule, n in cases["per_100k_by_rule"].items():
            assert n >= cases["false_per_100k_by_rule"][rule] >= 0, rule


@pytest.mark.parametrize("kind", sorted(incidents.EXPECTED_RULE))
def test_every_incident_kind_is_detected(report: dict, kind: str) -> None:
    row = report["recall"][kind]
    assert row["injected"] == 1
    assert row["detected"] == 1, (kind, row)
    assert row["expected_rule"] in row["rules"]
    assert row.get("in_case", 1) == 1      # and, where the engine keeps cases, it is in one


def test_ordinary_life_raises_false_alerts_that_are_counted(report: dict) -> None:
    """Ordinary ED and rapid-response overrides are there: each is on the break-the-glass review list and
    counted as a false alert (no incident event in its evidence), not as a detection; being informational,
    none of them opens a case (alerts.cases.min_level)."""
    assert report["rules"]["ehr_break_the_glass"]["false"] > 0
    assert report["false_alerts"] >= report["rules"]["ehr_break_the_glass"]["false"]
    assert "ehr_break_the_glass" not in report["cases"]["per_100k_by_rule"]


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = detection_quality.generate(tmp_path / "a", 70, 2, 3, 1)
    b = detection_quality.generate(tmp_path / "b", 70, 2, 3, 1)
    assert a == b
    for name in ("audit/auditevents.ndjson", "roster.csv", "patients.csv", "encounters.csv", "ground_truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_auditevents_map_through_the_fhir_connector_mapping(tmp_path: Path) -> None:
    from connectors.fhir_mapping import auditevent_to_event

    h = population.build(70, 2, 5)
    injected = incidents.inject(h, 1, ["btg_outside_emergency", "name_search_sweep"])
    btg = auditevent_to_event(output.auditevent(injected[0].accesses[0]), raw=b"{}")
    assert btg["ehr.break_the_glass"] is True and btg["ehr.emergency"] is False
    assert btg["user.name"] == injected[0].users[0] and btg["event.action"] == "read"
    search = auditevent_to_event(output.auditevent(injected[1].accesses[0]), raw=b"{}")
    assert search["event.action"] == "search-type" and "ehr.patient.id" not in search


def test_population_has_the_realism_the_issue_lists() -> None:
    h = population.build(1000, 2, 1)
    roles = {s.role for s in h.staff}
    assert {"physician", "nurse", "student", "billing", "him", "coding", "research"} <= roles
    assert {s.schedule for s in h.staff} == {"office", "day", "rotating", "night", "ed12"}
    assert any(s.department == population.FLOAT_POOL for s in h.staff)       # rotating between wards
    assert sum(1 for s in h.staff if s.patient_id) >= 20                     # employees who are patients
    assert any(h.patients[e.patient_id].vip and e.cls == "IMP" for e in h.encounters)   # VIPs on a ward
    assert sum(1 for p in h.patients.values() if p.deceased_date) >= 20
    surnames = [p.family_name for p in h.patients.values()]
    share = surnames.count("Müller") / len(surnames)
    assert 0.005 < share < 0.03, share                  # Germany: ~0.9% are called Müller; we use ~1.7%
    assert len(set(surnames)) > 500                      # and a long tail of rarer names


def test_config_takes_the_context_knobs_docs_enrichment_shows(tmp_path: Path) -> None:
    """A knob another part of issue 11 documents (an encounter file, the baselines block) is switched on
    from the doc's YAML examples; knobs of other shapes are left alone."""
    from bench.hospital import evaluate

    doc = tmp_path / "enrichment.md"
    doc.write_text("# x\n```yaml\nenrichment:\n  privacy:\n    roster_csv: lookups/roster.csv\n"
                   "    encounters_csv: lookups/encounters.csv\n    encounters_csv_columns: {patient_id: MRN}\n"
                   "  baselines:\n    window_days: 28\n```\n```yaml\nnot: [valid\n```\n", encoding="utf-8")
    knobs = evaluate.optional_knobs(doc)
    assert knobs == {"enrichment.privacy.encounters_csv": "encounters.csv",
                     "enrichment.baselines.timezone": "Europe/Berlin"}
    config = evaluate.build_config(tmp_path, knobs)
    assert config["enrichment"]["privacy"]["encounters_csv"] == "encounters.csv"
    assert config["enrichment"]["privacy"]["roster_csv"] == "roster.csv"
    assert config["enrichment"]["baselines"] == {"timezone": "Europe/Berlin"}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_generated_auditevent_maps(seed: int) -> None:
    """Whatever the seed: each AuditEvent maps through the connector's mapping to the access it encodes."""
    from connectors.fhir_mapping import auditevent_to_event

    from bench.hospital import activity

    h = population.build(60, 2, seed)
    injected = incidents.inject(h, 1, ["bulk_export_print", "btg_outside_emergency"])
    accesses = activity.ordinary(h)[:300] + [a for i in injected for a in i.accesses]
    for a in accesses:
        a.audit_id = a.audit_id or "x1"
        event = auditevent_to_event(output.auditevent(a), raw=b"{}")
        assert (event["user.name"], event["user.id"], event["event.action"]) == (a.login, a.user_id, a.action)
        assert event.get("ehr.patient.id") == a.patient_id
        assert event["ehr.break_the_glass"] is a.btg and event["ehr.emergency"] is a.emergency


def test_no_coworker_incident_is_a_chart_of_the_snoopers_own_ward_or_team() -> None:
    """A colleague in a bed on the snooper's ward (or with the snooper on the team) is her patient: the rules
    spare the treating ward by design, so such an "incident" is a miss no context can avoid (seed 9 drew one)."""
    h = population.build(600, 7, 9)
    actors = {s.login: s for s in h.staff}
    conflicts = []
    for incident in incidents.inject(h, 150, ["coworker"]):   # unguarded, 4 of these 150 were such charts
        s, (pid,) = actors[incident.users[0]], incident.patients
        for access in incident.accesses:
            near = [e for e in h.encounters if e.patient_id == pid
                    and e.start - 3600 <= access.ts and access.ts <= e.end + 86400]
            conflicts += [(incident.n, e.department) for e in near
                          if e.department == s.department or s.login in e.participants]
    assert conflicts == []


def test_no_snooped_chart_lies_on_a_ward_the_snooper_is_working_on_then() -> None:
    """A nurse sent to help on a ward opens its patients as her work; a co-worker's or VIP's chart on that ward
    opened then is care by every sign the logs hold (``ehr.relationship.worked_department``, which the rules
    spare by design), so the generator must not inject it as a snoop (seed 8 with six incidents per kind drew
    one: 77 of 78 caught)."""
    h = population.build(600, 7, 3)
    injected = incidents.inject(h, 120, ["coworker"]) + incidents.inject(h, 60, ["vip"])
    ordinary = activity.ordinary(h)
    stays: dict[str, list[population.Encounter]] = {}
    for e in h.encounters:
        stays.setdefault(e.patient_id, []).append(e)

    def wards(pid: str | None, ts: float) -> set[str]:
        """The wards of the patient's stays at ``ts``. A patient the generator drew into two overlapping stays
        (35 of 1,860 on seed 1) counts as on neither: which one is "the ward" is not this test's question."""
        here = {e.department for e in stays.get(pid or "", ()) if e.start <= ts < e.end}
        return here if len(here) == 1 else set()

    by_user: dict[str, list[activity.Access]] = {}
    for a in ordinary:
        by_user.setdefault(a.login, []).append(a)
    window = PrivacyOptions.encounters_ward_work_hours * 3600
    conflicts = []
    for incident in injected:
        (login,), (pid,) = incident.users, incident.patients
        for snoop in incident.accesses:
            victim_wards = wards(pid, snoop.ts)
            worked = {a.patient_id for a in by_user.get(login, ()) if snoop.ts - window <= a.ts <= snoop.ts
                      and a.patient_id != pid and wards(a.patient_id, a.ts) & victim_wards}
            if len(worked) >= PrivacyOptions.encounters_ward_work_min_patients:
                conflicts.append((incident.kind, incident.n, sorted(victim_wards)))
    assert conflicts == []


def test_no_break_the_glass_incident_is_on_a_patient_in_the_emergency_department_then() -> None:
    """An override on a patient in an emergency encounter is expected by design (a physician called to the ED:
    ``privacy_emergency_encounter_classes``), so the generator must not inject it as one outside an emergency
    (seed 8 with six incidents per kind drew one: 5 of 6 caught)."""
    h = population.build(600, 7, 8)
    emergencies = [e for e in h.encounters if e.cls == "EMER"]
    conflicts = [(i.n, a.patient_id) for i in incidents.inject(h, 150, ["btg_outside_emergency"]) for a in i.accesses
                 if any(e.patient_id == a.patient_id and e.start <= a.ts < e.end for e in emergencies)]
    assert conflicts == []
