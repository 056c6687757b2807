"""How a site's own names meet the config's lists: the second half of ``wardwatch config check``'s lookups.

Why: every file can load and the rules still never see what they need, because the names do not meet. The
roster says "Abrechnung" where ``privacy_deceased_allowed_roles`` says ``*billing*``, the ADT extract says
"ICU-2" where the roster says "Intensive Care", or the emergency department is "ZNA" and
``emergency_departments`` does not list it. Nothing fails. The co-worker rule alerts on a ward's own
patients, billing on deceased records alerts, and ED overrides are not recognised. So the check says, from the
loaded tables, which roster roles and departments each list matches, which encounter units are no roster
department, and which encounter classes count as emergencies. It warns where a list meets nothing.

Matching is the rules' own: Sigma wildcards, case-insensitive (``engine.sigma.values.wildcard_regex``), on
the same folded names the enricher compares (``PrivacyEnricher._fold`` / ``_unit``). The counts are of staff
and of encounter segments, never of patients' names.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from engine.enrich.privacy import PrivacyEnricher
    from engine.lookup_check import Level, LookupLine

#: how many names a line lists before "... N more"
SHOWN = 12


def coverage(roster: "PrivacyEnricher | None", encounters: "PrivacyEnricher | None",
             placeholders: Mapping[str, Any], roster_key: str, encounters_key: str) -> list["LookupLine"]:
    """Lines about the roster of the enricher ``roster`` and the encounter sources of ``encounters``: the ones
    ``engine.lookup_check`` built for each option (None: not configured). Both were built from the same
    section, so they fold names and map units alike."""
    from engine.config import PRIVACY_ROLE_PLACEHOLDERS

    lists = {name: _matcher(placeholders.get(name, default)) for name, default in PRIVACY_ROLE_PLACEHOLDERS.items()}
    role_lists = {n: m for n, m in lists.items() if n.endswith("_roles")}
    department_lists = {n: m for n, m in lists.items() if n.endswith("_departments")}
    class_lists = {n: m for n, m in lists.items() if n.endswith("_classes")}
    lines: list[LookupLine] = []
    members = _members(roster) if roster is not None else []
    departments: Counter[str] = Counter()
    if roster is not None and members:
        roles = Counter(m.role for m in members if m.role)
        lines.append(_line(roster_key, "ok", f"{len(members)} staff, {sum(roles.values())} with a role; roles",
                           roles, role_lists))
        departments = Counter(m.department for m in members if m.department)
        extra = {"emergency_departments": lambda d: roster._fold(d) in roster.emergency_departments,
                 "encounters_float_departments": lambda d: roster._floats(roster._fold(d))}
        has_ed = any(extra["emergency_departments"](d) for d in departments)
        for name, matches in role_lists.items():
            # ED staff are recognised by their department too (ehr.user.emergency_department)
            if roles and not any(map(matches, roles)) and not (name == "privacy_emergency_roles" and has_ed):
                lines.append(_line(roster_key, "warning", f"rules.placeholders.{name} matches no roster role: "
                                                          "if the site has such staff, set it to their titles"))
        lines.append(_line(roster_key, "ok", "departments", departments, {**extra, **department_lists}))
        if departments and not has_ed:
            lines.append(_line(roster_key, "warning", "no roster department is one of emergency_departments: "
                                                      "an ED's overrides and its staff are not recognised"))
    segments = _segments(encounters) if encounters is not None else []
    if encounters is not None and segments:
        units = Counter(s.department for s in segments if s.department)
        lines.append(_line(encounters_key, "ok", f"{len(segments)} stay segments; units", units, {}))
        if departments:
            known = {encounters._fold(d) for d in departments}
            strange = Counter({u: n for u, n in units.items() if encounters._unit(u)[1] not in known})
            if strange:
                lines.append(_line(encounters_key, "warning", f"{len(strange)} of {len(units)} units are no roster "
                                   "department (map them with encounters_department_map)", strange, {}))
        classes = Counter(s.encounter_class for s in segments if s.encounter_class)
        if classes:
            lines.append(_line(encounters_key, "ok", "classes", classes, class_lists))
    return lines


def _line(key: str | None, level: "Level", text: str, counts: Counter[str] | None = None,
          lists: Mapping[str, Callable[[str], bool]] | None = None) -> "LookupLine":
    """``text: name count [the lists it is in], ...``, the commonest first, then ``... N more``."""
    from engine.lookup_check import LookupLine

    if counts is not None:
        names = []
        for name, n in counts.most_common(SHOWN):
            within = [list_name for list_name, matches in (lists or {}).items() if matches(name)]
            names.append(f"{name} {n}" + (f" [{', '.join(within)}]" if within else ""))
        more = len(counts) - SHOWN
        text = f"{text}: {', '.join(names) or 'none'}" + (f", ... {more} more" if more > 0 else "")
    return LookupLine(key or "enrichment.privacy", level, text)


def _matcher(patterns: Iterable[Any]) -> Callable[[str], bool]:
    """The rules' matching of a placeholder list: any Sigma wildcard pattern, case-insensitive."""
    from sigma.types import SigmaString

    from engine.sigma.values import wildcard_regex

    regexes = [wildcard_regex(SigmaString(str(p)), lower=True) for p in patterns if str(p)]
    return lambda value: any(r.fullmatch(value.lower()) for r in regexes)


def _members(enricher: "PrivacyEnricher") -> list[Any]:
    """The roster's staff, each once: a CSV roster's or the directory's (``members()``)."""
    members = getattr(enricher.roster, "members", None)
    return members() if callable(members) else []


def _segments(enricher: "PrivacyEnricher") -> list[Any]:
    """Every stay segment of the loaded encounter sources (care-team memberships are no stay)."""
    return [seg for source in enricher.encounters if source.loaded
            for encounter in source.index.encounters.values() for seg in encounter.segments
            if not seg.care_team_only]
