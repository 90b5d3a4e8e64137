"""Ratings for year-end and summary tests (and the summary benchmark), inserted directly as rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from flask import Flask

from portal.assessment.models import SchoolClass, Subject, SubjectGrade, SubjectRating, Trait, TraitRating
from portal.extensions import db
from tenants.models import School
from tenants.scoping import school_scope
from tests.assessment_factory import ClassSetup

Cell = tuple[str | None, int | None]  # (level, score)


def rate(app: Flask, school: School, setup: ClassSetup, pupils: int | Iterable[int], *, period: str = "CN",
         level: str = "T", score: int = 10, trait: str = "T", subjects: Mapping[str, Cell | None] | None = None,
         traits: Mapping[str, str | None] | None = None) -> None:
    """Rate the given pupils (indexes into the class) in every subject and trait of their grade.

    Every compulsory subject gets `level`, and `score` where it is tested in `period`; optional
    subjects are rated only when named in `subjects`. `subjects` and `traits` override cells by code;
    None there leaves the cell out altogether.
    """
    indexes = [pupils] if isinstance(pupils, int) else list(pupils)
    subjects, traits = dict(subjects or {}), dict(traits or {})
    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, setup.class_id)
        period_id = setup.period_ids[period]
        catalogue = db.session.execute(
            sa.select(Subject, SubjectGrade).join(SubjectGrade, SubjectGrade.subject_id == Subject.id)
            .where(Subject.school_year_id == setup.year_id, SubjectGrade.grade == school_class.grade)).all()
        trait_rows = db.session.scalars(sa.select(Trait).where(Trait.school_year_id == setup.year_id,
                                                               Trait.from_grade <= school_class.grade)).all()
        rows: list[object] = []
        for index in indexes:
            enrolment_id = setup.enrolment_ids[index]
            for subject, spec in catalogue:
                if subject.code in subjects:
                    cell = subjects[subject.code]
                elif spec.optional:
                    cell = None
                else:
                    cell = (level, score if spec.is_tested(period) else None)
                if cell is not None:
                    rows.append(SubjectRating(school_id=school.id, enrolment_id=enrolment_id, subject_id=subject.id,
                                              period_id=period_id, level=cell[0], score=cell[1]))
            for item in trait_rows:
                value = traits.get(item.code, trait)
                if value is not None:
                    rows.append(TraitRating(school_id=school.id, enrolment_id=enrolment_id, trait_id=item.id,
                                            period_id=period_id, level=value))
        db.session.add_all(rows)
        db.session.commit()


def change_subject(app: Flask, school: School, setup: ClassSetup, pupil: int, code: str, *, level: str | None,
                   score: int | None = None, period: str = "CN") -> None:
    """Change one subject cell of one pupil, as a later edit of the ratings would."""
    with app.app_context(), school_scope(school.id):
        rating = db.session.scalar(sa.select(SubjectRating).where(
            SubjectRating.enrolment_id == setup.enrolment_ids[pupil],
            SubjectRating.subject_id == setup.subject_ids[code], SubjectRating.period_id == setup.period_ids[period]))
        rating.level, rating.score, rating.version = level, score, rating.version + 1
        db.session.commit()

