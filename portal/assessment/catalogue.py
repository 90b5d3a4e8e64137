"""Creating a school year with its catalogue: from the programme file, or copied from an earlier year."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from portal.assessment.models import Period, SchoolYear, Subject, SubjectGrade, Trait, TraitKind

PROGRAMME_FILE = Path(__file__).with_name("data") / "gdpt2018.json"


def load_programme(path: Path = PROGRAMME_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def build_year(school_id: int, name: str, starts_on: date, ends_on: date,
               copy_from: SchoolYear | None = None) -> SchoolYear:
    """A new (unsaved) school year with its periods, subjects and traits."""
    year = SchoolYear(school_id=school_id, name=name, starts_on=starts_on, ends_on=ends_on)
    if copy_from is not None:
        _copy_catalogue(year, copy_from)
    else:
        _load_catalogue(year, load_programme())
    return year


def _load_catalogue(year: SchoolYear, programme: dict[str, Any]) -> None:
    school_id = year.school_id
    for position, period in enumerate(programme["periods"]):
        year.periods.append(Period(school_id=school_id, code=period["code"], name=period["name"],
                                   position=position, entry_opens_on=None, entry_closes_on=None))
    for position, subject in enumerate(programme["subjects"]):
        row = Subject(school_id=school_id, code=subject["code"], name=subject["name"], position=position)
        for grade, spec in sorted(subject["grades"].items()):
            row.grades.append(SubjectGrade(school_id=school_id, grade=int(grade), optional=spec.get("optional", False),
                                           tested_periods=list(spec["tested"])))
        year.subjects.append(row)
    for position, trait in enumerate(programme["traits"]):
        year.traits.append(Trait(school_id=school_id, code=trait["code"], name=trait["name"],
                                 kind=TraitKind(trait["kind"]), from_grade=trait.get("from_grade", 1),
                                 position=position))


def _copy_catalogue(year: SchoolYear, source: SchoolYear) -> None:
    school_id = year.school_id
    year.excellent_min_score = source.excellent_min_score
    year.good_min_score = source.good_min_score
    year.completed_min_score = source.completed_min_score
    for period in source.periods:
        year.periods.append(Period(school_id=school_id, code=period.code, name=period.name,
                                   position=period.position, entry_opens_on=None, entry_closes_on=None))
    for subject in source.subjects:
        row = Subject(school_id=school_id, code=subject.code, name=subject.name, position=subject.position)
        for spec in subject.grades:
            row.grades.append(SubjectGrade(school_id=school_id, grade=spec.grade, optional=spec.optional,
                                           tested_periods=list(spec.tested_periods)))
        year.subjects.append(row)
    for trait in source.traits:
        year.traits.append(Trait(school_id=school_id, code=trait.code, name=trait.name, kind=trait.kind,
                                 from_grade=trait.from_grade, position=trait.position))
