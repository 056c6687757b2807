"""Per-user baselines (engine/baselines): flags a privacy officer can explain, whatever the run order.

Scenarios are four weeks of a small hospital (fixed seed): day workers, rotating night nurses, billing,
then a day of interest. Each test ingests through the real ``ingest_connector`` into a real store.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.bench_baselines import ListConnector  # the in-memory source the benchmark uses too
from engine.baselines import FIELDS, BaselineOptions, Baselines
from engine.baselines.facts import DATASET
from engine.enrich import EnrichmentChain
from engine.events import Event, format_timestamp
from engine.ingest import ingest_connector
from engine.store import open_store
from engine.store.base import SearchQuery, Store
from tests.conftest import require_elasticsearch

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 2, tzinfo=timezone.utc)  # a Monday
DAY29 = START + timedelta(days=28)  # Monday, the day of interest


def access(user: str, when: datetime, patient: str, role: str | None = "nurse", n: int = 0) -> Event:
    event: Event = {"@timestamp": format_timestamp(when), "event.id": f"{user}-{when.isoformat()}-{patient}-{n}",
                    "event.dataset": "ehr.audit", "event.action": "read", "user.name": user,
                    "ehr.patient.id": patient}
    if role:
        event["ehr.user.role"] = role
    return event


def hospital(seed: int = 7, days: int = 28) -> list[Event]:
    """Four weeks of ordinary work: day staff Mon-Fri 08-16, night nurses on rotating nights 22-06,
    billing Mon-Fri 09-17 with many patients."""
    rng = random.Random(seed)
    events: list[Event] = []
    for d in range(days):
        day = START + timedelta(days=d)
        weekday = day.weekday()
        for u in range(6):
            if weekday < 5:
                for _ in range(rng.randint(8, 12)):
                    when = day + timedelta(hours=rng.uniform(8, 16))
                    events.append(access(f"day{u}", when, f"P{rng.randint(1, 300)}", "physician"))
        for u in range(6):
            if (d + u) % 3 != 0:  # two nights in three, on shifting weekdays
                for _ in range(rng.randint(6, 10)):
                    when = day + timedelta(hours=rng.uniform(22, 30))
                    events.append(access(f"night{u}", when, f"P{rng.randint(1, 300)}", "night-nurse"))
        for u in range(3):
            if weekday < 5:
                for _ in range(rng.randint(35, 45)):
                    when = day + timedelta(hours=rng.uniform(9, 17))
                    events.append(access(f"bill{u}", when, f"P{rng.randint(1, 3000)}", "billing"))
    events.sort(key=lambda e: (e["@timestamp"], e["event.id"]))
    return events


def day29() -> list[Event]:
    """The day of interest: a physician at 02:00, the same physician at 10:00, a night nurse at 02:00, a
    new night nurse at 02:00 and 14:00, a billing clerk opening 160 patients, a user nobody knows."""
    return [
        access("day0", DAY29 + timedelta(hours=2), "P1"),
        access("day0", DAY29 + timedelta(hours=10), "P2", "physician"),
        access("night1", DAY29 + timedelta(hours=2, minutes=30), "P3", "night-nurse"),
        access("newbie", DAY29 + timedelta(hours=2, minutes=40), "P4", "night-nurse"),
        access("newbie", DAY29 + timedelta(hours=14), "P5", "night-nurse"),
        *[access("bill0", DAY29 + timedelta(hours=9, seconds=20 * i), f"X{i}", "billing") for i in range(160)],
        access("stranger", DAY29 + timedelta(hours=3), "P6", None),
    ]


def run(store: Store, events: list[Event], batch_size: int = 500, baselines: Baselines | None = None,
        name: str = "ehr") -> list[Event]:
    """Ingest ``events`` with baselines; return the stored ehr.audit events (the flags a rule sees)."""
    chain = EnrichmentChain([])
    # explain: the tests read the explanation fields too (test_explain_off_stores_only_what_rules_read)
    chain.baselines = baselines or Baselines(BaselineOptions(explain=True))  # type: ignore[attr-defined]
    ingest_connector(store, ListConnector(name, events), chain, batch_size)
    return stored(store)


def stored(store: Store) -> list[Event]:
    store.watermark()
    return list(store.search(SearchQuery(datasets=["ehr.audit"])))


def flags(events: list[Event]) -> dict[str, dict[str, Any]]:
    return {e["event.id"]: {k: e[k] for k in FIELDS if k in e} for e in events}


def by_id(events: list[Event]) -> dict[str, Event]:
    return {e["event.id"]: e for e in events}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store("sqlite", path=tmp_path / "w.db")
    yield s
    s.close()


# --- what a user sees -------------------------------------------------------------------------------
def test_unusual_hour_is_the_users_own_not_the_clock(sqlite_store: Store) -> None:
    history, today = hospital(), day29()
    events = by_id(run(sqlite_store, history + today))
    physician_night, physician_day, nurse_night = (events[e["event.id"]] for e in today[:3])
    assert physician_night["wardwatch.baseline.unusual_hour"] is True
    assert physician_night["wardwatch.baseline.profile"] == "user"
    assert physician_night["wardwatch.baseline.hour_share"] == 0.0
    assert physician_day["wardwatch.baseline.unusual_hour"] is False
    assert physician_day["wardwatch.baseline.hour_share"] == 1.0
    assert nurse_night["wardwatch.baseline.unusual_hour"] is False  # 02:30 is this nurse's normal shift
    assert physician_night["wardwatch.baseline.active_days"] == 20  # Mon-Fri of the four weeks before


def test_hour_share_matches_the_documented_formula(sqlite_store: Store) -> None:
    """Brute force from docs/enrichment.md: weekday active days with activity within ±1 h of 02:00."""
    history, today = hospital(), day29()
    nurse = by_id(run(sqlite_store, history + today))[today[2]["event.id"]]
    days: dict[str, set[int]] = {}
    for e in history:
        ts = datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00"))
        if e["user.name"] == "night1" and ts < DAY29:  # the window: the 28 days strictly before
            days.setdefault(ts.date().isoformat(), set()).add(ts.hour)
    weekdays = {d: h for d, h in days.items() if datetime.fromisoformat(d).weekday() < 5}
    expected = sum(1 for h in weekdays.values() if h & {1, 2, 3}) / len(weekdays)
    assert nurse["wardwatch.baseline.hour_share"] == round(expected, 3)
    assert nurse["wardwatch.baseline.active_days"] == len(days)


def test_new_user_falls_back_to_the_role_profile(sqlite_store: Store) -> None:
    history, today = hospital(), day29()
    events = by_id(run(sqlite_store, history + today))
    night, afternoon = events[today[3]["event.id"]], events[today[4]["event.id"]]
    assert night["wardwatch.baseline.active_days"] == 0
    assert night["wardwatch.baseline.profile"] == "role"
    assert night["wardwatch.baseline.unusual_hour"] is False  # night nurses work at 02:40
    assert afternoon["wardwatch.baseline.unusual_hour"] is True  # no night nurse works at 14:00
    assert afternoon["wardwatch.baseline.distinct_patients_ratio"] == \
        afternoon["wardwatch.baseline.distinct_patients_role_ratio"]


def test_an_hour_new_to_the_user_but_ordinary_for_the_role_is_not_unusual(sqlite_store: Store) -> None:
    """A rotating nurse's first night: rare for her, ordinary for nurses. Both must say rare."""
    events = []
    for d in range(10):
        day = START + timedelta(days=d)
        events.append(access("rota", day + timedelta(hours=9), f"P{d}"))
        for u in range(5):
            events.append(access(f"nights{u}", day + timedelta(hours=2, minutes=u), f"Q{d}{u}"))
    first_night = access("rota", START + timedelta(days=10, hours=2, minutes=30), "P99")
    night = by_id(run(sqlite_store, events + [first_night]))[first_night["event.id"]]
    assert night["wardwatch.baseline.profile"] == "user"
    assert night["wardwatch.baseline.hour_share"] == 0.0  # never at 02:00 herself ...
    assert night["wardwatch.baseline.role_hour_share"] > 0.5  # ... but nurses are, most days
    assert night["wardwatch.baseline.role_unusual_hour"] is False
    assert night["wardwatch.baseline.unusual_hour"] is False


def test_a_day_class_not_observed_yet_is_not_judged(tmp_path: Path) -> None:
    """Week one: the first Saturday has no weekend history at all, so nobody's Saturday is "unusual" yet;
    with min_observed_days 0 the empty weekend history would flag every weekend read."""
    week = [access(f"clerk{u}", START + timedelta(days=d, hours=10), f"P{d}{u}", "billing")
            for d in range(5) for u in range(3)]
    saturday = access("clerk0", START + timedelta(days=5, hours=10), "P77", "billing")
    for minimum, expected in ((2, None), (0, True)):
        store = open_store("sqlite", path=tmp_path / f"w{minimum}.db")
        flagged = by_id(run(store, week + [saturday], baselines=Baselines(BaselineOptions(min_observed_days=minimum))))
        assert flagged[saturday["event.id"]].get("wardwatch.baseline.unusual_hour") is expected
        store.close()


def test_no_history_at_all_sets_no_flag(sqlite_store: Store) -> None:
    """"Could not tell" is absent, never False: the after-hours rule then falls back to the clock."""
    history, today = hospital(), day29()
    stranger = by_id(run(sqlite_store, history + today))[today[-1]["event.id"]]
    assert "wardwatch.baseline.unusual_hour" not in stranger
    assert "wardwatch.baseline.distinct_patients_ratio" not in stranger
    assert stranger["wardwatch.baseline.distinct_patients_today"] == 1


def test_distinct_patients_ratio_counts_today_so_far_against_the_usual_day(sqlite_store: Store) -> None:
    history, today = hospital(), day29()
    events = by_id(run(sqlite_store, history + today))
    bulk = [events[e["event.id"]] for e in today if e["user.name"] == "bill0"]
    usual = bulk[0]["wardwatch.baseline.usual_distinct_patients"]
    assert 34 <= usual <= 45  # billing opens ~40 distinct patients on a usual day
    assert [e["wardwatch.baseline.distinct_patients_today"] for e in bulk] == list(range(1, 161))
    assert bulk[-1]["wardwatch.baseline.distinct_patients_ratio"] == round(160 / usual, 3)
    assert bulk[-1]["wardwatch.baseline.distinct_patients_ratio"] > 3
    assert bulk[10]["wardwatch.baseline.distinct_patients_ratio"] < 1
    # the same patient again does not count twice
    later = access("bill0", DAY29 + timedelta(hours=12), "X0", "billing")
    again = by_id(run(sqlite_store, [later], name="x"))[later["event.id"]]
    assert again["wardwatch.baseline.distinct_patients_today"] == 160


def test_local_days_and_hours_follow_the_configured_zone(sqlite_store: Store) -> None:
    """In Berlin, 23:30 UTC on a Sunday is 00:30 on Monday: a Monday, and the physician's usual? No: 00:30."""
    options = BaselineOptions(timezone="Europe/Berlin")
    history = hospital()
    late = access("day0", DAY29 - timedelta(minutes=30), "P9", "physician")  # Sun 23:30 UTC = Mon 00:30
    event = by_id(run(sqlite_store, history + [late], baselines=Baselines(options)))[late["event.id"]]
    assert event["wardwatch.baseline.unusual_hour"] is True
    facts = list(sqlite_store.search(SearchQuery(datasets=[DATASET])))
    assert facts and all(f["@timestamp"].endswith("T23:00:00.000Z") for f in facts)  # Berlin midnight (CET)


# --- determinism and restarts -------------------------------------------------------------------------
_REFERENCE: dict[str, dict[str, Any]] = {}


def reference_flags(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Flags of one chronological run of the hospital and the day of interest (computed once)."""
    if not _REFERENCE:
        with open_store("sqlite", path=tmp_path / "reference.db") as reference:
            _REFERENCE.update(flags(run(reference, hospital() + day29(), batch_size=500)))
    return _REFERENCE


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), batch=st.integers(300, 3000), split=st.integers(0, 100))
def test_same_events_same_flags_whatever_the_run_order(tmp_path: Path, seed: int, batch: int, split: int) -> None:
    """History ingested shuffled, in random batches, over two runs with a restart between (a new
    process's memory), against one chronological run: the day of interest gets the same flags."""
    history, today = hospital(), day29()
    expected = reference_flags(tmp_path)
    shuffled = list(history)
    rng = random.Random(seed)
    rng.shuffle(shuffled)
    cut = len(shuffled) * split // 100
    today_shuffled = list(today)
    rng.shuffle(today_shuffled)
    path = tmp_path / f"b-{uuid.uuid4().hex}.db"
    with open_store("sqlite", path=path) as store:
        run(store, shuffled[:cut], batch_size=batch, name="first")
    with open_store("sqlite", path=path) as store:  # restart: nothing but the store carries over
        run(store, shuffled[cut:], batch_size=batch, name="second")
        got = flags(run(store, today_shuffled, batch_size=len(today), name="today"))
    ids = [e["event.id"] for e in today]
    assert {i: got[i] for i in ids} == {i: expected[i] for i in ids}


def test_failed_write_relearns_from_the_store(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails after the baseline learnt from the batch (the kill -9 case): the retry must not
    think it already knows that batch, or its facts would never reach the store."""
    history, today = hospital(days=28), day29()
    baselines = Baselines(BaselineOptions(explain=True))
    real_write, calls = sqlite_store.write, {"n": 0}

    def flaky(batch: Any, cursor: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real_write(batch, cursor)

    monkeypatch.setattr(sqlite_store, "write", flaky)
    with pytest.raises(OSError):
        run(sqlite_store, history, batch_size=400, baselines=baselines)
    monkeypatch.setattr(sqlite_store, "write", real_write)
    run(sqlite_store, history, batch_size=400, baselines=baselines)  # resumes from the committed cursor
    got = flags(run(sqlite_store, today, baselines=Baselines(BaselineOptions(explain=True)), name="today"))
    with open_store("sqlite", path=Path(str(sqlite_store.path)).with_name("ref.db")) as reference:
        expected = flags(run(reference, history + today))
    assert {e["event.id"]: got[e["event.id"]] for e in today} == \
        {e["event.id"]: expected[e["event.id"]] for e in today}


def test_restart_in_a_new_process_gives_the_same_flags(tmp_path: Path) -> None:
    history, today = hospital(), day29()
    with open_store("sqlite", path=tmp_path / "ref.db") as reference:
        expected = flags(run(reference, history + today))
    with open_store("sqlite", path=tmp_path / "w.db") as store:
        run(store, history)
    (tmp_path / "today.json").write_text(json.dumps(today))
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, '.')\n"
        "from engine.store import open_store\n"
        "from tests.test_baselines import run, flags\n"
        f"today = json.loads(Path({str(tmp_path / 'today.json')!r}).read_text())\n"
        f"with open_store('sqlite', path=Path({str(tmp_path / 'w.db')!r})) as s:\n"
        "    print(json.dumps(flags(run(s, today, name='today'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert {e["event.id"]: got[e["event.id"]] for e in today} == \
        {e["event.id"]: expected[e["event.id"]] for e in today}


@pytest.mark.elasticsearch
@pytest.mark.slow
def test_elasticsearch_store_gives_the_same_flags_as_sqlite(tmp_path: Path) -> None:
    url = require_elasticsearch()
    history, today = hospital(), day29()
    with open_store("sqlite", path=tmp_path / "ref.db") as reference:
        expected = flags(run(reference, history + today))
    prefix = f"wwtest-baseline-{uuid.uuid4().hex[:10]}"
    store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    try:
        run(store, history, batch_size=1000)
        store.close()
        store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)  # restart
        got = flags(run(store, today, name="today"))
    finally:
        store.delete_all()  # type: ignore[attr-defined]
        store.close()
    assert {e["event.id"]: got[e["event.id"]] for e in today} == \
        {e["event.id"]: expected[e["event.id"]] for e in today}


# --- configuration and rules ---------------------------------------------------------------------------
def test_config_names_a_bad_key(tmp_path: Path) -> None:
    from engine.config import ConfigError, load_config

    path = tmp_path / "wardwatch.yaml"
    path.write_text("enrichment:\n  baselines:\n    window_dayz: 14\n")
    with pytest.raises(ConfigError, match=r"enrichment\.baselines\.window_dayz"):
        load_config(path)
    path.write_text("enrichment:\n  baselines:\n    unusual_share: 2\n")
    with pytest.raises(ConfigError, match=r"enrichment\.baselines\.unusual_share"):
        load_config(path)


def test_configured_baselines_reach_ingest(tmp_path: Path) -> None:
    from engine.app import build_enrichment
    from engine.config import load_config

    path = tmp_path / "wardwatch.yaml"
    path.write_text("enrichment:\n  baselines:\n    timezone: Europe/Berlin\n    window_days: 14\n")
    chain = build_enrichment(load_config(path))
    assert isinstance(chain.baselines, Baselines)  # type: ignore[attr-defined]
    assert chain.baselines.options.window_days == 14  # type: ignore[attr-defined]


def test_explain_off_stores_only_what_rules_read(tmp_path: Path) -> None:
    """The default (``explain: false``) stores the five fields the shipped rules read, with the values the
    explaining run stores; ``explain: true`` adds the explanations (hour shares, profile, usual day)."""
    from engine.baselines.step import RULE_FIELDS

    events = hospital() + day29()
    runs = {}
    for explain in (False, True):
        with open_store("sqlite", path=tmp_path / f"e{explain}.db") as store:
            runs[explain] = flags(run(store, events, baselines=Baselines(BaselineOptions(explain=explain))))
    stored_names = {k for fields in runs[False].values() for k in fields}
    assert stored_names == set(RULE_FIELDS)
    assert {k for fields in runs[True].values() for k in fields} == set(FIELDS)
    assert runs[False] == {i: {k: v for k, v in f.items() if k in RULE_FIELDS} for i, f in runs[True].items()}


AFTER_HOURS = "37d94d69-2010-4a4d-a460-739bd2f0aa6e"
BULK = "0b8c7e52-3f4d-4a4e-9a57-2f1c6d8e9b31"


def _alerts(events: list[Event], rule: str, placeholders: dict[str, list[str]] | None = None) -> list[Any]:
    from engine.app import alerts_over_sample
    from engine.config import DEFAULTS
    from engine.sigma import load_rules

    ruleset = load_rules([str(REPO / "rules/healthcare")],
                         placeholders={**DEFAULTS["rules"]["placeholders"], **(placeholders or {})})
    assert not ruleset.errors, ruleset.errors
    return [a for a in alerts_over_sample(ruleset, events) if a.rule_id == rule]


def test_a_sites_own_office_job_titles_are_judged_by_the_clock_until_their_baseline_tells() -> None:
    """The office-hours roles were written out in English in the rule: a German roster's billing clerk
    ("Sachbearbeiter/in Patientenabrechnung") reading at 02:00 in the baselines' first days raised nothing,
    and no config could say otherwise. They are the placeholder privacy_office_roles now."""
    def event(i: int, role: str) -> Event:
        return {"@timestamp": "2026-11-30T02:00:00.000Z", "event.id": f"e{i}", "event.dataset": "ehr.audit",
                "event.action": "read", "user.name": f"u{i}", "ehr.patient.id": "P1", "ehr.user.role": role,
                "wardwatch.time.after_hours": True, "wardwatch.baseline.active_days": 0}

    events = [event(1, "Sachbearbeiter/in Patientenabrechnung"), event(2, "Gesundheits- und Krankenpfleger/in"),
              event(3, "Billing Clerk")]
    assert sorted(i for a in _alerts(events, AFTER_HOURS) for i in a.evidence) == ["e3"]
    site = {"privacy_office_roles": ["*Patientenabrechnung*", "*Archiv*", "Kodierfachkraft"]}
    assert sorted(i for a in _alerts(events, AFTER_HOURS, site) for i in a.evidence) == ["e1"]


def test_after_hours_rule_uses_the_baseline_and_falls_back_to_the_clock() -> None:
    def event(i: int, hour: int, **extra: Any) -> Event:
        return {"@timestamp": f"2026-11-30T{hour:02d}:00:00.000Z", "event.id": f"e{i}", "event.dataset": "ehr.audit",
                "event.action": "read", "user.name": f"u{i}", "ehr.patient.id": "P1",
                "wardwatch.time.after_hours": hour < 7, **extra}

    known = {"wardwatch.baseline.active_days": 12, "wardwatch.baseline.profile": "user"}
    events = [
        event(1, 2, **known, **{"wardwatch.baseline.unusual_hour": False}),  # night nurse on shift: quiet
        event(2, 10, **known, **{"wardwatch.baseline.unusual_hour": True}),  # rare for user and role: alert
        event(3, 2),  # no baselines configured at all: the clock decides
        event(4, 10),  # no baselines, working hours: quiet
        # baselines configured but no verdict yet (day one): a nurse is never judged by the clock alone ...
        event(5, 2, **{"wardwatch.baseline.active_days": 0, "ehr.user.role": "nurse"}),
        # ... an office-hours role is, until its baseline can tell
        event(6, 2, **{"wardwatch.baseline.active_days": 0, "ehr.user.role": "Billing Clerk"}),
        event(7, 2, **{"wardwatch.baseline.active_days": 0, "ehr.user.role": "HIM"}),
        # the treating team, and the ward the patient is on, explain the read
        event(8, 3, **known, **{"wardwatch.baseline.unusual_hour": True, "ehr.relationship.care_team": True}),
        event(9, 3, **known, **{"wardwatch.baseline.unusual_hour": True, "ehr.relationship.same_department": True,
                                "ehr.patient.encounter_active": True}),
        # the same department after discharge does not
        event(10, 3, **known, **{"wardwatch.baseline.unusual_hour": True, "ehr.relationship.same_department": True,
                                 "ehr.patient.encounter_active": False}),
    ]
    hits = sorted((i for a in _alerts(events, AFTER_HOURS) for i in a.evidence), key=lambda e: int(e[1:]))
    assert hits == ["e2", "e3", "e6", "e7", "e10"]


def _flagged(user: str, i: int, today: int, ratio: float, role_ratio: float | None) -> Event:
    event = {"@timestamp": f"2026-11-30T10:{i // 60:02d}:{i % 60:02d}.000Z", "event.id": f"{user}-{i}",
             "event.dataset": "ehr.audit", "event.action": "read", "user.name": user, "ehr.patient.id": f"P{i}",
             "wardwatch.baseline.distinct_patients_today": today,
             "wardwatch.baseline.distinct_patients_ratio": ratio}
    if role_ratio is not None:
        event["wardwatch.baseline.distinct_patients_role_ratio"] = role_ratio
    return event


def test_bulk_rule_compares_with_the_users_usual_day_and_their_roles() -> None:
    events = [
        _flagged("harvester", 1, 60, 5.0, 5.0),  # usually 12, opens 60: alert
        _flagged("parttime-clerk", 2, 40, 4.0, 1.0),  # usually 10, but 40 is a normal day for billing
        _flagged("busy-nurse", 3, 25, 3.5, 3.5),  # below the floor of 30
        _flagged("newbie", 4, 45, 3.0, None),  # no role profile: the own ratio decides
        _flagged("steady", 5, 80, 1.1, 1.0),
    ]
    hits = sorted(i for a in _alerts(events, BULK) for i in a.evidence)
    assert hits == ["harvester-1", "newbie-4"]


def test_baselines_silence_night_shifts_but_not_the_odd_hour(sqlite_store: Store) -> None:
    """End to end: the clock rule alone flags every night-shift read; with baselines only the physician
    at 02:00 remains on day 29 (the new night nurse at 14:00 is judged by her role alone, which within the
    site's working hours does not decide; the unknown user without a role: the baseline cannot tell, and the
    clock alone never decides once baselines are configured)."""
    from engine.enrich.time_context import TimeContextEnricher

    chain = EnrichmentChain([TimeContextEnricher("UTC", "07:00", "19:00", ["mon", "tue", "wed", "thu", "fri"])])
    chain.baselines = Baselines(BaselineOptions())  # type: ignore[attr-defined]
    today = day29()
    ingest_connector(sqlite_store, ListConnector("ehr", hospital() + today), chain, 1000)
    day = [e for e in stored(sqlite_store) if e["@timestamp"] >= format_timestamp(DAY29)]
    hits = {i for a in _alerts(day, AFTER_HOURS) for i in a.evidence}
    # the new night nurse at 14:00 (today[4]) is judged by the role only, and not within working hours
    assert hits == {today[0]["event.id"]}
    clock_only = [{k: v for k, v in e.items() if not k.startswith("wardwatch.baseline.")} for e in day]
    night_reads = {e["event.id"] for e in clock_only if e["wardwatch.time.after_hours"]}
    assert len(night_reads) > 30
    assert {i for a in _alerts(clock_only, AFTER_HOURS) for i in a.evidence} == night_reads


def test_ingest_counts_events_not_facts(sqlite_store: Store) -> None:
    """`wardwatch ingest` reports the events it stored; the facts beside them are not "events written", and a
    second read of the same source (another connector name) is all duplicates and writes no new facts."""
    history = hospital(days=10)
    chain = EnrichmentChain([])
    chain.baselines = Baselines(BaselineOptions())  # type: ignore[attr-defined]
    stats = ingest_connector(sqlite_store, ListConnector("ehr", history), chain, 1000)
    assert (stats.events, stats.written, stats.duplicates) == (len(history), len(history), 0)
    facts = list(sqlite_store.search(SearchQuery(datasets=[DATASET])))
    batches = -(-len(history) // 1000)
    assert 0 < len(facts) <= 11 + batches  # one per local day a batch touched (11 days: nights end on day 11)
    chain.baselines = Baselines(BaselineOptions())  # type: ignore[attr-defined]  # a restarted engine
    again = ingest_connector(sqlite_store, ListConnector("copy", history), chain, 1000)
    assert (again.written, again.duplicates) == (0, len(history))
    assert len(list(sqlite_store.search(SearchQuery(datasets=[DATASET])))) == len(facts)


def test_a_bulk_day_is_one_alert_per_user_and_day_with_every_read_in_it() -> None:
    """Every read past the bar was an alert of its own: 67 alerts for one user's one burst (a site config
    written from the docs had to add a suppression by hand). The rule file now declares one per user and day."""
    from engine.alerts.cases import merged_suppression
    from engine.app import alerts_over_sample
    from engine.config import DEFAULTS
    from engine.sigma import load_rules

    events = [_flagged("harvester", i, 30 + i, 4.0, 4.0) for i in range(40)]
    events += [_flagged("other", 100 + i, 31, 3.1, 3.1) for i in range(2)]
    ruleset = load_rules([str(REPO / "rules/healthcare")], placeholders=DEFAULTS["rules"]["placeholders"])
    alerts = [a for a in alerts_over_sample(ruleset, events,   # the service's jobs, as `rules test` runs them
                                            suppression=merged_suppression(ruleset, DEFAULTS["alerts"]["suppression"]))
              if a.rule_id == BULK]
    assert sorted((len(a.evidence), a.evidence[0].split("-")[0]) for a in alerts) == [(2, "other"), (40, "harvester")]
