"""The assessment data of Thông tư 27/2020, per school (every table is tenant-owned).

The catalogue (periods, subjects and the grades and periods in which each is tested, qualities and
competencies) is data of each school year, copied from `catalogue.py`'s programme file when a year is
created and editable afterwards: nothing about the programme is a constant in the code.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import UTCDateTime, db, str_enum, utcnow
from tenants.scoping import TenantScoped


class TraitKind(StrEnum):
    QUALITY = "quality"  # phẩm chất
    GENERAL = "general"  # năng lực chung
    SPECIFIC = "specific"  # năng lực đặc thù


class EnrolmentStatus(StrEnum):
    STUDYING = "studying"
    TRANSFERRED_IN = "transferred_in"
    TRANSFERRED_OUT = "transferred_out"
    LEFT = "left"


class SchoolYear(TenantScoped, db.Model):
    __tablename__ = "school_years"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(16))  # "2024-2025"
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    # Điều 9 score thresholds (the lowest one is unconfirmed in the regulation, so it is data).
    excellent_min_score: Mapped[int] = mapped_column(default=9)
    good_min_score: Mapped[int] = mapped_column(default=7)
    completed_min_score: Mapped[int] = mapped_column(default=5)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    periods: Mapped[list[Period]] = relationship(back_populates="school_year", order_by="Period.position")
    subjects: Mapped[list[Subject]] = relationship(back_populates="school_year", order_by="Subject.position")
    traits: Mapped[list[Trait]] = relationship(back_populates="school_year", order_by="Trait.position")
    classes: Mapped[list[SchoolClass]] = relationship(back_populates="school_year",
                                                      order_by="(SchoolClass.grade, SchoolClass.name)")

    __table_args__ = (sa.UniqueConstraint("school_id", "name"),)

    def __repr__(self) -> str:
        return f"<SchoolYear {self.name}>"


class Period(TenantScoped, db.Model):
    """GHKI, CHKI, GHKII, CN, with the window in which teachers may enter ratings."""

    __tablename__ = "periods"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(8))
    name: Mapped[str] = mapped_column(sa.String(64))
    position: Mapped[int]
    entry_opens_on: Mapped[date | None]
    entry_closes_on: Mapped[date | None]

    school_year: Mapped[SchoolYear] = relationship(back_populates="periods")

    __table_args__ = (sa.UniqueConstraint("school_year_id", "code"),)

    def is_open(self, today: date) -> bool:
        """Ratings of this period may be entered on `today` (both ends inclusive)."""
        if self.entry_opens_on is None or self.entry_closes_on is None:
            return False
        return self.entry_opens_on <= today <= self.entry_closes_on

    @property
    def is_year_end(self) -> bool:
        return self.code == "CN"

    def __repr__(self) -> str:
        return f"<Period {self.code}>"


class Subject(TenantScoped, db.Model):
    """A subject or educational activity of the year's catalogue."""

    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(120))
    position: Mapped[int]

    school_year: Mapped[SchoolYear] = relationship(back_populates="subjects")
    grades: Mapped[list[SubjectGrade]] = relationship(back_populates="subject", order_by="SubjectGrade.grade",
                                                      cascade="all, delete-orphan")

    __table_args__ = (sa.UniqueConstraint("school_year_id", "code"),)

    def for_grade(self, grade: int) -> SubjectGrade | None:
        return next((g for g in self.grades if g.grade == grade), None)

    def __repr__(self) -> str:
        return f"<Subject {self.code}>"


class SubjectGrade(TenantScoped, db.Model):
    """That a subject is taught in a grade, whether it is optional, and in which periods it is tested."""

    __tablename__ = "subject_grades"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    grade: Mapped[int]
    optional: Mapped[bool] = mapped_column(default=False)
    tested_periods: Mapped[list[str]] = mapped_column(sa.JSON, default=list)

    subject: Mapped[Subject] = relationship(back_populates="grades")

    __table_args__ = (sa.UniqueConstraint("subject_id", "grade"),)

    def is_tested(self, period_code: str) -> bool:
        return period_code in self.tested_periods

    def __repr__(self) -> str:
        return f"<SubjectGrade {self.subject_id} grade {self.grade}>"


class Trait(TenantScoped, db.Model):
    """A quality (phẩm chất) or competency (năng lực) rated by the homeroom teacher."""

    __tablename__ = "traits"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(120))
    kind: Mapped[TraitKind] = mapped_column(str_enum(TraitKind, 16))
    from_grade: Mapped[int] = mapped_column(default=1)
    position: Mapped[int]

    school_year: Mapped[SchoolYear] = relationship(back_populates="traits")

    __table_args__ = (sa.UniqueConstraint("school_year_id", "code"),)

    def __repr__(self) -> str:
        return f"<Trait {self.code}>"


class SchoolClass(TenantScoped, db.Model):
    __tablename__ = "classes"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(16))  # "5A"
    grade: Mapped[int]
    homeroom_teacher_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), index=True)

    school_year: Mapped[SchoolYear] = relationship(back_populates="classes")
    homeroom_teacher = relationship("User")
    assignments: Mapped[list[TeachingAssignment]] = relationship(back_populates="school_class",
                                                                 cascade="all, delete-orphan")

    __table_args__ = (
        sa.UniqueConstraint("school_year_id", "name"),
        sa.CheckConstraint("grade between 1 and 5", name="grade_1_to_5"),
    )

    def __repr__(self) -> str:
        return f"<SchoolClass {self.name}>"


class TeachingAssignment(TenantScoped, db.Model):
    """The subject teacher (GVBM) of one subject in one class."""

    __tablename__ = "teaching_assignments"

    id: Mapped[int] = mapped_column(primary_key=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"), index=True)
    teacher_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)

    school_class: Mapped[SchoolClass] = relationship(back_populates="assignments")
    subject: Mapped[Subject] = relationship()
    teacher = relationship("User")

    __table_args__ = (sa.UniqueConstraint("class_id", "subject_id"),)

    def __repr__(self) -> str:
        return f"<TeachingAssignment class={self.class_id} subject={self.subject_id}>"


class Pupil(TenantScoped, db.Model):
    """A pupil of the school with the identity page's fields; `pupil_code` is the Mã học sinh."""

    __tablename__ = "pupils"

    id: Mapped[int] = mapped_column(primary_key=True)
    pupil_code: Mapped[str] = mapped_column(sa.String(32))
    full_name: Mapped[str] = mapped_column(sa.String(200))
    gender: Mapped[str | None] = mapped_column(sa.String(8))
    birth_date: Mapped[date | None]
    ethnicity: Mapped[str | None] = mapped_column(sa.String(64))
    nationality: Mapped[str | None] = mapped_column(sa.String(64), default="Việt Nam")
    birth_place: Mapped[str | None] = mapped_column(sa.String(300))
    hometown: Mapped[str | None] = mapped_column(sa.String(300))
    address: Mapped[str | None] = mapped_column(sa.String(300))
    father_name: Mapped[str | None] = mapped_column(sa.String(200))
    mother_name: Mapped[str | None] = mapped_column(sa.String(200))
    guardian_name: Mapped[str | None] = mapped_column(sa.String(200))
    personal_id: Mapped[str | None] = mapped_column(sa.String(16))
    disability: Mapped[str | None] = mapped_column(sa.String(120))
    personal_plan: Mapped[bool] = mapped_column(default=False)
    register_number: Mapped[str | None] = mapped_column(sa.String(32))  # số đăng bộ
    identity_reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    identity_reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    enrolments: Mapped[list[Enrolment]] = relationship(back_populates="pupil")

    __table_args__ = (sa.UniqueConstraint("school_id", "pupil_code"),)

    IDENTITY_FIELDS = ("full_name", "gender", "birth_date", "ethnicity", "nationality", "birth_place",
                       "hometown", "address", "father_name", "mother_name", "guardian_name", "personal_id",
                       "disability", "personal_plan", "register_number")

    def identity(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.IDENTITY_FIELDS}

    def __repr__(self) -> str:
        return f"<Pupil {self.pupil_code}>"


class Enrolment(TenantScoped, db.Model):
    """A pupil in a class for one school year; every rating hangs on it."""

    __tablename__ = "enrolments"

    id: Mapped[int] = mapped_column(primary_key=True)
    pupil_id: Mapped[int] = mapped_column(sa.ForeignKey("pupils.id"), index=True)
    school_year_id: Mapped[int] = mapped_column(sa.ForeignKey("school_years.id"), index=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    status: Mapped[EnrolmentStatus] = mapped_column(str_enum(EnrolmentStatus, 24), default=EnrolmentStatus.STUDYING)
    enrolled_on: Mapped[date | None]

    pupil: Mapped[Pupil] = relationship(back_populates="enrolments")
    school_class: Mapped[SchoolClass] = relationship()

    __table_args__ = (sa.UniqueConstraint("pupil_id", "school_year_id"),)

    def __repr__(self) -> str:
        return f"<Enrolment pupil={self.pupil_id} class={self.class_id}>"


class SubjectRating(TenantScoped, db.Model):
    """One grid cell group: a pupil's level, test score and comment in a subject and period.

    `version` grows with every save: a save names the version it started from, and a different
    current version means someone else changed the row meanwhile (no silent overwrite).
    """

    __tablename__ = "subject_ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id"), index=True)
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"), index=True)
    period_id: Mapped[int] = mapped_column(sa.ForeignKey("periods.id"), index=True)
    level: Mapped[str | None] = mapped_column(sa.String(1))
    score: Mapped[int | None]
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (
        sa.UniqueConstraint("enrolment_id", "subject_id", "period_id"),
        sa.CheckConstraint("level in ('T', 'H', 'C')", name="level_t_h_c"),
        sa.CheckConstraint("score between 1 and 10", name="score_1_to_10"),
    )

    def __repr__(self) -> str:
        return f"<SubjectRating e={self.enrolment_id} s={self.subject_id} p={self.period_id}>"


class TraitRating(TenantScoped, db.Model):
    """A pupil's level (T/Đ/C) and comment in a quality or competency for a period."""

    __tablename__ = "trait_ratings"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id"), index=True)
    trait_id: Mapped[int] = mapped_column(sa.ForeignKey("traits.id"), index=True)
    period_id: Mapped[int] = mapped_column(sa.ForeignKey("periods.id"), index=True)
    level: Mapped[str | None] = mapped_column(sa.String(1))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    __table_args__ = (
        sa.UniqueConstraint("enrolment_id", "trait_id", "period_id"),
        sa.CheckConstraint("level in ('T', 'Đ', 'C')", name="level_t_d_c"),
    )

    def __repr__(self) -> str:
        return f"<TraitRating e={self.enrolment_id} t={self.trait_id} p={self.period_id}>"


class PeriodNote(TenantScoped, db.Model):
    """The homeroom teacher's measurements and absences of a pupil for a period."""

    __tablename__ = "period_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id"), index=True)
    period_id: Mapped[int] = mapped_column(sa.ForeignKey("periods.id"), index=True)
    height_cm: Mapped[int | None]
    weight_kg: Mapped[float | None]
    absent_excused: Mapped[int] = mapped_column(default=0)
    absent_unexcused: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (sa.UniqueConstraint("enrolment_id", "period_id"),)

    def __repr__(self) -> str:
        return f"<PeriodNote e={self.enrolment_id} p={self.period_id}>"


class YearResult(TenantScoped, db.Model):
    """The year-end result of one enrolment: computed, confirmed, completion, promotion, review."""

    __tablename__ = "year_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id"), unique=True)
    computed_outcome: Mapped[str | None] = mapped_column(sa.String(32))
    reasons: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    outcome: Mapped[str | None] = mapped_column(sa.String(32))  # confirmed (or set) by the GVCN
    confirmed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completion: Mapped[str | None] = mapped_column(sa.String(120))  # after the supplementary assessment, if any
    # Điều 11: a pupil not completing gets help, then a supplementary assessment (date, content, result)
    # that may confirm completion; `outcome` stays the first result, never rewritten.
    supplementary_note: Mapped[str] = mapped_column(sa.Text, default="")
    supplementary_on: Mapped[date | None]
    supplementary_passed: Mapped[bool | None]
    promoted: Mapped[bool | None]  # the principal's decision for pupils still not completing: lên lớp or not
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    results_reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    results_reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))

    def __repr__(self) -> str:
        return f"<YearResult e={self.enrolment_id} {self.outcome}>"


class Award(TenantScoped, db.Model):
    """A title at year end (Học sinh Xuất sắc, Học sinh Tiêu biểu...) or an ad-hoc award in the year."""

    __tablename__ = "awards"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(sa.ForeignKey("enrolments.id"), index=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    awarded_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    def __repr__(self) -> str:
        return f"<Award e={self.enrolment_id} {self.title[:20]}>"
