"""Assessed, confirmed classes and their generated record versions, for the record and signing tests."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask

from portal.assessment.models import Enrolment, SchoolClass
from portal.extensions import db
from portal.records import services
from portal.records.models import RecordStatus, RecordVersion
from portal.results import services as results
from tenants.models import School, User
from tenants.scoping import school_scope
from tests.assessment_factory import ClassSetup, make_class, make_year
from tests.results_factory import rate


@dataclass(frozen=True)
class AssessedClass:
    school: School
    setup: ClassSetup  # the current year's class (grade 5 by default)
    earlier_class_ids: list[int]  # the same pupils' classes of earlier years, oldest first


def confirm_class(app: Flask, school: School, class_id: int, gvcn: User) -> None:
    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, class_id)
        results.confirm_all(school, school_class, actor=db.session.get(User, gvcn.id))
        db.session.commit()


def assessed_class(app: Flask, school: School, gvcn: User, *, pupils: int = 3, years: int = 2,
                   name: str = "5A") -> AssessedClass:
    """`pupils` pupils of class `name` rated and confirmed in every year of the last `years` years."""
    grade = int(name[0])
    first_grade = grade - years + 1
    earlier: list[int] = []
    setup: ClassSetup | None = None
    for offset in range(years):
        year_grade = first_grade + offset
        year_id = make_year(app, school, name=f"{2024 - years + 1 + offset}-{2025 - years + 1 + offset}")
        class_name = f"{year_grade}{name[1:]}"
        if setup is None and offset == years - 1:
            setup = make_class(app, school, year_id, class_name, homeroom_id=gvcn.id, pupils=pupils)
        else:
            setup_year = make_class(app, school, year_id, class_name, homeroom_id=gvcn.id, pupils=0)
            earlier.append(setup_year.class_id)
    assert setup is not None
    # The earlier years' classes hold the same pupils as the current one.
    with app.app_context(), school_scope(school.id):
        for class_id in earlier:
            school_class = db.session.get(SchoolClass, class_id)
            for pupil_id in setup.pupil_ids:
                db.session.add(Enrolment(school_id=school.id, pupil_id=pupil_id,
                                         school_year_id=school_class.school_year_id, class_id=class_id))
        db.session.commit()
    for class_id in earlier:
        rate(app, school, _setup_of(app, school, class_id, setup.pupil_ids), range(pupils))
        confirm_class(app, school, class_id, gvcn)
    rate(app, school, setup, range(pupils))
    confirm_class(app, school, setup.class_id, gvcn)
    return AssessedClass(school, setup, earlier)


def _setup_of(app: Flask, school: School, class_id: int, pupil_ids: list[int]) -> ClassSetup:
    """A ClassSetup of an earlier year's class (what `rate` needs to address its cells)."""
    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, class_id)
        year = school_class.school_year
        enrolments = dict(db.session.execute(sa.select(Enrolment.pupil_id, Enrolment.id)
                                             .where(Enrolment.class_id == class_id)).all())
        return ClassSetup(school.id, year.id, class_id, {p.code: p.id for p in year.periods},
                          {s.code: s.id for s in year.subjects}, [enrolments[p] for p in pupil_ids], pupil_ids)


def generate(app: Flask, school: School, class_id: int, actor: User | None) -> list[RecordVersion]:
    """Generate the class's drafts directly (no job); the versions come back detached."""
    with app.app_context(), school_scope(school.id):
        school_class = db.session.get(SchoolClass, class_id)
        who = db.session.get(User, actor.id) if actor else None
        here = db.session.get(School, school.id)
        made = [services.generate_record(here, school_class, pupil, actor=who)
                for pupil in services.class_pupils(school_class)]
        db.session.commit()
        versions = [m.version for m in made if m.version is not None]
        for version in versions:
            db.session.refresh(version)
            db.session.expunge(version)
        return versions


def insert_version(app: Flask, school: School, setup: ClassSetup, *, pupil_index: int = 0,
                   status: RecordStatus = RecordStatus.DRAFT) -> int:
    """A record version row of a pupil of `setup`, with sample content and small stand-in files: for
    walks over URLs that need a real version id, not for anything that reads the files as PDF."""
    from portal.storage import storage
    from tests.record_factory import sample_content

    with app.app_context(), school_scope(school.id):
        content = sample_content(1, code=services.new_code())
        files = storage()
        version = RecordVersion(
            school_id=school.id, pupil_id=setup.pupil_ids[pupil_index], school_year_id=setup.year_id,
            class_id=setup.class_id, grade=content["years"][-1]["grade"], number=1, code=content["record"]["code"],
            status=status, content=content, source_hash="0" * 64, content_hash="0" * 64,
            draft_digest=files.put(b"%PDF-1.7 " + content["record"]["code"].encode()),
            xml_digest=files.put(b"<hocba/>" + content["record"]["code"].encode()))
        db.session.add(version)
        db.session.commit()
        return version.id
