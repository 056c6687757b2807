"""Fuzzing the lookup files a site exports by hand: roster, patient directory, encounter extract, VIP list.

These files come from HR, the MPI and ADT reports, edited in spreadsheets: stray delimiters, quotes, empty
and half rows, dates in any form. Whatever the rows hold, a load either gives a table (the bad rows
skipped) or refuses the file with a ``LookupFileError`` naming the option: never another exception, which
would stop the start or, on a reload, leave the lookup's health wrong. A well-formed row after the noise is
still read (unless the noise holds a quote: a quote may open a field that runs to the end of the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.enrich.encounters import CsvEncounterSource
from engine.enrich.lookups import CsvPatientDirectory, LookupFileError, StaffRoster, VipList

#: what a spreadsheet puts in one cell: dates and times in any form, umlauts, blanks, stray delimiters
CELL = st.text(alphabet=st.sampled_from(list(";\t| 0123456789-.:/TZ+éüßaxyJNjn#")), max_size=14)
#: rows of cells (too few, too many, empty) and now and then raw text with quotes and line breaks
NOISE = st.lists(st.lists(CELL, max_size=11).map(",".join)
                 | st.text(alphabet=st.sampled_from(list(",;\"\n\r 0-9aZ")), max_size=40),
                 max_size=12).map("\n".join)

#: header, a well-formed row, and how to tell the row was read
CASES: dict[str, tuple[str, str, Callable[[Path], bool]]] = {
    "roster": ("user_id,login,family_name,department,address,postal_code,patient_id,end_date,role",
               "U999,zzlogin,Zander,Cardiology,Am Park 1,10119,P999,,Nurse",
               lambda p: StaffRoster(p).member("zzlogin") is not None),
    "patients": ("patient_id,family_name,address,postal_code,vip,confidential,deceased_date",
                 "P999,Zander,Am Park 1,10119,yes,,2026-01-02",
                 lambda p: (CsvPatientDirectory(p).get("P999") or _NONE).vip),
    "encounters": ("encounter_id,patient_id,department,class,start,end,status,participants",
                   "E999,P999,Cardiology,IMP,2026-11-02T08:00:00Z,,in-progress,U1",
                   lambda p: bool(CsvEncounterSource(p).index.segments_of("P999"))),
    "vip": ("patient_id", "P999", lambda p: "P999" in VipList(p)),
}


class _NoFacts:
    vip = False


_NONE = _NoFacts()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(CASES)), noise=NOISE, noise_after=NOISE)
def test_a_lookup_file_loads_or_is_refused_by_name_whatever_its_rows_hold(tmp_path: Path, kind: str, noise: str,
                                                                         noise_after: str) -> None:
    header, good, found = CASES[kind]
    path = tmp_path / f"{kind}.csv"
    path.write_text(f"{header}\n{noise}\n{good}\n{noise_after}\n", encoding="utf-8")
    try:
        read = found(path)
    except LookupFileError:  # refused, naming the option
        return
    if '"' not in noise:  # a quote may open a field that runs to the end of the file: CSV says so
        assert read, f"the well-formed {kind} row was not read after {noise!r}"
