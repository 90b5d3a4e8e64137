"""Builds assessment data for tests: a school year with its catalogue, classes, teachers, pupils."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from flask import Flask

from portal.assessment.catalogue import build_year
from portal.assessment.models import Enrolment, Pupil, SchoolClass, SchoolYear, Subject, TeachingAssignment
from portal.extensions import db
from tenants.models import School
from tenants.scoping import school_scope

PUPIL_NAMES = ["Nguyễn Thị Ánh Tuyết", "Trần Minh Khoa", "Lê Ngọc Hân", "Phạm Đức Anh", "Huỳnh Bảo Trâm",
               "Võ Quốc Bảo", "Đặng Thu Hà", "Bùi Gia Huy", "Đỗ Khánh Linh", "Hồ Nhật Nam"]


@dataclass(frozen=True)
class ClassSetup:
    school_id: int
    year_id: int
    class_id: int
    period_ids: dict[str, int]  # code -> id
    subject_ids: dict[str, int]  # code -> id
    enrolment_ids: list[int]
    pupil_ids: list[int]


def make_year(app: Flask, school: School, *, name: str = "2024-2025", open_all: bool = True) -> int:
    """A school year with the programme's catalogue; every entry window open today when `open_all`."""
    start = int(name[:4])
    with app.app_context(), school_scope(school.id):
        year = build_year(school.id, name, date(start, 9, 5), date(start + 1, 5, 31))
        if open_all:
            for period in year.periods:
                period.entry_opens_on, period.entry_closes_on = date(2000, 1, 1), date(2100, 1, 1)
        db.session.add(year)
        db.session.commit()
        return year.id


def make_class(app: Flask, school: School, year_id: int, name: str = "5A", *, homeroom_id: int | None = None,
               teachers: dict[str, int] | None = None, pupils: int = 5, personal_plan: tuple[int, ...] = (),
               code_prefix: str | None = None) -> ClassSetup:
    """A class of `pupils` enrolled pupils; `teachers` maps subject codes to GVBM user ids."""
    with app.app_context(), school_scope(school.id):
        year = db.session.get(SchoolYear, year_id)
        school_class = SchoolClass(school_id=school.id, school_year_id=year_id, name=name, grade=int(name[0]),
                                   homeroom_teacher_id=homeroom_id)
        db.session.add(school_class)
        db.session.flush()
        subjects = {s.code: s for s in db.session.scalars(sa.select(Subject).where(Subject.school_year_id == year_id))}
        for code, teacher_id in (teachers or {}).items():
            db.session.add(TeachingAssignment(school_id=school.id, class_id=school_class.id,
                                              subject_id=subjects[code].id, teacher_id=teacher_id))
        prefix = code_prefix or f"79{school.id:03d}{school_class.id:03d}"
        enrolments, pupil_ids = [], []
        for n in range(pupils):
            born = date(2019 - school_class.grade, 3 + n // 28, 1 + n % 28)
            pupil = Pupil(school_id=school.id, pupil_code=f"{prefix}{n:02d}", full_name=PUPIL_NAMES[n % 10],
                          gender="Nữ" if n % 2 == 0 else "Nam", birth_date=born,
                          ethnicity="Kinh", personal_plan=n in personal_plan)
            db.session.add(pupil)
            db.session.flush()
            enrolment = Enrolment(school_id=school.id, pupil_id=pupil.id, school_year_id=year_id,
                                  class_id=school_class.id)
            db.session.add(enrolment)
            db.session.flush()
            enrolments.append(enrolment.id)
            pupil_ids.append(pupil.id)
        db.session.commit()
        return ClassSetup(school.id, year_id, school_class.id, {p.code: p.id for p in year.periods},
                          {code: s.id for code, s in subjects.items()}, enrolments, pupil_ids)
