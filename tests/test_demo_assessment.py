"""The demo's school years (portal/demo/assessment.py): from 2024-2025 to the year of the day it is built, built
once, complete, within the rules, pupils moving up a grade each year."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

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
from portal.compliance.models import Milestone
from portal.demo import SCHOOLS, build_demo
from portal.demo import assessment as demo_assessment
from portal.demo.assessment import TAUGHT_OPTIONAL, entry_windows, year_dates
from portal.extensions import db
from portal.interop.models import ReceivedRecord
from portal.interop.received import received_year_pages
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


TODAY = date(2026, 12, 6)  # in the first term of 2026-2027, between the GHK1 and CHK1 windows
YEARS = ("2024-2025", "2025-2026", "2026-2027")


def _check_year(codes: tuple[str, ...], today: date = TODAY) -> dict[str, Counter[str]]:
    """Everything the demo promises about its years at these schools; returns the level tallies."""
    with all_schools():
        schools = dict(db.session.execute(sa.select(School.id, School.code).where(School.code.in_(codes))).all())
        assert sorted(schools.values()) == sorted(codes)
        years = db.session.scalars(sa.select(SchoolYear)).all()
        assert sorted((schools[y.school_id], y.name) for y in years) == sorted(
            (code, name) for code in codes for name in YEARS)
        for year in years:
            start = int(year.name[:4])
            assert (year.starts_on, year.ends_on) == year_dates(start)
            windows = {p.code: (p.entry_opens_on, p.entry_closes_on) for p in year.periods}
            assert windows == entry_windows(start, today)
            assert year.periods[-1].code == "CN" and year.periods[-1].is_open(date(start + 1, 5, 28))
            _check_classes(schools[year.school_id], year)
        _check_pupils(schools)
        _check_year_end_complete(today)
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
        # Pupils moving up are shared among the grade's classes: Lê Quang Định's one 4A fills 5A and 5B.
        # New classes hold 25-35; a class moving up loses the few kept back and gains those kept from above.
        shared = school_class.grade == 5 and code == "lequangdinh" and year.name != "2024-2025"
        low, high = (25, 35) if year.name == "2024-2025" else (10, 36) if shared else (20, 40)
        assert low <= sizes.get(school_class.id, 0) <= high, (code, year.name, school_class.name)
        assignments = {a.subject.code: a.teacher.username.split(".")[0] for a in school_class.assignments}
        assert assignments["toan"] == demo_assessment.HOMEROOM[school_class.name]
        assert assignments["ngoai_ngu_1"] == "gvbm1" and assignments["gdtc"] == "gvbm2"
        assert all(a.teacher.username.endswith(f".{code}") for a in school_class.assignments)


def _check_pupils(schools: dict[int, str]) -> None:
    rows = db.session.execute(sa.select(Pupil.school_id, Pupil.pupil_code, Pupil.full_name, Pupil.gender,
                                        Pupil.birth_date, Pupil.ethnicity, Pupil.identity_reviewed_at,
                                        Pupil.identity_reviewed_by_id, SchoolClass.grade,
                                        SchoolClass.homeroom_teacher_id, SchoolYear.starts_on)
                              .join(Enrolment, Enrolment.pupil_id == Pupil.id)
                              .join(SchoolClass, SchoolClass.id == Enrolment.class_id)
                              .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
                              .order_by(SchoolYear.starts_on)).all()
    codes = Counter((row.school_id, row.pupil_code) for row in rows if row.starts_on.year == 2024)
    assert max(codes.values()) == 1  # Mã học sinh: unique per school
    assert len({(row.school_id, row.pupil_code) for row in rows}) == len(
        set(db.session.execute(sa.select(Pupil.school_id, Pupil.id)).all()))
    first_seen: dict[tuple[int, str], Any] = {}
    for row in rows:
        first_seen.setdefault((row.school_id, row.pupil_code), row)
    rows = list(first_seen.values())  # each pupil in the year she came
    reviewed: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        assert len(row.pupil_code) == 10 and row.pupil_code.isdigit()
        # Six when entering grade 1: in 2024-2025 grade 1 was born in 2018 ... grade 5 in 2014.
        assert row.birth_date.year == row.starts_on.year - 5 - row.grade, row
        assert row.gender in ("Nam", "Nữ") and row.ethnicity in ("Kinh", "Hoa", "Khmer")
        assert 3 <= len(row.full_name.split()) <= 5
        reviewed[schools[row.school_id]].append(row.identity_reviewed_at is not None)
        if row.identity_reviewed_at is not None:  # by the class's GVCN, before the plan's deadline
            assert row.identity_reviewed_by_id == row.homeroom_teacher_id, row
            may = row.starts_on.year + 1
            assert datetime(may, 5, 5, tzinfo=UTC) <= row.identity_reviewed_at < datetime(may, 5, 17, tzinfo=UTC)
        else:
            assert row.identity_reviewed_by_id is None, row
    for code, marks in reviewed.items():
        share = sum(marks) / len(marks)  # the current year's new pupils are not reviewed yet (May)
        assert (0.5 <= share <= 0.9) if code == "lequangdinh" else share == 0, code
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


def _check_year_end_complete(today: date) -> None:
    """At CN of a year that is over every pupil has a rating in every subject of the grade, every trait, a
    period note and a result; the year under way has none yet."""
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
        SchoolClass, SchoolClass.id == Enrolment.class_id).join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
        .where(SchoolYear.ends_on < today)).all()
    results = set(db.session.scalars(sa.select(YearResult.enrolment_id)))
    assert results == {enrolment_id for enrolment_id, _y, _g in enrolments}
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


def test_the_demo_years_are_built_once_and_follow_the_rules(app, two_schools):
    with app.app_context():
        # `flask demo`, which calls build_demo(), as of a fixed day (the demo itself follows the real one).
        result = app.test_cli_runner().invoke(args=["demo", "--today", TODAY.isoformat()])
        assert result.exit_code == 0, result.output
        counts = _counts()
        again: dict[str, int] = {}
        build_demo(TODAY, created=again)
        assert _counts() == counts
        tallies = _check_year(FAST_SCHOOLS)
    ratings = counts["subject_ratings"] + counts["trait_ratings"]
    # The pupil transferred in is added after the years are built, by the records step.
    assert "Transferred in at lequangdinh, 2026-2027 4A" in result.output
    assert (f"School years 2024-2025 to 2026-2027: {counts['pupils'] - 1:,} pupils, {counts['classes']} classes, "
            f"{ratings:,} ratings, {counts['year_results']:,} year results created at 2 schools; current year "
            f"2026-2027 as of 06/12/2026.") in result.output
    assert "gvcn5.lequangdinh" in result.output and "gvcn4.hiepphuoc" not in result.output
    assert again["schools"] == 0 and set(again.values()) == {0}  # the second run creates nothing
    with app.app_context(), all_schools():
        school_years = dict(db.session.execute(sa.select(SchoolYear.id, SchoolYear.name)).all())
        record_school = db.session.scalar(sa.select(School.id).where(School.code == "lequangdinh"))
        issued = db.session.execute(sa.select(RecordVersion.school_year_id, SchoolClass.name, RecordVersion.status,
                                              RecordVersion.content).join(
            SchoolClass, SchoolClass.id == RecordVersion.class_id).where(
            RecordVersion.school_id == record_school)).all()
        # One grade-4 pupil came this year from Hiệp Phước, with the record it issued for her grade 3.
        arrived = db.session.execute(sa.select(Enrolment, SchoolClass.name).join(SchoolClass).where(
            Enrolment.school_id == record_school, Enrolment.status == "transferred_in")).all()
        received = db.session.scalars(sa.select(ReceivedRecord).where(ReceivedRecord.school_id == record_school)).all()
        received_pages = received_year_pages(arrived[0][0].pupil) if arrived else []
        current = db.session.scalars(sa.select(Period).join(SchoolYear).where(SchoolYear.name == "2026-2027")).all()
        entered = set(db.session.scalars(sa.select(SubjectRating.period_id).distinct()))
    # Grade 5 of the years that are over: 2025-2026's 5A issued, 5B stopped at every step for the signing
    # pages, a few of 2024-2025's 5A issued; nothing of the year under way.
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    for year_id, class_name, status, _content in issued:
        statuses[f"{school_years[year_id]} {class_name}"][status] += 1
    assert set(statuses) == {"2024-2025 5A", "2025-2026 5A", "2025-2026 5B"}
    assert set(statuses["2024-2025 5A"]) == set(statuses["2025-2026 5A"]) == {"issued"}
    # A few, and always the pupil who completed primary school after the summer's supplementary assessment.
    assert demo_assessment_records().EARLIER_YEAR_RECORDS <= statuses["2024-2025 5A"]["issued"] <= 8
    summer = [content["years"][-1] for _y, _c, _s, content in issued
              if content["years"][-1]["outcome"] == "chua_hoan_thanh" and content["years"][-1]["completion"]]
    assert summer and all(page["completion"] == "Hoàn thành chương trình tiểu học" and page["grade"] == 5
                          and "Kết quả: Hoàn thành." in page["supplementary_note"] for page in summer)
    assert set(statuses["2025-2026 5B"]) == {"issued", "signed_principal", "signed_homeroom"}
    # A 2025-2026 record carries the pupil's two years: 2024-2025 in grade 4 and 2025-2026 in grade 5.
    for year_id, _class_name, _status, content in issued:
        pages = [(page["school_year"], page["grade"]) for page in content["years"]]
        history = [row["school_year"] for row in content["history"]]
        if school_years[year_id] == "2025-2026":
            assert pages in ([("2024-2025", 4), ("2025-2026", 5)], [("2024-2025", 5), ("2025-2026", 5)]), pages
            assert history == ["2024-2025", "2025-2026"]
        else:
            assert pages == [("2024-2025", 5)]
    assert "Học bạ số of 2025-2026 5A at lequangdinh" in result.output
    assert [(name, e.school_year_id) for e, name in arrived] == [("4A", current[0].school_year_id)]
    assert [(r.state, r.issuing_school_name, r.school_year, r.grade) for r in received] == [
        ("accepted", "Trường Tiểu học Hiệp Phước", "2025-2026", 3)]
    assert [(p["school_year"], p["grade"], p["source"]) for p in received_pages] == [
        ("2024-2025", 2, "received"), ("2025-2026", 3, "received")]
    # 2026-2027 is under way: GHK1 entered, CHK1 open today for the teachers, the rest to come.
    assert {p.code for p in current if p.id in entered} == {"GHK1"}
    assert {p.code for p in current if p.is_open(TODAY)} == {"CHK1"}
    assert tallies["subject"]["C"] > 0 and tallies["trait"]["C"] > 0


def demo_assessment_records() -> Any:
    from portal.demo import records

    return records


def test_pupils_move_up_a_grade_each_year(app, two_schools):
    with app.app_context():
        build_demo(TODAY)
        with all_schools():
            rows = db.session.execute(
                sa.select(Enrolment.school_id, Enrolment.pupil_id, SchoolYear.name, SchoolClass.grade,
                          YearResult.outcome, YearResult.promoted, YearResult.supplementary_on,
                          YearResult.supplementary_passed)
                .join(SchoolYear, SchoolYear.id == Enrolment.school_year_id)
                .join(SchoolClass, SchoolClass.id == Enrolment.class_id)
                .outerjoin(YearResult, YearResult.enrolment_id == Enrolment.id)).all()
    by_pupil: dict[int, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        by_pupil[row.pupil_id][row.name] = row
    moved = kept = left = 0
    for years in by_pupil.values():
        for before, after in itertools.pairwise(YEARS):
            if before not in years:
                assert after not in years or years[after].grade == 1  # new pupils come in grade 1
                continue
            last = years[before]
            not_promoted = last.outcome == "chua_hoan_thanh" and last.promoted is False
            if last.outcome == "chua_hoan_thanh":
                # Điều 11: a supplementary assessment in the summer; completing, or the principal's decision.
                assert last.supplementary_on is not None and last.supplementary_on.month == 8
                assert last.supplementary_passed is (last.promoted is None)
            if last.grade == 5 and not not_promoted:
                assert after not in years  # completed primary school
                left += 1
            elif not_promoted:
                assert years[after].grade == last.grade
                kept += 1
            else:
                assert years[after].grade == last.grade + 1
                moved += 1
    assert moved > 300 and left > 60


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
def test_the_whole_demo_district_gets_its_years(app):
    with app.app_context():
        created: dict[str, int] = {}
        build_demo(TODAY, created=created)
        tallies = _check_year(tuple(code for code, _name, _commune in SCHOOLS))
        counts = _counts()
        build_demo(TODAY)
        assert _counts() == counts
    assert created["schools"] == len(SCHOOLS) and created["classes"] == len(YEARS) * (5 * len(SCHOOLS) + 1)
    subject, trait = tallies["subject"], tallies["trait"]
    # About 55/42/3 % and 60/38/2 %: a realistic school, not a uniform draw.
    assert 0.50 <= subject["T"] / subject.total() <= 0.60 and 0.01 <= subject["C"] / subject.total() <= 0.05
    assert 0.55 <= trait["T"] / trait.total() <= 0.65 and 0.005 <= trait["C"] / trait.total() <= 0.04


@pytest.mark.slow
def test_the_demo_built_again_later_keeps_up_with_the_calendar(app, two_schools):
    """Built in December, then again after the year ended and in the next September: what the days since
    added is built (the rest of the year, its results, the next year, its plan); nothing is built twice."""
    with app.app_context():
        build_demo(TODAY)
        build_demo(date(2027, 6, 20))  # 2026-2027 is over, 2027-2028 has not begun
        with all_schools():
            years = set(db.session.scalars(sa.select(SchoolYear.name)))
            entered = set(db.session.scalars(sa.select(Period.code).join(SchoolYear).join(
                SubjectRating, SubjectRating.period_id == Period.id).where(SchoolYear.name == "2026-2027")))
        assert years == set(YEARS) and entered == {"GHK1", "CHK1", "GHK2", "CN"}
        counts = _counts()
        build_demo(date(2027, 6, 21))
        assert _counts() == counts  # the next day adds nothing
        build_demo(date(2027, 9, 20))
        with all_schools():
            years = set(db.session.scalars(sa.select(SchoolYear.name)))
            plans = set(db.session.scalars(sa.select(Milestone.year_label)))
            deadlines = dict(db.session.execute(sa.select(Milestone.year_label, sa.func.min(Milestone.deadline))
                                                .group_by(Milestone.year_label)).all())
        assert years == plans == {*YEARS, "2027-2028"}
        assert deadlines["2027-2028"] == date(2028, 3, 28) and deadlines["2024-2025"] == date(2025, 3, 28)
        # The scheduled count finds a plan to count in every month of the year.
        runner = app.test_cli_runner()
        for month in (*range(9, 13), *range(1, 9)):
            day = date(2027 if month >= 9 else 2028, month, 15)
            result = runner.invoke(args=["compliance", "snapshot", "--day", day.isoformat()])
            assert result.exit_code == 0 and "snapshot rows" in result.output, (day, result.output)
