"""Starting a new school year from the last one (TT27 Điều 11 decides who moves up).

The principal (or the school's IT) asks for the next year; the portal proposes it from the last: the same
catalogue and score thresholds, the entry windows a year on, a class of the next grade for every class
(4A -> 5A; grade 5 leaves; a new grade 1 with the names of this year's), and every pupil placed:
- completing (at year end or after the supplementary assessment) or promoted by the principal: up a grade,
  in the class proposed from hers (grade 5 completes primary school and leaves);
- not promoted by the principal: kept in her grade, in the class of her class's name;
- transferred out or left: dropped;
- no result or no decision yet: listed, not placed (the school enrols her once decided).
Homeroom and subject teachers are left to assign. A dry run shows all this and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from flask_babel import gettext as _

from portal import audit
from portal.assessment.classification import Outcome
from portal.assessment.models import Enrolment, EnrolmentStatus, Pupil, SchoolClass, SchoolYear, YearResult
from portal.compliance.services import moved_by_years
from portal.extensions import db
from portal.schoolyear.services import SetupError, create_year, list_years
from tenants.models import School, User

ACTIVE = (EnrolmentStatus.STUDYING, EnrolmentStatus.TRANSFERRED_IN)


@dataclass
class ProposedClass:
    name: str
    grade: int
    from_class: str | None  # the class of the last year it continues ("4A" for 5A), None for a new grade 1
    pupil_ids: list[int] = field(default_factory=list)


@dataclass
class Rollover:
    """What starting `name` from `source` does (or did)."""

    source: str
    name: str
    classes: list[ProposedClass]
    promoted: list[tuple[int, str]] = field(default_factory=list)  # (pupil id, name)
    kept: list[tuple[int, str]] = field(default_factory=list)
    leaving: list[tuple[int, str]] = field(default_factory=list)  # grade 5 completing primary school
    dropped: list[tuple[int, str]] = field(default_factory=list)  # transferred out or left
    undecided: list[tuple[int, str]] = field(default_factory=list)
    applied: bool = False


def next_name(name: str) -> str:
    start, _sep, end = name.partition("-")
    return f"{int(start) + 1}-{int(end) + 1}"


def moves_up(result: YearResult | None) -> bool | None:
    """True up a grade, False kept, None not decided yet (Điều 11)."""
    if result is None or not result.outcome:
        return None
    if result.outcome != Outcome.NOT_COMPLETED or result.supplementary_passed:
        return True
    return result.promoted


def plan_next_year(school: School, source: SchoolYear) -> Rollover:
    """The proposal for the year after `source`; changes nothing."""
    name = next_name(source.name)
    classes: dict[str, ProposedClass] = {}
    for school_class in sorted(source.classes, key=lambda c: (c.grade, c.name)):
        if school_class.grade == 1:
            classes.setdefault(school_class.name, ProposedClass(school_class.name, 1, None))
        if school_class.grade < 5:
            up = f"{school_class.grade + 1}{school_class.name[1:]}"
            classes[up] = ProposedClass(up, school_class.grade + 1, school_class.name)
    rollover = Rollover(source.name, name, [])
    rows = db.session.execute(
        sa.select(Enrolment, SchoolClass, Pupil, YearResult).join(SchoolClass, SchoolClass.id == Enrolment.class_id)
        .join(Pupil, Pupil.id == Enrolment.pupil_id).outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)
        .where(Enrolment.school_year_id == source.id, Enrolment.school_id == school.id)
        .order_by(SchoolClass.grade, SchoolClass.name, Pupil.full_name)).all()
    for enrolment, school_class, pupil, result in rows:
        who = (pupil.id, pupil.full_name)
        if enrolment.status not in ACTIVE:
            rollover.dropped.append(who)
            continue
        decision = moves_up(result)
        if decision is None:
            rollover.undecided.append(who)
        elif decision and school_class.grade == 5:
            rollover.leaving.append(who)
        elif decision:
            target = f"{school_class.grade + 1}{school_class.name[1:]}"
            classes[target].pupil_ids.append(pupil.id)
            rollover.promoted.append(who)
        else:
            kept = classes.setdefault(school_class.name, ProposedClass(school_class.name, school_class.grade,
                                                                       school_class.name))
            kept.pupil_ids.append(pupil.id)
            rollover.kept.append(who)
    rollover.classes = sorted(classes.values(), key=lambda c: (c.grade, c.name))
    return rollover


def start_next_year(school: School, source: SchoolYear, *, actor: User | None, dry_run: bool = True) -> Rollover:
    """Start the year after `source` as proposed (or, with `dry_run`, only say what it would do)."""
    rollover = plan_next_year(school, source)
    if dry_run:
        return rollover
    if any(y.name == rollover.name for y in list_years(school)):
        raise SetupError(_("Năm học %(n)s đã có.", n=rollover.name))
    year = create_year(school, rollover.name, moved_by_years(source.starts_on, 1), moved_by_years(source.ends_on, 1),
                       actor=actor, copy_from=source)  # type: ignore[arg-type]
    windows = {p.code: (p.entry_opens_on, p.entry_closes_on) for p in source.periods}
    for period in year.periods:
        opens, closes = windows.get(period.code, (None, None))
        if opens and closes:
            period.entry_opens_on, period.entry_closes_on = moved_by_years(opens, 1), moved_by_years(closes, 1)
    for proposed in rollover.classes:
        school_class = SchoolClass(school_id=school.id, school_year=year, name=proposed.name, grade=proposed.grade)
        db.session.add(school_class)
        db.session.flush()
        db.session.add_all(Enrolment(school_id=school.id, pupil_id=pupil_id, school_year_id=year.id,
                                     class_id=school_class.id, status=EnrolmentStatus.STUDYING,
                                     enrolled_on=year.starts_on) for pupil_id in proposed.pupil_ids)
    db.session.flush()
    audit.record("school_year.started_from", actor=actor, school_id=school.id, obj=year, summary=rollover.name,
                 changes={"from": source.name, "classes": [c.name for c in rollover.classes],
                          "promoted": len(rollover.promoted), "kept": len(rollover.kept),
                          "leaving": len(rollover.leaving), "dropped": len(rollover.dropped),
                          "undecided": [pupil_id for pupil_id, _n in rollover.undecided]})
    rollover.applied = True
    return rollover
