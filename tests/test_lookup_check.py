"""``wardwatch config check`` loads every lookup file on its own and says what each one holds or why it cannot
be used (engine/lookup_check.py).

The user here writes an enrichment config from docs/enrichment.md alone: a start stops at the first column
named wrong, and a missing patient file or an encounter extract whose every row is skipped is only a warning
in the service log. The check must show all of it at once, one line each, and fail (exit 2) on what a start
would refuse or run without.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cli import main
from tests.json_peer import json_peer

ROSTER = """user_id,login,family_name,department,role
U1,amueller,Müller,Cardiology,nurse
U2,bschmidt,Schmidt,Emergency,physician
U3,ckoch,Koch,Billing,billing
"""
PATIENTS = """patient_id,family_name,address,postal_code
P1,Meyer,Hauptstraße 1,10115
P2,Koch,Gartenweg 2,10117
"""
ENCOUNTERS = """patient_id,department,class,start,end
P1,Cardiology,IMP,2026-11-02T08:00:00+01:00,2026-11-05T12:00:00+01:00
P2,Emergency,EMER,2026-11-03T22:10:00+01:00,2026-11-04T02:00:00+01:00
P2,Orthopaedics,IMP,2026-11-04T02:00:00+01:00,
"""


def _site(tmp_path: Path, privacy: str) -> Path:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (tmp_path / "patients.csv").write_text(PATIENTS, encoding="utf-8")
    (tmp_path / "encounters.csv").write_text(ENCOUNTERS, encoding="utf-8")
    (tmp_path / "vip.txt").write_text("P1\n", encoding="utf-8")
    path = tmp_path / "wardwatch.yaml"
    path.write_text(f"store: {{kind: sqlite, sqlite: {{path: {tmp_path / 'store' / 'w.db'}}}}}\n"
                    "rules: {paths: []}\nconnectors: []\n"
                    "enrichment:\n  privacy:\n    timezone: Europe/Berlin\n" + privacy, encoding="utf-8")
    return path


def _check(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str], str]:
    code = main(["config", "check", "--config", str(path)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_every_lookup_is_loaded_and_counted(tmp_path, capsys):
    path = _site(tmp_path, "    roster_csv: roster.csv\n    patients_csv: patients.csv\n"
                           "    vip_list_file: vip.txt\n    encounters_csv: encounters.csv\n")
    code, out, err = _check(capsys, path)
    assert code == 0, (out, err)
    assert out == [
        f"enrichment.privacy.roster_csv: staff roster {tmp_path / 'roster.csv'} loaded: 3 entries",
        f"enrichment.privacy.patients_csv: patient directory {tmp_path / 'patients.csv'} loaded: 2 entries",
        f"enrichment.privacy.vip_list_file: VIP list {tmp_path / 'vip.txt'} loaded: 1 entries",
        f"enrichment.privacy.encounters_csv: encounter extract {tmp_path / 'encounters.csv'} loaded: 3 entries",
        # how the names meet the config's lists (engine/lookup_coverage.py)
        "enrichment.privacy.roster_csv: 3 staff, 3 with a role; roles: nurse 1, physician 1, "
        "billing 1 [privacy_deceased_allowed_roles, privacy_office_roles]",
        "warning: enrichment.privacy.roster_csv: rules.placeholders.privacy_ward_service_roles matches no roster "
        "role: if the site has such staff, set it to their titles",
        "warning: enrichment.privacy.roster_csv: rules.placeholders.privacy_disclosure_roles matches no roster "
        "role: if the site has such staff, set it to their titles",
        "enrichment.privacy.roster_csv: departments: Cardiology 1, Emergency 1 [emergency_departments], "
        "Billing 1 [privacy_deceased_allowed_departments]",
        "enrichment.privacy.encounters_csv: 3 stay segments; units: Cardiology 1, Emergency 1, Orthopaedics 1",
        "warning: enrichment.privacy.encounters_csv: 1 of 3 units are no roster department (map them with "
        "encounters_department_map): Orthopaedics 1",
        "enrichment.privacy.encounters_csv: classes: IMP 2, EMER 1 [privacy_emergency_encounter_classes]",
        "ok: 0 connectors, 2 sinks, 0 rules, 4 lookups",
    ]
    assert err == ""  # the loaders' log lines are the check's output, not also the service log's
    assert not (tmp_path / "store").exists()  # a check opens no store


def test_every_broken_lookup_is_named_in_one_run(tmp_path, capsys):
    """A start would stop at the roster's column; the check goes on and finds the other two as well."""
    path = _site(tmp_path, "    roster_csv: roster.csv\n    roster_columns: {login: USERNAME}\n"
                           "    patients_csv: patientz.csv\n    vip_list_file: vip.txt\n"
                           "    encounters_csv: encounters.csv\n    encounters_csv_columns: {department: UNIT}\n")
    code, out, err = _check(capsys, path)
    assert code == 2
    assert out == [
        f"error: enrichment.privacy.roster_csv: roster_columns.login: column 'USERNAME' is not in the header of "
        f"{tmp_path / 'roster.csv'}",
        f"error: enrichment.privacy.patients_csv: patient directory {tmp_path / 'patientz.csv'} unavailable: "
        "No such file or directory",
        f"enrichment.privacy.vip_list_file: VIP list {tmp_path / 'vip.txt'} loaded: 1 entries",
        f"error: enrichment.privacy.encounters_csv: encounters_csv_columns.department: column 'UNIT' is not in the "
        f"header of {tmp_path / 'encounters.csv'}",
    ]
    assert err.splitlines() == [f"error: {path}: 3 lookup(s) cannot be used as configured (above)"]


def test_an_extract_whose_every_row_is_skipped_fails_with_the_pattern_and_the_count(tmp_path, capsys):
    """A wrong ``encounters_csv_time_format`` skips every row: loaded, but empty, and every patient would
    read as not admitted. The first rows name the pattern, the count says how many; no row content."""
    path = _site(tmp_path, "    encounters_csv: big.csv\n    encounters_csv_time_format: '%d.%m.%Y %H:%M'\n")
    rows = "".join(f"P{n},Cardiology,IMP,2026-11-02T08:00:00+01:00,2026-11-03T08:00:00+01:00\n" for n in range(40))
    (tmp_path / "big.csv").write_text("patient_id,department,class,start,end\n" + rows, encoding="utf-8")
    code, out, _ = _check(capsys, path)
    assert code == 2
    key = "enrichment.privacy.encounters_csv"
    assert out[:5] == [f"warning: {key}: big.csv:{n}: start: not a date/time in the format %d.%m.%Y %H:%M; "
                       "record skipped" for n in range(2, 7)]
    assert out[5] == f"warning: {key}: ... and 16 more warning(s)"
    assert out[6] == f"warning: {key}: big.csv: 40 bad records skipped in all"
    assert out[7] == (f"error: {key}: encounter extract {tmp_path / 'big.csv'} loaded: 0 entries: every record was "
                      "skipped (see above)")
    assert len(out) == 8 and "P1" not in "\n".join(out)


def test_a_few_bad_rows_warn_but_pass(tmp_path, capsys):
    path = _site(tmp_path, "    encounters_csv: encounters.csv\n")
    (tmp_path / "encounters.csv").write_text(ENCOUNTERS + "P3,Cardiology,IMP,yesterday,\n", encoding="utf-8")
    code, out, _ = _check(capsys, path)
    assert code == 0
    assert out[0].startswith("warning: enrichment.privacy.encounters_csv: encounters.csv:5: start: ")
    assert out[1].endswith("loaded: 3 entries") and out[-1].endswith(", 1 lookup")


def test_an_empty_lookup_is_a_warning(tmp_path, capsys):
    path = _site(tmp_path, "    vip_list_file: none.txt\n")
    (tmp_path / "none.txt").write_text("# no VIPs this month\n", encoding="utf-8")
    code, out, _ = _check(capsys, path)
    assert code == 0
    assert out[0] == (f"warning: enrichment.privacy.vip_list_file: VIP list {tmp_path / 'none.txt'} loaded: 0 "
                      "entries: it holds no records")


def test_servers_are_listed_not_contacted(tmp_path, capsys):
    with json_peer(lambda _request: (200, {"resourceType": "Bundle", "entry": []})) as server:
        url = f"{server.base}/r4"
        path = _site(tmp_path, f"    roster_csv: roster.csv\n    encounters_fhir_base_url: {url}\n"
                               "    encounters_fhir_allow_insecure_http: true\n"
                               f"    patients_fhir_base_url: {url}\n    patients_fhir_allow_insecure_http: true\n")
        code, out, _ = _check(capsys, path)
    assert code == 0
    assert f"enrichment.privacy.encounters_fhir_base_url: {url}: a server, not contacted by config check" in out
    assert f"enrichment.privacy.patients_fhir_base_url: {url}: a server, not contacted by config check" in out
    assert server.paths == []


def test_a_missing_geoip_database_is_an_error(tmp_path, capsys):
    path = tmp_path / "wardwatch.yaml"
    path.write_text("rules: {paths: []}\nconnectors: []\nenrichment:\n  geoip: {city_db: GeoLite2-City.mmdb}\n",
                    encoding="utf-8")
    code, out, _ = _check(capsys, path)
    assert code == 2
    assert out == [f"error: enrichment.geoip: no such file: {tmp_path / 'GeoLite2-City.mmdb'}"]


GERMAN_ROSTER = """Personalnummer;Benutzer;Nachname;Organisationseinheit;Funktion
4711;amueller;Müller;Kardiologie;Gesundheits- und Krankenpfleger/in
4712;bschmidt;Schmidt;ZNA;Arzt/Ärztin
4713;ckoch;Koch;ZNA;Gesundheits- und Krankenpfleger/in
4714;dwolf;Wolf;Patientenabrechnung;Sachbearbeiter/in Patientenabrechnung
"""
GERMAN_STAYS = """Fallnummer;Patient;Station;Fallart;Aufnahme;Entlassung
F1;P1;KAR-2;stationär;02.11.2026 08:00;05.11.2026 12:00
F2;P2;ZNA;Notfall;03.11.2026 22:10;04.11.2026 02:00
F3;P3;KAR-2;stationär;03.11.2026 09:00;
"""
GERMAN_PRIVACY = """    roster_csv: personal.csv
    roster_columns: {user_id: Personalnummer, login: Benutzer, family_name: Nachname,
                     department: Organisationseinheit, role: Funktion}
    encounters_csv: faelle.csv
    encounters_csv_columns: {encounter_id: Fallnummer, patient_id: Patient, department: Station, class: Fallart,
                             start: Aufnahme, end: Entlassung}
"""


def _german_site(tmp_path: Path, extra: str = "", placeholders: str = "") -> Path:
    path = _site(tmp_path, GERMAN_PRIVACY + extra)
    (tmp_path / "personal.csv").write_text(GERMAN_ROSTER, encoding="utf-8")
    (tmp_path / "faelle.csv").write_text(GERMAN_STAYS, encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("rules: {paths: []}\n", f"rules: {{paths: [], placeholders: {{{placeholders}}}}}\n"),
                    encoding="utf-8")
    return path


def test_names_that_meet_no_list_are_warned_about(tmp_path, capsys):
    """Every file loads, and still: the billing clerk is no billing role, the ZNA is no emergency department
    and the ADT unit KAR-2 is no roster department. A start says nothing of it; the check says each."""
    code, out, _ = _check(capsys, _german_site(tmp_path))
    assert code == 0
    warnings = [line for line in out if line.startswith("warning: ")]
    assert ("warning: enrichment.privacy.roster_csv: rules.placeholders.privacy_deceased_allowed_roles matches no "
            "roster role: if the site has such staff, set it to their titles") in warnings
    assert ("warning: enrichment.privacy.roster_csv: no roster department is one of emergency_departments: an ED's "
            "overrides and its staff are not recognised") in warnings
    assert ("warning: enrichment.privacy.encounters_csv: 1 of 2 units are no roster department (map them with "
            "encounters_department_map): KAR-2 2") in warnings
    assert ("enrichment.privacy.encounters_csv: classes: stationär 2, Notfall 1 "
            "[privacy_emergency_encounter_classes]") in out


def test_the_site_s_own_lists_and_map_quiet_the_warnings(tmp_path, capsys):
    path = _german_site(tmp_path, "    emergency_departments: [ZNA]\n"
                                  "    encounters_department_map: {KAR-2: Kardiologie}\n",
                        "privacy_deceased_allowed_roles: ['*abrechnung*']")
    code, out, _ = _check(capsys, path)
    assert code == 0
    assert "enrichment.privacy.roster_csv: departments: ZNA 2 [emergency_departments], Kardiologie 1, " \
           "Patientenabrechnung 1" in out
    assert ("enrichment.privacy.roster_csv: 4 staff, 4 with a role; roles: Gesundheits- und Krankenpfleger/in 2, "
            "Arzt/Ärztin 1, Sachbearbeiter/in Patientenabrechnung 1 [privacy_deceased_allowed_roles]") in out
    units = [line for line in out if "units" in line]
    assert units == ["enrichment.privacy.encounters_csv: 3 stay segments; units: KAR-2 2, ZNA 1"]
    assert not any("privacy_deceased_allowed_roles matches no" in line or "emergency_departments:" in line
                   for line in out if line.startswith("warning: "))


LOOKUPS = {  # option -> (its file, the option line that names a column the file lacks; None: it has none)
    "roster_csv": ("roster.csv", "    roster_columns: {login: USERNAME}\n"),
    "patients_csv": ("patients.csv", "    patients_columns: {address: STREET}\n"),
    "vip_list_file": ("vip.txt", None),
    "encounters_csv": ("encounters.csv", "    encounters_csv_columns: {department: UNIT}\n"),
}


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(LOOKUPS)), st.sampled_from(["ok", "missing", "column"]), min_size=1))
def test_each_lookup_is_judged_on_its_own(tmp_path_factory, lookups):
    """Whichever lookups are broken, and however: the check names exactly those, each once, and the others
    load as if they were alone (one failing source never hides or spoils the next)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    tmp_path = tmp_path_factory.mktemp("site")
    lines = ""
    for option, state in lookups.items():
        name, column = LOOKUPS[option]
        if state == "column" and column is None:
            state = "ok"  # a VIP list has no column mapping to get wrong
        lines += f"    {option}: {'gone-' + name if state == 'missing' else name}\n"
        lines += column if state == "column" else ""
        lookups[option] = state
    path = _site(tmp_path, lines)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["config", "check", "--config", str(path)])
    errors = {line.split(": ")[1] for line in out.getvalue().splitlines() if line.startswith("error: ")}
    broken = {f"enrichment.privacy.{o}" for o, state in lookups.items() if state != "ok"}
    assert errors == broken
    assert code == (2 if broken else 0)
    for option, state in lookups.items():
        said = [line for line in out.getvalue().splitlines() if f"enrichment.privacy.{option}: " in line]
        if state == "ok":
            assert any(line.startswith(f"enrichment.privacy.{option}: ") and " loaded: " in line for line in said)
        elif state == "missing":
            assert said == [f"error: enrichment.privacy.{option}: " + said[0].split(": ", 2)[2]]
            assert "unavailable: No such file or directory" in said[0]
        else:
            assert said == [f"error: enrichment.privacy.{option}: " + said[0].split(": ", 2)[2]]
            assert "is not in the header of" in said[0]


def test_a_roster_read_from_the_directory_is_listed_the_same_way(tmp_path, capsys):
    ldif = Path(__file__).resolve().parent.parent / "fixtures" / "directory" / "users.ldif"
    path = _site(tmp_path, f"    roster_directory: {ldif}\n")
    code, out, _ = _check(capsys, path)
    assert code == 0
    roles = next(line for line in out if "with a role; roles: " in line)
    assert roles.startswith("enrichment.privacy.roster_directory: 226 staff, 226 with a role; roles: Physician 44, ")
    assert ("warning: enrichment.privacy.roster_directory: rules.placeholders.privacy_deceased_allowed_roles matches "
            "no roster role: if the site has such staff, set it to their titles") in out
    assert any(line.startswith("enrichment.privacy.roster_directory: departments: ") and
               "Emergency 17 [emergency_departments]" in line for line in out)
