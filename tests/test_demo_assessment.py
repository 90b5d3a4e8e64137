"""The demo's school year 2024-2025 (portal/demo_assessment.py): built once, complete, within the rules."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from portal import demo_assessment
from portal.assessment.models import (
    Award,
    Enrolment,
    Period,
    PeriodNote,
    Pupil,
    SchoolClass,
    SchoolYear,
    Subject,
    SubjectGrade,
    SubjectRating,
    TeachingAssignment,
    Trait,
    TraitRating,
    YearResult,
)
from portal.demo import SCHOOLS, build_demo
from portal.demo_assessment import ENTRY_WINDOWS, TAUGHT_OPTIONAL, YEAR_NAME
from portal.extensions import db
from portal.records.models import RecordVersion
from tenants.models import School, User
from tenants.scoping import all_schools
from tests.conftest import FAST_SCHOOLS

COUNTED = (SchoolYear, Period, Subject, SubjectGrade, Trait, SchoolClass, TeachingAssignment, Pupil, Enrolment,
           SubjectRating, TraitRating, PeriodNote, YearResult, Award, User)


def _counts() -> dict[str, int]:
    with all_schools():
        return {model.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(model))
                for model in COUNTED}


def _check_year(codes: tuple[str, ...]) -> dict[str, Counter[str]]:
    """Everything the demo promises about the year at these schools; returns the level tallies."""
    with all_schools():
        schools = dict(db.session.execute(sa.select(School.id, School.code).where(School.code.in_(codes))).all())
        assert sorted(schools.values()) == sorted(codes)
        years = db.session.scalars(sa.select(SchoolYear).where(SchoolYear.name == YEAR_NAME)).all()
        assert sorted(schools[y.school_id] for y in years) == sorted(codes)
        for year in years:
            assert (year.starts_on, year.ends_on) == (date(2024, 9, 5), date(2025, 5, 31))
            windows = {p.code: (p.entry_opens_on, p.entry_closes_on) for p in year.periods}
            assert windows == ENTRY_WINDOWS
            assert year.periods[-1].code == "CN" and year.periods[-1].is_open(date(2025, 5, 28))
            _check_classes(schools[year.school_id], year)
        _check_pupils(schools)
        _check_year_end_complete()
        return {"subject": _check_subject_ratings(), "trait": _check_trait_ratings()}


def _check_classes(code: str, year: SchoolYear) -> None:
    expected = ["1A", "2A", "3A", "4A", "5A"] + (["5B"] if code == "lequangdinh" else [])
    assert [c.name for c in year.classes] == expected, code
    sizes = dict(db.session.execute(sa.select(Enrolment.class_id, sa.func.count()).where(
        Enrolment.school_year_id == year.id).group_by(Enrolment.class_id)).all())
    homerooms = db.session.execute(sa.select(SchoolClass.name, User.username).join(
        User, User.id == SchoolClass.homeroom_teacher_id).where(SchoolClass.school_year_id == year.id)).all()
    assert {name: username.split(".")[0] for name, username in homerooms} == {
        name: demo_assessment.HOMEROOM[name] for name in expected}
    for school_class in year.classes:
        assert 25 <= sizes.get(school_class.id, 0) <= 35, (code, school_class.name)
        assignments = {a.subject.code: a.teacher.username.split(".")[0] for a in school_class.assignments}
        assert assignments["toan"] == demo_assessment.HOMEROOM[school_class.name]
        assert assignments["ngoai_ngu_1"] == "gvbm1" and assignments["gdtc"] == "gvbm2"
        assert all(a.teacher.username.endswith(f".{code}") for a in school_class.assignments)


def _check_pupils(schools: dict[int, str]) -> None:
    rows = db.session.execute(sa.select(Pupil.school_id, Pupil.pupil_code, Pupil.full_name, Pupil.gender,
                                        Pupil.birth_date, Pupil.ethnicity, Pupil.identity_reviewed_at,
                                        Pupil.identity_reviewed_by_id, SchoolClass.grade,
                                        SchoolClass.homeroom_teacher_id)
                              .join(Enrolment, Enrolment.pupil_id == Pupil.id)
                              .join(SchoolClass, SchoolClass.id == Enrolment.class_id)).all()
    codes = Counter((row.school_id, row.pupil_code) for row in rows)
    assert max(codes.values()) == 1  # Mã học sinh: unique per school
    reviewed: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        assert len(row.pupil_code) == 10 and row.pupil_code.isdigit()
        assert row.birth_date.year == 2019 - row.grade, row  # grade 1 born in 2018 ... grade 5 in 2014
        assert row.gender in ("Nam", "Nữ") and row.ethnicity in ("Kinh", "Hoa", "Khmer")
        assert 3 <= len(row.full_name.split()) <= 5
        reviewed[schools[row.school_id]].append(row.identity_reviewed_at is not None)
        if row.identity_reviewed_at is not None:  # by the class's GVCN, before the plan's deadline
            assert row.identity_reviewed_by_id == row.homeroom_teacher_id, row
            assert datetime(2025, 5, 5, tzinfo=UTC) <= row.identity_reviewed_at < datetime(2025, 5, 17, tzinfo=UTC)
        else:
            assert row.identity_reviewed_by_id is None, row
    for code, marks in reviewed.items():
        share = sum(marks) / len(marks)
        assert (0.65 <= share <= 0.95) if code == "lequangdinh" else share == 0, code
    assert Counter(row.ethnicity for row in rows).most_common(1)[0][0] == "Kinh"


def _check_subject_ratings() -> Counter[str]:
    """Levels T/H/C; scores integers 1-10 exactly where the catalogue tests the subject in that period."""
    rows = db.session.execute(
        sa.select(SubjectRating.level, SubjectRating.score, Period.code, SubjectGrade.tested_periods,
                  SubjectGrade.optional, Subject.code.label("subject"))
        .join(Enrolment, Enrolment.id == SubjectRating.enrolment_id)
        .join(SchoolClass, SchoolClass.id == Enrolment.class_id)
        .join(Period, Period.id == SubjectRating.period_id)
        .join(Subject, Subject.id == SubjectRating.subject_id)
        .outerjoin(SubjectGrade, sa.and_(SubjectGrade.subject_id == SubjectRating.subject_id,
                                         SubjectGrade.grade == SchoolClass.grade))).all()
    assert rows
    for row in rows:
        assert row.tested_periods is not None, row  # a subject of the class's grade
        assert not row.optional or row.subject in TAUGHT_OPTIONAL, row
        assert row.level in ("T", "H", "C"), row
        if row.code in row.tested_periods:
            assert type(row.score) is int and 1 <= row.score <= 10, row
        else:
            assert row.score is None, row
    return Counter(row.level for row in rows)


def _check_trait_ratings() -> Counter[str]:
    rows = db.session.execute(
        sa.select(TraitRating.level, Trait.from_grade, SchoolClass.grade)
        .join(Trait, Trait.id == TraitRating.trait_id)
        .join(Enrolment, Enrolment.id == TraitRating.enrolment_id)
        .join(SchoolClass, SchoolClass.id == Enrolment.class_id)).all()
    assert rows
    for row in rows:
        assert row.level in ("T", "Đ", "C") and row.from_grade <= row.grade, row
    return Counter(row.level for row in rows)


def _check_year_end_complete() -> None:
    """At CN every pupil has a rating in every subject of the grade, every trait, and a period note."""
    subjects_of: dict[tuple[int, int], set[int]] = defaultdict(set)  # (year, grade) -> subject ids
    for year_id, grade, subject_id, code, optional in db.session.execute(
            sa.select(Subject.school_year_id, SubjectGrade.grade, Subject.id, Subject.code, SubjectGrade.optional)
            .join(SubjectGrade, SubjectGrade.subject_id == Subject.id)):
        if not optional or code in TAUGHT_OPTIONAL:
            subjects_of[year_id, grade].add(subject_id)
    traits_of: dict[tuple[int, int], int] = Counter()
    for year_id, from_grade in db.session.execute(sa.select(Trait.school_year_id, Trait.from_grade)):
        for grade in range(from_grade, 6):
            traits_of[year_id, grade] += 1
    enrolments = db.session.execute(sa.select(Enrolment.id, Enrolment.school_year_id, SchoolClass.grade).join(
        SchoolClass, SchoolClass.id == Enrolment.class_id)).all()
    cn = {year_id: period_id for year_id, period_id in db.session.execute(
        sa.select(Period.school_year_id, Period.id).where(Period.code == "CN"))}
    rated: dict[int, set[int]] = defaultdict(set)
    for enrolment_id, subject_id in db.session.execute(sa.select(SubjectRating.enrolment_id, SubjectRating.subject_id)
                                                       .where(SubjectRating.period_id.in_(cn.values()))):
        rated[enrolment_id].add(subject_id)
    traits = Counter(db.session.scalars(sa.select(TraitRating.enrolment_id).where(
        TraitRating.period_id.in_(cn.values()))))
    notes = set(db.session.scalars(sa.select(PeriodNote.enrolment_id).where(PeriodNote.period_id.in_(cn.values()))))
    for enrolment_id, year_id, grade in enrolments:
        assert rated[enrolment_id] == subjects_of[year_id, grade], enrolment_id
        assert traits[enrolment_id] == traits_of[year_id, grade], enrolment_id
        assert enrolment_id in notes


def test_the_demo_year_is_built_once_and_follows_the_rules(app, two_schools):
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["demo"])  # `flask demo`, which calls build_demo()
        assert result.exit_code == 0, result.output
        counts = _counts()
        again: dict[str, int] = {}
        build_demo(created=again)
        assert _counts() == counts
        tallies = _check_year(FAST_SCHOOLS)
    ratings = counts["subject_ratings"] + counts["trait_ratings"]
    assert (f"School year 2024-2025: {counts['pupils']:,} pupils in 11 classes, {ratings:,} ratings created "
            f"at 2 schools.") in result.output
    assert "gvcn5.lequangdinh" in result.output and "gvcn4.hiepphuoc" not in result.output
    assert again["schools"] == 0 and set(again.values()) == {0}  # the second run creates nothing
    # The teachers confirm results themselves in the demo, except in the one grade-5 class whose records
    # the demo signs and issues, so that the signing pages have something to show.
    with app.app_context(), all_schools():
        confirmed_classes = set(db.session.scalars(sa.select(Enrolment.class_id).join(
            YearResult, YearResult.enrolment_id == Enrolment.id)))
        issued = db.session.execute(sa.select(RecordVersion.class_id, RecordVersion.status)).all()
    assert len(confirmed_classes) == 1 and {class_id for class_id, _s in issued} == confirmed_classes
    assert {status for _c, status in issued} == {"issued", "signed_principal", "signed_homeroom"}
    assert "Học bạ số of class 5A at lequangdinh" in result.output
    assert tallies["subject"]["C"] > 0 and tallies["trait"]["C"] > 0


def test_the_year_holds_only_what_was_entered_by_today(app, two_schools):
    with app.app_context():
        build_demo(date(2025, 1, 10))  # in the middle of the end-of-term-I window
        with all_schools():
            entered = db.session.execute(sa.select(Period.code, sa.func.count(), sa.func.max(SubjectRating.updated_at))
                                         .join(Period, Period.id == SubjectRating.period_id)
                                         .group_by(Period.code)).all()
            reviewed = db.session.scalar(sa.select(sa.func.count()).select_from(Pupil).where(
                Pupil.identity_reviewed_at.is_not(None)))
    assert sorted(code for code, _count, _last in entered) == ["CHK1", "GHK1"]
    assert all(last < datetime(2025, 1, 11, tzinfo=UTC) for _code, _count, last in entered)
    assert reviewed == 0  # the review in May has not begun


@pytest.mark.slow
def test_the_whole_demo_district_gets_its_year(app):
    with app.app_context():
        created: dict[str, int] = {}
        build_demo(created=created)
        tallies = _check_year(tuple(code for code, _name, _commune in SCHOOLS))
        counts = _counts()
        build_demo()
        assert _counts() == counts
    assert created["schools"] == len(SCHOOLS) and created["classes"] == 5 * len(SCHOOLS) + 1
    subject, trait = tallies["subject"], tallies["trait"]
    # About 55/42/3 % and 60/38/2 %: a realistic school, not a uniform draw.
    assert 0.50 <= subject["T"] / subject.total() <= 0.60 and 0.01 <= subject["C"] / subject.total() <= 0.05
    assert 0.55 <= trait["T"] / trait.total() <= 0.65 and 0.005 <= trait["C"] / trait.total() <= 0.04
